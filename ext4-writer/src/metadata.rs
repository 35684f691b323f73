//! Group metadata: inode tables, bitmaps, group descriptors, superblocks and
//! the resize inode's blocks. Pure: the tree and the finished plan in, byte
//! blocks out; `writer` puts them at their offsets.

use crate::Options;
use crate::checksum::crc32c_raw;
use crate::dir::INDEX_FL;
use crate::encode::{self, Desc, EXTENTS_FL, InodeInfo, SuperInfo};
use crate::geometry::{
    BLOCKS_PER_GROUP, BS, DESC_SIZE, FIRST_INO, Geometry, INODE_SIZE, JOURNAL_INO, Mapping,
    RESIZE_INO, has_super,
};
use crate::layout::{InodePlan, Plan};
use crate::tree::{Body, Inode, Tree};

/// The journal inode's i_block and its size in bytes.
pub type JournalRoot = ([u8; 60], u64);

/// Encoded blocks, each with the block number it goes to (a short one is
/// padded with zeros to a whole block when written).
pub type Blocks = Vec<(u64, Vec<u8>)>;

/// One block group's bitmaps and inode table, and the descriptor that
/// says where they go.
pub struct Group {
    /// Locations, free counts and bitmap checksums.
    pub desc: Desc,
    /// The block bitmap, padding bits set.
    pub block_bitmap: Vec<u8>,
    /// The inode bitmap, padding bits set.
    pub inode_bitmap: Vec<u8>,
    /// `None` when no inode of the group has content: the table is all zeros.
    pub inode_table: Option<Vec<u8>>,
}

/// All metadata that can only be encoded once file data is placed.
pub struct Metadata {
    /// The resize inode's map: each reserved descriptor block (listing its
    /// backup copies), then the doubly-indirect block. Empty without `grow_to`.
    pub resize_blocks: Blocks,
    /// Every group, in order.
    pub groups: Vec<Group>,
    /// The group descriptor table, stored after every superblock copy.
    pub gdt: Vec<u8>,
    /// Each superblock copy: its group's first block and that block's content.
    pub superblocks: Blocks,
    /// Free blocks in the whole filesystem.
    pub free_blocks: u64,
    /// Free inodes in the whole filesystem.
    pub free_inodes: u64,
}

/// Encodes the metadata of `tree` laid out by `plan`. `i_blocks` holds each
/// inode's i_block (parallel to `tree.inodes`); `journal` the journal's, if
/// there is one.
pub fn encode(
    tree: &Tree,
    plan: &Plan,
    i_blocks: &[[u8; 60]],
    journal: Option<JournalRoot>,
    seed: u32,
    opts: &Options,
) -> Metadata {
    let resize = resize_inode(plan, opts);
    let mut inodes = InodeGroups::new(&plan.geo);
    // Reserved inodes count as used; only the journal and the resize inode
    // have content.
    for ino in 1..FIRST_INO {
        inodes.mark(ino, false);
    }
    if let Some(root) = journal {
        inodes.put(JOURNAL_INO, &journal_inode(plan, root, opts), false, seed);
    }
    if let Some((info, _)) = &resize {
        inodes.put(RESIZE_INO, info, false, seed);
    }
    for ((ino, p), i_block) in tree.inodes.iter().zip(&plan.inodes).zip(i_blocks) {
        let is_dir = matches!(ino.body, Body::Dir { .. });
        inodes.put(ino.ino, &tree_inode(ino, p, *i_block), is_dir, seed);
    }
    let groups = groups(plan, inodes, block_bitmaps(plan), seed);
    let free_blocks = groups.iter().map(|g| g.desc.free_blocks as u64).sum();
    let free_inodes = groups.iter().map(|g| g.desc.free_inodes as u64).sum();
    let info = super_info(&plan.geo, free_blocks, free_inodes, journal, opts);
    Metadata {
        resize_blocks: resize.map_or_else(Vec::new, |(_, blocks)| blocks),
        gdt: descriptor_table(&groups, plan.geo.gdt_blocks, seed),
        groups,
        superblocks: superblocks(&plan.geo, &info),
        free_blocks,
        free_inodes,
    }
}

