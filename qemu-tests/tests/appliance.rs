//! The appliance a turntable owner gets, booted under QEMU on an IPv6-only
//! network the test builds (router advertisements from radvd, NTP from
//! chrony, both on a ULA prefix; no IPv4 anywhere): the image must come up
//! on its own, with no login and no manual step.
//!
//! Checked on the qemu-virt image (built with the `test-shell` layer, a test
//! SSH key and the test network's NTP server, as `builder --ssh-key --ntp`):
//! IPv6-only addressing with a stable SLAAC address, time from the test
//! server, `turntable.local` by mDNS, key-only SSH, the read-only root and
//! what persists on /data across a reboot (data, machine ID, SSH host keys,
//! the address), the data partition grown to fill a bigger disk, and the
//! streamer running hardened.

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

fn ssh(net: &TestNet, address: &str, extra: &[&str], command: &str) -> (bool, String) {
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
    net.run("ssh", &args)
}

/// What should be the same after a reboot.
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    address: String,
    machine_id: String,
    host_key: String,
}

fn identity(vm: &mut Vm, address: &str) -> Identity {
    let machine_id = vm.run_ok("cat /etc/machine-id", COMMAND).unwrap();
    assert_eq!(
        machine_id,
        vm.run_ok("cat /data/etc/machine-id", COMMAND).unwrap(),
        "/etc/machine-id is not the one kept on /data"
    );
    assert!(
        machine_id.trim().len() == 32 && machine_id.trim().chars().all(|c| c.is_ascii_hexdigit()),
        "machine ID {machine_id:?}"
    );
    Identity {
        address: address.to_string(),
        machine_id: machine_id.trim().to_string(),
        host_key: vm
            .run_ok(
                "ssh-keygen -l -f /data/ssh/ssh_host_ed25519_key.pub",
                COMMAND,
            )
            .unwrap()
            .trim()
            .to_string(),
    }
}

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
    let mut vm = net.boot(config, MAC);

    // The address: SLAAC from the advertised prefix, EUI-64 from the card.
    let address = test_net::announced_address(&vm, BOOT);
    let to_address = started.elapsed();
    let expected = test_net::eui64_address(MAC);
    assert_eq!(address, expected, "radvd log:\n{}", net.log("radvd"));
    vm.wait_for_shell(BOOT).unwrap();
    let state = vm
        .run("systemctl is-system-running --wait", BOOT)
        .unwrap()
        .output;
    assert_eq!(
        state.trim(),
        "running",
        "failed units:\n{}",
        vm.run_ok("systemctl --failed --no-legend", COMMAND)
            .unwrap()
    );
    let to_running = started.elapsed();

    // IPv6 only: no IPv4 address but loopback's.
    let ipv4 = vm
        .run_ok("ip -color=never -4 -o addr show", COMMAND)
        .unwrap();
    let ipv4: Vec<&str> = ipv4.lines().filter(|l| !l.contains(" lo ")).collect();
    assert!(ipv4.is_empty(), "IPv4 addresses: {ipv4:?}");
    let global = vm
        .run_ok("ip -color=never -6 -o addr show scope global", COMMAND)
        .unwrap();
    assert!(global.contains(&format!("{expected}/64")), "{global}");
    let route = vm
        .run_ok("ip -color=never -6 route show default", COMMAND)
        .unwrap();
    assert!(
        route.contains("via fe80::"),
        "no default route from the RA: {route}"
    );

    // Reachable from the network: ping, then mDNS for turntable.local.
    let (ok, out) = net.run("ping", &["-6", "-c", "1", "-W", "5", &address]);
    assert!(ok, "ping {address}: {out}");
    vm.run_ok("resolvectl log-level debug", COMMAND).unwrap();
    let mdns = net
        .mdns_lookup("turntable.local", Duration::from_secs(60))
        .unwrap_or_else(|e| {
            let guest = vm
                .run("resolvectl query -p mdns turntable.local; journalctl -u systemd-resolved --no-pager -o cat | grep -v 'Received mdns UDP\\|Got mDNS query' | tail -n 40", COMMAND)
                .map(|o| o.output);
            panic!("turntable.local by mDNS: {e}\nguest's resolvectl status: {guest:?}")
        });
    assert!(
        mdns.iter().any(|a| a.to_string() == address),
        "mDNS gave {mdns:?}, not {address}"
    );
    eprintln!("mDNS answer for turntable.local: {mdns:?}");

    // Time from the test network's NTP server over IPv6.
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
    let server = vm
        .run_ok(
            "timedatectl show-timesync -p ServerAddress --value",
            COMMAND,
        )
        .unwrap();
    assert_eq!(
        server.trim(),
        test_net::ROUTER,
        "chronyd log:\n{}",
        net.log("chronyd")
    );
    // The clock is kept on /data, so a Pi without RTC never boots into the past.
    vm.run_ok(
        "test -e /data/var/upper/lib/systemd/timesync/clock",
        COMMAND,
    )
    .unwrap();

    // SSH: the build-time key logs in; passwords are refused outright.
    let (ok, out) = ssh(&net, &address, &[], "cat /etc/hostname");
    assert!(
        ok && out.lines().any(|l| l == "turntable"),
        "ssh with the key: {out}\nsshd's log: {:?}",
        vm.run("journalctl -u ssh --no-pager -o cat | tail -n 20", COMMAND)
    );
    let (ok, out) = ssh(
        &net,
        &address,
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
    let shadow = vm.run_ok("cut -d: -f1,2 /etc/shadow", COMMAND).unwrap();
    for line in shadow.lines() {
        let (user, hash) = line.split_once(':').unwrap();
        assert!(
            hash.starts_with('*') || hash.starts_with('!'),
            "{user} has a password"
        );
    }

    // Read-only root, tmpfs /tmp, volatile journal, persistent /data.
    let write = vm.run("touch /probe", COMMAND).unwrap();
    assert!(
        !write.success() && write.output.contains("Read-only file system"),
        "{write:?}"
    );
    assert_eq!(
        vm.run_ok("findmnt -n -o FSTYPE /tmp", COMMAND)
            .unwrap()
            .trim(),
        "tmpfs"
    );
    let boot = vm
        .run_ok("grep ' /boot/firmware ' /proc/mounts", COMMAND)
        .unwrap();
    let fields: Vec<&str> = boot.split_whitespace().collect();
    assert!(
        fields.get(2) == Some(&"vfat") && fields.get(3).is_some_and(|o| o.starts_with("ro,")),
        "/boot/firmware: {boot:?}"
    );
    vm.run_ok(
        "test -d /run/log/journal && test ! -d /var/log/journal/$(cat /etc/machine-id)",
        COMMAND,
    )
    .unwrap();
    let nonce = format!("{:x}", started.elapsed().as_nanos());
    vm.run_ok(
        &format!("echo {nonce} > /data/persist-test && sync"),
        COMMAND,
    )
    .unwrap();

    // The data partition filled the bigger disk at first boot.
    let data_bytes: u64 = vm
        .run_ok("df -B1 --output=size /data | tail -n 1", COMMAND)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        data_bytes > EXTRA_DISK,
        "/data is {data_bytes} bytes; it did not grow"
    );

    // The streamer: running as a system service, hardened.
    assert_eq!(
        vm.run_ok("systemctl is-active vinyl-streamd", COMMAND)
            .unwrap()
            .trim(),
        "active"
    );
    let security = vm
        .run_ok(
            "systemd-analyze security --no-pager vinyl-streamd.service | tail -n 1",
            COMMAND,
        )
        .unwrap();
    let exposure: f32 = security
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {security:?}"));
    eprintln!("systemd-analyze security: {}", security.trim());
    assert!(
        exposure <= 2.0,
        "vinyl-streamd exposure {exposure} > 2.0: {security}"
    );
    let status = net
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
        status.contains(&address),
        "/status does not list the address: {status}"
    );
    let rules = vm
        .run(
            "udevadm verify /usr/lib/udev/rules.d/70-vinyl-usb-audio.rules",
            COMMAND,
        )
        .unwrap();
    assert!(rules.success(), "udev rules: {}", rules.output);

    let before = identity(&mut vm, &address);

    // Reboot: everything that should persist did; the address is the same.
    vm.send("systemctl reboot").unwrap();
    vm.wait_for_console("reboot: Restarting system", BOOT)
        .unwrap();
    let address_again = test_net::announced_address(&vm, BOOT);
    vm.wait_for_shell(BOOT).unwrap();
    assert_eq!(identity(&mut vm, &address_again), before);
    assert_eq!(
        vm.run_ok("cat /data/persist-test", COMMAND).unwrap().trim(),
        nonce
    );
    let grow = vm
        .run_ok(
            "journalctl -b -u vinyl-grow-data --no-pager -o cat",
            COMMAND,
        )
        .unwrap();
    assert!(
        !grow.contains("growing"),
        "grew again on the second boot: {grow}"
    );
    let (ok, out) = ssh(
        &net,
        &address_again,
        &[],
        "systemctl is-active vinyl-streamd",
    );
    assert!(
        ok && out.lines().any(|l| l == "active"),
        "after reboot: {out}"
    );

    eprintln!(
        "appliance: address announced after {:.1} s, system running after {:.1} s, /data {} MiB",
        to_address.as_secs_f32(),
        to_running.as_secs_f32(),
        data_bytes >> 20
    );
}
