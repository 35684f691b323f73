//! On-disk structure encoding: superblock, group descriptors, inodes, extent
//! trees, directory blocks and the jbd2 superblock. Pure: values in, bytes out.

use crate::Timestamp;
use crate::checksum::crc32c_raw;
use crate::geometry::{
    BS, DESC_SIZE, EXTENTS_IN_INODE, EXTENTS_PER_BLOCK, EXTRA_ISIZE, Extent, FIRST_INO, INODE_SIZE,
    JOURNAL_INO, Mapping,
};
use crate::xattr::{self, Xattr};

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put32be(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Feature flags we set.
pub mod feature {
    pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
    pub const COMPAT_EXT_ATTR: u32 = 0x8;
    pub const COMPAT_RESIZE_INODE: u32 = 0x10;
    pub const COMPAT_DIR_INDEX: u32 = 0x20;
    pub const INCOMPAT_FILETYPE: u32 = 0x2;
    pub const INCOMPAT_EXTENTS: u32 = 0x40;
    pub const INCOMPAT_64BIT: u32 = 0x80;
    pub const INCOMPAT_FLEX_BG: u32 = 0x200;
    pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
    pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
    pub const RO_COMPAT_HUGE_FILE: u32 = 0x8;
    pub const RO_COMPAT_DIR_NLINK: u32 = 0x20;
    pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
    pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
}

/// Inode flag: data is mapped by extents.
pub const EXTENTS_FL: u32 = 0x80000;

/// Splits a seconds+nanos time into the 32-bit field and the `_extra` field
/// (two epoch bits extending the range, then nanoseconds).
pub fn encode_time(t: Timestamp) -> (u32, u32) {
    let lo = t.secs as u32;
    let epoch = ((t.secs - (t.secs as i32 as i64)) >> 32) as u32 & 3;
    (lo, epoch | (t.nanos.min(999_999_999) << 2))
}

/// Everything the superblock records.
pub struct SuperInfo<'a> {
    pub blocks: u64,
    pub inodes: u32,
    pub inodes_per_group: u32,
    pub reserved_blocks: u64,
    pub free_blocks: u64,
    pub free_inodes: u32,
    pub time: Timestamp,
    pub uuid: [u8; 16],
    pub hash_seed: [u8; 16],
    pub label: &'a [u8],
    /// The journal inode's i_block and size, if there is a journal.
    pub journal: Option<([u8; 60], u64)>,
    /// Descriptor blocks reserved for growth (with a resize inode).
    pub reserved_gdt: u16,
}

