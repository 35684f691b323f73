//! Turns the caller's flat entry list into inodes: validates paths, creates
//! implicit parent directories, numbers inodes and resolves hard links. Pure.

use std::collections::BTreeMap;

use crate::geometry::{LPF_INO, ROOT_INO};
use crate::xattr::{self, Xattr};
use crate::{Entry, Error, FileData, Kind, Result, Timestamp, lossy};

/// Most names a non-directory inode may have.
pub const MAX_LINKS: u32 = 65000;

/// Directory-entry file type codes.
pub mod ftype {
    pub const REG: u8 = 1;
    pub const DIR: u8 = 2;
    pub const CHR: u8 = 3;
    pub const BLK: u8 = 4;
    pub const FIFO: u8 = 5;
    pub const SOCK: u8 = 6;
    pub const LNK: u8 = 7;
}

/// Ownership, mode (including the file type bits), times and xattrs.
#[derive(Debug)]
pub struct Meta {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    pub xattrs: Vec<Xattr>,
}

/// One name in a directory.
#[derive(Debug)]
pub struct DirChild {
    pub name: Vec<u8>,
    pub ino: u32,
    pub ftype: u8,
}

/// What an inode holds.
#[derive(Debug)]
pub enum Body<'a> {
    Dir {
        parent: u32,
        children: Vec<DirChild>,
    },
    File {
        size: u64,
        data: &'a FileData,
        path: &'a [u8],
    },
    Symlink(&'a [u8]),
    Device {
        major: u32,
        minor: u32,
    },
    /// FIFOs and sockets: no data at all.
    Special,
}

/// One inode of the filesystem to be.
#[derive(Debug)]
pub struct Inode<'a> {
    pub ino: u32,
    /// Placement layer ([`crate::Entry::layer`]).
    pub layer: u8,
    pub meta: Meta,
    pub body: Body<'a>,
    pub links: u32,
}

/// All inodes, sorted by inode number (root, lost+found, then by layer and,
/// within a layer, depth-first).
#[derive(Debug)]
pub struct Tree<'a> {
    pub inodes: Vec<Inode<'a>>,
}

impl Tree<'_> {
    /// Highest inode number in use.
    pub fn max_ino(&self) -> u32 {
        self.inodes.last().map_or(LPF_INO, |i| i.ino)
    }
}

#[derive(Default)]
struct Node<'a> {
    entry: Option<usize>,
    ino: u32,
    /// The entry's layer; for an implicit directory the lowest below it.
    layer: u8,
    children: BTreeMap<&'a [u8], Node<'a>>,
}

fn invalid(path: &[u8], reason: impl Into<String>) -> Error {
    Error::InvalidEntry {
        path: lossy(path),
        reason: reason.into(),
    }
}

