//! Directory blocks: linear directories, and hashed (htree) directories for
//! those needing more than one block, so that lookups in big directories
//! stay fast. Pure.

use crate::checksum::crc32c_raw;
use crate::geometry::BS;
use crate::tree::{DirChild, ftype};

/// Inode flag: the directory has a hash-tree index.
pub const INDEX_FL: u32 = 0x1000;
/// Hash version recorded in the index root: half-MD4 (the mke2fs default).
const HASH_HALF_MD4: u8 = 1;
const BLOCK: usize = BS as usize;
/// Bytes of a leaf block available to entries (the rest is the checksum tail).
const DIR_SPACE: usize = BLOCK - 12;
/// Index entries in the root block (after ".", ".." and the root info, with
/// the 8-byte checksum tail) and in an interior node block.
const ROOT_LIMIT: usize = (BLOCK - 0x20 - 8) / 8;
const NODE_LIMIT: usize = (BLOCK - 0x08 - 8) / 8;

/// The half-MD4 directory hash as ext4 computes it with the unsigned-char
/// variant (the superblock says so): returns (major, minor) hash.
pub fn dx_hash(name: &[u8], seed: &[u32; 4]) -> (u32, u32) {
    let mut buf = if seed.iter().all(|&w| w == 0) {
        [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476]
    } else {
        *seed
    };
    let mut rest = name;
    while !rest.is_empty() {
        half_md4(&mut buf, &hash_words(rest));
        rest = &rest[rest.len().min(32)..];
    }
    (buf[1] & !1, buf[2])
}

/// Packs up to 32 bytes of `msg` into 8 words, padded with a pattern made
/// from the remaining length.
fn hash_words(msg: &[u8]) -> [u32; 8] {
    let len = msg.len() as u32;
    let mut pad = len | (len << 8);
    pad |= pad << 16;
    let mut out = [pad; 8];
    let mut val = pad;
    let mut n = 0;
    let take = msg.len().min(32);
    for (i, &c) in msg[..take].iter().enumerate() {
        val = u32::from(c).wrapping_add(val << 8);
        if i % 4 == 3 {
            out[n] = val;
            n += 1;
            val = pad;
        }
    }
    if n < 8 {
        out[n] = val;
    }
    out
}

/// The cut-down MD4 transform of the ext3/ext4 directory index.
fn half_md4(buf: &mut [u32; 4], x: &[u32; 8]) {
    const K2: u32 = 0o13240474631;
    const K3: u32 = 0o15666365641;
    let f = |x: u32, y: u32, z: u32| z ^ (x & (y ^ z));
    let g = |x: u32, y: u32, z: u32| (x & y).wrapping_add((x ^ y) & z);
    let h = |x: u32, y: u32, z: u32| x ^ y ^ z;
    let [mut a, mut b, mut c, mut d] = *buf;
    macro_rules! round {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $x:expr, $s:expr) => {
            $a = $a
                .wrapping_add($f($b, $c, $d))
                .wrapping_add($x)
                .rotate_left($s);
        };
    }
    for i in [0, 4] {
        round!(f, a, b, c, d, x[i], 3);
        round!(f, d, a, b, c, x[i + 1], 7);
        round!(f, c, d, a, b, x[i + 2], 11);
        round!(f, b, c, d, a, x[i + 3], 19);
    }
    for i in [1, 0] {
        round!(g, a, b, c, d, x[i].wrapping_add(K2), 3);
        round!(g, d, a, b, c, x[i + 2].wrapping_add(K2), 5);
        round!(g, c, d, a, b, x[i + 4].wrapping_add(K2), 9);
        round!(g, b, c, d, a, x[i + 6].wrapping_add(K2), 13);
    }
    for [p, q, r, t] in [[3, 7, 2, 6], [1, 5, 0, 4]] {
        round!(h, a, b, c, d, x[p].wrapping_add(K3), 3);
        round!(h, d, a, b, c, x[q].wrapping_add(K3), 9);
        round!(h, c, d, a, b, x[r].wrapping_add(K3), 11);
        round!(h, b, c, d, a, x[t].wrapping_add(K3), 15);
    }
    buf[0] = buf[0].wrapping_add(a);
    buf[1] = buf[1].wrapping_add(b);
    buf[2] = buf[2].wrapping_add(c);
    buf[3] = buf[3].wrapping_add(d);
}

/// Size of a directory entry with a name of `name_len` bytes.
fn dirent_len(name_len: usize) -> usize {
    (8 + name_len).div_ceil(4) * 4
}

/// Splits entries (by name length) into blocks; how many go in each.
fn pack(name_lens: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut blocks = vec![0usize];
    let mut used = 0;
    for n in name_lens {
        let len = dirent_len(n);
        if used + len > DIR_SPACE {
            blocks.push(0);
            used = 0;
        }
        used += len;
        *blocks.last_mut().unwrap() += 1;
    }
    blocks
}

