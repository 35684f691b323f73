//! The I/O side: streams content and writes the encoded metadata into the
//! output file, skipping all-zero blocks so the image stays sparse.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use crate::checksum::{fs_seed, inode_seed};
use crate::encode;
use crate::geometry::{BS, Geometry, JOURNAL_INO, Mapping};
use crate::layout::{self, Plan};
use crate::metadata::{self, JournalRoot, Metadata};
use crate::tree::{self, Body, Tree};
use crate::{ContentSource, Entry, Error, FileData, Options, Result, lossy, xattr};

/// Figures about a written filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Filesystem size in blocks.
    pub blocks: u64,
    /// Blocks in use (metadata, data, backups).
    pub used_blocks: u64,
    /// Total inodes.
    pub inodes: u32,
    /// Inodes in use (including the 10 reserved ones).
    pub used_inodes: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// Block ranges `(start, len)` that may differ when only entries of
    /// layers above 0 change (see [`crate::Entry::layer`]); every other
    /// block holds layer-0 data or is free, and stays as it is.
    pub volatile: Vec<(u64, u64)>,
}

const MIN_JOURNAL_BLOCKS: u32 = 1024;

fn check_options(opts: &Options) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidOption(m));
    if opts.block_size != BS as u32 {
        return bad(format!(
            "block size {} (only 4096 is supported)",
            opts.block_size
        ));
    }
    if opts.label.len() > 16 {
        return bad(format!("label {:?} is longer than 16 bytes", opts.label));
    }
    if opts.journal_blocks.is_some_and(|n| n < MIN_JOURNAL_BLOCKS) {
        return bad(format!("journal smaller than {MIN_JOURNAL_BLOCKS} blocks"));
    }
    if opts.reserved_blocks > opts.size / BS / 2 {
        return bad("more than half the blocks reserved".into());
    }
    Ok(())
}

fn geometry(tree: &Tree, opts: &Options, blocks: u64) -> Result<Option<Geometry>> {
    let inodes = layout::inode_target(tree, opts, blocks)?;
    Ok(Geometry::new(blocks, inodes, opts.grow_to.map(|b| b / BS)))
}

/// Smallest filesystem size in bytes that holds `entries` with `opts`
/// (`opts.size` is ignored).
pub fn min_size(entries: &[Entry], opts: &Options) -> Result<u64> {
    let opts = Options {
        size: u64::MAX / 4,
        ..opts.clone()
    };
    check_options(&opts)?;
    let tree = tree::build(entries, opts.timestamp)?;
    min_size_of(&tree, &opts)
}

fn min_size_of(tree: &Tree, opts: &Options) -> Result<u64> {
    // Whether a filesystem of `blocks` fits the tree: its real size (a too
    // short last group is dropped) and where its layout ends.
    let fit = |blocks: u64| -> Result<Option<(u64, u64)>> {
        Ok(match geometry(tree, opts, blocks)? {
            None => None,
            Some(geo) => {
                let plan = layout::plan(tree, opts, geo)?;
                Some((plan.geo.blocks, plan.end))
            }
        })
    };
    // Grow to what each layout needed until one fits; more groups mean a
    // little more metadata, so this settles in a few rounds...
    let mut blocks = 64;
    let (mut best, mut end) = loop {
        match fit(blocks)? {
            Some((size, end)) if end <= size => break (size, end),
            Some((_, end)) => blocks = end.max(blocks + 1),
            None => blocks += blocks / 2,
        }
        if blocks > u64::MAX / BS / 2 {
            return Err(Error::InvalidOption(
                "no filesystem size fits this tree".into(),
            ));
        }
    };
    // ...then shrink to where the fitting layout ends, as long as that
    // still fits (fewer groups may need less metadata).
    while end < best {
        match fit(end)? {
            Some((size, e)) if e <= size && size < best => (best, end) = (size, e),
            _ => break,
        }
    }
    Ok(best * BS)
}

