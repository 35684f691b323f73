//! kmod's binary index format (`modules.*.bin`): a prefix trie mapping a key
//! to values sorted by priority.
//!
//! The layout follows kmod's `tools/depmod.c` (`index_write`) and
//! `libkmod/libkmod-index.c`: all integers big-endian; a 12-byte header
//! (magic `0xB007F457`, version `0x00020001`, offset of the root node); then
//! nodes. A node offset carries flags in its top nibble (prefix, values,
//! children). A node is: its prefix as a NUL-terminated string (if any);
//! if it has children, `first` and `last` child characters and one offset per
//! character in `first..=last` (0 for none); if it has values, their count
//! and per value its priority and a NUL-terminated string.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::Error;

const MAGIC: u32 = 0xB007_F457;
const VERSION: u32 = 0x0002_0001;
const FLAG_PREFIX: u32 = 0x8000_0000;
const FLAG_VALUES: u32 = 0x4000_0000;
const FLAG_CHILDREN: u32 = 0x2000_0000;
const HEADER_LEN: u32 = 12;

/// Where nodes go in the file. Both layouts are read by every kmod version;
/// they differ only in byte order of the nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IndexLayout {
    /// A node before its children, as `depmod` of kmod ≥ 34 (Debian trixie)
    /// writes it.
    #[default]
    PreOrder,
    /// Children before their node, as `depmod` of kmod ≤ 33 (Debian bookworm)
    /// writes it.
    PostOrder,
}

/// An in-memory index; [`Index::to_bytes`] serialises it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Index {
    root: Node,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Node {
    prefix: Vec<u8>,
    /// (priority, value), ascending priority; equal priorities newest first
    /// (that is where kmod inserts them).
    values: Vec<(u32, String)>,
    children: BTreeMap<u8, Node>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Adds `value` under `key` with `priority` (lower sorts first). Keys and
    /// values must be 7-bit ASCII without NUL bytes.
    pub fn insert(&mut self, key: &str, value: &str, priority: u32) -> Result<(), Error> {
        for (what, text) in [("index key", key), ("index value", value)] {
            if !text.bytes().all(|b| (1..0x80).contains(&b)) {
                return Err(Error::NonAscii {
                    what,
                    text: text.to_owned(),
                });
            }
        }
        let mut node = &mut self.root;
        let mut key = key.as_bytes();
        loop {
            let common = node
                .prefix
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count();
            if common < node.prefix.len() {
                // Split: this node keeps prefix[..common], the rest moves
                // into a child at prefix[common].
                let rest = node.prefix.split_off(common + 1);
                let ch = node.prefix.pop().expect("split point exists");
                let child = Node {
                    prefix: rest,
                    values: std::mem::take(&mut node.values),
                    children: std::mem::take(&mut node.children),
                };
                node.children.insert(ch, child);
            }
            key = &key[common..];
            let Some((&ch, rest)) = key.split_first() else {
                node.add_value(value, priority);
                return Ok(());
            };
            match node.children.entry(ch) {
                Entry::Vacant(slot) => {
                    slot.insert(Node {
                        prefix: rest.to_vec(),
                        ..Node::default()
                    })
                    .add_value(value, priority);
                    return Ok(());
                }
                Entry::Occupied(child) => {
                    node = child.into_mut();
                    key = rest;
                }
            }
        }
    }

    /// Serialises the index in kmod's format.
    pub fn to_bytes(&self, layout: IndexLayout) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.root.total_size() as usize + 12);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        let root = match layout {
            IndexLayout::PreOrder => {
                self.root.write_pre_order(&mut out);
                HEADER_LEN | self.root.flags()
            }
            IndexLayout::PostOrder => self.root.write_post_order(&mut out),
        };
        out[8..12].copy_from_slice(&root.to_be_bytes());
        out
    }
}

impl Node {
    /// Inserts before values of equal or higher priority, like kmod.
    fn add_value(&mut self, value: &str, priority: u32) {
        let at = self.values.partition_point(|&(p, _)| p < priority);
        self.values.insert(at, (priority, value.to_owned()));
    }

