//! The boot chain, written by the builder itself (no `mkimage`, no initramfs
//! tools on the host):
//!
//! - in each root slot, `/boot/vmlinuz` and `/boot/initrd.img`, so a kernel
//!   and its modules always update together with the root ([`install_in_slot`]);
//! - on the FAT partition, the A/B boot script `boot.scr`, two copies of the
//!   boot state and, for Raspberry Pis, the firmware's `config.txt`
//!   ([`partition_files`]).

pub mod cpio;
pub mod env;
pub mod initramfs;
pub mod script;

use crate::config::Board;
use crate::deb;
use crate::lock::Lock;
use crate::pipeline::Context;
use crate::rootfs::modules::{ModuleSummary, load_order};
use crate::rootfs::tree::{Content, Kind, Node, Tree, content_bytes};
use anyhow::{Context as _, Result, bail};
use std::collections::BTreeMap;

/// The boot script's file name; U-Boot's distro boot looks for it.
pub const SCRIPT_FILE: &str = "boot.scr";

/// The two copies of the A/B boot state on the boot partition.
pub const STATE_FILES: [&str; 2] = ["ab-state-0.env", "ab-state-1.env"];

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

/// A fresh image's boot state: slot a is active, nothing on trial.
pub fn initial_state(seq: u32) -> env::Env {
    env::Env(BTreeMap::from([
        ("ab_active".to_string(), "a".to_string()),
        ("ab_seq".to_string(), format!("{seq:x}")),
    ]))
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
    for (seq, name) in STATE_FILES.iter().enumerate() {
        let bytes = initial_state(seq as u32)
            .to_bytes(env::STATE_FILE_SIZE)
            .map_err(anyhow::Error::msg)?;
        files.insert(name.to_string(), bytes);
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

/// Puts the kernel and a generated initramfs under `/boot` of the slot
/// (stable names `vmlinuz` and `initrd.img` link to the versioned files) and
/// creates `/data`, where the initramfs mounts the data partition.
pub fn install_in_slot(
    tree: &mut Tree,
    context: &Context,
    lock: &Lock,
    modules: &ModuleSummary,
) -> Result<SlotBoot> {
    let epoch = lock.source_date_epoch;
    let version = &modules.kernel_version;
    let kernel = format!("boot/vmlinuz-{version}");
    if !matches!(tree.get(&kernel).map(|n| &n.kind), Some(Kind::File { .. })) {
        bail!(
            "the kernel package installed no /{kernel}; check [kernel] package in boards/{}.toml",
            context.board.name
        );
    }

    let order = load_order(
        &modules.infos,
        &modules.builtin,
        &context.plan.initramfs_modules,
    )
    .with_context(|| {
        format!(
            "initramfs modules (`initramfs-modules` in boards/{}.toml)",
            context.board.name
        )
    })?;
    let dir = format!("usr/lib/modules/{version}");
    let mut files = Vec::new();
    for path in &order {
        let bytes = tree
            .read(&format!("{dir}/{path}"), &context.store)?
            .with_context(|| format!("module {path} vanished from the root"))?;
        let plain = kernel_modules::decompress(path, &bytes)?.into_owned();
        files.push((initramfs::module_file_name(path), plain));
    }

    let busybox = busybox(context, lock)?;
    let archive = initramfs::archive(&busybox, &files, epoch);
    let compressed = initramfs::compress(&archive).context("compressing the initramfs")?;
    let size = compressed.len() as u64;
    let initrd = format!("initrd.img-{version}");
    tree.insert(
        &format!("boot/{initrd}"),
        Node {
            kind: Kind::File {
                size,
                content: Content::Blob(context.store.insert(&compressed)?),
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
fn busybox(context: &Context, lock: &Lock) -> Result<Vec<u8>> {
    for package in lock.initramfs_packages() {
        let contents = deb::unpack_cached(&context.store, &package.filename, &package.sha256)?;
        for (path, node) in &contents.entries {
            let path = crate::rootfs::tree::canonical(path);
            if path == "usr/bin/busybox"
                && let Kind::File { content, .. } = &node.kind
            {
                return Ok(content_bytes(content, &context.store)?);
            }
        }
    }
    bail!(
        "no static busybox for the initramfs: add `initramfs-packages = [\"busybox-static\"]` to a recipe of board {} and run `cargo run -p builder -- lock --board {}`",
        context.board.name,
        context.board.name
    )
}
