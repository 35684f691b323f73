//! Static checks of the Raspberry Pi images' boot chain (no emulator can run
//! the Pi's GPU firmware): every file config.txt and boot.scr name exists,
//! the device trees of every supported model are there, the boot state
//! parses, and the initramfs holds the storage driver closure in load order,
//! the watchdog first.
//!
//! Builds rpi4 and rpi3 images from the real archive (mirror and cross
//! toolchain needed, as for `real_mirror.rs`).

use ab_state::{Slot, State};
use builder::boot::script::read_script_image;
use builder::config::Project;
use builder::image::inspect;
use builder::pipeline::{Options, Pipeline};
use std::path::{Path, PathBuf};

mod common;
use common::prerequisites_or_skip;

/// Builds a board's image through the normal pipeline (xz level 0: these
/// tests read the raw image only).
fn build(board: &str) -> PathBuf {
    let project = Project::from_workspace();
    let mut options = Options::for_board(&project, board);
    options.target_dir = project.root.join("target/builder-tests");
    options.quiet = true;
    let out = project.root.join("target/builder-tests/images").join(board);
    let context = Pipeline::new(project, &options).unwrap();
    let (lock, tree) = context.rootfs().unwrap();
    let output = builder::image::OutputOptions {
        gzip: false,
        xz_level: 0,
    };
    context.image(&lock, &tree, &out, &output).unwrap().image
}

fn fat_file(image: &Path, path: &str) -> Vec<u8> {
    inspect::read(image, 1, path).unwrap_or_else(|e| panic!("boot partition: {path}: {e:#}"))
}

/// Names of a `newc` cpio archive's entries, and the content of one.
fn cpio_entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut at = 0;
    let align = |n: usize| n.div_ceil(4) * 4;
    loop {
        assert_eq!(&archive[at..at + 6], b"070701", "cpio magic at {at}");
        let field = |n: usize| {
            let text = std::str::from_utf8(&archive[at + 6 + 8 * n..at + 14 + 8 * n]).unwrap();
            usize::from_str_radix(text, 16).unwrap()
        };
        let (size, name_len) = (field(6), field(11));
        let name = String::from_utf8(archive[at + 110..at + 110 + name_len - 1].to_vec()).unwrap();
        let data_at = align(at + 110 + name_len);
        if name == "TRAILER!!!" {
            return entries;
        }
        entries.push((name, archive[data_at..data_at + size].to_vec()));
        at = align(data_at + size);
    }
}