/// The journal's inode: a plain root-owned file mapped by extents.
fn journal_inode(plan: &Plan, (i_block, size): JournalRoot, opts: &Options) -> InodeInfo<'static> {
    InodeInfo {
        mode: 0o100600,
        uid: 0,
        gid: 0,
        size,
        links: 1,
        blocks: plan.journal.as_ref().map_or(0, Mapping::blocks),
        flags: EXTENTS_FL,
        i_block,
        xattr_block: 0,
        time: opts.timestamp,
        inline_xattrs: &[],
    }
}

/// The inode of a tree entry; `i_block` is its extent-tree root, used for
/// every kind with blocks.
fn tree_inode<'a>(ino: &'a Inode, p: &InodePlan, i_block: [u8; 60]) -> InodeInfo<'a> {
    let m = &ino.meta;
    let (size, flags, i_block) = match &ino.body {
        Body::Dir { .. } => {
            let shape = p.dir.as_ref().expect("directories have a shape");
            let index = if shape.indexed() { INDEX_FL } else { 0 };
            (shape.blocks() * BS, EXTENTS_FL | index, i_block)
        }
        Body::File { size, .. } => (*size, EXTENTS_FL, i_block),
        Body::Symlink(t) if t.len() >= 60 => (t.len() as u64, EXTENTS_FL, i_block),
        // A fast symlink keeps its target where the block map would be.
        Body::Symlink(t) => {
            let mut b = [0u8; 60];
            b[..t.len()].copy_from_slice(t);
            (t.len() as u64, 0, b)
        }
        Body::Device { major, minor } => (0, 0, encode::device_i_block(*major, *minor)),
        Body::Special => (0, 0, [0u8; 60]),
    };
    // Attributes live either in the inode or all in the xattr block.
    let inline = if p.xattr_block.is_none() {
        &m.xattrs[..]
    } else {
        &[]
    };
    InodeInfo {
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        size,
        links: ino.links as u16,
        blocks: p.map.blocks() + p.xattr_block.map_or(0, |_| 1),
        flags,
        i_block,
        xattr_block: p.xattr_block.unwrap_or(0),
        time: m.mtime,
        inline_xattrs: inline,
    }
}

/// The resize inode maps the reserved descriptor blocks, old-style: its
/// doubly-indirect block lists the primary reserved blocks, and each of those
/// (read as an indirect block) lists its copies in the backup groups.
/// Returns the inode and those blocks, or `None` if nothing is reserved.
fn resize_inode(plan: &Plan, opts: &Options) -> Option<(InodeInfo<'static>, Blocks)> {
    let dind = plan.resize_dind?;
    let geo = &plan.geo;
    let per_block = BS / 4;
    let backups: Vec<u64> = (1..geo.groups)
        .filter(|&g| has_super(g))
        .map(|g| geo.group_start(g))
        .collect();
    let mut blocks = Vec::new();
    let mut dind_buf = vec![0u8; BS as usize];
    for j in 0..geo.reserved_gdt {
        let primary = 1 + geo.gdt_blocks + j;
        let slot = ((geo.gdt_blocks + j) % per_block) as usize * 4;
        dind_buf[slot..slot + 4].copy_from_slice(&(primary as u32).to_le_bytes());
        let list: Vec<u8> = backups
            .iter()
            .flat_map(|start| ((start + primary) as u32).to_le_bytes())
            .collect();
        blocks.push((primary, list));
    }
    blocks.push((dind, dind_buf));
    let mut i_block = [0u8; 60];
    i_block[13 * 4..14 * 4].copy_from_slice(&(dind as u32).to_le_bytes());
    let inode = InodeInfo {
        mode: 0o100600,
        uid: 0,
        gid: 0,
        // What mke2fs records: the largest offset a doubly-indirect map reaches.
        size: (per_block * per_block + per_block + 12) * BS,
        links: 1,
        blocks: 1 + geo.reserved_gdt * (1 + backups.len() as u64),
        flags: 0,
        i_block,
        xattr_block: 0,
        time: opts.timestamp,
        inline_xattrs: &[],
    };
    Some((inode, blocks))
}