    fn flags(&self) -> u32 {
        let mut flags = 0;
        if !self.prefix.is_empty() {
            flags |= FLAG_PREFIX;
        }
        if !self.values.is_empty() {
            flags |= FLAG_VALUES;
        }
        if !self.children.is_empty() {
            flags |= FLAG_CHILDREN;
        }
        flags
    }

    fn child_range(&self) -> Option<(u8, u8)> {
        Some((
            *self.children.first_key_value()?.0,
            *self.children.last_key_value()?.0,
        ))
    }

    /// Bytes of this node alone.
    fn size(&self) -> u32 {
        let mut size = 0;
        if !self.prefix.is_empty() {
            size += self.prefix.len() + 1;
        }
        if let Some((first, last)) = self.child_range() {
            size += 2 + 4 * (usize::from(last - first) + 1);
        }
        if !self.values.is_empty() {
            size += 4 + self
                .values
                .iter()
                .map(|(_, v)| 4 + v.len() + 1)
                .sum::<usize>();
        }
        u32::try_from(size).expect("index node fits in 4 GiB")
    }

    /// Bytes of this node and all its descendants.
    fn total_size(&self) -> u32 {
        self.size() + self.children.values().map(Node::total_size).sum::<u32>()
    }

    /// Writes the node's own bytes given its children's offsets (with flags).
    fn write_self(&self, out: &mut Vec<u8>, child_offsets: &BTreeMap<u8, u32>) {
        if !self.prefix.is_empty() {
            out.extend_from_slice(&self.prefix);
            out.push(0);
        }
        if let Some((first, last)) = self.child_range() {
            out.push(first);
            out.push(last);
            for ch in first..=last {
                let offset = child_offsets.get(&ch).copied().unwrap_or(0);
                out.extend_from_slice(&offset.to_be_bytes());
            }
        }
        if !self.values.is_empty() {
            let count = u32::try_from(self.values.len()).expect("fewer than 4 G values");
            out.extend_from_slice(&count.to_be_bytes());
            for (priority, value) in &self.values {
                out.extend_from_slice(&priority.to_be_bytes());
                out.extend_from_slice(value.as_bytes());
                out.push(0);
            }
        }
    }

    /// kmod ≥ 34: node, then children in character order.
    fn write_pre_order(&self, out: &mut Vec<u8>) {
        let mut next = out.len() as u32 + self.size();
        let mut offsets = BTreeMap::new();
        for (&ch, child) in &self.children {
            offsets.insert(ch, next | child.flags());
            next += child.total_size();
        }
        self.write_self(out, &offsets);
        for child in self.children.values() {
            child.write_pre_order(out);
        }
    }