/// The checks both Pi boards share; returns the initramfs's module load order.
fn check_boot_chain(image: &Path, firmware: &[&str], device_trees: &[&str]) -> Vec<String> {
    // config.txt: 64-bit, UART, and a kernel= that exists (U-Boot).
    let config = String::from_utf8(fat_file(image, "config.txt")).unwrap();
    for line in ["arm_64bit=1", "enable_uart=1", "kernel=u-boot.bin"] {
        assert!(
            config.lines().any(|l| l == line),
            "config.txt lacks {line}:\n{config}"
        );
    }
    for line in config.lines().filter(|l| !l.starts_with('#')) {
        if let Some(file) = line.strip_prefix("kernel=") {
            let bytes = fat_file(image, file);
            // U-Boot names itself in its binary.
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.contains("U-Boot 20"), "{file} is not U-Boot");
        }
    }
    for file in firmware.iter().chain(device_trees) {
        assert!(!fat_file(image, file).is_empty(), "{file} is empty");
    }

    // boot.scr: a valid script image whose state files and slot files exist.
    let script = read_script_image(&fat_file(image, "boot.scr")).unwrap();
    for (copy, name) in ab_state::STATE_FILES.iter().enumerate() {
        assert!(script.contains("ab-state-${ab_copy}.env"), "{script}");
        let state = State::from_bytes(&fat_file(image, name)).unwrap();
        assert_eq!(state.active, Slot::A);
        assert_eq!(state.seq, copy as u32);
        assert_eq!((state.trial, state.tries), (None, None));
    }
    for path in ["/boot/vmlinuz", "/boot/initrd.img"] {
        assert!(script.contains(path), "boot.scr does not load {path}");
    }
    let kernel = inspect::read(image, 2, "/boot/vmlinuz").unwrap();
    assert_eq!(
        &kernel[56..60],
        b"ARM\x64",
        "/boot/vmlinuz is not an arm64 Image"
    );
    assert!(script.contains("console=ttyS1,115200"), "{script}");

    // The initramfs: init, busybox, /dev/console and the modules in order.
    let initrd = inspect::read(image, 2, "/boot/initrd.img").unwrap();
    assert!(
        initrd.len() < 10 << 20,
        "initramfs is {} bytes",
        initrd.len()
    );
    let archive = zstd::decode_all(&initrd[..]).expect("a zstd-compressed initramfs");
    let entries = cpio_entries(&archive);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in [
        "init",
        "bin/busybox",
        "dev/console",
        "lib/modules/load-order",
    ] {
        assert!(
            names.contains(&wanted),
            "initramfs lacks {wanted}: {names:?}"
        );
    }
    let order = entries
        .iter()
        .find(|(n, _)| n == "lib/modules/load-order")
        .map(|(_, data)| String::from_utf8(data.clone()).unwrap())
        .unwrap();
    let order: Vec<String> = order.lines().map(String::from).collect();
    for module in &order {
        let path = format!("lib/modules/{module}");
        let (_, bytes) = entries.iter().find(|(n, _)| *n == path).unwrap();
        assert_eq!(
            &bytes[..4],
            b"\x7fELF",
            "{module} is not an uncompressed module"
        );
    }
    let position = |name: &str| {
        order
            .iter()
            .position(|m| m == name)
            .unwrap_or_else(|| panic!("{name} not in the initramfs: {order:?}"))
    };
    assert!(position("jbd2.ko") < position("ext4.ko"), "{order:?}");
    assert!(position("mbcache.ko") < position("ext4.ko"), "{order:?}");
    // The watchdog first: a Pi has no other way to reset, and a trial boot
    // that fails in the initramfs must end in a reset.
    assert_eq!(position("bcm2835_wdt.ko"), 0, "{order:?}");
    order
}

#[test]
fn rpi4_boot_partition_is_complete() {
    if !prerequisites_or_skip("rpi4_boot_partition_is_complete") {
        return;
    }
    let image = build("rpi4");
    let order = check_boot_chain(
        &image,
        &["start4.elf", "fixup4.dat", "u-boot.bin"],
        &[
            "bcm2711-rpi-4-b.dtb",
            "bcm2711-rpi-400.dtb",
            "bcm2711-rpi-cm4-io.dtb",
        ],
    );
    // The Pi 4's SD controller (EMMC2; mmc_block is built into Debian's
    // kernel) and USB mass storage behind the VL805 for USB boot.
    for module in [
        "sdhci-iproc.ko",
        "sdhci-pltfm.ko",
        "sdhci.ko",
        "xhci-pci.ko",
        "uas.ko",
    ] {
        assert!(order.contains(&module.to_string()), "{module}: {order:?}");
    }
    let position = |name: &str| order.iter().position(|m| m == name).unwrap();
    assert!(position("sdhci.ko") < position("sdhci-pltfm.ko"));
    assert!(position("sdhci-pltfm.ko") < position("sdhci-iproc.ko"));
}

#[test]
fn rpi3_boot_partition_is_complete() {
    if !prerequisites_or_skip("rpi3_boot_partition_is_complete") {
        return;
    }
    let image = build("rpi3");
    let order = check_boot_chain(
        &image,
        &["bootcode.bin", "start.elf", "fixup.dat", "u-boot.bin"],
        &[
            "bcm2837-rpi-3-b.dtb",
            "bcm2837-rpi-3-b-plus.dtb",
            "bcm2837-rpi-zero-2-w.dtb",
        ],
    );
    // The Pi 3's SD host (bcm2835 sdhost) and USB for USB boot.
    for module in ["bcm2835.ko", "dwc2.ko", "usb-storage.ko"] {
        assert!(order.contains(&module.to_string()), "{module}: {order:?}");
    }
}