/// Writes the filesystem for `entries` into `file` starting at byte
/// `offset`, `opts.size` bytes long.
///
/// With `opts.assume_zeroed` (the default) the region must read as zeros
/// beforehand, as a fresh file sized with `set_len` does: all-zero blocks,
/// including unused inode-table space, are then never written. Content of
/// [`FileData::External`] files comes from `source`.
pub fn write(
    file: &File,
    offset: u64,
    entries: &[Entry],
    source: &dyn ContentSource,
    opts: &Options,
) -> Result<Summary> {
    check_options(opts)?;
    let tree = tree::build(entries, opts.timestamp)?;
    let too_small = || -> Result<Error> {
        Ok(Error::TooSmall {
            needed: min_size_of(&tree, opts)?,
            available: opts.size,
        })
    };
    let Some(geo) = geometry(&tree, opts, opts.size / BS)? else {
        return Err(too_small()?);
    };
    let mut plan = layout::plan(&tree, opts, geo)?;
    if plan.end > plan.geo.blocks {
        return Err(too_small()?);
    }
    let mut w = BlockWriter::new(file, offset, opts.assume_zeroed);
    let seed = fs_seed(&opts.uuid);
    write_placed(&mut w, &tree, &plan, seed)?;
    write_file_data(&mut w, &tree, &mut plan, source, opts.sparse_files)?;
    plan.place_trees();
    if plan.placed_end() > plan.geo.blocks {
        // Only possible when holes fragment files so much that their extent
        // trees outgrow the space the holes saved.
        let needed = (plan.placed_end() * BS).max(min_size_of(&tree, opts)?);
        return Err(Error::TooSmall {
            needed,
            available: opts.size,
        });
    }
    let trees = tree
        .inodes
        .iter()
        .zip(&plan.inodes)
        .map(|(ino, p)| write_extent_tree(&mut w, &p.map, inode_seed(seed, ino.ino, 0)))
        .collect::<Result<Vec<_>>>()?;
    let journal = match &plan.journal {
        Some(m) => Some(write_journal(&mut w, m, seed, opts)?),
        None => None,
    };
    let meta = metadata::encode(&tree, &plan, &trees, journal, seed, opts);
    write_metadata(&mut w, &meta, &plan, opts)?;
    w.flush()?;
    Ok(summary(&plan, &meta))
}

/// Writes the journal's extent tree and its jbd2 superblock; returns the
/// journal inode's i_block and size.
fn write_journal(
    w: &mut BlockWriter,
    map: &Mapping,
    seed: u32,
    opts: &Options,
) -> Result<JournalRoot> {
    let i_block = write_extent_tree(w, map, inode_seed(seed, JOURNAL_INO, 0))?;
    let n = opts.journal_blocks.unwrap_or_default();
    if !opts.assume_zeroed {
        // An old log left in place would do no harm while s_start is 0, but
        // clear it anyway.
        for e in &map.extents {
            w.write(e.start, &vec![0; e.len as usize * BS as usize])?;
        }
    }
    let first = map.extents[0].start;
    w.write(first, &encode::journal_superblock(n, &opts.uuid))?;
    Ok((i_block, n as u64 * BS))
}

/// Writes what the plan placed up front: directories, slow symlinks and
/// xattr blocks.
fn write_placed(w: &mut BlockWriter, tree: &Tree, plan: &Plan, seed: u32) -> Result<()> {
    let mut written = std::collections::BTreeSet::new();
    for (ino, p) in tree.inodes.iter().zip(&plan.inodes) {
        let iseed = inode_seed(seed, ino.ino, 0);
        match &ino.body {
            Body::Dir { parent, children } => {
                let shape = p.dir.as_ref().expect("directories have a shape");
                write_mapped(w, &p.map, &shape.encode(ino.ino, *parent, children, iseed))?;
            }
            Body::Symlink(target) if target.len() >= 60 => write_mapped(w, &p.map, target)?,
            _ => {}
        }
        // A shared xattr block is written by the first inode using it.
        if let Some(b) = p.xattr_block
            && written.insert(b)
        {
            let mut buf = vec![0u8; BS as usize];
            xattr::encode_block(&ino.meta.xattrs, b, plan.xattr_refs[&b], seed, &mut buf);
            w.write(b, &buf)?;
        }
    }
    Ok(())
}

