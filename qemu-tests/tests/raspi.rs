//! The Raspberry Pi images on QEMU's `raspi3b` and `raspi4b` machines. The
//! GPU firmware stage can't be emulated, so QEMU starts the image's own
//! U-Boot (`u-boot.bin` from its boot partition, Debian's `rpi_arm64`) the
//! way the firmware would, with the image's device tree; from there
//! everything is the image's: U-Boot reads the SD card, runs boot.scr,
//! loads a slot's kernel and initramfs, and the initramfs mounts the root
//! from the SD card and starts systemd.
//!
//! Each board starts with a failed trial: slot b holds the image's kernel
//! and initramfs but no system (no `/sbin/init`), and the A/B state gives it
//! one try. The initramfs gives up and reboots; a Pi's device tree has no
//! PSCI, so only the BCM2835 watchdog (loaded first by the initramfs) can
//! reset the board. U-Boot then finds the try spent, returns to slot a, and
//! slot a boots to the serial login prompt — nobody touched the machine.
//!
//! The Pi 4 needs what the harness does for QEMU only, never the image:
//! its device tree with the nodes QEMU does not model turned off
//! ([`qemu_tests::device_tree`]), and the console on the PL011
//! (`vinyl-console.env` on the boot partition), because opening the mini
//! UART as a terminal hangs QEMU's `raspi4b`. The rpi3 image boots as built.
//! There is no PCI on these machines, so no test shell: the assertions read
//! the serial console.

mod test_image;

use ab_state::{STATE_FILES, Slot, State};
use builder::image::{edit, inspect};
use qemu_tests::{Backend, Machine, MachineConfig, Needle, Vm, device_tree, skip};
use std::time::{Duration, Instant};

/// Under software emulation on two cores U-Boot alone needs about 67 s to
/// read the kernel and initramfs, and this test boots twice.
const BOOT: Duration = Duration::from_secs(600);

/// One Raspberry Pi board and the QEMU machine that stands in for it.
struct Pi {
    board: &'static str,
    machine: Machine,
    device_tree: &'static str,
    /// What U-Boot prints for the model.
    model: &'static str,
    /// A kernel message from the SD card driver.
    sd_driver: &'static str,
    /// The console the kernel gets on QEMU, if not the board's.
    console: Option<&'static str>,
}

/// The kernel's command line as far as the boot script writes it (it ends
/// with the data partition's PARTUUID, `xxxxxxxx-04`).
fn kernel_command_line() -> Needle {
    Needle::regex(r"Kernel command line:.*vinyl\.data=PARTUUID=[0-9a-f]{8}-04")
}

