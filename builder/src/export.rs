//! Exporting a tree as a reproducible tar archive (for inspection, or
//! `docker import`). Owners, modes and times come from the tree only.

use crate::rootfs::tree::{Kind, Tree, content_bytes};
use crate::store::Store;
use anyhow::{Context as _, Result};
use std::io::Write;
use std::path::Path;

/// Writes `tree` as a POSIX tar to `path`, atomically: into a hidden
/// temporary file beside it (`.<file name>.XXXXXX`, removed on an error
/// or an interruption), renamed when complete.
pub fn write_tar(tree: &Tree, store: &Store, path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".");
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let _remove = crate::output_dir::RemoveOnSignal::new(temp.path());
    let mut builder = tar::Builder::new(std::io::BufWriter::new(temp.as_file()));
    for (path, node) in tree.iter() {
        if path.is_empty() {
            continue;
        }
        let mut header = tar::Header::new_ustar();
        header.set_mode(node.mode);
        header.set_uid(node.uid.into());
        header.set_gid(node.gid.into());
        header.set_mtime(node.mtime.max(0) as u64);
        header.set_size(0);
        let name = match &node.kind {
            Kind::Dir => format!("{path}/"),
            _ => path.clone(),
        };
        match &node.kind {
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                builder.append_data(&mut header, &name, std::io::empty())?;
            }
            Kind::File { content, .. } => {
                let bytes = content_bytes(content, store)?;
                header.set_size(bytes.len() as u64);
                header.set_entry_type(tar::EntryType::Regular);
                builder.append_data(&mut header, &name, &bytes[..])?;
            }
            Kind::Symlink { target } | Kind::Hardlink { target } => {
                let kind = if matches!(node.kind, Kind::Symlink { .. }) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                header.set_entry_type(kind);
                builder.append_link(&mut header, &name, target)?;
            }
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                let kind = if matches!(node.kind, Kind::CharDevice { .. }) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                header.set_entry_type(kind);
                header.set_device_major(*major)?;
                header.set_device_minor(*minor)?;
                builder.append_data(&mut header, &name, std::io::empty())?;
            }
            Kind::Fifo => {
                header.set_entry_type(tar::EntryType::Fifo);
                builder.append_data(&mut header, &name, std::io::empty())?;
            }
        }
    }
    builder.into_inner()?.flush()?;
    temp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