/// Streams every regular file's content, in inode order, placing its
/// blocks as they come (all-zero ones become holes if `sparse`).
fn write_file_data(
    w: &mut BlockWriter,
    tree: &Tree,
    plan: &mut Plan,
    source: &dyn ContentSource,
    sparse: bool,
) -> Result<()> {
    let mut chunk = vec![0u8; CHUNK_BLOCKS * BS as usize];
    for (i, ino) in tree.inodes.iter().enumerate() {
        if let Body::File { size, data, path } = &ino.body {
            let reader = open(data, path, source)?;
            let file = FileStream {
                reader,
                size: *size,
                layer: ino.layer,
                path,
            };
            plan.inodes[i].map = file.write(w, plan, &mut chunk, sparse)?;
        }
    }
    Ok(())
}

/// Writes the blocks of a mapping's extent tree; returns the inode's i_block.
fn write_extent_tree(w: &mut BlockWriter, map: &Mapping, inode_seed: u32) -> Result<[u8; 60]> {
    let (i_block, blocks) = encode::extent_tree(map, inode_seed);
    for (b, data) in blocks {
        w.write(b, &data)?;
    }
    Ok(i_block)
}

/// Blocks of file content read at a time.
const CHUNK_BLOCKS: usize = 256;

fn open<'s>(
    data: &'s FileData,
    path: &[u8],
    source: &'s dyn ContentSource,
) -> Result<Box<dyn Read + 's>> {
    let err = |e| Error::Content {
        path: lossy(path),
        source: e,
    };
    Ok(match data {
        FileData::Bytes(b) => Box::new(&b[..]),
        FileData::Path(p) => Box::new(File::open(p).map_err(err)?),
        FileData::External(key) => source.open(key).map_err(err)?,
    })
}

/// One regular file's content on its way to the image.
struct FileStream<'a> {
    reader: Box<dyn Read + 'a>,
    size: u64,
    layer: u8,
    path: &'a [u8],
}

impl FileStream<'_> {
    /// Streams the content, placing its blocks (all-zero ones become holes
    /// if `sparse`), and returns the file's mapping.
    fn write(
        mut self,
        w: &mut BlockWriter,
        plan: &mut Plan,
        chunk: &mut [u8],
        sparse: bool,
    ) -> Result<Mapping> {
        let bs = BS as usize;
        let short = || Error::ContentSize {
            path: lossy(self.path),
            expected: self.size,
        };
        let err = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => short(),
            _ => Error::Content {
                path: lossy(self.path),
                source: e,
            },
        };
        let mut map = Mapping::default();
        let (mut left, mut logical) = (self.size, 0u64);
        while left > 0 {
            let want = left.min(chunk.len() as u64) as usize;
            let blocks = want.div_ceil(bs);
            self.reader.read_exact(&mut chunk[..want]).map_err(err)?;
            chunk[want..blocks * bs].fill(0);
            // Runs of blocks to store: all of them, or the non-zero ones.
            let mut b = 0;
            while b < blocks {
                let keep = |k: usize| !sparse || !is_zero(&chunk[k * bs..(k + 1) * bs]);
                if !keep(b) {
                    b += 1;
                    continue;
                }
                let end = (b..blocks).find(|&k| !keep(k)).unwrap_or(blocks);
                let mut at = b * bs;
                for (start, len) in
                    plan.place_data(&mut map, self.layer, logical + b as u64, (end - b) as u64)
                {
                    let n = len as usize * bs;
                    w.write(start, &chunk[at..at + n])?;
                    at += n;
                }
                b = end;
            }
            left -= want as u64;
            logical += blocks as u64;
        }
        let mut probe = [0u8; 1];
        match self.reader.read(&mut probe) {
            Ok(0) => Ok(map),
            Ok(_) => Err(short()),
            Err(e) => Err(err(e)),
        }
    }
}

/// Writes `data` (zero-padded to whole blocks) through the extents of `map`.
fn write_mapped(w: &mut BlockWriter, map: &Mapping, data: &[u8]) -> Result<()> {
    for e in &map.extents {
        let from = e.logical as usize * BS as usize;
        let to = (from + e.len as usize * BS as usize).min(data.len());
        if from < to {
            w.write(e.start, &data[from..to])?;
        }
    }
    Ok(())
}