/// Encodes the 1024-byte superblock as stored in group `group`.
pub fn superblock(s: &SuperInfo, group: u32) -> [u8; 1024] {
    use feature::*;
    let mut b = [0u8; 1024];
    let (time, _) = encode_time(s.time);
    let time_hi = ((s.time.secs >> 32) & 0xff) as u8;
    put32(&mut b, 0x00, s.inodes);
    put32(&mut b, 0x04, s.blocks as u32);
    put32(&mut b, 0x08, s.reserved_blocks as u32);
    put32(&mut b, 0x0C, s.free_blocks as u32);
    put32(&mut b, 0x10, s.free_inodes);
    put32(&mut b, 0x14, 0); // first data block: 0 with 4 KiB blocks
    put32(&mut b, 0x18, 2); // log2(block size) - 10
    put32(&mut b, 0x1C, 2); // cluster size = block size
    put32(&mut b, 0x20, (BS * 8) as u32);
    put32(&mut b, 0x24, (BS * 8) as u32);
    put32(&mut b, 0x28, s.inodes_per_group);
    put32(&mut b, 0x30, time); // write time
    put16(&mut b, 0x36, 0xFFFF); // max mount count: -1, no forced checks
    put16(&mut b, 0x38, 0xEF53);
    put16(&mut b, 0x3A, 1); // clean
    put16(&mut b, 0x3C, 1); // on errors: continue
    put32(&mut b, 0x40, time); // last check
    put32(&mut b, 0x4C, 1); // dynamic revision
    put32(&mut b, 0x54, FIRST_INO);
    put16(&mut b, 0x58, INODE_SIZE as u16);
    put16(&mut b, 0x5A, group as u16);
    let journal = if s.journal.is_some() {
        COMPAT_HAS_JOURNAL
    } else {
        0
    };
    let resize = if s.reserved_gdt > 0 {
        COMPAT_RESIZE_INODE
    } else {
        0
    };
    put32(
        &mut b,
        0x5C,
        journal | resize | COMPAT_EXT_ATTR | COMPAT_DIR_INDEX,
    );
    put32(
        &mut b,
        0x60,
        INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG,
    );
    put32(
        &mut b,
        0x64,
        RO_COMPAT_SPARSE_SUPER
            | RO_COMPAT_LARGE_FILE
            | RO_COMPAT_HUGE_FILE
            | RO_COMPAT_DIR_NLINK
            | RO_COMPAT_EXTRA_ISIZE
            | RO_COMPAT_METADATA_CSUM,
    );
    b[0x68..0x78].copy_from_slice(&s.uuid);
    b[0x78..0x78 + s.label.len()].copy_from_slice(s.label);
    put16(&mut b, 0xCE, s.reserved_gdt);
    for (i, w) in s.hash_seed.chunks(4).enumerate() {
        b[0xEC + 4 * i..0xF0 + 4 * i].copy_from_slice(w);
    }
    b[0xFC] = 1; // default hash: half_md4, as mke2fs
    put16(&mut b, 0xFE, DESC_SIZE as u16);
    put32(&mut b, 0x100, 0x000C); // default mount options: user_xattr, acl
    put32(&mut b, 0x108, time); // mkfs time
    if let Some((i_block, size)) = &s.journal {
        put32(&mut b, 0xE0, JOURNAL_INO);
        b[0xFD] = 1; // s_jnl_blocks holds a copy of the journal's i_block
        b[0x10C..0x10C + 60].copy_from_slice(i_block);
        put32(&mut b, 0x10C + 60, (size >> 32) as u32);
        put32(&mut b, 0x10C + 64, *size as u32);
    }
    put32(&mut b, 0x150, (s.blocks >> 32) as u32);
    put32(&mut b, 0x154, (s.reserved_blocks >> 32) as u32);
    put32(&mut b, 0x158, (s.free_blocks >> 32) as u32);
    put16(&mut b, 0x15C, EXTRA_ISIZE); // min extra isize
    put16(&mut b, 0x15E, EXTRA_ISIZE); // want extra isize
    put32(&mut b, 0x160, 0x2); // unsigned directory hash
    b[0x174] = 4; // 16 groups per flex group, as mke2fs
    b[0x175] = 1; // checksum type: crc32c
    b[0x274] = time_hi; // write time high byte
    b[0x276] = time_hi; // mkfs time
    b[0x277] = time_hi; // last check
    let csum = crc32c_raw(!0, &b[..0x3FC]);
    put32(&mut b, 0x3FC, csum);
    b
}

/// One group descriptor's content.
#[derive(Clone, Copy, Debug, Default)]
pub struct Desc {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub used_dirs: u32,
    pub itable_unused: u32,
    pub block_bitmap_csum: u32,
    pub inode_bitmap_csum: u32,
}

/// Group flag: the inode table is known to be zeroed.
const BG_INODE_ZEROED: u16 = 0x4;

