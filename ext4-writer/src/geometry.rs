//! The fixed shape of the filesystem, shared by planning and encoding: block,
//! inode and descriptor sizes, the reserved inode numbers, the block-group
//! geometry, and the extent mapping of an inode. A leaf module: it uses
//! nothing else of the crate, so every other module may use it.

/// Block size in bytes (the only one supported).
pub const BS: u64 = 4096;
/// Blocks per group: one bitmap block's worth.
pub const BLOCKS_PER_GROUP: u64 = BS * 8;
/// On-disk inode size.
pub const INODE_SIZE: u64 = 256;
/// Bytes of inode beyond the original 128 (up to and including i_projid).
pub const EXTRA_ISIZE: u16 = 32;
/// Group descriptor size (64bit feature).
pub const DESC_SIZE: u64 = 64;
/// Longest initialized extent.
pub const MAX_EXTENT_LEN: u64 = 32768;

/// The root directory's inode number.
pub const ROOT_INO: u32 = 2;
/// The resize inode, which maps descriptor blocks reserved for growth.
pub const RESIZE_INO: u32 = 7;
/// The journal's inode number.
pub const JOURNAL_INO: u32 = 8;
/// The first inode that is not reserved; inodes below it always count as used.
pub const FIRST_INO: u32 = 11;
/// lost+found takes the first non-reserved inode, as mke2fs does.
pub const LPF_INO: u32 = FIRST_INO;

/// Sizes of the block groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Filesystem size in blocks.
    pub blocks: u64,
    /// Number of block groups.
    pub groups: u32,
    /// Inodes in each group (a multiple of the inodes per block).
    pub inodes_per_group: u32,
    /// Blocks of each group's inode table.
    pub itable_blocks: u64,
    /// Blocks of the group descriptor table.
    pub gdt_blocks: u64,
    /// Descriptor blocks reserved for online growth (resize_inode).
    pub reserved_gdt: u64,
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    while n > 1 && n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

/// sparse_super: which groups carry a superblock and descriptor backup.
pub fn has_super(group: u32) -> bool {
    group <= 1 || is_power_of(group, 3) || is_power_of(group, 5) || is_power_of(group, 7)
}

impl Geometry {
    /// Groups for `blocks` blocks holding at least `inodes` inodes, with
    /// descriptor blocks reserved for growing online to `grow_to` blocks;
    /// `None` if that is impossible (too small, or too many inodes per group).
    pub fn new(blocks: u64, inodes: u64, grow_to: Option<u64>) -> Option<Geometry> {
        let mut blocks = blocks;
        let mut groups = blocks.div_ceil(BLOCKS_PER_GROUP);
        let gdt = |groups: u64| (groups * DESC_SIZE).div_ceil(BS);
        // The resize inode maps blocks with 32-bit numbers and one indirect
        // block per reserved descriptor block: at most 1024 of them.
        let reserved = |groups: u64| match grow_to {
            Some(max) => {
                let max_groups = max.min(u32::MAX as u64).div_ceil(BLOCKS_PER_GROUP);
                gdt(max_groups).saturating_sub(gdt(groups)).min(BS / 4)
            }
            None => 0,
        };
        // A last group too short for its own backup superblock is dropped.
        if groups > 1 {
            let last = groups - 1;
            let backup = if has_super(last as u32) {
                1 + gdt(groups) + reserved(groups)
            } else {
                0
            };
            if blocks - last * BLOCKS_PER_GROUP <= backup {
                groups -= 1;
                blocks = groups * BLOCKS_PER_GROUP;
            }
        }
        if groups == 0 || groups > u32::MAX as u64 {
            return None;
        }
        let per_block = BS / INODE_SIZE;
        let ipg = inodes.div_ceil(groups).max(per_block).div_ceil(per_block) * per_block;
        if ipg > BS * 8 || ipg * groups > u32::MAX as u64 {
            return None;
        }
        Some(Geometry {
            blocks,
            groups: groups as u32,
            inodes_per_group: ipg as u32,
            itable_blocks: ipg * INODE_SIZE / BS,
            gdt_blocks: gdt(groups),
            reserved_gdt: reserved(groups),
        })
    }

    /// First block of `group`.
    pub fn group_start(&self, group: u32) -> u64 {
        group as u64 * BLOCKS_PER_GROUP
    }

    /// Number of blocks in `group` (the last one may be short).
    pub fn group_len(&self, group: u32) -> u64 {
        (self.blocks - self.group_start(group)).min(BLOCKS_PER_GROUP)
    }

