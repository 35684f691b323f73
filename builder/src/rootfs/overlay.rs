//! Recipe overlays: files from `overlay/<name>/` copied onto the root.
//! Ownership is always root; modes keep only the executable bit from the
//! checkout (git records nothing else), and times come from the lock.
//!
//! Only what git can hold is copied: directories, regular files and
//! symbolic links (as links, never followed). The overlay itself must be a
//! real directory, not a link to somewhere on the host, and a FIFO, socket
//! or device file is refused by name before anything is opened (reading a
//! FIFO would hang the build).

use super::tree::{Node, Tree};
use anyhow::{Context as _, Result, bail};
use std::fs::{FileType, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Copies one overlay directory into the tree.
pub fn apply(tree: &mut Tree, dir: &Path, epoch: i64) -> Result<()> {
    let root = std::fs::symlink_metadata(dir)
        .with_context(|| format!("reading overlay {}", dir.display()))?;
    if root.file_type().is_symlink() {
        bail!(
            "{} is a symbolic link; overlays must be real directories (replace the link with the directory it points to)",
            dir.display()
        );
    }
    if !root.is_dir() {
        bail!(
            "{} is a {}; an overlay is a directory",
            dir.display(),
            kind_name(root.file_type())
        );
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&current)
            .with_context(|| format!("reading overlay {}", current.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let relative = path
                .strip_prefix(dir)
                .expect("below the overlay")
                .to_string_lossy()
                .into_owned();
            let metadata = std::fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let kind = metadata.file_type();
            if kind.is_dir() {
                tree.ensure_dir(&relative, epoch);
                stack.push(path);
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path)?;
                tree.insert(&relative, Node::symlink(target.to_string_lossy(), epoch));
            } else if kind.is_file() {
                let bytes =
                    read_file(&path).with_context(|| format!("reading {}", path.display()))?;
                let executable = metadata.permissions().mode() & 0o111 != 0;
                tree.insert(
                    &relative,
                    Node::file(bytes, if executable { 0o755 } else { 0o644 }, epoch),
                );
            } else {
                bail!(
                    "{} is a {}; overlays may hold only files, directories and symbolic links",
                    path.display(),
                    kind_name(kind)
                );
            }
        }
    }
    Ok(())
}

/// Reads a regular file without following a link or blocking on a FIFO
/// put in its place since it was looked at.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let metadata: Metadata = file.metadata()?;
    if !metadata.is_file() {
        bail!(
            "it changed into a {} while being read",
            kind_name(metadata.file_type())
        );
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// What a file type is called in errors.
fn kind_name(kind: FileType) -> &'static str {
    if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_symlink() {
        "symbolic link"
    } else if kind.is_file() {
        "regular file"
    } else if kind.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::tree::Kind;

    #[test]
    fn copies_files_links_and_modes_owned_by_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/x")).unwrap();
        std::fs::write(dir.path().join("etc/x/conf"), "a=1\n").unwrap();
        std::fs::write(dir.path().join("etc/x/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("etc/x/run.sh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::symlink("conf", dir.path().join("etc/x/link")).unwrap();
        let mut tree = Tree::new(0);
        apply(&mut tree, dir.path(), 42).unwrap();
        let conf = tree.get("etc/x/conf").unwrap();
        assert_eq!(
            (conf.mode, conf.uid, conf.gid, conf.mtime),
            (0o644, 0, 0, 42)
        );
        assert_eq!(tree.get("etc/x/run.sh").unwrap().mode, 0o755);
        assert_eq!(
            tree.get("etc/x/link").unwrap().kind,
            Kind::Symlink {
                target: "conf".into()
            }
        );
    }

    #[test]
    fn a_symlinked_overlay_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("secret"), "x").unwrap();
        std::fs::create_dir(dir.path().join("overlay")).unwrap();
        let link = dir.path().join("overlay/linked");
        std::os::unix::fs::symlink(&host, &link).unwrap();
        let mut tree = Tree::new(0);
        let error = format!("{:#}", apply(&mut tree, &link, 0).unwrap_err());
        assert!(
            error.contains("overlay/linked is a symbolic link; overlays must be real directories"),
            "{error}"
        );
        assert!(tree.get("secret").is_none());
    }

    #[test]
    fn fifos_and_sockets_are_refused_by_name_without_opening_them() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("overlay/x");
        std::fs::create_dir_all(overlay.join("etc")).unwrap();
        let fifo = overlay.join("etc/foo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // Opening the FIFO would block forever: the error proves it wasn't.
        let error = format!("{:#}", apply(&mut Tree::new(0), &overlay, 0).unwrap_err());
        assert!(
            error.contains(
                "overlay/x/etc/foo is a FIFO; overlays may hold only files, directories and symbolic links"
            ),
            "{error}"
        );
        std::fs::remove_file(&fifo).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(overlay.join("etc/sock")).unwrap();
        let error = format!("{:#}", apply(&mut Tree::new(0), &overlay, 0).unwrap_err());
        assert!(error.contains("overlay/x/etc/sock is a socket"), "{error}");
    }

    #[test]
    fn an_overlay_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let error = format!("{:#}", apply(&mut Tree::new(0), &file, 0).unwrap_err());
        assert!(
            error.contains("plain is a regular file; an overlay is a directory"),
            "{error}"
        );
    }
}