    /// kmod ≤ 33: children in character order, then the node. Returns the
    /// node's offset with flags.
    fn write_post_order(&self, out: &mut Vec<u8>) -> u32 {
        let offsets = self
            .children
            .iter()
            .map(|(&ch, child)| (ch, child.write_post_order(out)))
            .collect();
        let offset = out.len() as u32 | self.flags();
        self.write_self(out, &offsets);
        offset
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn be32(bytes: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn cstr(bytes: &[u8], at: usize) -> (String, usize) {
        let len = bytes[at..].iter().position(|&b| b == 0).unwrap();
        (
            String::from_utf8(bytes[at..at + len].to_vec()).unwrap(),
            at + len + 1,
        )
    }

    /// Reads an index file back the way libkmod does: every (key, priority,
    /// value), in trie order.
    pub(crate) fn dump(bytes: &[u8]) -> Vec<(String, u32, String)> {
        assert_eq!(be32(bytes, 0), MAGIC);
        assert_eq!(be32(bytes, 4), VERSION);
        let mut out = Vec::new();
        walk(bytes, be32(bytes, 8), String::new(), &mut out);
        out
    }

    fn walk(bytes: &[u8], offset: u32, mut key: String, out: &mut Vec<(String, u32, String)>) {
        let mut at = (offset & 0x0FFF_FFFF) as usize;
        if offset & FLAG_PREFIX != 0 {
            let (prefix, next) = cstr(bytes, at);
            key.push_str(&prefix);
            at = next;
        }
        let mut children = Vec::new();
        if offset & FLAG_CHILDREN != 0 {
            let (first, last) = (bytes[at], bytes[at + 1]);
            at += 2;
            for ch in first..=last {
                let child = be32(bytes, at);
                at += 4;
                if child != 0 {
                    children.push((ch, child));
                }
            }
        }
        if offset & FLAG_VALUES != 0 {
            let count = be32(bytes, at);
            at += 4;
            for _ in 0..count {
                let priority = be32(bytes, at);
                let (value, next) = cstr(bytes, at + 4);
                at = next;
                out.push((key.clone(), priority, value));
            }
        }
        for (ch, child) in children {
            walk(bytes, child, format!("{key}{}", ch as char), out);
        }
    }

    #[test]
    fn tiny_index_bytes_match_kmod_layouts() {
        let mut index = Index::new();
        index.insert("ab", "x", 0).unwrap();
        let header = [0xB0, 0x07, 0xF4, 0x57, 0, 2, 0, 1];
        let mut pre = header.to_vec();
        pre.extend([0x20, 0, 0, 12, b'a', b'a', 0xC0, 0, 0, 18]);
        pre.extend([b'b', 0, 0, 0, 0, 1, 0, 0, 0, 0, b'x', 0]);
        assert_eq!(index.to_bytes(IndexLayout::PreOrder), pre);
        let mut post = header.to_vec();
        post.extend([0x20, 0, 0, 24, b'b', 0, 0, 0, 0, 1, 0, 0, 0, 0, b'x', 0]);
        post.extend([b'a', b'a', 0xC0, 0, 0, 12]);
        assert_eq!(index.to_bytes(IndexLayout::PostOrder), post);
    }

    #[test]
    fn empty_index_is_just_a_header() {
        let bytes = Index::new().to_bytes(IndexLayout::PreOrder);
        assert_eq!(bytes, [0xB0, 0x07, 0xF4, 0x57, 0, 2, 0, 1, 0, 0, 0, 12]);
        assert_eq!(Index::new().to_bytes(IndexLayout::PostOrder), bytes);
    }

    #[test]
    fn splits_prefixes_and_orders_values_like_kmod() {
        let mut index = Index::new();
        for (key, value, priority) in [
            ("snd_pcm", "pcm", 3),
            ("snd", "snd", 1),
            ("snd_pcm_dmaengine", "dma", 2),
            ("snd_timer", "timer", 0),
            ("alias", "b", 5),
            ("alias", "a", 2),
            ("alias", "c", 5),
        ] {
            index.insert(key, value, priority).unwrap();
        }
        let expected = [
            ("alias", 2, "a"),
            // Equal priorities: the later insertion comes first, as in kmod.
            ("alias", 5, "c"),
            ("alias", 5, "b"),
            ("snd", 1, "snd"),
            ("snd_pcm", 3, "pcm"),
            ("snd_pcm_dmaengine", 2, "dma"),
            ("snd_timer", 0, "timer"),
        ]
        .map(|(k, p, v)| (k.to_owned(), p, v.to_owned()));
        for layout in [IndexLayout::PreOrder, IndexLayout::PostOrder] {
            assert_eq!(dump(&index.to_bytes(layout)), expected, "{layout:?}");
        }
        // The root has no prefix; "snd" branches at '_' after a shared prefix.
        assert!(index.root.prefix.is_empty());
        let s = &index.root.children[&b's'];
        assert_eq!(s.prefix, b"nd");
        assert_eq!(s.children.keys().copied().collect::<Vec<_>>(), [b'_']);
    }

    #[test]
    fn rejects_non_ascii() {
        let err = Index::new().insert("caf\u{e9}", "x", 0).unwrap_err();
        assert!(err.to_string().contains("7-bit ASCII"), "{err}");
    }
}