/// Splits a path into components; the root is the empty list. Leading `/`
/// and `./` are accepted.
fn components(path: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    let n = parts.len();
    for (i, c) in parts.into_iter().enumerate() {
        match c {
            b"" if i == 0 || i + 1 == n => {}
            b"." if out.is_empty() => {}
            b"" | b"." | b".." => return Err(invalid(path, "empty, '.' or '..' path component")),
            _ if c.len() > 255 => return Err(invalid(path, "name longer than 255 bytes")),
            _ if c.contains(&0) => return Err(invalid(path, "NUL byte in name")),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// File type bits of the mode and the directory-entry type code.
fn mode_type(kind: &Kind) -> (u16, u8) {
    match kind {
        Kind::Directory => (0o040000, ftype::DIR),
        Kind::File { .. } | Kind::HardLink { .. } => (0o100000, ftype::REG),
        Kind::Symlink { .. } => (0o120000, ftype::LNK),
        Kind::CharDevice { .. } => (0o020000, ftype::CHR),
        Kind::BlockDevice { .. } => (0o060000, ftype::BLK),
        Kind::Fifo => (0o010000, ftype::FIFO),
        Kind::Socket => (0o140000, ftype::SOCK),
    }
}

/// Builds the inode list from `entries`; directories not listed get mode
/// 0755 (lost+found 0700), owner root and `default_time`.
pub fn build(entries: &[Entry], default_time: Timestamp) -> Result<Tree<'_>> {
    let mut root = Node::default();
    for (i, e) in entries.iter().enumerate() {
        let mut node = &mut root;
        for c in components(&e.path)? {
            node = node.children.entry(c).or_default();
        }
        if node.entry.replace(i).is_some() {
            return Err(invalid(&e.path, "listed twice"));
        }
    }
    if let Some(i) = root.entry
        && entries[i].kind != Kind::Directory
    {
        return Err(invalid(&entries[i].path, "the root must be a directory"));
    }
    root.ino = ROOT_INO;
    let mut order = Vec::new();
    visit(&mut root, entries, &mut order, true)?;
    // Inode numbers by (layer, depth-first position): a later layer's
    // changes never renumber an earlier layer's inodes.
    let mut by_layer: Vec<usize> = (0..order.len()).collect();
    by_layer.sort_by_key(|&i| (order[i], i));
    let first = LPF_INO + 1;
    let mut inos = vec![0u32; order.len()];
    for (k, &i) in by_layer.iter().enumerate() {
        inos[i] = u32::try_from(k)
            .ok()
            .and_then(|k| k.checked_add(first))
            .ok_or_else(|| invalid(b"/", "too many inodes"))?;
    }
    renumber(&mut root, &inos);

    let mut b = Builder {
        entries,
        root: &root,
        default_time,
        inodes: Vec::new(),
    };
    b.emit_dir(&root, ROOT_INO)?;
    let mut inodes = b.inodes;
    inodes.sort_by_key(|i| i.ino);

    // Non-directories have one link per name (hard links share the inode).
    let mut names: BTreeMap<u32, u32> = BTreeMap::new();
    for i in &inodes {
        if let Body::Dir { children, .. } = &i.body {
            for c in children.iter().filter(|c| c.ftype != ftype::DIR) {
                *names.entry(c.ino).or_default() += 1;
            }
        }
    }
    for i in &mut inodes {
        if !matches!(i.body, Body::Dir { .. }) {
            i.links = names.get(&i.ino).copied().unwrap_or(0);
            if i.links > MAX_LINKS {
                return Err(Error::InvalidEntry {
                    path: format!("inode {}", i.ino),
                    reason: format!("{} hard links, at most {MAX_LINKS}", i.links),
                });
            }
        }
    }
    Ok(Tree { inodes })
}

/// Marker for inodes not yet numbered: their position in `order` plus this.
const PENDING: u32 = 1 << 31;

/// Walks the tree depth-first in name order: checks it, sets each node's
/// layer and gives every node that owns an inode its position in `order`
/// (which records the node's layer), to be turned into a number by
/// [`renumber`]. Returns the lowest layer at or below `node`.
fn visit(node: &mut Node<'_>, entries: &[Entry], order: &mut Vec<u8>, is_root: bool) -> Result<u8> {
    let mut lowest = u8::MAX;
    for (name, child) in node.children.iter_mut() {
        let kind = child.entry.map(|i| &entries[i].kind);
        if !child.children.is_empty() && kind.is_some_and(|k| *k != Kind::Directory) {
            let path = &entries[child.entry.unwrap_or_default()].path;
            return Err(invalid(path, "has entries below it but is not a directory"));
        }
        let is_lpf = is_root && *name == b"lost+found";
        if is_lpf && kind.is_some_and(|k| *k != Kind::Directory) {
            return Err(invalid(b"lost+found", "must be a directory"));
        }
        let owns_inode = !is_lpf && !matches!(kind, Some(Kind::HardLink { .. }));
        let position = order.len();
        if owns_inode {
            if position >= (u32::MAX - PENDING) as usize {
                return Err(invalid(name, "too many inodes"));
            }
            order.push(0);
            child.ino = PENDING + position as u32;
        } else if is_lpf {
            child.ino = LPF_INO;
        }
        let below = visit(child, entries, order, false)?;
        child.layer = match child.entry {
            Some(i) => entries[i].layer,
            None if below == u8::MAX => 0,
            None => below,
        };
        if owns_inode {
            order[position] = child.layer;
        }
        lowest = lowest.min(child.layer).min(below);
    }
    Ok(lowest)
}

/// Replaces every pending position with its inode number.
fn renumber(node: &mut Node<'_>, inos: &[u32]) {
    for child in node.children.values_mut() {
        if child.ino >= PENDING {
            child.ino = inos[(child.ino - PENDING) as usize];
        }
        renumber(child, inos);
    }
}

struct Builder<'a, 'n> {
    entries: &'a [Entry],
    root: &'n Node<'a>,
    default_time: Timestamp,
    inodes: Vec<Inode<'a>>,
}

impl<'a> Builder<'a, '_> {
    fn meta(&self, entry: Option<&Entry>, kind: &Kind, default_mode: u16) -> Result<Meta> {
        let type_bits = mode_type(kind).0;
        Ok(match entry {
            Some(e) => Meta {
                mode: type_bits | (e.mode & 0o7777),
                uid: e.uid,
                gid: e.gid,
                mtime: e.mtime,
                xattrs: xattr::normalize(&e.xattrs).map_err(|r| invalid(&e.path, r))?,
            },
            None => Meta {
                mode: type_bits | default_mode,
                uid: 0,
                gid: 0,
                mtime: self.default_time,
                xattrs: Vec::new(),
            },
        })
    }

    /// Follows a hard link to the inode it names.
    fn resolve(&self, from: &[u8], mut target: &'a [u8]) -> Result<(u32, u8)> {
        for _ in 0..40 {
            let mut node = self.root;
            for c in components(target)? {
                node = node.children.get(c).ok_or_else(|| {
                    invalid(
                        from,
                        format!("hard link target {:?} missing", lossy(target)),
                    )
                })?;
            }
            let e = node
                .entry
                .map(|i| &self.entries[i])
                .ok_or_else(|| invalid(from, "hard link to a directory"))?;
            match &e.kind {
                Kind::HardLink { target: t } => target = t,
                Kind::Directory => return Err(invalid(from, "hard link to a directory")),
                k => return Ok((node.ino, mode_type(k).1)),
            }
        }
        Err(invalid(from, "hard link chain too long"))
    }

    /// Emits the directory `node` (inode `parent` above it) and everything below.
    fn emit_dir(&mut self, node: &Node<'a>, parent: u32) -> Result<()> {
        let is_root = node.ino == ROOT_INO;
        let mut children = Vec::with_capacity(node.children.len() + 1);
        let mut subdirs = 0u32;
        for (name, child) in &node.children {
            let entry = child.entry.map(|i| &self.entries[i]);
            let kind = entry.map_or(&Kind::Directory, |e| &e.kind);
            let (ino, ftype) = match kind {
                Kind::HardLink { target } => self.resolve(&entry.unwrap().path, target)?,
                k => (child.ino, mode_type(k).1),
            };
            children.push(DirChild {
                name: name.to_vec(),
                ino,
                ftype,
            });
            let body = match kind {
                Kind::HardLink { .. } => continue,
                Kind::Directory => {
                    subdirs += 1;
                    self.emit_dir(child, node.ino)?;
                    continue;
                }
                Kind::File { size, data } => {
                    let e = entry.unwrap();
                    if let FileData::Bytes(b) = data
                        && b.len() as u64 != *size
                    {
                        return Err(invalid(
                            &e.path,
                            "size differs from the length of its bytes",
                        ));
                    }
                    Body::File {
                        size: *size,
                        data,
                        path: &e.path,
                    }
                }
                Kind::Symlink { target } => {
                    if target.is_empty() || target.len() > 4095 || target.contains(&0) {
                        return Err(invalid(
                            &entry.unwrap().path,
                            "symlink target empty, too long or with NUL",
                        ));
                    }
                    Body::Symlink(target)
                }
                Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                    if *major >= 1 << 12 || *minor >= 1 << 20 {
                        return Err(invalid(&entry.unwrap().path, "device number out of range"));
                    }
                    Body::Device {
                        major: *major,
                        minor: *minor,
                    }
                }
                Kind::Fifo | Kind::Socket => Body::Special,
            };
            let meta = self.meta(entry, kind, 0)?;
            self.inodes.push(Inode {
                ino,
                layer: child.layer,
                meta,
                body,
                links: 0,
            });
        }
        if is_root && !node.children.contains_key(&b"lost+found"[..]) {
            let meta = self.meta(None, &Kind::Directory, 0o700)?;
            let body = Body::Dir {
                parent: ROOT_INO,
                children: Vec::new(),
            };
            self.inodes.push(Inode {
                ino: LPF_INO,
                layer: 0,
                meta,
                body,
                links: 2,
            });
            children.push(DirChild {
                name: b"lost+found".to_vec(),
                ino: LPF_INO,
                ftype: ftype::DIR,
            });
            children.sort_by(|a, b| a.name.cmp(&b.name));
            subdirs += 1;
        }
        let entry = node.entry.map(|i| &self.entries[i]);
        let default_mode = if node.ino == LPF_INO { 0o700 } else { 0o755 };
        let meta = self.meta(entry, &Kind::Directory, default_mode)?;
        // dir_nlink: a count that would overflow is stored as 1.
        let links = if 2 + subdirs >= MAX_LINKS {
            1
        } else {
            2 + subdirs
        };
        let body = Body::Dir { parent, children };
        self.inodes.push(Inode {
            ino: node.ino,
            layer: node.layer,
            meta,
            body,
            links,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_depth_first_and_counts_links() {
        let t = Timestamp::from_secs(1);
        let entries = vec![
            Entry::file("b/f", 0o644, t, FileData::Bytes(vec![1])),
            Entry::hard_link("a/link", "b/f"),
            Entry::dir("b/sub", 0o755, t),
        ];
        let tree = build(&entries, t).unwrap();
        let inos: Vec<u32> = tree.inodes.iter().map(|i| i.ino).collect();
        // root, lost+found, a, b, b/f, b/sub
        assert_eq!(inos, vec![2, 11, 12, 13, 14, 15]);
        let f = tree.inodes.iter().find(|i| i.ino == 14).unwrap();
        assert_eq!(f.links, 2);
        let root = &tree.inodes[0];
        assert_eq!(root.links, 5); // ., .., a, b, lost+found
    }

    #[test]
    fn rejects_bad_paths() {
        let t = Timestamp::from_secs(1);
        for p in ["a/../b", "a//b", "x/."] {
            let e = vec![Entry::dir(p, 0o755, t)];
            assert!(build(&e, t).is_err(), "{p}");
        }
        let dup = vec![Entry::dir("a", 0o755, t), Entry::dir("/a/", 0o755, t)];
        assert!(build(&dup, t).is_err());
        let under_file = vec![
            Entry::file("a", 0o644, t, FileData::Bytes(vec![])),
            Entry::dir("a/b", 0o755, t),
        ];
        assert!(build(&under_file, t).is_err());
    }
}
