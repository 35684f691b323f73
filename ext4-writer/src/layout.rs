//! Layout planning: where every inode's blocks go, within the group
//! geometry of `geometry`. Pure: nothing here reads content or touches the
//! output.
//!
//! Layout (flex_bg lets metadata live anywhere): group 0 starts with the
//! superblock and group descriptors, then come all block bitmaps, all inode
//! bitmaps and all inode tables, then the journal, then the data of layer-0
//! files (see [`crate::Entry::layer`]) in inode order, in a region as big
//! as their sizes (so where it ends depends on nothing else), then
//! directories, slow symlinks and xattr blocks, then the data of the other
//! layers' files in inode order, and finally extent-tree blocks. With a
//! fixed inode count, a change confined to layer 1 thus leaves layer 0's
//! inodes and data in place. File data is placed while it streams,
//! because with holes only the content says which blocks need a place; the
//! plan checks the fit for the worst case, no holes at all. Backup superblocks
//! (sparse_super: groups 0, 1 and powers of 3, 5, 7) are skipped over; that
//! and the 32768-block extent limit are the only things that split a file
//! into several extents, apart from holes.

use std::collections::BTreeMap;

use crate::dir::Shape;
use crate::geometry::{
    BLOCKS_PER_GROUP, BS, Geometry, LPF_INO, Mapping, has_super, tree_blocks_needed,
};
use crate::tree::{Body, Tree};
use crate::xattr::{self, Xattr};
use crate::{Error, InodeCount, Options, Result};

/// Placement of one inode's blocks.
#[derive(Clone, Debug, Default)]
pub struct InodePlan {
    /// The inode's placement layer.
    pub layer: u8,
    pub map: Mapping,
    pub xattr_block: Option<u64>,
    /// Block arrangement, for directories.
    pub dir: Option<Shape>,
}

/// The whole layout. Everything but regular-file data is placed up front;
/// file data is placed as it streams (zero blocks may become holes), then
/// [`Plan::place_trees`] adds the extent-tree blocks.
#[derive(Debug)]
pub struct Plan {
    pub geo: Geometry,
    pub block_bitmaps: Vec<u64>,
    pub inode_bitmaps: Vec<u64>,
    pub inode_tables: Vec<u64>,
    /// Parallel to `Tree::inodes`.
    pub inodes: Vec<InodePlan>,
    pub journal: Option<Mapping>,
    /// Xattr blocks and how many inodes share each.
    pub xattr_refs: BTreeMap<u64, u32>,
    /// The resize inode's doubly-indirect block, if descriptor blocks are
    /// reserved for growth.
    pub resize_dind: Option<u64>,
    /// One past the highest block the layout needs if no file has holes;
    /// beyond `geo.blocks` the tree does not fit.
    pub end: u64,
    /// Places layer-0 file data, inside its region.
    base: Alloc,
    /// The layer-0 region.
    base_start: u64,
    base_end: u64,
    /// Places everything else.
    alloc: Alloc,
}

impl Plan {
    /// Places `n` blocks of file data of a `layer` file at logical block
    /// `logical` of `map`.
    pub fn place_data(
        &mut self,
        map: &mut Mapping,
        layer: u8,
        logical: u64,
        n: u64,
    ) -> Vec<(u64, u64)> {
        let alloc = if layer == 0 {
            &mut self.base
        } else {
            &mut self.alloc
        };
        let runs = alloc.take(n);
        map.push(logical, &runs);
        runs
    }

    /// Places the extent-tree blocks of every inode (and the journal).
    /// Layer-0 inodes' trees go first into what holes left free at the end
    /// of the layer-0 region (holes add extents, so they pay for the tree
    /// blocks they cause); the rest after everything else.
    pub fn place_trees(&mut self) {
        let maps = self
            .inodes
            .iter_mut()
            .map(|p| (p.layer, &mut p.map))
            .chain(self.journal.as_mut().map(|m| (u8::MAX, m)));
        for (layer, m) in maps {
            let n = tree_blocks_needed(m.extents.len());
            m.tree = (0..n)
                .map(|_| {
                    let base_has_room = self.base.skip_backup(self.base.next) < self.base_end;
                    let alloc = if layer == 0 && base_has_room {
                        &mut self.base
                    } else {
                        &mut self.alloc
                    };
                    alloc.take(1)[0].0
                })
                .collect();
        }
    }

