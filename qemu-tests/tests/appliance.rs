//! The appliance a turntable owner gets, booted under QEMU on an IPv6-only
//! network the test builds (router advertisements from radvd, NTP from
//! chrony, both on a ULA prefix; no IPv4 anywhere): the image must come up
//! on its own, with no login and no manual step.
//!
//! One machine boots once (the qemu-virt image, built with the `test-shell`
//! layer, a test SSH key and the test network's NTP server, as
//! `builder --ssh-key --ntp`, on a "card" bigger than the image); then the
//! named checks in [`CHECKS`] run on it in order, each a small function.
//! A failing check is reported by name (the checks after it do not run:
//! later ones build on what earlier ones established, and the reboot is last).

mod test_image;
mod test_net;

use qemu_tests::{MachineConfig, Vm};
use std::time::{Duration, Instant};
use test_net::{TestNet, eventually};

const BOOT: Duration = Duration::from_secs(480);
const COMMAND: Duration = Duration::from_secs(60);
const MAC: &str = "52:54:00:12:34:56";
/// How much bigger than the image the test's "SD card" is.
const EXTRA_DISK: u64 = 1 << 30;

/// One named check on the booted machine: it panics when it fails.
type Check = fn(&mut Appliance);

/// What the test checks, in the order it checks it: the table of contents.
const CHECKS: &[(&str, Check)] = &[
    ("address_is_eui64", address_is_eui64),
    ("system_is_running", system_is_running),
    ("ipv6_only", ipv6_only),
    ("answers_ping", answers_ping),
    ("mdns_answers", mdns_answers),
    ("ntp_synchronised", ntp_synchronised),
    ("ssh_key_login", ssh_key_login),
    ("passwords_refused", passwords_refused),
    ("root_is_read_only", root_is_read_only),
    ("tmp_and_journal_in_ram", tmp_and_journal_in_ram),
    ("data_grew_to_the_disk", data_grew_to_the_disk),
    ("streamer_runs_hardened", streamer_runs_hardened),
    ("status_lists_the_address", status_lists_the_address),
    ("udev_rules_verify", udev_rules_verify),
    ("reboot_keeps_identity", reboot_keeps_identity),
];

#[test]
fn appliance_on_an_ipv6_only_network() {
    let name = "appliance";
    let Some(backend) = test_net::ready(name, None) else {
        return;
    };
    let built = test_image::qemu_virt();
    // A bigger "card" than the image: the data partition must grow into it.
    let image = test_image::scenario_copy(&built.image, name);
    let image_size = std::fs::metadata(&image).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(image_size + EXTRA_DISK)
        .unwrap();

    let _turn = test_image::one_machine_at_a_time();
    let net = TestNet::start("vinyl-appl");
    let config = MachineConfig::new(name, &image, &built.u_boot)
        .with_shell()
        .with_backend(backend);
    let started = Instant::now();
    let vm = net.boot(config, MAC);
    let mut appliance = Appliance {
        vm,
        net,
        address: String::new(),
        started,
        to_address: Duration::ZERO,
        to_running: Duration::ZERO,
        data_bytes: 0,
    };

    for (check, run) in CHECKS {
        let at = Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut appliance)));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(see above)");
            panic!("appliance check `{check}` failed: {message}");
        }
        eprintln!(
            "appliance: {check} ok ({:.1} s)",
            at.elapsed().as_secs_f32()
        );
    }

    eprintln!(
        "appliance: address announced after {:.1} s, system running after {:.1} s, /data {} MiB",
        appliance.to_address.as_secs_f32(),
        appliance.to_running.as_secs_f32(),
        appliance.data_bytes >> 20
    );
}

/// The booted machine, its network, and what the checks learn on the way.
/// (The machine is declared first, so it is dropped before its network.)
struct Appliance {
    vm: Vm,
    net: TestNet,
    /// The address the console announced (set by [`address_is_eui64`]).
    address: String,
    /// When QEMU was started.
    started: Instant,
    /// How long the address and the running system took, for the log.
    to_address: Duration,
    to_running: Duration,
    /// The size of `/data` (set by [`data_grew_to_the_disk`]), for the log.
    data_bytes: u64,
}

impl Appliance {
    /// Runs `command` in the guest and returns its output; it must succeed.
    fn run_ok(&mut self, command: &str) -> String {
        self.vm.run_ok(command, COMMAND).unwrap()
    }

    /// `ssh root@address` with the test key and `extra` options.
    fn ssh(&self, address: &str, extra: &[&str], command: &str) -> (bool, String) {
        let key = test_image::ssh_key().display().to_string();
        let target = format!("root@{address}");
        let mut args = vec![
            "-i",
            &key,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=20",
        ];
        args.extend_from_slice(extra);
        args.push(&target);
        args.push(command);
        self.net.run("ssh", &args)
    }