fn failed_trial_resets_and_slot_a_boots(pi: Pi) {
    let name = format!("{}-{}", pi.board, pi.machine.qemu_name());
    if !test_image::prerequisites_or_skip(&name) {
        return;
    }
    let Some(backend) = skip::required(Backend::from_env()) else {
        return;
    };
    if !skip::backend_ready(backend) {
        return;
    }
    let base = test_image::build(pi.board, &[]);
    let u_boot = test_image::boot_file(&base, "u-boot.bin");
    let shipped_tree = test_image::boot_file(&base, pi.device_tree);
    let tree = shipped_tree.with_file_name(format!("{}-qemu.dtb", pi.machine.qemu_name()));
    skip::required(device_tree::for_qemu(pi.machine, &shipped_tree, &tree)).unwrap();
    let (disk_id, _) = inspect::partitions(&std::fs::File::open(&base).unwrap()).unwrap();

    let image = test_image::scenario_copy(&base, &name);
    // Slot b: the image's own kernel and initramfs and no system, so the
    // initramfs fails after the kernel started (what the watchdog is for).
    let boot_file_of_a = |name: &str| inspect::read(&base, 2, &format!("/boot/{name}")).unwrap();
    test_image::write_slot_b_boot(
        &image,
        vec![
            ("vmlinuz", boot_file_of_a("vmlinuz")),
            ("initrd.img", boot_file_of_a("initrd.img")),
        ],
    );
    let trial = State {
        seq: 5,
        active: Slot::A,
        trial: Some(Slot::B),
        tries: Some(1),
    };
    edit::write_fat_file(&image, 1, STATE_FILES[0], &trial.to_bytes()).unwrap();
    edit::write_fat_file(&image, 1, STATE_FILES[1], &State::initial(4).to_bytes()).unwrap();
    if let Some(console) = pi.console {
        let line = format!("vinyl_console={console}\n");
        edit::write_fat_file(&image, 1, "vinyl-console.env", line.as_bytes()).unwrap();
    }

    let _turn = test_image::one_machine_at_a_time();
    let config =
        MachineConfig::raspi(&name, pi.machine, &image, &u_boot, Some(tree)).with_backend(backend);
    let started = Instant::now();
    let vm = Vm::start(config).unwrap();
    let mut times = Vec::new();
    let mut wait = |what: &str, needle: Needle| -> String {
        let line = vm.wait_for_console(needle, BOOT).unwrap();
        times.push(format!("{what} {:.0} s", started.elapsed().as_secs_f64()));
        line
    };

    // The trial of slot b: U-Boot spends its one try, the kernel starts,
    // the initramfs finds no system and resets the board.
    wait("U-Boot", pi.model.into());
    wait(
        "trial of b",
        "vinyl: trial boot of slot b (tries left after this one: 0)".into(),
    );
    wait(
        "try recorded",
        "vinyl: boot state 6 written to copy 1".into(),
    );
    let cmdline = wait("kernel b", kernel_command_line());
    assert!(cmdline.contains("vinyl.slot=b vinyl.trial=1"), "{cmdline}");
    if let Some(console) = pi.console {
        assert!(
            cmdline.contains(&format!("console={console} ")),
            "{cmdline}"
        );
    }
    wait(
        "initramfs gives up",
        "initramfs: ERROR: slot b on /dev/mmcblk0p3 has no /sbin/init".into(),
    );
    wait(
        "reset",
        "initramfs: trial boot of slot b failed; rebooting in 5 seconds".into(),
    );

    // After the reset: the try is spent, slot a boots.
    wait(
        "U-Boot returns to a",
        "vinyl: slot b used up its trial boots; returning to slot a".into(),
    );
    wait(
        "rollback recorded",
        "vinyl: boot state 7 written to copy 0".into(),
    );
    wait("loading a", "vinyl: booting slot a from mmc 0:2".into());
    let cmdline = wait("kernel a", kernel_command_line());
    assert!(
        cmdline.contains(&format!("root=PARTUUID={disk_id:08x}-02"))
            && cmdline.contains("vinyl.slot=a vinyl.trial=0"),
        "{cmdline}"
    );
    wait("SD card", pi.sd_driver.into());
    wait(
        "initramfs a",
        "initramfs: switching to slot a (/dev/mmcblk0p2, read-only)".into(),
    );
    // systemd colours unit names: "Reached target \e[0;1;39mbasic.target".
    // Later targets are not a reliable marker: systemd stops printing status
    // once a getty owns the console, and the getty may start first.
    wait(
        "basic.target",
        Needle::regex(r"Reached target .{0,20}basic\.target"),
    );
    // The serial console's login prompt: userspace is up on the Pi's UART.
    wait("login prompt", "turntable login:".into());
    eprintln!("{name}: from QEMU start: {}", times.join(", "));

    let console = vm.console_text();
    let count = |needle: &str| console.matches(needle).count();
    assert_eq!(count("vinyl: trial boot of slot b"), 1, "{console}");
    assert_eq!(count("U-Boot 20"), 2, "one reset, two U-Boot starts");
    assert!(
        console.contains("initramfs: data partition /dev/mmcblk0p4 mounted on /data"),
        "{}",
        vm.diagnostics()
    );
    // The watchdog reset the board; no "Reboot failed -- System halted".
    assert!(!console.contains("Reboot failed"), "{console}");
    // The initramfs only reads block devices that are there.
    assert!(!console.contains("/sys/class/block/*"), "{console}");
}

#[test]
fn rpi3_failed_trial_resets_and_slot_a_boots_on_raspi3b() {
    failed_trial_resets_and_slot_a_boots(Pi {
        board: "rpi3",
        machine: Machine::Raspi3b,
        device_tree: "bcm2837-rpi-3-b.dtb",
        model: "RPI 3 Model B",
        sd_driver: "sdhost-bcm2835",
        console: None,
    });
}

#[test]
fn rpi4_failed_trial_resets_and_slot_a_boots_on_raspi4b() {
    failed_trial_resets_and_slot_a_boots(Pi {
        board: "rpi4",
        machine: Machine::Raspi4b,
        device_tree: "bcm2711-rpi-4-b.dtb",
        model: "RPI 4 Model B",
        // QEMU's SD card sits on the Arasan controller (mmc@7e300000).
        sd_driver: "mmcblk0: mmc0:",
        console: Some("ttyAMA0,115200"),
    });
}