    /// Blocks at the start of `group` taken by a superblock and descriptor
    /// copy (including reserved descriptor blocks).
    pub fn backup_len(&self, group: u32) -> u64 {
        if has_super(group) {
            1 + self.gdt_blocks + self.reserved_gdt
        } else {
            0
        }
    }

    /// Total inodes.
    pub fn inodes(&self) -> u32 {
        self.inodes_per_group * self.groups
    }
}

/// A run of blocks mapped at a logical block of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First logical block of the file covered.
    pub logical: u32,
    /// First physical block.
    pub start: u64,
    /// Length in blocks, at most [`MAX_EXTENT_LEN`].
    pub len: u32,
}

/// Where an inode's data lives: extents plus the blocks of its extent tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// The data, in logical order; holes lie between extents.
    pub extents: Vec<Extent>,
    /// Blocks for the extent tree beyond the inode, leaves first.
    pub tree: Vec<u64>,
}

impl Mapping {
    /// Blocks counted in `i_blocks`: data plus tree.
    pub fn blocks(&self) -> u64 {
        self.extents.iter().map(|e| e.len as u64).sum::<u64>() + self.tree.len() as u64
    }

    /// Appends `runs` at logical block `logical`, merging with the last
    /// extent where both are contiguous and splitting at the extent limit.
    pub fn push(&mut self, mut logical: u64, runs: &[(u64, u64)]) {
        for &(mut start, mut len) in runs {
            if let Some(last) = self.extents.last_mut() {
                let contiguous = last.logical as u64 + last.len as u64 == logical
                    && last.start + last.len as u64 == start;
                let room = (MAX_EXTENT_LEN - last.len as u64).min(len);
                if contiguous && room > 0 {
                    last.len += room as u32;
                    (logical, start, len) = (logical + room, start + room, len - room);
                }
            }
            while len > 0 {
                let l = len.min(MAX_EXTENT_LEN);
                self.extents.push(Extent {
                    logical: logical as u32,
                    start,
                    len: l as u32,
                });
                (logical, start, len) = (logical + l, start + l, len - l);
            }
        }
    }
}

/// Entries in a 4 KiB extent-tree block (after the 12-byte header, before
/// the 4-byte checksum tail).
pub const EXTENTS_PER_BLOCK: usize = (BS as usize - 12) / 12;
/// Entries in the inode's i_block.
pub const EXTENTS_IN_INODE: usize = 4;

/// Extent-tree blocks (leaves and index blocks) needed for `n` extents.
/// Planning reserves them and encoding fills them, so both count here.
pub fn tree_blocks_needed(n: usize) -> u64 {
    let (mut count, mut total) = (n, 0);
    while count > EXTENTS_IN_INODE {
        count = count.div_ceil(EXTENTS_PER_BLOCK);
        total += count as u64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_super_groups() {
        let with: Vec<u32> = (0..50).filter(|&g| has_super(g)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27, 49]);
    }

    #[test]
    fn geometry_drops_tiny_last_group() {
        let g = Geometry::new(BLOCKS_PER_GROUP + 1, 1000, None).unwrap();
        assert_eq!(g.groups, 1);
        assert_eq!(g.blocks, BLOCKS_PER_GROUP);
        let g = Geometry::new(2 * BLOCKS_PER_GROUP + 1, 1000, None).unwrap();
        assert_eq!(g.groups, 3); // group 2 has no backup
        assert_eq!(g.inodes_per_group % 16, 0);
    }

    #[test]
    fn push_merges_and_splits() {
        let mut m = Mapping::default();
        m.push(0, &[(100, 10)]);
        m.push(10, &[(110, 5)]); // contiguous: merged
        m.push(20, &[(115, 1)]); // logical gap (a hole): new extent
        m.push(21, &[(200, MAX_EXTENT_LEN + 3)]); // over the limit: split
        let e: Vec<(u32, u64, u32)> = m
            .extents
            .iter()
            .map(|e| (e.logical, e.start, e.len))
            .collect();
        let max = MAX_EXTENT_LEN as u32;
        assert_eq!(
            e,
            vec![
                (0, 100, 15),
                (20, 115, 1),
                (21, 200, max),
                (21 + max, 200 + max as u64, 3)
            ]
        );
    }

    #[test]
    fn tree_sizes() {
        assert_eq!(tree_blocks_needed(0), 0);
        assert_eq!(tree_blocks_needed(4), 0);
        assert_eq!(tree_blocks_needed(5), 1);
        assert_eq!(tree_blocks_needed(340 * 4), 4);
        assert_eq!(tree_blocks_needed(340 * 4 + 1), 5 + 1);
    }
}
