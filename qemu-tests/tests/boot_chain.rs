//! The boot chain under QEMU: U-Boot (the image's own, as firmware) runs
//! boot.scr, which picks a slot from the A/B state, loads that slot's kernel
//! and initramfs, and the initramfs mounts the root read-only and starts
//! systemd. The A/B scenarios edit the boot state (and slot B) of a copy of
//! the image, then watch what U-Boot and the kernel do.
//!
//! Needs qemu-system-aarch64 (package qemu-system-arm), a Debian mirror and
//! the cross toolchain; `QEMU_TESTS_BACKEND` picks local QEMU or docker.
//! (CI runs these on the host's QEMU; the whole image boots in the docker
//! backend in `end_to_end.rs`, which checks more than a boot.)

mod test_image;

use ab_state::env::Env;
use ab_state::{STATE_FILE_SIZE, STATE_FILES, Slot, State};
use builder::boot::cpio;
use builder::image::{edit, inspect};
use qemu_tests::{Backend, MachineConfig, Vm, skip};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Full boots under software emulation take about a minute on two cores;
/// leave room for a loaded CI machine.
const BOOT: Duration = Duration::from_secs(480);
const COMMAND: Duration = Duration::from_secs(60);

/// Slot a active, slot b on trial with `tries` boots left.
fn trial_of_b(seq: u32, tries: u32) -> State {
    State {
        seq,
        active: Slot::A,
        trial: Some(Slot::B),
        tries: Some(tries),
    }
}

fn write_state(image: &Path, copy: usize, state: &State) {
    edit::write_fat_file(image, 1, STATE_FILES[copy], &state.to_bytes()).unwrap();
}

/// Starts a machine on `image` with the guest shell, or `None` (skipped)
/// when the backend is missing in a local run.
fn start(name: &str, image: &Path) -> Option<Vm> {
    let backend = skip::required(Backend::from_env())?;
    if !skip::backend_ready(backend) {
        return None;
    }
    let u_boot = &test_image::qemu_virt().u_boot;
    let config = MachineConfig::new(name, image, u_boot)
        .with_shell()
        .with_backend(backend);
    Some(Vm::start(config).unwrap())
}

