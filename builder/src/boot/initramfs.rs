//! The initramfs: busybox, the storage modules a board needs to reach its
//! root, and the init script (`init.sh`), as a zstd-compressed `newc` cpio.
//! Debian's kernel builds ext4 and the block drivers as modules, so the
//! kernel alone can't mount the root.

use super::cpio::{CpioEntry, CpioKind, write};

/// The init script the kernel runs first.
pub const INIT_SCRIPT: &str = include_str!("init.sh");

/// The uncompressed archive. `modules` are (file name, uncompressed bytes)
/// in load order: `init` loads them in exactly this order.
pub fn archive(busybox: &[u8], modules: &[(String, Vec<u8>)], epoch: i64) -> Vec<u8> {
    let mut entries = vec![
        CpioEntry::dir("bin"),
        CpioEntry::file("bin/busybox", 0o755, busybox),
        // Everything else is linked by `busybox --install` at boot; the
        // script interpreter must exist before that.
        CpioEntry::symlink("bin/sh", "busybox"),
        CpioEntry::dir("dev"),
        CpioEntry {
            path: "dev/console".into(),
            mode: 0o600,
            kind: CpioKind::CharDevice(5, 1),
        },
        CpioEntry::dir("lib"),
        CpioEntry::dir("lib/modules"),
    ];
    let mut order = String::new();
    for (name, bytes) in modules {
        entries.push(CpioEntry::file(
            &format!("lib/modules/{name}"),
            0o644,
            bytes.clone(),
        ));
        order.push_str(name);
        order.push('\n');
    }
    entries.push(CpioEntry::file("lib/modules/load-order", 0o644, order));
    for dir in ["newroot", "proc", "run", "sys"] {
        entries.push(CpioEntry::dir(dir));
    }
    entries.push(CpioEntry::file("init", 0o755, INIT_SCRIPT));
    write(&entries, epoch.clamp(0, u32::MAX as i64) as u32)
}

/// zstd, which Debian's kernel unpacks (`CONFIG_RD_ZSTD`); level 19 with
/// one thread is slow-ish but deterministic and small.
pub fn compress(archive: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(archive, 19)
}

/// The file name a module gets in the initramfs: its base name, without a
/// compression suffix (the whole archive is compressed instead).
pub fn module_file_name(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_lose_compression_suffixes() {
        assert_eq!(
            module_file_name("kernel/fs/ext4/ext4.ko.xz"),
            "ext4.ko".to_string()
        );
        assert_eq!(module_file_name("virtio_blk.ko"), "virtio_blk.ko");
    }

    #[test]
    fn archive_holds_init_busybox_console_and_load_order() {
        let modules = vec![
            ("crc16.ko".to_string(), b"a".to_vec()),
            ("ext4.ko".to_string(), b"b".to_vec()),
        ];
        let bytes = archive(b"busybox", &modules, 1_789_199_741);
        let text = String::from_utf8_lossy(&bytes);
        for name in ["bin/busybox", "dev/console", "lib/modules/ext4.ko", "init"] {
            assert!(text.contains(&format!("{name}\0")), "{name} missing");
        }
        assert!(text.contains("crc16.ko\next4.ko\n"));
        assert!(text.contains("exec switch_root /newroot /sbin/init"));
        let compressed = compress(&bytes).unwrap();
        assert_eq!(zstd::decode_all(&compressed[..]).unwrap(), bytes);
        assert_eq!(compressed, compress(&bytes).unwrap());
    }
}
