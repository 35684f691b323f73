//! The rpi3 image on QEMU's `raspi3b` machine. The GPU firmware stage can't
//! be emulated, so QEMU starts the image's own U-Boot (`u-boot.bin` from
//! its boot partition, Debian's `rpi_arm64`) the way the firmware would,
//! with the image's Pi 3 device tree; from there everything is the image's:
//! U-Boot reads the SD card, runs boot.scr, loads slot A's kernel and
//! initramfs, and the initramfs mounts the root from the SD card (bcm2835
//! sdhost driver) and starts systemd.

mod test_image;

use builder::image::inspect;
use qemu_tests::{Backend, Machine, MachineConfig, Needle, Vm, skip};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(600);

#[test]
fn rpi3_image_boots_to_userspace_on_raspi3b() {
    let name = "rpi3-raspi3b";
    if !test_image::prerequisites_or_skip(name) {
        return;
    }
    let Some(backend) = skip::required(Backend::from_env()) else {
        return;
    };
    if !skip::backend_ready(backend) {
        return;
    }
    let image = test_image::build("rpi3", &[]);
    let u_boot = test_image::boot_file(&image, "u-boot.bin");
    let device_tree = test_image::boot_file(&image, "bcm2837-rpi-3-b.dtb");
    let (disk_id, _) = inspect::partitions(&std::fs::File::open(&image).unwrap()).unwrap();

    let _turn = test_image::one_machine_at_a_time();
    let config = MachineConfig::raspi(name, Machine::Raspi3b, &image, &u_boot, Some(device_tree))
        .with_backend(backend);
    let vm = Vm::start(config).unwrap();
    vm.wait_for_console("RPI 3 Model B", BOOT).unwrap();
    vm.wait_for_console("vinyl: A/B boot script on mmc 0:1", BOOT)
        .unwrap();
    vm.wait_for_console("vinyl: booting slot a from mmc 0:2", BOOT)
        .unwrap();
    let cmdline = vm.wait_for_console("Kernel command line:", BOOT).unwrap();
    assert!(
        cmdline.contains(&format!("root=PARTUUID={disk_id:08x}-02")),
        "{cmdline}"
    );
    vm.wait_for_console("sdhost-bcm2835", BOOT).unwrap();
    vm.wait_for_console(
        "initramfs: switching to slot a (/dev/mmcblk0p2, read-only)",
        BOOT,
    )
    .unwrap();
    // systemd colours unit names: "Reached target \e[0;1;39mbasic.target".
    // Later targets are not a reliable marker: systemd stops printing status
    // once a getty owns the console, and the getty may start first.
    vm.wait_for_console(Needle::regex(r"Reached target .{0,20}basic\.target"), BOOT)
        .unwrap();
    // The serial console's login prompt: userspace is up on the Pi's UART.
    vm.wait_for_console("turntable login:", BOOT).unwrap();
    let console = vm.console_text();
    assert!(
        console.contains("initramfs: data partition /dev/mmcblk0p4 mounted on /data"),
        "{}",
        vm.diagnostics()
    );
}
