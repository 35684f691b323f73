//! The rootfs as an in-memory tree: path → metadata and a reference to the
//! content. Nothing here depends on files or owners on the host.

use crate::store::{Store, StoreError, sha256_hex};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Where a regular file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    /// A blob in the store, by SHA-256.
    Blob(String),
    /// Small generated files kept in memory.
    Inline(#[serde(with = "hex_bytes")] Vec<u8>),
}

/// Inline bytes as hex, so JSON manifests stay compact and readable.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What kind of filesystem object a node is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Dir,
    File {
        size: u64,
        content: Content,
    },
    Symlink {
        target: String,
    },
    /// Another name for the regular file at `target` (a tree path).
    Hardlink {
        target: String,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One filesystem object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch; used for every timestamp of the inode.
    pub mtime: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Node {
    /// A root-owned directory.
    pub fn dir(mode: u32, mtime: i64) -> Self {
        Self::owned_by_root(Kind::Dir, mode, mtime)
    }

    /// A root-owned regular file with inline content.
    pub fn file(bytes: impl Into<Vec<u8>>, mode: u32, mtime: i64) -> Self {
        let bytes = bytes.into();
        Self::owned_by_root(
            Kind::File {
                size: bytes.len() as u64,
                content: Content::Inline(bytes),
            },
            mode,
            mtime,
        )
    }

    /// A root-owned symbolic link.
    pub fn symlink(target: impl Into<String>, mtime: i64) -> Self {
        Self::owned_by_root(
            Kind::Symlink {
                target: target.into(),
            },
            0o777,
            mtime,
        )
    }

    fn owned_by_root(kind: Kind, mode: u32, mtime: i64) -> Self {
        Node {
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: BTreeMap::new(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// Top-level directories that merged /usr turns into symlinks into /usr.
pub const MERGED_USR_DIRS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Normalises a path from a package or config: no leading `./` or `/`, no
/// trailing `/`, no empty or `.` components, and merged /usr applied to what
/// is below the top-level directories (`bin/ls` → `usr/bin/ls`); `bin`
/// itself stays, as it is the symlink into /usr.
pub fn canonical(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    match parts.first() {
        Some(first) if parts.len() > 1 && MERGED_USR_DIRS.contains(first) => {
            format!("usr/{}", parts.join("/"))
        }
        _ => parts.join("/"),
    }
}

/// The parent of a tree path (`""` is the root).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Which part of the root filesystem a node belongs to, from what changes
/// least to what changes most. The image lays each part out after the one
/// before, so that editing an overlay file moves no package's blocks (see
/// `ext4_writer::Entry::layer`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// Files unpacked from Debian packages, and their dpkg status.
    #[default]
    Packages,
    /// What the build makes from packages and sources: the slot's kernel
    /// and initramfs, the module index, cross-compiled binaries.
    Built,
    /// Overlays, accounts, tmpfiles, units and device settings.
    Local,
}

/// A whole root filesystem. Every node belongs to the layer that was
/// current when it was last inserted or changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    /// Layers of the nodes not in [`Layer::Packages`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    layers: BTreeMap<String, Layer>,
    /// The layer that inserts and changes go to.
    #[serde(skip)]
    current: Layer,
}

impl Tree {
    /// A tree holding only the root directory.
    pub fn new(mtime: i64) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(String::new(), Node::dir(0o755, mtime));
        Tree {
            nodes,
            ..Tree::default()
        }
    }

    /// Sends the inserts and changes that follow to `layer`.
    pub fn set_layer(&mut self, layer: Layer) {
        self.current = layer;
    }

    /// The layer of the node at a canonical path.
    pub fn layer(&self, path: &str) -> Layer {
        self.layers.get(path).copied().unwrap_or_default()
    }

    fn stamp(&mut self, path: &str) {
        match self.current {
            Layer::Packages => self.layers.remove(path),
            layer => self.layers.insert(path.to_string(), layer),
        };
    }

    /// Inserts a node at a canonical path, creating missing parent directories
    /// (root-owned, 0755, with the node's mtime). A directory replacing a
    /// directory keeps the children; anything else replaces what was there.
    pub fn insert(&mut self, path: &str, node: Node) {
        let path = canonical(path);
        self.ensure_dir(parent(&path), node.mtime);
        if !node.is_dir() && self.nodes.get(&path).is_some_and(Node::is_dir) {
            self.remove(&path);
        }
        self.stamp(&path);
        self.nodes.insert(path, node);
    }

    /// Creates a directory (and its parents) unless one exists.
    pub fn ensure_dir(&mut self, path: &str, mtime: i64) {
        let path = canonical(path);
        if self.nodes.get(&path).is_some_and(Node::is_dir) {
            return;
        }
        if !path.is_empty() {
            self.ensure_dir(parent(&path), mtime);
        }
        self.stamp(&path);
        self.nodes.insert(path, Node::dir(0o755, mtime));
    }

    /// Removes a node and everything below it.
    pub fn remove(&mut self, path: &str) {
        let path = canonical(path);
        let below: Vec<String> = self.children_range(&path).map(|(p, _)| p.clone()).collect();
        for child in below {
            self.nodes.remove(&child);
            self.layers.remove(&child);
        }
        self.nodes.remove(&path);
        self.layers.remove(&path);
    }

    /// Every node strictly below `path`, in path order.
    fn children_range(&self, path: &str) -> impl Iterator<Item = (&String, &Node)> {
        // All keys starting with "path/" sort in ["path/", "path0"): '0' follows '/'.
        let (start, end) = if path.is_empty() {
            (String::new(), "\u{10FFFF}".to_string())
        } else {
            (format!("{path}/"), format!("{path}0"))
        };
        self.nodes
            .range(start..end)
            .filter(move |(p, _)| !p.is_empty() && p.as_str() != path)
    }

    /// Direct and indirect children of a directory.
    pub fn descendants<'a>(
        &'a self,
        path: &str,
    ) -> impl Iterator<Item = (&'a String, &'a Node)> + 'a {
        let path = canonical(path);
        let range: Vec<(&String, &Node)> = self.children_range(&path).collect();
        range.into_iter()
    }

    /// The node at a path, without following symlinks.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&canonical(path))
    }

    /// Mutable access to a node (which moves to the current layer).
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        let path = canonical(path);
        if self.nodes.contains_key(&path) {
            self.stamp(&path);
        }
        self.nodes.get_mut(&path)
    }

    /// Follows symlinks (absolute and relative, up to 40 hops, like Linux) and
    /// returns the canonical path of the object reached.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut pending: Vec<String> = canonical(path).split('/').rev().map(String::from).collect();
        let mut current: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    current.pop();
                    continue;
                }
                _ => {}
            }
            current.push(part);
            let here = current.join("/");
            if let Some(Node {
                kind: Kind::Symlink { target },
                ..
            }) = self.nodes.get(&here)
            {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                current.pop();
                if target.starts_with('/') {
                    current.clear();
                }
                pending.extend(target.split('/').rev().map(String::from));
            }
        }
        let resolved = current.join("/");
        self.nodes.contains_key(&resolved).then_some(resolved)
    }

    /// Reads a regular file's bytes (following symlinks and hard links).
    pub fn read(&self, path: &str, store: &Store) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(resolved) = self.resolve(path) else {
            return Ok(None);
        };
        match &self.nodes[&resolved].kind {
            Kind::File { content, .. } => content_bytes(content, store).map(Some),
            Kind::Hardlink { target } => self.read(&target.clone(), store),
            _ => Ok(None),
        }
    }

    /// All nodes in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Total size of regular file contents (hard links counted once).
    pub fn content_size(&self) -> u64 {
        self.nodes
            .values()
            .map(|node| match node.kind {
                Kind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    /// A digest of every path, its layer, its metadata and its content
    /// hash: equal digests mean equal root filesystems, laid out alike.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for (path, node) in &self.nodes {
            hasher.update(path.as_bytes());
            hasher.update([0]);
            let layer = self.layer(path);
            if layer != Layer::Packages {
                hasher.update([b'L', layer as u8]);
            }
            hasher.update(serde_json::to_vec(&DigestView::from(node)).expect("serialisable"));
            hasher.update([b'\n']);
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }
}

/// Node metadata with inline content replaced by its hash, so the digest
/// treats inline and stored content alike.
#[derive(Serialize)]
struct DigestView<'a> {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: &'a BTreeMap<String, Vec<u8>>,
}

