//! The boot chain, written by the builder itself (no `mkimage`, no initramfs
//! tools on the host):
//!
//! - in each root slot, `/boot/vmlinuz` and `/boot/initrd.img`, so a kernel
//!   and its modules always update together with the root ([`install_in_slot`]);
//! - on the FAT partition, the A/B boot script `boot.scr`, two copies of the
//!   boot state and, for Raspberry Pis, the firmware's `config.txt`
//!   ([`partition_files`]).

pub mod cpio;
pub mod initramfs;
pub mod script;

use crate::config::Board;
use crate::deb;
use crate::lock::Lock;
use crate::rootfs::modules::{ModuleSummary, load_order};
use crate::rootfs::tree::{Content, Kind, Node, Tree, content_bytes};
use crate::store::{Sha256Hex, Store};
use ab_state::State;
use anyhow::{Context as _, Result, bail};
use std::collections::BTreeMap;

/// The boot script's file name; U-Boot's distro boot looks for it.
pub const SCRIPT_FILE: &str = "boot.scr";

/// What [`install_in_slot`] put into the root.
#[derive(Debug, Clone)]
pub struct SlotBoot {
    pub kernel_version: String,
    /// Module files in the initramfs, in load order.
    pub initramfs_modules: Vec<String>,
    /// Compressed initramfs size in bytes.
    pub initramfs_size: u64,
}

/// The boot script for a board: the shared A/B logic with the board's
/// kernel command line.
pub fn boot_script(board: &Board) -> String {
    include_str!("boot.cmd").replace("@CMDLINE@", board.boot.cmdline.trim())
}

/// Files the boot chain adds to the boot partition.
pub fn partition_files(board: &Board, lock: &Lock) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let epoch = lock.source_date_epoch.clamp(0, u32::MAX as i64) as u32;
    files.insert(
        SCRIPT_FILE.to_string(),
        script::script_image(&boot_script(board), "vinyl A/B boot", epoch),
    );
    // Both copies valid from the start; U-Boot only ever overwrites them.
    for (seq, name) in ab_state::STATE_FILES.iter().enumerate() {
        files.insert(name.to_string(), State::initial(seq as u32).to_bytes());
    }
    if !board.boot.config_txt.is_empty() {
        let mut text = format!(
            "# Raspberry Pi firmware settings for board {}, written by the builder\n",
            board.name
        );
        for line in &board.boot.config_txt {
            text.push_str(line.trim());
            text.push('\n');
        }
        files.insert("config.txt".to_string(), text.into_bytes());
    }
    Ok(files)
}

/// What a slot's `/boot` is made from.
pub struct SlotInputs<'a> {
    /// The build time and the initramfs packages (busybox).
    pub lock: &'a Lock,
    /// The kernel's modules, after pruning.
    pub modules: &'a ModuleSummary,
    /// Modules the initramfs loads (their dependencies are added).
    pub initramfs_modules: &'a [String],
    /// For errors that name the board file.
    pub board: &'a str,
    pub store: &'a Store,
}

/// The zstd-compressed `archive` in the store: its digest and size. Level
/// 19 takes seconds, most of a build in which nothing changed, so a record
/// (`initramfs-v1/<digest of the archive>`) names the blob an earlier
/// build compressed; it is used only if that blob decompresses to exactly
/// `archive` (milliseconds), else compressed again.
fn compressed_initramfs(store: &Store, archive: &[u8]) -> Result<(Sha256Hex, u64)> {
    let record = store
        .subdir("initramfs-v1")?
        .join(crate::store::sha256_hex(archive));
    let earlier = std::fs::read_to_string(&record).ok().and_then(|blob| {
        let blob = blob.trim();
        if !crate::store::is_sha256_hex(blob) {
            return None;
        }
        let bytes = store.read(blob).ok()?;
        let intact = zstd::decode_all(&bytes[..]).is_ok_and(|plain| plain == archive);
        intact.then(|| (blob.to_string(), bytes.len() as u64))
    });
    if let Some(found) = earlier {
        return Ok(found);
    }
    let compressed = initramfs::compress(archive).context("compressing the initramfs")?;
    let blob = store.insert(&compressed)?;
    store.write_atomic(&record, blob.as_bytes())?;
    Ok((blob, compressed.len() as u64))
}

