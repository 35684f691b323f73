//! The power-cut torture: a v1 qemu-virt device updates to v2 from nginx
//! while QEMU is killed at random moments — during the streamed download
//! and the write of slot b, the reboot, the trial boot and the health check
//! that marks the slot good. Each step of the update is started where the
//! device is (nothing installed: `rauc install` then reboot; installed:
//! reboot; on trial: the health check runs by itself) and the cut falls
//! within the torture's `window` of it, at a moment drawn from a seeded
//! generator.
//!
//! After every cut the device must come up and play (vinyl-streamd's
//! `/status`), with its identity and data on /data and its IPv6 address
//! kept; once the cuts are spent, the update, carried on without cuts, must
//! end installed and good.
//!
//! ota.rs runs five cuts in CI on its device; the `power_cuts` example runs
//! any number and prints the tally, starting each round on a fresh v1 card
//! once an update has ended good.

#![allow(dead_code)] // ota.rs and the example use different parts

use crate::test_net::{self, TestNet};
use qemu_tests::{MachineConfig, Vm};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(600);
const COMMAND: Duration = Duration::from_secs(60);
/// A cut falls this long at most after the step it interrupts began: long
/// enough to reach the end of an install, its reboot and the trial boot.
pub const WINDOW: Duration = Duration::from_secs(150);
/// The seed without `POWER_CUT_SEED`.
pub const DEFAULT_SEED: u64 = 0x5EED_CAFE;

/// The seed of a run: `POWER_CUT_SEED` replays one (every run prints it).
pub fn seed() -> u64 {
    std::env::var("POWER_CUT_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// xorshift64*: the cut times, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, limit: Duration) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let n = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        Duration::from_millis(n % limit.as_millis() as u64)
    }
}

/// What the device is doing, from `vinyl-update status --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Slot a runs, nothing waits: install v2.
    Install,
    /// v2 installed, the next boot tries it: reboot.
    Reboot,
    /// A trial boot of slot b: the health check marks it good by itself.
    Trial,
    /// v2 runs, marked good.
    Done,
}

/// The step `status` (`vinyl-update status --json`) is at.
pub fn step(status: &serde_json::Value) -> Step {
    let booted = status["booted"]["slot"].as_str().unwrap_or_default();
    if status["trial"]["slot"].as_str() == Some(booted) && booted == "b" {
        Step::Trial
    } else if status["primary"] != booted {
        Step::Reboot
    } else if booted == "b" && status["active"] == "b" {
        Step::Done
    } else {
        Step::Install
    }
}

/// One power cut: how long after its step began.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    pub step: Step,
    pub at: Duration,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Tally {
    pub cuts: Vec<Cut>,
    /// Boots after a cut.
    pub boots: usize,
    /// Of those, boots that came up and played.
    pub played: usize,
    /// Updates that ended installed and good (v2 on slot b).
    pub updates: usize,
    /// Why the device did not come up and play, if it did not.
    pub unbootable: Option<String>,
}

impl Tally {
    /// One line for the log and the closing note.
    pub fn summary(&self) -> String {
        format!(
            "{} power cuts; {}/{} boots came up and played; devices left unbootable: {}; \
             updates ended installed and good: {}",
            self.cuts.len(),
            self.played,
            self.boots,
            usize::from(self.unbootable.is_some()),
            self.updates
        )
    }
}

/// The device under torture and where its update comes from.
pub struct Torture<'a> {
    pub net: &'a TestNet,
    /// The machine; it writes its disk image, so the next QEMU finds the
    /// disk as the cut left it.
    pub config: MachineConfig,
    pub mac: &'a str,
    /// The v2 bundle's URL on the test network's nginx.
    pub url: String,
    /// With a v1 image, a device that has ended its update good starts a
    /// new round on a fresh copy of it (the disk of `config`); without,
    /// later cuts fall on the running v2.
    pub fresh_card: Option<PathBuf>,
    /// A cut falls at most this long after its step began ([`WINDOW`]).
    pub window: Duration,
    pub name: &'a str,
}

/// The device as the torture checks it after every boot.
struct Seen {
    address: String,
    identity: String,
    status: serde_json::Value,
}