impl<'a> From<&'a Node> for DigestView<'a> {
    fn from(node: &'a Node) -> Self {
        let kind = match &node.kind {
            Kind::File {
                size,
                content: Content::Inline(bytes),
            } => Kind::File {
                size: *size,
                content: Content::Blob(sha256_hex(bytes)),
            },
            other => other.clone(),
        };
        DigestView {
            kind,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            mtime: node.mtime,
            xattrs: &node.xattrs,
        }
    }
}

/// The bytes of a content reference.
pub fn content_bytes(content: &Content, store: &Store) -> Result<Vec<u8>, StoreError> {
    match content {
        Content::Blob(sha256) => store.read(sha256),
        Content::Inline(bytes) => Ok(bytes.clone()),
    }
}

/// The SHA-256 of a content reference, without reading blobs.
pub fn content_sha256(content: &Content) -> String {
    match content {
        Content::Blob(sha256) => sha256.clone(),
        Content::Inline(bytes) => sha256_hex(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_apply_merged_usr() {
        assert_eq!(canonical("./bin/ls"), "usr/bin/ls");
        assert_eq!(
            canonical("/lib/aarch64-linux-gnu/"),
            "usr/lib/aarch64-linux-gnu"
        );
        assert_eq!(canonical("./"), "");
        assert_eq!(canonical("etc//passwd"), "etc/passwd");
        assert_eq!(canonical("library/x"), "library/x");
        assert_eq!(canonical("./bin/"), "bin", "the merged-/usr symlink itself");
    }

    #[test]
    fn merged_usr_symlinks_coexist_with_usr_dirs() {
        let mut tree = Tree::new(0);
        tree.ensure_dir("usr/bin", 0);
        tree.insert("bin", Node::symlink("usr/bin", 0));
        tree.insert("./bin/sh", Node::file("sh", 0o755, 0));
        assert_eq!(
            tree.get("bin").unwrap().kind,
            Kind::Symlink {
                target: "usr/bin".into()
            }
        );
        assert!(tree.get("usr/bin").unwrap().is_dir());
        assert_eq!(tree.resolve("/bin/sh").as_deref(), Some("usr/bin/sh"));
    }

    #[test]
    fn insert_creates_parents_and_remove_prunes_subtrees() {
        let mut tree = Tree::new(0);
        tree.insert("usr/share/doc/a/copyright", Node::file("c", 0o644, 5));
        tree.insert("usr/share/doc-base/x", Node::file("x", 0o644, 5));
        assert!(tree.get("usr/share/doc").unwrap().is_dir());
        tree.remove("usr/share/doc");
        assert!(tree.get("usr/share/doc/a/copyright").is_none());
        assert!(
            tree.get("usr/share/doc-base/x").is_some(),
            "sibling with common prefix survives"
        );
    }

    #[test]
    fn resolve_follows_relative_and_absolute_symlinks() {
        let mut tree = Tree::new(0);
        tree.insert("usr/lib/x/real.so.1", Node::file("elf", 0o644, 0));
        tree.insert("usr/lib/x/real.so", Node::symlink("real.so.1", 0));
        tree.insert("bin", Node::symlink("usr/bin", 0));
        tree.insert("usr/bin/sh", Node::symlink("/usr/lib/x/../x/real.so", 0));
        tree.insert("loop", Node::symlink("loop", 0));
        assert_eq!(
            tree.resolve("usr/bin/sh").as_deref(),
            Some("usr/lib/x/real.so.1")
        );
        assert_eq!(tree.resolve("loop"), None);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(tree.read("/usr/bin/sh", &store).unwrap().unwrap(), b"elf");
    }

    #[test]
    fn digest_depends_on_metadata_and_content() {
        let mut a = Tree::new(0);
        a.insert("etc/x", Node::file("1", 0o644, 0));
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.get_mut("etc/x").unwrap().mode = 0o600;
        assert_ne!(a.digest(), b.digest());
        let mut c = a.clone();
        c.insert("etc/x", Node::file("2", 0o644, 0));
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn nodes_belong_to_the_layer_they_were_last_set_in() {
        let mut tree = Tree::new(0);
        tree.insert("usr/bin/ls", Node::file("elf", 0o755, 0));
        tree.insert("etc/motd", Node::file("hi", 0o644, 0));
        tree.insert("etc/issue", Node::file("x", 0o644, 0));
        let packages_only = tree.digest();
        tree.set_layer(Layer::Local);
        assert_eq!(tree.layer("etc/motd"), Layer::Packages);
        tree.insert("etc/motd", Node::file("hello", 0o644, 0));
        tree.insert("etc/vinyl/a.conf", Node::file("a", 0o644, 0));
        tree.get_mut("etc/issue").unwrap().mode = 0o600;
        tree.ensure_dir("etc", 0);
        tree.set_layer(Layer::Built);
        tree.insert("usr/bin/vinyl-streamd", Node::file("elf", 0o755, 0));
        tree.remove("etc/vinyl");
        let layers: Vec<(&str, Layer)> = tree
            .iter()
            .map(|(p, _)| (p.as_str(), tree.layer(p)))
            .filter(|(_, layer)| *layer != Layer::Packages)
            .collect();
        assert_eq!(
            layers,
            [
                ("etc/issue", Layer::Local),
                ("etc/motd", Layer::Local),
                ("usr/bin/vinyl-streamd", Layer::Built)
            ]
        );

        // The same nodes laid in one layer are another layout, another digest.
        let mut flat = Tree::new(0);
        for (path, node) in tree.iter().filter(|(p, _)| !p.is_empty()) {
            flat.insert(path, node.clone());
        }
        assert_ne!(flat.digest(), tree.digest());
        assert_ne!(packages_only, tree.digest());
    }
}
