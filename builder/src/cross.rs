//! Cross-compiling workspace crates for the board, against a sysroot made
//! from the same locked Debian packages as the image (so the binary links
//! against exactly the libraries it will run with).

use crate::doctor;
use crate::lock::Lock;
use crate::pipeline::Context;
use crate::rootfs::tree::{Content, Kind, Tree};
use crate::store::sha256_hex;
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Rust and clang target names for a Debian architecture.
pub fn triples(architecture: &str) -> Result<(&'static str, &'static str)> {
    match architecture {
        "arm64" => Ok(("aarch64-unknown-linux-gnu", "aarch64-linux-gnu")),
        "amd64" => Ok(("x86_64-unknown-linux-gnu", "x86_64-linux-gnu")),
        other => bail!("cross-compiling for architecture {other:?} is not supported"),
    }
}

/// Unpacks the lock's sysroot packages into a directory in the cache (once
/// per package set) and returns its path.
pub fn sysroot(context: &Context, lock: &Lock) -> Result<PathBuf> {
    let packages: Vec<_> = lock.sysroot_packages().collect();
    let listing: String = packages
        .iter()
        .map(|p| format!("{} {}\n", p.name, p.sha256))
        .collect();
    let root = context.store.subdir("sysroot")?;
    let dir = root.join(&sha256_hex(listing.as_bytes())[..16]);
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    let unpacked = crate::rootfs::unpack_all(context, &packages)?;
    let tree = crate::rootfs::install_packages(&unpacked, lock.source_date_epoch);
    let temp = tempfile::tempdir_in(&root)?;
    materialize(&tree, context, temp.path())?;
    std::fs::write(temp.path().join(".complete"), listing)?;
    let temp = temp.keep();
    if std::fs::rename(&temp, &dir).is_err() {
        // Another build finished the same sysroot first; use theirs.
        std::fs::remove_dir_all(&temp)?;
    }
    Ok(dir)
}

/// Writes a tree to a host directory (read-only use: files are hard links
/// into the store where possible).
fn materialize(tree: &Tree, context: &Context, dir: &Path) -> Result<()> {
    for (path, node) in tree.iter() {
        let dest = dir.join(path);
        match &node.kind {
            Kind::Dir => std::fs::create_dir_all(&dest)?,
            Kind::File { content, .. } => match content {
                Content::Blob(sha256) => {
                    if std::fs::hard_link(context.store.path(sha256), &dest).is_err() {
                        std::fs::copy(context.store.path(sha256), &dest)?;
                    }
                }
                Content::Inline(bytes) => std::fs::write(&dest, bytes)?,
            },
            Kind::Symlink { target } => std::os::unix::fs::symlink(target, &dest)?,
            Kind::Hardlink { target } => std::fs::hard_link(dir.join(target), &dest)?,
            _ => {}
        }
    }
    Ok(())
}

/// Builds `crates` in release mode for the board and returns (crate, binary).
pub fn build_crates(
    context: &Context,
    sysroot: &Path,
    crates: &[String],
) -> Result<Vec<(String, PathBuf)>> {
    let (rust_triple, clang_triple) = triples(&context.board.architecture)?;
    doctor::require(&doctor::cross_checks(rust_triple))?;
    let workspace = &context.project.root;
    let target_dir = &context.target_dir;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".cargo")))
        .unwrap_or_default();
    let sysroot_s = sysroot.display().to_string();
    let env_triple = rust_triple.replace('-', "_");
    let target_flags = format!("--target={clang_triple} --sysroot={sysroot_s}");
    // Paths embedded in panic messages and debug info must not depend on
    // where the workspace, cargo's registry or the cache live.
    let rustflags = [
        format!("-C link-arg=--target={clang_triple}"),
        format!("-C link-arg=--sysroot={sysroot_s}"),
        "-C link-arg=-fuse-ld=lld".to_string(),
        format!("--remap-path-prefix={}=/build", workspace.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        format!("--remap-path-prefix={sysroot_s}=/sysroot"),
    ]
    .join(" ");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(workspace)
        .args(["build", "--release", "--locked", "--target", rust_triple])
        .env("CARGO_TARGET_DIR", target_dir)
        .env(
            format!("CARGO_TARGET_{}_LINKER", env_triple.to_uppercase()),
            "clang",
        )
        .env(
            format!("CARGO_TARGET_{}_RUSTFLAGS", env_triple.to_uppercase()),
            rustflags,
        )
        .env(format!("CC_{env_triple}"), "clang")
        .env(format!("CFLAGS_{env_triple}"), &target_flags)
        .env(format!("AR_{env_triple}"), "llvm-ar")
        .env("PKG_CONFIG_ALLOW_CROSS", "1")
        .env("PKG_CONFIG_SYSROOT_DIR", sysroot)
        .env(
            "PKG_CONFIG_LIBDIR",
            format!(
                "{s}/usr/lib/{clang_triple}/pkgconfig:{s}/usr/share/pkgconfig",
                s = sysroot_s
            ),
        );
    if context.progress.is_quiet() {
        command.arg("--quiet");
    }
    for name in crates {
        command.args(["-p", name]);
    }
    tracing::info!("cross-compiling {} for {rust_triple}", crates.join(", "));
    let status = command.status().context("running cargo")?;
    if !status.success() {
        bail!(
            "cross-compiling {} for {rust_triple} failed (see cargo's output above)",
            crates.join(", ")
        );
    }
    crates
        .iter()
        .map(|name| {
            let binary = target_dir.join(rust_triple).join("release").join(name);
            if !binary.is_file() {
                bail!("crate {name} built no binary at {}", binary.display());
            }
            Ok((name.clone(), binary))
        })
        .collect()
}