/// Encodes a 64-byte group descriptor with its checksum.
pub fn desc(d: &Desc, group: u32, fs_seed: u32, out: &mut [u8]) {
    let b = &mut out[..DESC_SIZE as usize];
    b.fill(0);
    put32(b, 0x00, d.block_bitmap as u32);
    put32(b, 0x04, d.inode_bitmap as u32);
    put32(b, 0x08, d.inode_table as u32);
    put16(b, 0x0C, d.free_blocks as u16);
    put16(b, 0x0E, d.free_inodes as u16);
    put16(b, 0x10, d.used_dirs as u16);
    put16(b, 0x12, BG_INODE_ZEROED);
    put16(b, 0x18, d.block_bitmap_csum as u16);
    put16(b, 0x1A, d.inode_bitmap_csum as u16);
    put16(b, 0x1C, d.itable_unused as u16);
    put32(b, 0x20, (d.block_bitmap >> 32) as u32);
    put32(b, 0x24, (d.inode_bitmap >> 32) as u32);
    put32(b, 0x28, (d.inode_table >> 32) as u32);
    put16(b, 0x2C, (d.free_blocks >> 16) as u16);
    put16(b, 0x2E, (d.free_inodes >> 16) as u16);
    put16(b, 0x30, (d.used_dirs >> 16) as u16);
    put16(b, 0x32, (d.itable_unused >> 16) as u16);
    put16(b, 0x38, (d.block_bitmap_csum >> 16) as u16);
    put16(b, 0x3A, (d.inode_bitmap_csum >> 16) as u16);
    let csum = crc32c_raw(crc32c_raw(fs_seed, &group.to_le_bytes()), b);
    put16(b, 0x1E, csum as u16);
}

/// One inode's fields.
pub struct InodeInfo<'a> {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u16,
    /// Blocks used (data, extent tree, xattr block), in filesystem blocks.
    pub blocks: u64,
    pub flags: u32,
    pub i_block: [u8; 60],
    pub xattr_block: u64,
    pub time: Timestamp,
    /// Attributes stored inside the inode (empty if none or in a block).
    pub inline_xattrs: &'a [Xattr],
}

/// Encodes a 256-byte inode with its checksum.
pub fn inode(i: &InodeInfo, ino: u32, fs_seed: u32, out: &mut [u8]) {
    let b = &mut out[..INODE_SIZE as usize];
    b.fill(0);
    let (t, t_extra) = encode_time(i.time);
    let sectors = i.blocks * (BS / 512);
    put16(b, 0x00, i.mode);
    put16(b, 0x02, i.uid as u16);
    put32(b, 0x04, i.size as u32);
    for off in [0x08, 0x0C, 0x10] {
        put32(b, off, t); // atime, ctime, mtime
    }
    put16(b, 0x18, i.gid as u16);
    put16(b, 0x1A, i.links);
    put32(b, 0x1C, sectors as u32);
    put32(b, 0x20, i.flags);
    b[0x28..0x64].copy_from_slice(&i.i_block);
    put32(b, 0x68, i.xattr_block as u32);
    put32(b, 0x6C, (i.size >> 32) as u32);
    put16(b, 0x74, (sectors >> 32) as u16);
    put16(b, 0x76, (i.xattr_block >> 32) as u16);
    put16(b, 0x78, (i.uid >> 16) as u16);
    put16(b, 0x7A, (i.gid >> 16) as u16);
    put16(b, 0x80, EXTRA_ISIZE);
    for off in [0x84, 0x88, 0x8C, 0x94] {
        put32(b, off, t_extra); // ctime, mtime, atime, crtime extra
    }
    put32(b, 0x90, t); // crtime
    if !i.inline_xattrs.is_empty() {
        xattr::encode_in_inode(i.inline_xattrs, &mut b[128 + EXTRA_ISIZE as usize..]);
    }
    // Checksum over the whole inode with both checksum halves zero; the
    // generation is 0.
    let seed = crate::checksum::inode_seed(fs_seed, ino, 0);
    let csum = crc32c_raw(seed, b);
    put16(b, 0x7C, csum as u16);
    put16(b, 0x82, (csum >> 16) as u16);
}