/// Puts the kernel and a generated initramfs under `/boot` of the slot
/// (stable names `vmlinuz` and `initrd.img` link to the versioned files) and
/// creates `/data`, where the initramfs mounts the data partition.
pub fn install_in_slot(tree: &mut Tree, inputs: &SlotInputs) -> Result<SlotBoot> {
    let SlotInputs {
        lock,
        modules,
        store,
        board,
        ..
    } = *inputs;
    let epoch = lock.source_date_epoch;
    let version = &modules.kernel_version;
    let kernel = format!("boot/vmlinuz-{version}");
    if !matches!(tree.get(&kernel).map(|n| &n.kind), Some(Kind::File { .. })) {
        bail!(
            "the kernel package installed no /{kernel}; check [kernel] package in boards/{board}.toml"
        );
    }

    let order = load_order(&modules.infos, &modules.builtin, inputs.initramfs_modules)
        .with_context(|| {
            format!("initramfs modules (`initramfs-modules` in boards/{board}.toml)")
        })?;
    let dir = format!("usr/lib/modules/{version}");
    let mut files = Vec::new();
    for path in &order {
        let bytes = tree
            .read(&format!("{dir}/{path}"), store)?
            .with_context(|| format!("module {path} vanished from the root"))?;
        let plain = kernel_modules::decompress(path, &bytes)?.into_owned();
        files.push((initramfs::module_file_name(path), plain));
    }

    let busybox = busybox(store, lock, board)?;
    let archive = initramfs::archive(&busybox, &files, epoch);
    let (blob, size) = compressed_initramfs(store, &archive)?;
    let initrd = format!("initrd.img-{version}");
    tree.insert(
        &format!("boot/{initrd}"),
        Node {
            kind: Kind::File {
                size,
                content: Content::Blob(blob),
            },
            ..Node::file(Vec::new(), 0o644, epoch)
        },
    );
    tree.insert("boot/initrd.img", Node::symlink(initrd, epoch));
    tree.insert(
        "boot/vmlinuz",
        Node::symlink(format!("vmlinuz-{version}"), epoch),
    );
    tree.ensure_dir("data", epoch);
    // Where the initramfs mounts the boot partition (read-only).
    tree.ensure_dir("boot/firmware", epoch);
    Ok(SlotBoot {
        kernel_version: version.clone(),
        initramfs_modules: files.into_iter().map(|(name, _)| name).collect(),
        initramfs_size: size,
    })
}

/// The static busybox from the lock's initramfs packages.
fn busybox(store: &Store, lock: &Lock, board: &str) -> Result<Vec<u8>> {
    for package in lock.initramfs_packages() {
        let contents = deb::unpack_cached(store, &package.filename, &package.sha256)?;
        for (path, node) in &contents.entries {
            let path = crate::rootfs::tree::canonical(path);
            if path == "usr/bin/busybox"
                && let Kind::File { content, .. } = &node.kind
            {
                return Ok(content_bytes(content, store)?);
            }
        }
    }
    bail!(
        "no static busybox for the initramfs: add `initramfs-packages = [\"busybox-static\"]` to a recipe of board {board} and run `cargo run -p builder -- lock --board {board}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second build takes the compressed initramfs from the cache; a
    /// record that names any other blob (here a valid zstd stream of other
    /// bytes) is not believed: the archive is compressed again.
    #[test]
    fn the_compressed_initramfs_is_cached_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let archive: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let first = compressed_initramfs(&store, &archive).unwrap();
        assert_eq!(
            zstd::decode_all(&store.read(&first.0).unwrap()[..]).unwrap(),
            archive
        );
        let record = dir
            .path()
            .join("initramfs-v1")
            .join(crate::store::sha256_hex(&archive));
        assert_eq!(std::fs::read_to_string(&record).unwrap(), first.0);
        assert_eq!(compressed_initramfs(&store, &archive).unwrap(), first);

        let other = store
            .insert(&initramfs::compress(b"another archive").unwrap())
            .unwrap();
        std::fs::write(&record, &other).unwrap();
        assert_eq!(compressed_initramfs(&store, &archive).unwrap(), first);
        assert_eq!(std::fs::read_to_string(&record).unwrap(), first.0);
    }

    /// boot.cmd is U-Boot shell, not Rust: check that it speaks the same
    /// state files and keys as the typed model the rest of the project uses.
    #[test]
    fn boot_script_uses_the_models_keys_and_files() {
        let script = include_str!("boot.cmd");
        for key in ab_state::keys::ALL {
            assert!(script.contains(&format!("${{{key}}}")), "{key}");
        }
        let imported = format!(
            "env import -c ${{ab_state_addr}} ${{filesize}} {}",
            ab_state::keys::ALL.join(" ")
        );
        assert!(script.contains(&imported), "{imported}");
        let name = |copy: &str| format!("ab-state-{copy}.env");
        assert_eq!(ab_state::STATE_FILES, [name("0"), name("1")]);
        assert!(script.contains(&name("${ab_copy}")));
        assert!(script.contains(&name("${ab_target}")));
        let size = format!("env export -c -s 0x{:x}", ab_state::STATE_FILE_SIZE);
        assert!(script.contains(&size), "{size}");
    }
}