    /// What should be the same after a reboot.
    fn identity(&mut self, address: &str) -> Identity {
        let machine_id = self.run_ok("cat /etc/machine-id");
        assert_eq!(
            machine_id,
            self.run_ok("cat /data/etc/machine-id"),
            "/etc/machine-id is not the one kept on /data"
        );
        assert!(
            machine_id.trim().len() == 32
                && machine_id.trim().chars().all(|c| c.is_ascii_hexdigit()),
            "machine ID {machine_id:?}"
        );
        Identity {
            address: address.to_string(),
            machine_id: machine_id.trim().to_string(),
            host_key: self
                .run_ok("ssh-keygen -l -f /data/ssh/ssh_host_ed25519_key.pub")
                .trim()
                .to_string(),
        }
    }
}

/// What should be the same after a reboot.
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    address: String,
    machine_id: String,
    host_key: String,
}

/// The address: SLAAC from the advertised prefix, EUI-64 from the card,
/// announced on the console.
fn address_is_eui64(a: &mut Appliance) {
    a.address = test_net::announced_address(&a.vm, BOOT);
    a.to_address = a.started.elapsed();
    assert_eq!(
        a.address,
        test_net::eui64_address(MAC),
        "radvd log:\n{}",
        a.net.log("radvd")
    );
}

/// The test shell answers and systemd reaches `running` with no failed unit.
fn system_is_running(a: &mut Appliance) {
    a.vm.wait_for_shell(BOOT).unwrap();
    let state =
        a.vm.run("systemctl is-system-running --wait", BOOT)
            .unwrap()
            .output;
    assert_eq!(
        state.trim(),
        "running",
        "failed units:\n{}",
        a.run_ok("systemctl --failed --no-legend")
    );
    a.to_running = a.started.elapsed();
}

/// IPv6 only: no IPv4 address but loopback's; the SLAAC address and a
/// default route from the router advertisement.
fn ipv6_only(a: &mut Appliance) {
    let ipv4 = a.run_ok("ip -color=never -4 -o addr show");
    let ipv4: Vec<&str> = ipv4.lines().filter(|l| !l.contains(" lo ")).collect();
    assert!(ipv4.is_empty(), "IPv4 addresses: {ipv4:?}");
    let global = a.run_ok("ip -color=never -6 -o addr show scope global");
    let expected = test_net::eui64_address(MAC);
    assert!(global.contains(&format!("{expected}/64")), "{global}");
    let route = a.run_ok("ip -color=never -6 route show default");
    assert!(
        route.contains("via fe80::"),
        "no default route from the RA: {route}"
    );
}

/// Reachable from the network.
fn answers_ping(a: &mut Appliance) {
    let address = &a.address;
    let (ok, out) = a.net.run("ping", &["-6", "-c", "1", "-W", "5", address]);
    assert!(ok, "ping {address}: {out}");
}

/// `turntable.local` by a real mDNS query from the network.
fn mdns_answers(a: &mut Appliance) {
    a.run_ok("resolvectl log-level debug");
    let mdns = a
        .net
        .mdns_lookup("turntable.local", Duration::from_secs(60))
        .unwrap_or_else(|e| {
            let guest = a
                .vm
                .run("resolvectl query -p mdns turntable.local; journalctl -u systemd-resolved --no-pager -o cat | grep -v 'Received mdns UDP\\|Got mDNS query' | tail -n 40", COMMAND)
                .map(|o| o.output);
            panic!("turntable.local by mDNS: {e}\nguest's resolvectl status: {guest:?}")
        });
    let address = &a.address;
    assert!(
        mdns.iter().any(|m| m.to_string() == *address),
        "mDNS gave {mdns:?}, not {address}"
    );
    eprintln!("mDNS answer for turntable.local: {mdns:?}");
}