/// How a directory's entries are arranged in blocks.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    /// Children (indices) in on-disk order: by name when linear, by hash when indexed.
    order: Vec<usize>,
    /// Major hash of each child in `order` (indexed directories only).
    hashes: Vec<u32>,
    /// Entries per leaf block (for linear directories, "." and ".." included).
    counts: Vec<usize>,
    /// Interior index blocks (0 or more) if indexed.
    index: Option<usize>,
    /// Empty blocks appended (lost+found is pre-sized like mke2fs does).
    extra: usize,
}

impl Shape {
    /// Arranges `children`; `min_blocks` pads linear directories with empty blocks.
    pub fn new(children: &[DirChild], seed: &[u32; 4], min_blocks: usize) -> Shape {
        let lens = [1, 2]
            .into_iter()
            .chain(children.iter().map(|c| c.name.len()));
        let counts = pack(lens);
        if counts.len() == 1 {
            let extra = min_blocks.saturating_sub(1);
            return Shape {
                order: (0..children.len()).collect(),
                counts,
                extra,
                ..Shape::default()
            };
        }
        let mut keyed: Vec<(u32, u32, usize)> = children
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (h, minor) = dx_hash(&c.name, seed);
                (h, minor, i)
            })
            .collect();
        // Name order breaks full-hash ties so the result stays deterministic.
        keyed.sort_by(|a, b| (a.0, a.1, &children[a.2].name).cmp(&(b.0, b.1, &children[b.2].name)));
        let order: Vec<usize> = keyed.iter().map(|k| k.2).collect();
        let leaves = pack(order.iter().map(|&i| children[i].name.len()));
        let nodes = match leaves.len() {
            n if n <= ROOT_LIMIT => 0,
            n if n.div_ceil(NODE_LIMIT) <= ROOT_LIMIT => n.div_ceil(NODE_LIMIT),
            // Beyond two levels ext4 needs large_dir; stay linear instead.
            _ => {
                return Shape {
                    order: (0..children.len()).collect(),
                    counts,
                    ..Shape::default()
                };
            }
        };
        Shape {
            order,
            hashes: keyed.iter().map(|k| k.0).collect(),
            counts: leaves,
            index: Some(nodes),
            extra: 0,
        }
    }

    /// Whether the directory carries a hash-tree index.
    pub fn indexed(&self) -> bool {
        self.index.is_some()
    }

    /// Blocks the directory occupies.
    pub fn blocks(&self) -> u64 {
        let index = self.index.map_or(0, |nodes| 1 + nodes);
        (index + self.counts.len() + self.extra) as u64
    }

    /// Encodes all blocks with checksum tails (`inode_seed` is the directory's).
    pub fn encode(&self, ino: u32, parent: u32, children: &[DirChild], inode_seed: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.blocks() as usize * BLOCK];
        let dots = [
            (&b"."[..], ino, ftype::DIR),
            (&b".."[..], parent, ftype::DIR),
        ];
        let kids = self.order.iter().map(|&i| {
            let c = &children[i];
            (&c.name[..], c.ino, c.ftype)
        });
        let Some(nodes) = self.index else {
            let all: Vec<_> = dots.into_iter().chain(kids).collect();
            let mut rest = &all[..];
            for (block, &n) in out
                .chunks_mut(BLOCK)
                .zip(self.counts.iter().chain(std::iter::repeat(&0)))
            {
                let (these, tail) = rest.split_at(n);
                rest = tail;
                leaf(block, these, inode_seed);
            }
            return out;
        };
        // Blocks: root, interior nodes, then leaves.
        let first_leaf = 1 + nodes;
        let all: Vec<_> = kids.collect();
        let mut leaf_keys = Vec::with_capacity(self.counts.len());
        let (mut at, mut prev_last) = (0usize, None);
        for (i, &n) in self.counts.iter().enumerate() {
            let (first, last) = (self.hashes[at], self.hashes[at + n - 1]);
            // Bit 0 flags a hash continued from the previous block.
            let key = if prev_last == Some(first) {
                first | 1
            } else {
                first
            };
            leaf_keys.push((key, (first_leaf + i) as u32));
            let block = &mut out[(first_leaf + i) * BLOCK..][..BLOCK];
            leaf(block, &all[at..at + n], inode_seed);
            at += n;
            prev_last = Some(last);
        }
        let root_keys = if nodes == 0 {
            leaf_keys
        } else {
            let mut keys = Vec::with_capacity(nodes);
            for (j, chunk) in leaf_keys.chunks(NODE_LIMIT).enumerate() {
                let block = &mut out[(1 + j) * BLOCK..][..BLOCK];
                block[4..6].copy_from_slice(&(BLOCK as u16).to_le_bytes()); // empty dirent over the block
                index_entries(block, 0x08, NODE_LIMIT, chunk, inode_seed);
                keys.push((chunk[0].0, (1 + j) as u32));
            }
            keys
        };
        let root = &mut out[..BLOCK];
        dirent(root, 0, b".", ino, ftype::DIR, 12);
        dirent(root, 12, b"..", parent, ftype::DIR, BLOCK - 12);
        root[0x18..0x1C].copy_from_slice(&0u32.to_le_bytes());
        root[0x1C] = HASH_HALF_MD4;
        root[0x1D] = 8; // info length
        root[0x1E] = (nodes > 0) as u8; // indirect levels
        index_entries(root, 0x20, ROOT_LIMIT, &root_keys, inode_seed);
        out
    }
}

