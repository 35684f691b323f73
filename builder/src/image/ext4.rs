//! Root and data filesystems: the tree handed to `ext4-writer`, with file
//! contents streamed from the store.

use crate::rootfs::tree::{Content, Kind, Tree};
use crate::store::Store;
use ext4_writer::{ContentSource, Entry, FileData, Kind as Ext4Kind, Timestamp};
use std::io::{self, Read};

/// Blobs from the store by digest, each checked against its digest before
/// a byte of it reaches the image (so the manifest's digests are those of
/// the bytes written).
pub struct StoreSource<'a>(pub &'a Store);

impl ContentSource for StoreSource<'_> {
    fn open(&self, key: &str) -> io::Result<Box<dyn Read + '_>> {
        let bytes = self.0.read(key).map_err(io::Error::other)?;
        Ok(Box::new(io::Cursor::new(bytes)))
    }
}

/// The tree as ext4-writer entries (blob contents by reference), each in
/// its tree layer, so that editing an overlay file leaves the packages'
/// blocks where they were.
pub fn entries(tree: &Tree) -> Vec<Entry> {
    tree.iter()
        .map(|(path, node)| {
            let kind = match &node.kind {
                Kind::Dir => Ext4Kind::Directory,
                Kind::File { size, content } => Ext4Kind::File {
                    size: *size,
                    data: match content {
                        Content::Blob(sha256) => FileData::External(sha256.clone()),
                        Content::Inline(bytes) => FileData::Bytes(bytes.clone()),
                    },
                },
                Kind::Symlink { target } => Ext4Kind::Symlink {
                    target: target.as_bytes().to_vec(),
                },
                Kind::Hardlink { target } => Ext4Kind::HardLink {
                    target: target.as_bytes().to_vec(),
                },
                Kind::CharDevice { major, minor } => Ext4Kind::CharDevice {
                    major: *major,
                    minor: *minor,
                },
                Kind::BlockDevice { major, minor } => Ext4Kind::BlockDevice {
                    major: *major,
                    minor: *minor,
                },
                Kind::Fifo => Ext4Kind::Fifo,
            };
            Entry {
                path: path.as_bytes().to_vec(),
                kind,
                mode: (node.mode & 0o7777) as u16,
                uid: node.uid,
                gid: node.gid,
                mtime: Timestamp::from_secs(node.mtime),
                xattrs: node
                    .xattrs
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                    .collect(),
                layer: tree.layer(path) as u8,
            }
        })
        .collect()
}