/// Time from the test network's NTP server over IPv6; the clock is kept on
/// /data, so a Pi without RTC never boots into the past.
fn ntp_synchronised(a: &mut Appliance) {
    let vm = &mut a.vm;
    let synced = eventually("NTP synchronisation", Duration::from_secs(120), || {
        let out = vm
            .run_ok("timedatectl show -p NTPSynchronized --value", COMMAND)
            .map_err(|e| e.to_string())?;
        if out.trim() == "yes" {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert_eq!(synced.trim(), "yes");
    let server = a.run_ok("timedatectl show-timesync -p ServerAddress --value");
    assert_eq!(
        server.trim(),
        test_net::ROUTER,
        "chronyd log:\n{}",
        a.net.log("chronyd")
    );
    a.run_ok("test -e /data/var/upper/lib/systemd/timesync/clock");
}

/// The build-time key logs in over SSH.
fn ssh_key_login(a: &mut Appliance) {
    let (ok, out) = a.ssh(&a.address, &[], "cat /etc/hostname");
    assert!(
        ok && out.lines().any(|l| l == "turntable"),
        "ssh with the key: {out}\nsshd's log: {:?}",
        a.vm.run("journalctl -u ssh --no-pager -o cat | tail -n 20", COMMAND)
    );
}

/// Passwords are refused outright, and no account has one.
fn passwords_refused(a: &mut Appliance) {
    let (ok, out) = a.ssh(
        &a.address,
        &[
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ],
        "true",
    );
    assert!(!ok, "a login without the key succeeded");
    assert!(out.contains("Permission denied (publickey)"), "{out}");
    let shadow = a.run_ok("cut -d: -f1,2 /etc/shadow");
    for line in shadow.lines() {
        let (user, hash) = line.split_once(':').unwrap();
        assert!(
            hash.starts_with('*') || hash.starts_with('!'),
            "{user} has a password"
        );
    }
}

/// The root and the boot partition are mounted read-only.
fn root_is_read_only(a: &mut Appliance) {
    let write = a.vm.run("touch /probe", COMMAND).unwrap();
    assert!(
        !write.success() && write.output.contains("Read-only file system"),
        "{write:?}"
    );
    let boot = a.run_ok("grep ' /boot/firmware ' /proc/mounts");
    let fields: Vec<&str> = boot.split_whitespace().collect();
    assert!(
        fields.get(2) == Some(&"vfat") && fields.get(3).is_some_and(|o| o.starts_with("ro,")),
        "/boot/firmware: {boot:?}"
    );
}

/// `/tmp` is a tmpfs and the journal is volatile (nothing wears the card).
fn tmp_and_journal_in_ram(a: &mut Appliance) {
    assert_eq!(a.run_ok("findmnt -n -o FSTYPE /tmp").trim(), "tmpfs");
    a.run_ok("test -d /run/log/journal && test ! -d /var/log/journal/$(cat /etc/machine-id)");
}

/// The data partition filled the bigger disk at first boot.
fn data_grew_to_the_disk(a: &mut Appliance) {
    a.data_bytes = a
        .run_ok("df -B1 --output=size /data | tail -n 1")
        .trim()
        .parse()
        .unwrap();
    let data_bytes = a.data_bytes;
    assert!(
        data_bytes > EXTRA_DISK,
        "/data is {data_bytes} bytes; it did not grow"
    );
}

/// The streamer runs as a system service, hardened.
fn streamer_runs_hardened(a: &mut Appliance) {
    assert_eq!(
        a.run_ok("systemctl is-active vinyl-streamd").trim(),
        "active"
    );
    let security =
        a.run_ok("systemd-analyze security --no-pager vinyl-streamd.service | tail -n 1");
    let exposure: f32 = security
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {security:?}"));
    eprintln!("systemd-analyze security: {}", security.trim());
    assert!(
        exposure <= 2.0,
        "vinyl-streamd exposure {exposure} > 2.0: {security}"
    );
}

/// The streamer's `/status`, fetched over the network, lists the address.
fn status_lists_the_address(a: &mut Appliance) {
    let address = &a.address;
    let status = a
        .net
        .run(
            "curl",
            &[
                "-sS",
                "-g",
                "--max-time",
                "10",
                &format!("http://[{address}]:8000/status"),
            ],
        )
        .1;
    assert!(
        status.contains(address),
        "/status does not list the address: {status}"
    );
}

/// The image's udev rules for USB audio pass `udevadm verify`.
fn udev_rules_verify(a: &mut Appliance) {
    let rules =
        a.vm.run(
            "udevadm verify /usr/lib/udev/rules.d/70-vinyl-usb-audio.rules",
            COMMAND,
        )
        .unwrap();
    assert!(rules.success(), "udev rules: {}", rules.output);
}

/// A reboot keeps what lives on /data (a file, the machine ID, the SSH host
/// key) and the address; /data does not grow again; the streamer is back.
fn reboot_keeps_identity(a: &mut Appliance) {
    let nonce = format!("{:x}", a.started.elapsed().as_nanos());
    a.run_ok(&format!("echo {nonce} > /data/persist-test && sync"));
    let address = a.address.clone();
    let before = a.identity(&address);

    a.vm.send("systemctl reboot").unwrap();
    a.vm.wait_for_console("reboot: Restarting system", BOOT)
        .unwrap();
    let address_again = test_net::announced_address(&a.vm, BOOT);
    a.vm.wait_for_shell(BOOT).unwrap();
    assert_eq!(a.identity(&address_again), before);
    assert_eq!(a.run_ok("cat /data/persist-test").trim(), nonce);
    let grow = a.run_ok("journalctl -b -u vinyl-grow-data --no-pager -o cat");
    assert!(
        !grow.contains("growing"),
        "grew again on the second boot: {grow}"
    );
    let (ok, out) = a.ssh(&address_again, &[], "systemctl is-active vinyl-streamd");
    assert!(
        ok && out.lines().any(|l| l == "active"),
        "after reboot: {out}"
    );
}