/// Per-group inode tables, bitmaps and counts, filled inode by inode.
struct InodeGroups {
    ipg: u32,
    table_len: usize,
    /// Empty until an inode of the group gets content.
    tables: Vec<Vec<u8>>,
    bitmaps: Vec<Vec<u8>>,
    used: Vec<u32>,
    dirs: Vec<u32>,
    /// Highest used inode index (1-based) in each group, for itable_unused.
    max_local: Vec<u32>,
}

impl InodeGroups {
    fn new(geo: &Geometry) -> Self {
        let groups = geo.groups as usize;
        InodeGroups {
            ipg: geo.inodes_per_group,
            table_len: geo.itable_blocks as usize * BS as usize,
            tables: vec![Vec::new(); groups],
            bitmaps: vec![vec![0u8; BS as usize]; groups],
            used: vec![0; groups],
            dirs: vec![0; groups],
            max_local: vec![0; groups],
        }
    }

    fn mark(&mut self, ino: u32, is_dir: bool) {
        let (g, local) = (((ino - 1) / self.ipg) as usize, (ino - 1) % self.ipg);
        self.bitmaps[g][local as usize / 8] |= 1 << (local % 8);
        self.used[g] += 1;
        self.dirs[g] += is_dir as u32;
        self.max_local[g] = self.max_local[g].max(local + 1);
    }

    fn put(&mut self, ino: u32, info: &InodeInfo, is_dir: bool, seed: u32) {
        let (g, local) = (((ino - 1) / self.ipg) as usize, (ino - 1) % self.ipg);
        let table = &mut self.tables[g];
        if table.is_empty() {
            table.resize(self.table_len, 0);
        }
        let at = local as usize * INODE_SIZE as usize;
        encode::inode(info, ino, seed, &mut table[at..]);
        if ino >= FIRST_INO {
            self.mark(ino, is_dir);
        } else {
            // Reserved inodes (root, journal) are already marked used.
            self.dirs[g] += is_dir as u32;
        }
    }
}

/// Block bitmaps of every group, from the plan's used runs.
fn block_bitmaps(plan: &Plan) -> Vec<Vec<u8>> {
    let mut bitmaps = vec![vec![0u8; BS as usize]; plan.geo.groups as usize];
    for (start, len) in plan.used() {
        for b in start..start + len {
            let g = (b / BLOCKS_PER_GROUP) as usize;
            let bit = (b % BLOCKS_PER_GROUP) as usize;
            bitmaps[g][bit / 8] |= 1 << (bit % 8);
        }
    }
    bitmaps
}

/// Finishes every group: pads the bitmaps, counts what is free and fills in
/// the descriptor with the bitmaps' checksums.
fn groups(plan: &Plan, inodes: InodeGroups, block_bitmaps: Vec<Vec<u8>>, seed: u32) -> Vec<Group> {
    let ipg = inodes.ipg;
    let parts = block_bitmaps
        .into_iter()
        .zip(inodes.bitmaps)
        .zip(inodes.tables);
    parts
        .enumerate()
        .map(|(g, ((mut block_bitmap, mut inode_bitmap), table))| {
            let len = plan.geo.group_len(g as u32) as usize;
            let used: u32 = block_bitmap.iter().map(|b| b.count_ones()).sum();
            set_padding(&mut block_bitmap, len);
            set_padding(&mut inode_bitmap, ipg as usize);
            let desc = Desc {
                block_bitmap: plan.block_bitmaps[g],
                inode_bitmap: plan.inode_bitmaps[g],
                inode_table: plan.inode_tables[g],
                free_blocks: len as u32 - used,
                free_inodes: ipg - inodes.used[g],
                used_dirs: inodes.dirs[g],
                itable_unused: ipg - inodes.max_local[g],
                block_bitmap_csum: crc32c_raw(seed, &block_bitmap),
                // Only the bits for real inodes are checksummed.
                inode_bitmap_csum: crc32c_raw(seed, &inode_bitmap[..ipg as usize / 8]),
            };
            Group {
                desc,
                block_bitmap,
                inode_bitmap,
                inode_table: (!table.is_empty()).then_some(table),
            }
        })
        .collect()
}