/// i_block for a device node: old encoding when it fits, else the new one.
pub fn device_i_block(major: u32, minor: u32) -> [u8; 60] {
    let mut b = [0u8; 60];
    if major < 256 && minor < 256 {
        put32(&mut b, 0, (major << 8) | minor);
    } else {
        put32(
            &mut b,
            4,
            (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12),
        );
    }
    b
}

fn extent_header(b: &mut [u8], entries: usize, max: usize, depth: u16) {
    put16(b, 0, 0xF30A);
    put16(b, 2, entries as u16);
    put16(b, 4, max as u16);
    put16(b, 6, depth);
}

/// Builds i_block and the tree blocks for `map`. Tree blocks are taken in
/// order from `map.tree`, leaves first.
pub fn extent_tree(map: &Mapping, inode_seed: u32) -> ([u8; 60], Vec<(u64, Vec<u8>)>) {
    // Each entry is (first logical block, 12 encoded bytes).
    let mut level: Vec<(u32, [u8; 12])> = map.extents.iter().map(leaf_entry).collect();
    let mut blocks = Vec::new();
    let mut tree = map.tree.iter();
    let mut depth = 0u16;
    while level.len() > EXTENTS_IN_INODE {
        let mut up = Vec::new();
        for chunk in level.chunks(EXTENTS_PER_BLOCK) {
            let at = *tree.next().expect("planned enough extent-tree blocks");
            let mut b = vec![0u8; BS as usize];
            extent_header(&mut b, chunk.len(), EXTENTS_PER_BLOCK, depth);
            for (k, (_, e)) in chunk.iter().enumerate() {
                b[12 + 12 * k..24 + 12 * k].copy_from_slice(e);
            }
            let tail = 12 + 12 * EXTENTS_PER_BLOCK;
            let csum = crc32c_raw(inode_seed, &b[..tail]);
            put32(&mut b, tail, csum);
            blocks.push((at, b));
            let mut idx = [0u8; 12];
            put32(&mut idx, 0, chunk[0].0);
            put32(&mut idx, 4, at as u32);
            put16(&mut idx, 8, (at >> 32) as u16);
            up.push((chunk[0].0, idx));
        }
        level = up;
        depth += 1;
    }
    let mut i_block = [0u8; 60];
    extent_header(&mut i_block, level.len(), EXTENTS_IN_INODE, depth);
    for (k, (_, e)) in level.iter().enumerate() {
        i_block[12 + 12 * k..24 + 12 * k].copy_from_slice(e);
    }
    (i_block, blocks)
}

fn leaf_entry(e: &Extent) -> (u32, [u8; 12]) {
    let mut b = [0u8; 12];
    put32(&mut b, 0, e.logical);
    put16(&mut b, 4, e.len as u16);
    put16(&mut b, 6, (e.start >> 32) as u16);
    put32(&mut b, 8, e.start as u32);
    (e.logical, b)
}

/// The jbd2 superblock (version 2, empty log, no features) for a journal of
/// `blocks` blocks.
pub fn journal_superblock(blocks: u32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    put32be(&mut b, 0x00, 0xC03B_3998); // magic
    put32be(&mut b, 0x04, 4); // superblock v2
    put32be(&mut b, 0x0C, BS as u32);
    put32be(&mut b, 0x10, blocks); // s_maxlen
    put32be(&mut b, 0x14, 1); // s_first
    put32be(&mut b, 0x18, 1); // s_sequence
    b[0x30..0x40].copy_from_slice(uuid);
    put32be(&mut b, 0x40, 1); // s_nr_users
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_epoch_bits() {
        assert_eq!(encode_time(Timestamp::from_secs(-1)), (u32::MAX, 0));
        assert_eq!(encode_time(Timestamp::from_secs(1 << 31)), (1 << 31, 1));
        assert_eq!(encode_time(Timestamp { secs: 5, nanos: 7 }), (5, 7 << 2));
    }
}