    /// Block ranges `(start, len)` that a change confined to layers above 0
    /// may touch: everything up to the layer-0 region (superblock,
    /// descriptors, bitmaps, inode tables, journal), every backup
    /// superblock, and everything from the end of the layer-0 region to the
    /// last block placed. The rest holds layer-0 data or stays free.
    pub fn volatile(&self) -> Vec<(u64, u64)> {
        let base_start = self.base_start;
        let end = self.placed_end().max(self.base_end);
        let mut ranges = vec![(0, base_start)];
        for g in 1..self.geo.groups {
            let (start, len) = (self.geo.group_start(g), self.geo.backup_len(g));
            if len > 0 && !(self.base_end..end).contains(&start) {
                ranges.push((start, len));
            }
        }
        ranges.push((self.base_end, end - self.base_end));
        ranges.retain(|&(_, len)| len > 0);
        ranges.sort_unstable();
        ranges
    }

    /// One past the highest block placed so far.
    pub fn placed_end(&self) -> u64 {
        self.alloc.next
    }

    /// Every used run `(start, len)`, backups included, in ascending order.
    pub fn used(&self) -> Vec<(u64, u64)> {
        let mut used = self.alloc.used.clone();
        used.extend_from_slice(&self.base.used);
        for g in 0..self.geo.groups {
            let n = self.geo.backup_len(g);
            if n > 0 {
                used.push((self.geo.group_start(g), n));
            }
        }
        used.sort_unstable();
        used
    }
}

/// Hands out blocks in ascending order, stepping over backup superblocks.
/// It may run past the end of the filesystem (pretending the group pattern
/// continues) so that a failed plan still tells how much room it needed.
#[derive(Clone, Debug)]
struct Alloc {
    /// Superblock and (reserved) descriptor blocks at the start of a group
    /// with a backup.
    backup: u64,
    next: u64,
    used: Vec<(u64, u64)>,
}

impl Alloc {
    fn backup_len(&self, group: u32) -> u64 {
        if has_super(group) { self.backup } else { 0 }
    }

    fn skip_backup(&self, b: u64) -> u64 {
        let g = b / BLOCKS_PER_GROUP;
        b.max(g * BLOCKS_PER_GROUP + self.backup_len(g as u32))
    }

    /// Start of the next backup after `b`.
    fn next_backup(&self, b: u64) -> u64 {
        let mut g = (b / BLOCKS_PER_GROUP) as u32 + 1;
        while !has_super(g) {
            g += 1;
        }
        g as u64 * BLOCKS_PER_GROUP
    }

    fn mark(&mut self, start: u64, len: u64) {
        match self.used.last_mut() {
            Some((s, l)) if *s + *l == start => *l += len,
            _ => self.used.push((start, len)),
        }
    }

    /// `n` blocks, as few runs as possible.
    fn take(&mut self, n: u64) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        let mut left = n;
        while left > 0 {
            self.next = self.skip_backup(self.next);
            let len = left.min(self.next_backup(self.next) - self.next);
            runs.push((self.next, len));
            self.mark(self.next, len);
            self.next += len;
            left -= len;
        }
        runs
    }

    /// `n` contiguous blocks (n must fit between two backups).
    fn take_contiguous(&mut self, n: u64) -> u64 {
        self.next = self.skip_backup(self.next);
        if self.next + n > self.next_backup(self.next) {
            self.next = self.skip_backup(self.next_backup(self.next));
        }
        self.take(n)[0].0
    }

    /// Maps `n` blocks from logical block 0.
    fn mapping(&mut self, n: u64) -> Mapping {
        let mut m = Mapping::default();
        let runs = self.take(n);
        m.push(0, &runs);
        m
    }
}

/// Inodes to provide for `tree` under `opts`, for a filesystem of `blocks`.
pub fn inode_target(tree: &Tree, opts: &Options, blocks: u64) -> Result<u64> {
    let need = tree.max_ino() as u64;
    Ok(match opts.inodes {
        InodeCount::Auto => need + (need / 4).max(256),
        InodeCount::Count(n) if (n as u64) < need => {
            return Err(Error::InvalidOption(format!(
                "{n} inodes requested but the tree needs {need}"
            )));
        }
        InodeCount::Count(n) => n as u64,
        InodeCount::BytesPerInode(0) => {
            return Err(Error::InvalidOption("zero bytes per inode".into()));
        }
        InodeCount::BytesPerInode(r) => need.max(blocks * BS / r as u64),
    })
}

/// The directory-hash seed as the superblock stores it.
pub fn hash_seed(opts: &Options) -> [u32; 4] {
    let w = |i: usize| u32::from_le_bytes(opts.hash_seed[4 * i..4 * i + 4].try_into().unwrap());
    [w(0), w(1), w(2), w(3)]
}