fn dirent(block: &mut [u8], pos: usize, name: &[u8], ino: u32, ft: u8, rec: usize) {
    block[pos..pos + 4].copy_from_slice(&ino.to_le_bytes());
    block[pos + 4..pos + 6].copy_from_slice(&(rec as u16).to_le_bytes());
    block[pos + 6] = name.len() as u8;
    block[pos + 7] = ft;
    block[pos + 8..pos + 8 + name.len()].copy_from_slice(name);
}

/// A leaf (or linear) block: entries, the last one stretched to the tail,
/// then the 12-byte checksum tail.
fn leaf(block: &mut [u8], entries: &[(&[u8], u32, u8)], inode_seed: u32) {
    let mut pos = 0;
    for (k, (name, ino, ft)) in entries.iter().enumerate() {
        let rec = if k + 1 == entries.len() {
            DIR_SPACE - pos
        } else {
            dirent_len(name.len())
        };
        dirent(block, pos, name, *ino, *ft, rec);
        pos += rec;
    }
    if entries.is_empty() {
        block[4..6].copy_from_slice(&(DIR_SPACE as u16).to_le_bytes());
    }
    // Tail: inode 0, rec_len 12, name_len 0, type 0xDE, checksum.
    block[DIR_SPACE + 4..DIR_SPACE + 6].copy_from_slice(&12u16.to_le_bytes());
    block[DIR_SPACE + 7] = 0xDE;
    let csum = crc32c_raw(inode_seed, &block[..DIR_SPACE]);
    block[DIR_SPACE + 8..].copy_from_slice(&csum.to_le_bytes());
}

/// Writes limit, count and (hash, block) entries at `at` (the first entry's
/// hash slot holds limit and count), then the checksum tail after `limit`
/// entries.
fn index_entries(block: &mut [u8], at: usize, limit: usize, keys: &[(u32, u32)], inode_seed: u32) {
    block[at..at + 2].copy_from_slice(&(limit as u16).to_le_bytes());
    block[at + 2..at + 4].copy_from_slice(&(keys.len() as u16).to_le_bytes());
    for (k, &(hash, blk)) in keys.iter().enumerate() {
        let e = at + 8 * k;
        if k > 0 {
            block[e..e + 4].copy_from_slice(&hash.to_le_bytes());
        }
        block[e + 4..e + 8].copy_from_slice(&blk.to_le_bytes());
    }
    let tail = at + 8 * limit;
    let csum = crc32c_raw(inode_seed, &block[..at + 8 * keys.len()]);
    // The tail counts with its checksum field still zero.
    let csum = crc32c_raw(csum, &block[tail..tail + 8]);
    block[tail + 4..tail + 8].copy_from_slice(&csum.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(name: &str) -> DirChild {
        DirChild {
            name: name.as_bytes().to_vec(),
            ino: 12,
            ftype: ftype::REG,
        }
    }

    #[test]
    fn packing_of_long_names() {
        // (4084 - 24 for . and ..) / 264 bytes per 255-byte name = 15 per block.
        let names = |n| {
            (0..n)
                .map(|i| child(&format!("{i:0>255}")))
                .collect::<Vec<_>>()
        };
        assert!(!Shape::new(&names(15), &[0; 4], 1).indexed());
        let s = Shape::new(&names(16), &[0; 4], 1);
        assert!(s.indexed());
        assert_eq!(s.blocks(), 1 + 2); // index root, leaves of 15 and 1
    }

    #[test]
    fn hash_matches_debugfs() {
        // Values from `debugfs -R "dx_hash -h 4 [-s SEED] NAME"` (4: half-MD4, unsigned).
        let seed = [0x0403_0201, 0x0807_0605, 0x0c0b_0a09, 0x100f_0e0d];
        assert_eq!(dx_hash(b"hello", &[0; 4]), (0x1746_da32, 0x4200_13b5));
        let long = b"a-much-longer-name-that-spans-more-than-32-bytes.conf";
        assert_eq!(dx_hash(long, &seed), (0xc8b8_148e, 0xf1e0_d305));
        assert_eq!(
            dx_hash("größe".as_bytes(), &[0; 4]),
            (0x10ea_f0cc, 0x72c4_e7b6)
        );
    }

    #[test]
    fn lost_and_found_is_presized() {
        assert_eq!(Shape::new(&[], &[0; 4], 4).blocks(), 4);
    }
}
