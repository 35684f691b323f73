//! Recipe overlays: files from `overlay/<name>/` copied onto the root.
//! Ownership is always root; modes keep only the executable bit from the
//! checkout (git records nothing else), and times come from the lock.

use super::tree::{Node, Tree};
use anyhow::{Context as _, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Copies one overlay directory into the tree.
pub fn apply(tree: &mut Tree, dir: &Path, epoch: i64) -> Result<()> {
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
            let metadata = std::fs::symlink_metadata(&path)?;
            if metadata.is_dir() {
                tree.ensure_dir(&relative, epoch);
                stack.push(path);
            } else if metadata.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                tree.insert(&relative, Node::symlink(target.to_string_lossy(), epoch));
            } else {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let executable = metadata.permissions().mode() & 0o111 != 0;
                tree.insert(
                    &relative,
                    Node::file(bytes, if executable { 0o755 } else { 0o644 }, epoch),
                );
            }
        }
    }
    Ok(())
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
}
