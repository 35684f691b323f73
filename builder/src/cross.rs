//! Cross-compiling workspace crates for the board, against a sysroot made
//! from the same locked Debian packages as the image (so the binary links
//! against exactly the libraries it will run with).

use crate::config::Architecture;
use crate::doctor;
use crate::lock::Lock;
use crate::progress::Progress;
use crate::rootfs::tree::{Content, Kind, Tree};
use crate::store::{Store, sha256_hex};
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Unpacks the lock's sysroot packages into a directory in the cache (once
/// per package set) and returns its path.
pub fn sysroot(store: &Store, progress: &Progress, lock: &Lock) -> Result<PathBuf> {
    let packages: Vec<_> = lock.sysroot_packages().collect();
    let listing: String = packages
        .iter()
        .map(|p| format!("{} {}\n", p.name, p.sha256))
        .collect();
    let root = store.subdir("sysroot")?;
    let dir = root.join(&sha256_hex(listing.as_bytes())[..16]);
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    let unpacked = crate::rootfs::unpack_all(store, progress, &packages)?;
    let tree = crate::rootfs::install_packages(&unpacked, lock.source_date_epoch);
    let temp = tempfile::tempdir_in(&root)?;
    materialize(&tree, store, temp.path())?;
    std::fs::write(temp.path().join(".complete"), listing)?;
    let temp = temp.keep();
    if std::fs::rename(&temp, &dir).is_err() {
        // Another build finished the same sysroot first; use theirs.
        std::fs::remove_dir_all(&temp)?;
    }
    Ok(dir)
}

/// Writes a tree to a new host directory (read-only use: files are hard
/// links into the store where possible).
///
/// Nothing is written outside `dir` or over anything already there: tree
/// paths never hold `..` (unpacking refuses them, and this checks again),
/// every file is created new, and hard links are made to the store blob of
/// their target rather than to a host path that a symlink could redirect.
fn materialize(tree: &Tree, store: &Store, dir: &Path) -> Result<()> {
    let create_new = |dest: &Path, bytes: &[u8]| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)?;
        std::io::Write::write_all(&mut file, bytes)
    };
    let link_blob = |sha256: &str, dest: &Path| -> Result<()> {
        // Only the store's own copy may be linked; a copy (another
        // filesystem) is checked against its digest like any read.
        match std::fs::hard_link(store.path(sha256), dest) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                Ok(create_new(dest, &store.read(sha256)?)?)
            }
            Err(e) => Err(e).with_context(|| format!("linking {}", dest.display())),
        }
    };
    for (path, node) in tree.iter() {
        if crate::deb::check_path(path).is_err() {
            bail!("refusing to write {path:?} into the sysroot: it leaves the root");
        }
        let dest = dir.join(path);
        match &node.kind {
            Kind::Dir => std::fs::create_dir_all(&dest)?,
            Kind::File { content, .. } => match content {
                Content::Blob(sha256) => link_blob(sha256, &dest)?,
                Content::Inline(bytes) => create_new(&dest, bytes)?,
            },
            Kind::Symlink { target } => std::os::unix::fs::symlink(target, &dest)?,
            Kind::Hardlink { target } => match tree.get(target).map(|n| &n.kind) {
                Some(Kind::File {
                    content: Content::Blob(sha256),
                    ..
                }) => link_blob(sha256, &dest)?,
                Some(Kind::File {
                    content: Content::Inline(bytes),
                    ..
                }) => create_new(&dest, bytes)?,
                _ => tracing::debug!("sysroot: {path} links to {target}, not a file; skipped"),
            },
            _ => {}
        }
    }
    Ok(())
}

/// A cross build of workspace crates.
pub struct CrossBuild<'a> {
    /// The cargo workspace holding the crates.
    pub workspace: &'a Path,
    /// Cargo's target directory.
    pub target_dir: &'a Path,
    pub architecture: Architecture,
    /// From [`sysroot`].
    pub sysroot: &'a Path,
    /// Package names (each builds a binary of the same name).
    pub crates: &'a [String],
    /// Quiet cargo too.
    pub quiet: bool,
}