/// Sets the bits past `valid` up to the end of the bitmap block, as ext4
/// requires.
fn set_padding(bitmap: &mut [u8], valid: usize) {
    for bit in valid..bitmap.len() * 8 {
        bitmap[bit / 8] |= 1 << (bit % 8);
    }
}

/// The descriptor table: every group's descriptor, in whole blocks.
fn descriptor_table(groups: &[Group], gdt_blocks: u64, seed: u32) -> Vec<u8> {
    let mut gdt = vec![0u8; gdt_blocks as usize * BS as usize];
    for (g, group) in groups.iter().enumerate() {
        let at = g * DESC_SIZE as usize;
        encode::desc(&group.desc, g as u32, seed, &mut gdt[at..]);
    }
    gdt
}

/// What the superblock records, from the geometry, the counts and `opts`.
fn super_info<'a>(
    geo: &Geometry,
    free_blocks: u64,
    free_inodes: u64,
    journal: Option<JournalRoot>,
    opts: &'a Options,
) -> SuperInfo<'a> {
    SuperInfo {
        blocks: geo.blocks,
        inodes: geo.inodes(),
        inodes_per_group: geo.inodes_per_group,
        reserved_blocks: opts.reserved_blocks,
        free_blocks,
        free_inodes: free_inodes as u32,
        time: opts.timestamp,
        uuid: opts.uuid,
        hash_seed: opts.hash_seed,
        label: opts.label.as_bytes(),
        journal,
        reserved_gdt: geo.reserved_gdt as u16,
    }
}

