//! What the updater decides, apart from how it fetches and installs: whether
//! a channel's offer is installed, whether a check is due, whether the
//! device may reboot into an installed update now. Pure.

use crate::config::{REBOOT_WINDOW, Reboot};
use crate::installed::Installed;
use ab_state::{Slot, State};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;
use update_channel::Channel;
use update_channel::version::compare;

/// The running image's release (`/usr/lib/vinyl/release`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub version: String,
    pub compatible: String,
}

/// What to do with a channel's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Install it.
    Install,
    /// Nothing newer: the device runs the offered version or a newer one.
    UpToDate(String),
    /// Not installed, and the operator should know why.
    Refuse(String),
}

/// Decides on `channel`'s offer for a device running `running`. `force`
/// (by hand) allows an older release and ignores `min-version`.
pub fn offer(running: &Running, channel: &Channel, force: bool) -> Offer {
    if channel.compatible != running.compatible {
        return Offer::Refuse(format!(
            "the channel offers a release for {}; this device is {}",
            channel.compatible, running.compatible
        ));
    }
    let offered = &channel.version;
    match compare(offered, &running.version) {
        Ordering::Equal if !force => {
            return Offer::UpToDate(format!("running {offered}, the version the channel offers"));
        }
        Ordering::Less if !force => {
            return Offer::UpToDate(format!(
                "running {}; the channel offers the older {offered} (`vinyl-update check --force` installs it)",
                running.version
            ));
        }
        _ => {}
    }
    if let Some(min) = &channel.min_version
        && !force
        && compare(&running.version, min).is_lt()
    {
        return Offer::Refuse(format!(
            "{offered} updates only from {min} or newer and this device runs {}: install an intermediate release first (or `vinyl-update check --force`)",
            running.version
        ));
    }
    Offer::Install
}

/// The slot an installed update waits in, and its version: the boot
/// state's next boot is not the running slot.
pub fn pending(
    booted: Slot,
    state: &State,
    installed: &BTreeMap<Slot, Installed>,
) -> Option<(Slot, Option<String>)> {
    let next = state.primary();
    (next != booted).then(|| (next, installed.get(&next).and_then(|i| i.version.clone())))
}

/// Whether the running slot is on a trial boot not yet marked good.
pub fn on_trial(booted: Slot, state: &State) -> bool {
    state.trial == Some(booted)
}

/// Why `version` must not be installed again: it is what the other slot
/// holds, RAUC activated it, and its trial boot failed (the slot is bad).
/// Installing it again would repeat the failed trial every `check-every`.
pub fn failed_trial(
    booted: Slot,
    state: &State,
    installed: &BTreeMap<Slot, Installed>,
    version: &str,
) -> Option<String> {
    let other = booted.other();
    let installed = installed.get(&other)?;
    (installed.version.as_deref() == Some(version)
        && installed.was_activated()
        && !state.is_good(other))
    .then(|| {
        format!(
            "{version} failed its trial boot on this device (slot {other} was marked bad): not installing it again; publish a newer release, or `vinyl-update check --force`"
        )
    })
}

/// Whether a check is due: never checked, the interval passed, or the
/// clock went back (a device that booted before its clock was set).
pub fn check_due(now: u64, last_check: Option<u64>, every: Duration) -> bool {
    match last_check {
        None => true,
        Some(last) => now < last || now - last >= every.as_secs(),
    }
}

/// What vinyl-streamd says (`/status`); `None` when it does not answer
/// (then nobody can be listening).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    pub listeners: u64,
    /// The turntable plays (not silent, a card is there).
    pub playing: bool,
}