/// `key=value` lines of a file in the guest.
fn guest_env_file(vm: &mut Vm, path: &str) -> BTreeMap<String, String> {
    vm.run_ok(&format!("cat {path}"), COMMAND)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Both state copies as the guest sees them on the boot partition (parsed
/// with their CRC checked; `Err` for a corrupted copy). Compared as whole
/// environments, so a key U-Boot should not write would show.
fn guest_states(vm: &mut Vm) -> Vec<Result<Env, String>> {
    vm.run_ok(
        "mkdir -p /run/boot-fat && (mountpoint -q /run/boot-fat || mount -t vfat -o ro /dev/vda1 /run/boot-fat)",
        COMMAND,
    )
    .unwrap();
    STATE_FILES
        .iter()
        .map(|name| {
            let hex = vm
                .run_ok(&format!("od -An -v -tx1 /run/boot-fat/{name}"), COMMAND)
                .unwrap();
            let bytes: Vec<u8> = hex
                .split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap())
                .collect();
            assert_eq!(bytes.len(), STATE_FILE_SIZE, "{name} changed size");
            Env::from_bytes(&bytes)
        })
        .collect()
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Boots the image to multi-user.target and checks what the running system
/// sees: slot a, not a trial, root read-only, no failed unit.
fn boots_slot_a_read_only(name: &str) {
    if !test_image::prerequisites_or_skip(name) {
        return;
    }
    let image = &test_image::qemu_virt().image;
    let _turn = test_image::one_machine_at_a_time();
    let started = Instant::now();
    let Some(mut vm) = start(name, image) else {
        return;
    };
    vm.wait_for_console("vinyl: booting slot a from virtio 0:2", BOOT)
        .unwrap();
    let u_boot_done = started.elapsed();
    vm.wait_for_console("initramfs: switching to slot a", BOOT)
        .unwrap();
    let initramfs_done = started.elapsed();
    vm.wait_for_shell(BOOT).unwrap();
    let state = vm
        .run_ok("systemctl is-system-running --wait", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    let shell_ready = started.elapsed();
    assert_eq!(state.trim(), "running", "some unit failed");
    assert_eq!(
        vm.run_ok("systemctl is-active multi-user.target", COMMAND)
            .unwrap()
            .trim(),
        "active"
    );

    // The root is slot a's partition, read-only, by PARTUUID.
    let (disk_id, _) = inspect::partitions(&std::fs::File::open(image).unwrap()).unwrap();
    let cmdline = vm.run_ok("cat /proc/cmdline", COMMAND).unwrap();
    for wanted in [
        format!("root=PARTUUID={disk_id:08x}-02"),
        "vinyl.slot=a".into(),
        "vinyl.trial=0".into(),
        format!("vinyl.data=PARTUUID={disk_id:08x}-04"),
    ] {
        assert!(cmdline.contains(&wanted), "{wanted} not in {cmdline}");
    }
    let boot = guest_env_file(&mut vm, "/run/vinyl/boot.env");
    assert_eq!(boot["SLOT"], "a");
    assert_eq!(boot["TRIAL"], "0");
    assert_eq!(boot["ROOT_DEVICE"], "/dev/vda2");
    let options = vm.run_ok("findmnt -no OPTIONS /", COMMAND).unwrap();
    assert!(options.starts_with("ro,"), "root mounted {options}");
    let write = vm.run("touch /written-to-root", COMMAND).unwrap();
    assert!(!write.success(), "the root accepted a write");
    assert!(
        write.output.contains("Read-only file system"),
        "{}",
        write.output
    );
    // /data is the data partition, writable; /var is writable on top of it.
    assert_eq!(
        vm.run_ok("findmnt -no SOURCE /data", COMMAND)
            .unwrap()
            .trim(),
        "/dev/vda4"
    );
    vm.run_ok(
        "touch /data/probe /var/lib/probe && rm /data/probe /var/lib/probe",
        COMMAND,
    )
    .unwrap();
    let analyze = vm.run_ok("systemd-analyze", COMMAND).unwrap();
    eprintln!(
        "{name}: U-Boot chose the slot after {:.1} s, initramfs handed over after {:.1} s, \
         system running after {:.1} s; {}",
        u_boot_done.as_secs_f64(),
        initramfs_done.as_secs_f64(),
        shell_ready.as_secs_f64(),
        analyze.lines().next().unwrap_or_default()
    );
}

#[test]
fn qemu_virt_boots_slot_a_read_only() {
    boots_slot_a_read_only("boot-slot-a");
}

/// Slot b on trial, but its kernel panics (no working init): each boot
/// consumes a try, the kernel reboots (`panic=10`), and with none left
/// U-Boot returns to slot a and records the rollback.
#[test]
fn trial_of_a_panicking_slot_returns_to_the_active_one() {
    let name = "ab-trial-panics";
    if !test_image::prerequisites_or_skip(name) {
        return;
    }
    let base = &test_image::qemu_virt().image;
    let image = test_image::scenario_copy(base, name);
    // Slot b: the same kernel, and an initramfs whose /init can't run.
    let kernel = inspect::read(base, 2, "/boot/vmlinuz").unwrap();
    let broken_initrd = cpio::write(
        &[cpio::CpioEntry::file(
            "init",
            0o755,
            b"not a program".to_vec(),
        )],
        0,
    );
    test_image::write_slot_b_boot(
        &image,
        vec![("vmlinuz", kernel), ("initrd.img", broken_initrd)],
    );
    write_state(&image, 0, &trial_of_b(5, 2));
    write_state(&image, 1, &State::initial(4));

    let _turn = test_image::one_machine_at_a_time();
    let Some(mut vm) = start(name, &image) else {
        return;
    };
    for tries_left in ["1", "0"] {
        vm.wait_for_console(
            format!("vinyl: trial boot of slot b (tries left after this one: {tries_left})")
                .as_str(),
            BOOT,
        )
        .unwrap();
        vm.wait_for_console("vinyl: booting slot b from virtio 0:3", BOOT)
            .unwrap();
        vm.wait_for_console("Kernel panic - not syncing", BOOT)
            .unwrap();
    }
    vm.wait_for_console("slot b used up its trial boots; returning to slot a", BOOT)
        .unwrap();
    vm.wait_for_console("initramfs: switching to slot a", BOOT)
        .unwrap();
    vm.wait_for_shell(BOOT).unwrap();
    let boot = guest_env_file(&mut vm, "/run/vinyl/boot.env");
    assert_eq!((boot["SLOT"].as_str(), boot["TRIAL"].as_str()), ("a", "0"));

    let console = vm.console_text();
    assert_eq!(
        count(&console, "vinyl: trial boot of slot b"),
        2,
        "{console}"
    );
    assert_eq!(count(&console, "Kernel panic - not syncing"), 2);
    // The three state writes alternate copies: 5 → 6 (copy 1) → 7 (copy 0) → 8 (copy 1).
    let states = guest_states(&mut vm);
    let copy0 = states[0].as_ref().unwrap();
    let copy1 = states[1].as_ref().unwrap();
    assert_eq!(copy0, &trial_of_b(7, 0).to_env());
    // The rollback: no trial, and U-Boot keeps the spent counter.
    let rolled_back = State {
        trial: None,
        tries: Some(0),
        ..State::initial(8)
    };
    assert_eq!(copy1, &rolled_back.to_env());
}

/// The newer state copy is corrupted (a torn write): U-Boot ignores it and
/// uses the older one, which has no trial pending, and writes nothing.
#[test]
fn a_corrupted_state_copy_falls_back_to_the_other() {
    let name = "ab-corrupted-copy";
    if !test_image::prerequisites_or_skip(name) {
        return;
    }
    let image = test_image::scenario_copy(&test_image::qemu_virt().image, name);
    write_state(&image, 0, &State::initial(1));
    // Copy 1 would start a trial of slot b (which is empty), were it readable.
    let mut torn = trial_of_b(2, 3).to_bytes();
    torn[10] ^= 0x20;
    edit::write_fat_file(&image, 1, STATE_FILES[1], &torn).unwrap();

    let _turn = test_image::one_machine_at_a_time();
    let Some(mut vm) = start(name, &image) else {
        return;
    };
    vm.wait_for_console("vinyl: boot state copy 1 is missing or corrupted", BOOT)
        .unwrap();
    vm.wait_for_console("vinyl: booting slot a from virtio 0:2", BOOT)
        .unwrap();
    vm.wait_for_shell(BOOT).unwrap();
    let console = vm.console_text();
    assert!(!console.contains("trial boot"), "{console}");
    assert!(!console.contains("boot state 3 written"), "{console}");
    let boot = guest_env_file(&mut vm, "/run/vinyl/boot.env");
    assert_eq!((boot["SLOT"].as_str(), boot["TRIAL"].as_str()), ("a", "0"));
    let states = guest_states(&mut vm);
    assert_eq!(states[0].as_ref().unwrap(), &State::initial(1).to_env());
    assert!(states[1].as_ref().unwrap_err().contains("bad CRC"));
}

/// Normal boots only read the state: two boots and a reboot later, both
/// copies are byte for byte what the builder wrote.
#[test]
fn normal_reboots_consume_no_tries_and_write_nothing() {
    let name = "ab-normal-reboots";
    if !test_image::prerequisites_or_skip(name) {
        return;
    }
    let image = &test_image::qemu_virt().image;
    let _turn = test_image::one_machine_at_a_time();
    let Some(mut vm) = start(name, image) else {
        return;
    };
    vm.wait_for_shell(BOOT).unwrap();
    let before = guest_states(&mut vm);
    vm.send("systemctl reboot").unwrap();
    vm.wait_for_console("reboot: Restarting system", BOOT)
        .unwrap();
    vm.wait_for_console("vinyl: A/B boot script", BOOT).unwrap();
    vm.wait_for_console("initramfs: switching to slot a", BOOT)
        .unwrap();
    vm.wait_for_shell(BOOT).unwrap();
    let after = guest_states(&mut vm);
    assert_eq!(before, after);
    for (copy, env) in after.iter().enumerate() {
        let expected = State::initial(copy as u32).to_env();
        assert_eq!(env.as_ref().unwrap(), &expected, "copy {copy}");
    }
    let console = vm.console_text();
    assert_eq!(count(&console, "vinyl: A/B boot script"), 2);
    assert!(!console.contains("written to copy"), "{console}");
}