/// The sysroot under a path in the target directory that names its
/// contents (the sysroot's directory name is a digest of its packages),
/// not the cache it was unpacked in: the path is part of the compiler and
/// linker flags, so a build with another cache (an emptied one, or
/// `--cache-dir`) must see the same path to reuse what cargo built, and
/// other contents must give another path so cargo rebuilds against them.
fn stable_link(target_dir: &Path, sysroot: &Path) -> Result<PathBuf> {
    let sysroot = std::fs::canonicalize(sysroot)
        .with_context(|| format!("finding the sysroot {}", sysroot.display()))?;
    let id = sysroot
        .file_name()
        .context("the sysroot has no directory name")?;
    let links = target_dir.join("vinyl-sysroots");
    std::fs::create_dir_all(&links).with_context(|| format!("creating {}", links.display()))?;
    let link = links.join(id);
    if std::fs::read_link(&link).is_ok_and(|to| to == sysroot) {
        return Ok(link);
    }
    // Replaced in one rename: another build may be reading the link.
    let temp = links.join(format!(".{}.{}", id.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(&sysroot, &temp)
        .and_then(|()| std::fs::rename(&temp, &link))
        .with_context(|| format!("linking {} to the sysroot", link.display()))?;
    Ok(link)
}

/// Builds the crates in release mode and returns (crate, binary).
pub fn build_crates(build: &CrossBuild) -> Result<Vec<(String, PathBuf)>> {
    let CrossBuild {
        workspace,
        target_dir,
        sysroot,
        crates,
        ..
    } = *build;
    let (rust_triple, clang_triple) = (
        build.architecture.rust_triple(),
        build.architecture.multiarch(),
    );
    doctor::require(&doctor::cross_checks(rust_triple))?;
    let sysroot = &stable_link(target_dir, sysroot)?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".cargo")))
        .unwrap_or_default();
    let sysroot_s = sysroot.display().to_string();
    let env_triple = rust_triple.replace('-', "_");
    // C code built by -sys crates: linked with lld too (configure scripts,
    // e.g. the bundled LAME's, link test programs), and with the same path
    // remapping as Rust code (assert() embeds __FILE__).
    let target_flags = format!(
        "--target={clang_triple} --sysroot={sysroot_s} -fuse-ld=lld \
         -ffile-prefix-map={}=/build -ffile-prefix-map={}=/cargo \
         -ffile-prefix-map={sysroot_s}=/sysroot",
        workspace.display(),
        cargo_home.display()
    );
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
    if build.quiet {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::tree::Node;

    #[test]
    fn materialize_links_store_blobs_and_never_follows_host_paths() {
        let cache = tempfile::tempdir().unwrap();
        let store = Store::open(cache.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host file").unwrap();

        let mut tree = Tree::new(0);
        let blob = store.insert(b"libc").unwrap();
        let mut libc = Node::file(Vec::new(), 0o644, 0);
        libc.kind = Kind::File {
            size: 4,
            content: Content::Blob(blob.clone()),
        };
        tree.insert("usr/lib/libc.so", libc);
        // A symlink out of the sysroot, and a hard link through it: the
        // link must not reach the host file.
        let host = outside.path().display().to_string();
        tree.insert("usr/lib/out", Node::symlink(host, 0));
        let mut through = Node::file(Vec::new(), 0o644, 0);
        through.kind = Kind::Hardlink {
            target: "usr/lib/out/secret".into(),
        };
        tree.insert("usr/lib/stolen", through);
        let mut alias = Node::file(Vec::new(), 0o644, 0);
        alias.kind = Kind::Hardlink {
            target: "usr/lib/libc.so".into(),
        };
        tree.insert("usr/lib/libc.so.6", alias);

        let dir = tempfile::tempdir().unwrap();
        materialize(&tree, &store, dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("usr/lib/libc.so.6")).unwrap(),
            b"libc"
        );
        assert!(!dir.path().join("usr/lib/stolen").exists());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "host file"
        );

        // Materialising again over existing files fails instead of
        // overwriting them.
        assert!(materialize(&tree, &store, dir.path()).is_err());
    }
}