/// Whether the device may reboot into an installed update at `now`
/// (seconds since the epoch, UTC), and if not, why.
pub fn may_reboot(policy: Reboot, now: u64, listening: Option<Listening>) -> Result<(), String> {
    let hearing = listening.is_some_and(|l| l.listeners > 0 && l.playing);
    if hearing {
        return Err("somebody is listening to a record".into());
    }
    match policy {
        Reboot::Idle => match listening {
            Some(l) if l.listeners > 0 => Err(format!("{} listener(s) connected", l.listeners)),
            Some(l) if l.playing => Err("the turntable is playing".into()),
            _ => Ok(()),
        },
        Reboot::At(minute) => {
            let since_midnight = now % 86400;
            let start = u64::from(minute) * 60;
            let after = (since_midnight + 86400 - start) % 86400;
            if after < REBOOT_WINDOW.as_secs() {
                Ok(())
            } else {
                Err(format!(
                    "waiting for {:02}:{:02} UTC",
                    minute / 60,
                    minute % 60
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use update_channel::{BundleRef, FORMAT};

    fn running() -> Running {
        Running {
            version: "1.4.0".into(),
            compatible: "vinyl-rpi4".into(),
        }
    }

    fn channel(version: &str, min: Option<&str>) -> Channel {
        Channel {
            format: FORMAT,
            compatible: "vinyl-rpi4".into(),
            version: version.into(),
            build: "b".into(),
            released: "2026-12-04".into(),
            min_version: min.map(String::from),
            bundle: BundleRef {
                url: "v.raucb".into(),
                size: 1,
                sha256: "ab".repeat(32),
                manifest_sha256: "cd".repeat(32),
            },
        }
    }

    #[test]
    fn installs_only_newer_releases_it_may_update_to() {
        assert_eq!(
            offer(&running(), &channel("1.5.0", None), false),
            Offer::Install
        );
        assert_eq!(
            offer(&running(), &channel("1.5.0", Some("1.4.0")), false),
            Offer::Install
        );
        assert!(matches!(
            offer(&running(), &channel("1.4.0", None), false),
            Offer::UpToDate(_)
        ));
        let older = offer(&running(), &channel("1.3.9", None), false);
        assert!(
            matches!(&older, Offer::UpToDate(m) if m.contains("older 1.3.9")),
            "{older:?}"
        );
        let below = offer(&running(), &channel("2.0.0", Some("1.5.0")), false);
        assert!(
            matches!(&below, Offer::Refuse(m) if m.contains("only from 1.5.0")),
            "{below:?}"
        );
        let mut other = channel("9.0.0", None);
        other.compatible = "vinyl-rpi3".into();
        let refused = offer(&running(), &other, true);
        assert!(
            matches!(&refused, Offer::Refuse(m) if m.contains("vinyl-rpi3")),
            "{refused:?}"
        );
        // By hand: older releases and min-version too.
        assert_eq!(
            offer(&running(), &channel("1.3.9", None), true),
            Offer::Install
        );
        assert_eq!(
            offer(&running(), &channel("2.0.0", Some("1.5.0")), true),
            Offer::Install
        );
    }

    #[test]
    fn the_boot_state_says_what_waits_and_what_failed() {
        let installed = |activated: bool| {
            let entry = Installed {
                version: Some("2.0.0".into()),
                installed: Some("2026-12-04T10:00:00Z".into()),
                activated: activated.then(|| "2026-12-04T10:00:01Z".into()),
                ..Default::default()
            };
            BTreeMap::from([(Slot::B, entry)])
        };
        let fresh = State::initial(1);
        // RAUC installed into b and made it the next boot: b waits, on trial.
        let waiting = fresh.set_primary(Slot::B, 3).unwrap();
        assert_eq!(
            pending(Slot::A, &waiting, &installed(true)),
            Some((Slot::B, Some("2.0.0".into())))
        );
        assert_eq!(pending(Slot::A, &fresh, &installed(true)), None);
        assert!(on_trial(Slot::B, &waiting));
        assert!(!on_trial(Slot::A, &waiting));
        // Its trial failed: back on a, b bad.
        let failed = waiting.mark_bad(Slot::B, Some(Slot::B)).unwrap();
        let reason = failed_trial(Slot::A, &failed, &installed(true), "2.0.0").unwrap();
        assert!(reason.contains("2.0.0 failed its trial boot"), "{reason}");
        assert_eq!(
            failed_trial(Slot::A, &failed, &installed(true), "2.0.1"),
            None
        );
        // Written but never activated (a cut in between): try again.
        assert_eq!(
            failed_trial(Slot::A, &failed, &installed(false), "2.0.0"),
            None
        );
    }

    #[test]
    fn checks_are_due_after_the_interval_or_when_the_clock_went_back() {
        let hour = Duration::from_secs(3600);
        assert!(check_due(1000, None, hour));
        assert!(!check_due(1000 + 3599, Some(1000), hour));
        assert!(check_due(1000 + 3600, Some(1000), hour));
        assert!(check_due(999, Some(1000), hour));
    }

    #[test]
    fn never_reboots_while_somebody_hears_a_record() {
        let hearing = Some(Listening {
            listeners: 1,
            playing: true,
        });
        let alone = Some(Listening {
            listeners: 0,
            playing: true,
        });
        let silent = Some(Listening {
            listeners: 2,
            playing: false,
        });
        let idle = Some(Listening {
            listeners: 0,
            playing: false,
        });
        let noon = 12 * 3600;
        assert!(may_reboot(Reboot::Idle, noon, hearing).is_err());
        assert!(may_reboot(Reboot::Idle, noon, alone).is_err());
        assert!(may_reboot(Reboot::Idle, noon, silent).is_err());
        assert!(may_reboot(Reboot::Idle, noon, idle).is_ok());
        assert!(may_reboot(Reboot::Idle, noon, None).is_ok());
        let at_three = Reboot::At(3 * 60);
        let day = 86400 * 20_000;
        assert!(may_reboot(at_three, day + 3 * 3600, alone).is_ok());
        assert!(may_reboot(at_three, day + 5 * 3600 + 59 * 60, silent).is_ok());
        assert!(may_reboot(at_three, day + 6 * 3600, idle).is_err());
        assert!(may_reboot(at_three, day + 2 * 3600, idle).is_err());
        assert!(may_reboot(at_three, day + 3 * 3600, hearing).is_err());
        // A window across midnight.
        let late = Reboot::At(23 * 60);
        assert!(may_reboot(late, day + 3600, idle).is_ok());
    }
}