/// The first block of every group with a superblock copy (sparse_super).
fn superblocks(geo: &Geometry, info: &SuperInfo) -> Blocks {
    let copies = (0..geo.groups).filter(|&g| has_super(g));
    copies
        .map(|g| {
            let mut first = vec![0u8; BS as usize];
            // Group 0's superblock sits 1024 bytes into the block (after the
            // boot sector area); backups start their group.
            let at = if g == 0 { 1024 } else { 0 };
            first[at..at + 1024].copy_from_slice(&encode::superblock(info, g));
            (geo.group_start(g), first)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, Timestamp, layout, tree};

    const T: Timestamp = Timestamp::from_secs(1_700_000_000);

    /// A tree with no file content (nothing to stream), so the plan is final
    /// once the extent trees are placed.
    fn entries() -> Vec<Entry> {
        vec![
            Entry::dir("etc", 0o755, T),
            Entry::file("etc/empty", 0o644, T, crate::FileData::Bytes(vec![])),
            Entry::symlink("bin", T, "usr/bin"),
            Entry::symlink("slow", T, "s".repeat(100)),
        ]
    }

    fn encoded(opts: &Options) -> (Plan, Metadata) {
        let entries = entries();
        let tree = tree::build(&entries, opts.timestamp).unwrap();
        let blocks = opts.size / BS;
        let inodes = layout::inode_target(&tree, opts, blocks).unwrap();
        let geo = Geometry::new(blocks, inodes, opts.grow_to.map(|b| b / BS)).unwrap();
        let mut plan = layout::plan(&tree, opts, geo).unwrap();
        plan.place_trees();
        let i_blocks: Vec<[u8; 60]> = plan
            .inodes
            .iter()
            .map(|p| encode::extent_tree(&p.map, 0).0)
            .collect();
        let meta = encode(&tree, &plan, &i_blocks, None, 1, opts);
        (plan, meta)
    }

    fn zero_bits(bitmap: &[u8]) -> u32 {
        bitmap.iter().map(|b| b.count_zeros()).sum()
    }

    #[test]
    fn superblock_copies_in_sparse_super_groups() {
        let (plan, meta) = encoded(&Options::new(4 * BLOCKS_PER_GROUP * BS, [1; 16]));
        let starts: Vec<u64> = meta.superblocks.iter().map(|s| s.0).collect();
        assert_eq!(starts, vec![0, BLOCKS_PER_GROUP, 3 * BLOCKS_PER_GROUP]);
        // The magic: 1024 bytes in for group 0, at the start for backups.
        assert_eq!(
            meta.superblocks[0].1[1024 + 0x38..1024 + 0x3A],
            [0x53, 0xEF]
        );
        assert_eq!(meta.superblocks[1].1[0x38..0x3A], [0x53, 0xEF]);
        assert_eq!(meta.gdt.len() as u64, plan.geo.gdt_blocks * BS);
    }

    #[test]
    fn free_counts_match_the_padded_bitmaps() {
        // A short last group: its bitmap is padded past the end.
        let blocks = BLOCKS_PER_GROUP + 7232;
        let (plan, meta) = encoded(&Options::new(blocks * BS, [1; 16]));
        assert_eq!(meta.groups.len(), 2);
        for g in &meta.groups {
            assert_eq!(g.desc.free_blocks, zero_bits(&g.block_bitmap));
            assert_eq!(g.desc.free_inodes, zero_bits(&g.inode_bitmap));
        }
        assert_eq!(zero_bits(&meta.groups[1].block_bitmap[7232 / 8..]), 0);
        let used_inodes = plan.geo.inodes() as u64 - meta.free_inodes;
        // The reserved ones (the root among them), lost+found and 4 entries.
        assert_eq!(used_inodes, 10 + 1 + 4);
        let used_blocks: u64 = plan.used().iter().map(|r| r.1).sum();
        assert_eq!(meta.free_blocks, blocks - used_blocks);
    }

    #[test]
    fn groups_without_inodes_have_no_table() {
        let (_, meta) = encoded(&Options::new(4 * BLOCKS_PER_GROUP * BS, [1; 16]));
        let tables: Vec<bool> = meta
            .groups
            .iter()
            .map(|g| g.inode_table.is_some())
            .collect();
        assert_eq!(tables, vec![true, false, false, false]);
    }

    #[test]
    fn resize_inode_maps_the_reserved_blocks() {
        let mut opts = Options::new(4 * BLOCKS_PER_GROUP * BS, [1; 16]);
        assert!(encoded(&opts).1.resize_blocks.is_empty());
        opts.grow_to = Some(64 << 30);
        let (plan, meta) = encoded(&opts);
        let geo = &plan.geo;
        assert!(geo.reserved_gdt > 0);
        let primary = 1 + geo.gdt_blocks;
        // Each reserved block lists its copies in backup groups 1 and 3.
        let copies = [BLOCKS_PER_GROUP + primary, 3 * BLOCKS_PER_GROUP + primary];
        let list: Vec<u8> = copies
            .iter()
            .flat_map(|&b| (b as u32).to_le_bytes())
            .collect();
        assert_eq!(meta.resize_blocks[0], (primary, list));
        let dind = plan.resize_dind.unwrap();
        assert_eq!(meta.resize_blocks.last().unwrap().0, dind);
        assert_eq!(meta.resize_blocks.len() as u64, geo.reserved_gdt + 1);
        // Inode 7's doubly-indirect pointer (i_block[13]).
        let table = meta.groups[0].inode_table.as_ref().unwrap();
        let at = (RESIZE_INO as usize - 1) * INODE_SIZE as usize + 0x28 + 13 * 4;
        assert_eq!(table[at..at + 4], (dind as u32).to_le_bytes());
    }
}