impl Torture<'_> {
    /// Boots a fresh v1 card (the `fresh_card` copied over the disk, which
    /// is the scenario copy named after the torture).
    pub fn boot_fresh(&self) -> Result<(Vm, String), String> {
        let v1 = self.fresh_card.as_ref().expect("a v1 image to copy");
        let card = crate::test_image::scenario_copy(v1, self.name);
        assert_eq!(
            card, self.config.image,
            "the machine boots the scenario's card"
        );
        let mut vm = self.net.boot(self.config.clone(), self.mac);
        let (address, _) = come_up(self.net, &mut vm)?;
        Ok((vm, address))
    }

    /// Cuts the power `cuts` times, starting with `vm` (up, at `address`),
    /// then carries the update to its end without cuts. Returns the tally
    /// and the running device (v2, good) or why the run failed.
    pub fn run(
        &self,
        mut vm: Vm,
        address: &str,
        cuts: usize,
        seed: u64,
    ) -> (Tally, Result<Vm, String>) {
        eprintln!("{}: {cuts} power cuts, POWER_CUT_SEED={seed}", self.name);
        let mut rng = Rng(seed.max(1));
        let mut tally = Tally::default();
        let mut seen = match self.look(&mut vm, address.to_string()) {
            Ok(seen) => seen,
            Err(why) => return (tally, Err(why)),
        };
        for n in 1..=cuts {
            let mut now = step(&seen.status);
            if now == Step::Done && self.fresh_card.is_some() {
                tally.updates += 1;
                vm.kill();
                drop(vm);
                let address;
                (vm, address) = match self.boot_fresh() {
                    Ok(up) => up,
                    Err(why) => return (tally, Err(format!("a fresh v1 card: {why}"))),
                };
                seen = match self.look(&mut vm, address) {
                    Ok(seen) => seen,
                    Err(why) => return (tally, Err(why)),
                };
                now = step(&seen.status);
            }
            if let Err(why) = self.start(&mut vm, now) {
                return (tally, Err(why));
            }
            let at = rng.below(self.window);
            std::thread::sleep(at);
            vm.kill();
            drop(vm);
            tally.cuts.push(Cut { step: now, at });
            eprintln!(
                "{}: cut {n}/{cuts}: {:.1} s into {now:?}",
                self.name,
                at.as_secs_f64()
            );

            vm = self.net.boot(self.config.clone(), self.mac);
            tally.boots += 1;
            let up = come_up(self.net, &mut vm);
            let after = match up.and_then(|(address, _)| self.look(&mut vm, address)) {
                Ok(after) => after,
                Err(why) => {
                    let why = format!(
                        "after cut {n} ({:.1} s into {now:?}): {why}\nconsole: {}",
                        at.as_secs_f64(),
                        vm.console_log_path().display()
                    );
                    tally.unbootable = Some(why.clone());
                    return (tally, Err(why));
                }
            };
            tally.played += 1;
            if let Err(why) = kept(&seen, &after) {
                return (tally, Err(format!("after cut {n}: {why}")));
            }
            seen = after;
        }

        // No more cuts: the update runs to its end.
        let result = self.finish(&mut vm, &mut seen);
        if result.is_ok() {
            tally.updates += 1;
        }
        eprintln!("{}: tally: {}", self.name, tally.summary());
        (tally, result.map(|()| vm))
    }

    /// Starts `step` in the guest without waiting for it.
    fn start(&self, vm: &mut Vm, step: Step) -> Result<(), String> {
        match step {
            Step::Install => vm
                .run_ok(
                    &format!(
                        "(rauc install {} && systemctl reboot) >/run/cut.log 2>&1 &",
                        self.url
                    ),
                    COMMAND,
                )
                .map(drop),
            Step::Reboot => vm.send("systemctl reboot"),
            Step::Trial | Step::Done => Ok(()),
        }
        .map_err(|e| e.to_string())
    }

    /// Carries the update from where `seen` is to v2 marked good.
    fn finish(&self, vm: &mut Vm, seen: &mut Seen) -> Result<(), String> {
        for _ in 0..4 {
            let now = step(&seen.status);
            if now == Step::Done {
                let release = vm
                    .run_ok("cat /etc/vinyl/test-release", COMMAND)
                    .map_err(|e| e.to_string())?;
                return if release.trim() == "v2" {
                    Ok(())
                } else {
                    Err(format!("slot b runs {release:?}, not v2: {}", seen.status))
                };
            }
            self.start(vm, now)?;
            if now != Step::Trial {
                vm.wait_for_console("vinyl: trial boot of slot b", BOOT)
                    .map_err(|e| e.to_string())?;
                let (address, _) = come_up(self.net, vm)?;
                let after = self.look(vm, address)?;
                kept(seen, &after)?;
                *seen = after;
            }
            // The health check's verdict.
            let deadline = Instant::now() + BOOT;
            while !seen.status["trial"].is_null() {
                if Instant::now() >= deadline {
                    return Err(format!("no verdict on the trial: {}", seen.status));
                }
                std::thread::sleep(Duration::from_secs(2));
                seen.status = test_net::update_status(vm)?;
            }
        }
        Err(format!("the update did not end good: {}", seen.status))
    }

    /// What is checked after every boot.
    fn look(&self, vm: &mut Vm, address: String) -> Result<Seen, String> {
        let identity = vm
            .run_ok(
                "mkdir -p /data/power-cuts && { [ -s /data/power-cuts/kept ] || \
                 { cat /proc/sys/kernel/random/uuid > /data/power-cuts/kept && sync; }; } && \
                 cat /etc/machine-id /data/ssh/ssh_host_ed25519_key.pub /data/power-cuts/kept",
                COMMAND,
            )
            .map_err(|e| e.to_string())?;
        Ok(Seen {
            address,
            identity,
            status: test_net::update_status(vm)?,
        })
    }
}

/// What a cut must not change.
fn kept(before: &Seen, after: &Seen) -> Result<(), String> {
    if after.identity != before.identity {
        return Err(format!(
            "the identity or /data changed:\n{}\n→\n{}",
            before.identity, after.identity
        ));
    }
    if after.address != before.address {
        return Err(format!(
            "the IPv6 address changed: {} → {}",
            before.address, after.address
        ));
    }
    Ok(())
}

/// Waits until the device has booted, answers its shell and plays; returns
/// its address and vinyl-streamd's `/status`, or why it did not come up.
pub fn come_up(net: &TestNet, vm: &mut Vm) -> Result<(String, serde_json::Value), String> {
    let address = test_net::try_announced_address(vm, BOOT)?;
    vm.wait_for_shell(BOOT).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + BOOT;
    loop {
        match test_net::streamd_status(net, &address) {
            Ok(s) if s["state"] == "playing" => return Ok((address, s)),
            other if Instant::now() >= deadline => {
                return Err(format!("it does not play: {other:?}"));
            }
            _ => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}