/// Puts the encoded metadata in place. Inode tables of groups without
/// inodes are left alone when the target already reads as zeros.
fn write_metadata(w: &mut BlockWriter, meta: &Metadata, plan: &Plan, opts: &Options) -> Result<()> {
    for (block, data) in &meta.resize_blocks {
        w.write(*block, data)?;
    }
    let zero_table = if opts.assume_zeroed {
        Vec::new()
    } else {
        vec![0; plan.geo.itable_blocks as usize * BS as usize]
    };
    for g in &meta.groups {
        w.write(g.desc.block_bitmap, &g.block_bitmap)?;
        w.write(g.desc.inode_bitmap, &g.inode_bitmap)?;
        match &g.inode_table {
            Some(table) => w.write(g.desc.inode_table, table)?,
            None if !opts.assume_zeroed => w.write(g.desc.inode_table, &zero_table)?,
            None => {}
        }
    }
    for (start, first) in &meta.superblocks {
        w.write(*start, first)?;
        w.write(start + 1, &meta.gdt)?;
    }
    Ok(())
}

/// The figures `write` reports, from the encoded metadata's counts.
fn summary(plan: &Plan, meta: &Metadata) -> Summary {
    let geo = &plan.geo;
    Summary {
        volatile: plan.volatile(),
        blocks: geo.blocks,
        used_blocks: geo.blocks - meta.free_blocks,
        inodes: geo.inodes(),
        used_inodes: geo.inodes() - meta.free_inodes as u32,
        block_size: BS as u32,
    }
}

/// Buffers writes to consecutive blocks and writes them out, skipping
/// all-zero blocks when the target is known to read as zeros.
struct BlockWriter<'f> {
    file: &'f File,
    base: u64,
    skip_zero: bool,
    start: u64,
    buf: Vec<u8>,
}

const WRITE_BUFFER: usize = 8 << 20;

impl<'f> BlockWriter<'f> {
    fn new(file: &'f File, base: u64, skip_zero: bool) -> Self {
        BlockWriter {
            file,
            base,
            skip_zero,
            start: 0,
            buf: Vec::with_capacity(WRITE_BUFFER),
        }
    }

    /// A zeroed buffer for `n` blocks at `block`, to be filled by the caller.
    fn region(&mut self, block: u64, n: usize) -> Result<&mut [u8]> {
        let bs = BS as usize;
        let contiguous = self.start + (self.buf.len() / bs) as u64 == block;
        if !contiguous || self.buf.len() + n * bs > WRITE_BUFFER {
            self.flush()?;
            self.start = block;
        }
        let at = self.buf.len();
        // Appending zero blocks by slice copies stays fast in debug builds,
        // unlike `resize`.
        self.buf.reserve(n * bs);
        for _ in 0..n {
            self.buf.extend_from_slice(&ZERO);
        }
        Ok(&mut self.buf[at..])
    }

    /// Writes `data` (padded with zeros to whole blocks) at `block`.
    fn write(&mut self, block: u64, data: &[u8]) -> Result<()> {
        let n = data.len().div_ceil(BS as usize);
        self.region(block, n)?[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let bs = BS as usize;
        let blocks: Vec<&[u8]> = self.buf.chunks(bs).collect();
        let skip = |k: usize| self.skip_zero && is_zero(blocks[k]);
        let mut i = 0;
        while i < blocks.len() {
            if skip(i) {
                i += 1;
                continue;
            }
            let j = (i..blocks.len()).find(|&j| skip(j)).unwrap_or(blocks.len());
            let offset = self.base + (self.start + i as u64) * BS;
            self.file
                .write_all_at(&self.buf[i * bs..j * bs], offset)
                .map_err(|source| Error::Write { offset, source })?;
            i = j;
        }
        self.buf.clear();
        Ok(())
    }
}

static ZERO: [u8; BS as usize] = [0; BS as usize];

fn is_zero(block: &[u8]) -> bool {
    // A slice comparison is a memcmp: fast even in debug builds.
    block == &ZERO[..block.len()]
}