/// Lays out `tree` in `geo`.
pub fn plan(tree: &Tree, opts: &Options, geo: Geometry) -> Result<Plan> {
    if (geo.inodes() as u64) < tree.max_ino() as u64 {
        return Err(Error::InvalidOption(
            "inode count below what the tree needs".into(),
        ));
    }
    let mut a = Alloc {
        backup: geo.backup_len(0),
        next: 0,
        used: Vec::new(),
    };
    let groups = geo.groups as u64;
    let flat = |runs: Vec<(u64, u64)>| -> Vec<u64> {
        runs.into_iter().flat_map(|(s, l)| s..s + l).collect()
    };
    let block_bitmaps = flat(a.take(groups));
    let inode_bitmaps = flat(a.take(groups));
    let inode_tables = (0..groups)
        .map(|_| a.take_contiguous(geo.itable_blocks))
        .collect();
    let resize_dind = (geo.reserved_gdt > 0).then(|| a.take(1)[0].0);
    let journal = opts.journal_blocks.map(|n| a.mapping(n as u64));

    // Layer-0 file data: a region for the worst case (no holes), placed
    // while the data streams.
    let base = Alloc {
        used: Vec::new(),
        ..a.clone()
    };
    let mut extents = vec![0; tree.inodes.len()];
    let mut base_worst = base.clone();
    for (i, ino) in tree.inodes.iter().enumerate() {
        if let Body::File { size, .. } = &ino.body
            && ino.layer == 0
        {
            extents[i] = base_worst.mapping(size.div_ceil(BS)).extents.len();
        }
    }
    let base_end = base_worst.next;
    a.next = base_end;

    let mut inodes: Vec<InodePlan> = tree
        .inodes
        .iter()
        .map(|ino| InodePlan {
            layer: ino.layer,
            ..InodePlan::default()
        })
        .collect();
    // Directories together, so that path lookups touch few, close blocks.
    let seed = hash_seed(opts);
    for (i, ino) in tree.inodes.iter().enumerate() {
        if let Body::Dir { children, .. } = &ino.body {
            // mke2fs gives lost+found 16 KiB so e2fsck can reconnect files
            // without allocating.
            let min = if ino.ino == LPF_INO { 4 } else { 1 };
            let shape = Shape::new(children, &seed, min);
            inodes[i].map = a.mapping(shape.blocks());
            inodes[i].dir = Some(shape);
        }
    }
    let mut shared: BTreeMap<&[Xattr], (u64, u32)> = BTreeMap::new();
    let mut xattr_refs = BTreeMap::new();
    for (i, ino) in tree.inodes.iter().enumerate() {
        let attrs = &ino.meta.xattrs;
        if !xattr::fits_in_inode(attrs) {
            if !xattr::fits_in_block(attrs, BS as usize) {
                return Err(Error::InvalidEntry {
                    path: format!("inode {}", ino.ino),
                    reason: "extended attributes exceed one block".into(),
                });
            }
            // Inodes with identical attributes share a block, as the
            // kernel does, up to its reference-count limit.
            let slot = shared.entry(&attrs[..]).or_insert((0, xattr::MAX_REFCOUNT));
            if slot.1 == xattr::MAX_REFCOUNT {
                *slot = (a.take(1)[0].0, 0);
            }
            slot.1 += 1;
            inodes[i].xattr_block = Some(slot.0);
            *xattr_refs.entry(slot.0).or_default() += 1;
        }
        if let Body::Symlink(t) = &ino.body
            && t.len() >= 60
        {
            inodes[i].map = a.mapping(1);
        }
    }

    // The worst case: every file fully allocated, then every extent tree.
    let mut worst = a.clone();
    for (i, ino) in tree.inodes.iter().enumerate() {
        extents[i] = match &ino.body {
            Body::File { .. } if ino.layer == 0 => extents[i],
            Body::File { size, .. } => worst.mapping(size.div_ceil(BS)).extents.len(),
            _ => inodes[i].map.extents.len(),
        };
    }
    let journal_extents = journal.as_ref().map(|m| m.extents.len());
    for n in extents.into_iter().chain(journal_extents) {
        worst.take(tree_blocks_needed(n));
    }
    let end = worst.next;
    Ok(Plan {
        geo,
        block_bitmaps,
        inode_bitmaps,
        inode_tables,
        inodes,
        journal,
        xattr_refs,
        resize_dind,
        end,
        base_start: base.next,
        base,
        base_end,
        alloc: a,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Extent;

    #[test]
    fn allocation_skips_backups() {
        let geo = Geometry::new(4 * BLOCKS_PER_GROUP, 64, None).unwrap();
        let mut a = Alloc {
            backup: geo.backup_len(0),
            next: BLOCKS_PER_GROUP - 10,
            used: Vec::new(),
        };
        let m = a.mapping(100);
        assert_eq!(m.extents.len(), 2);
        assert_eq!(
            m.extents[0],
            Extent {
                logical: 0,
                start: BLOCKS_PER_GROUP - 10,
                len: 10
            }
        );
        assert_eq!(m.extents[1].start, BLOCKS_PER_GROUP + 1 + geo.gdt_blocks);
        assert_eq!(m.extents[1].logical, 10);
    }
}
