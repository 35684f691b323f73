//! Placement layers: a change confined to layer 1 must leave layer 0's
//! inodes and data blocks where they were (what keeps the builder's
//! compressed-chunk cache and RAUC's delta downloads small).

mod common;

use common::*;
use ext4_writer::{Entry, FileData, InodeCount, NoSource, Options};

/// 30 package-like directories of 20 files (layer 0, 1 to 12 blocks each,
/// distinct content) plus a few local files in layer 1, some in the same
/// directories.
fn tree(local_layer: u8, extra: bool) -> Vec<Entry> {
    let mut entries = Vec::new();
    for d in 0..30 {
        let dir = format!("usr/share/pkg{d:02}");
        entries.push(Entry::dir(&dir, 0o755, T));
        for f in 0..20 {
            let blocks = 1 + (d * 7 + f * 3) % 12;
            let data = base_data(d * 20 + f, blocks);
            entries.push(Entry::file(
                format!("{dir}/file{f:02}"),
                0o644,
                T,
                FileData::Bytes(data),
            ));
        }
    }
    entries.push(Entry::dir("etc", 0o755, T));
    let local = |path: &str, len: usize| {
        Entry::file(path, 0o644, T, FileData::Bytes(vec![0xa5; len])).layer(local_layer)
    };
    entries.push(local("etc/hostname", 12));
    entries.push(local("etc/vinyl.toml", if extra { 9000 } else { 5000 }));
    entries.push(local("usr/share/pkg05/override", 300));
    entries.push(Entry::dir("etc/local.d", 0o755, T).layer(local_layer));
    if extra {
        // A new file sorting before most others, and one in a new directory.
        entries.push(local("etc/added", 20_000));
        entries.push(Entry::dir("etc/local.d/more", 0o755, T).layer(local_layer));
        entries.push(local("etc/local.d/more/x", 100));
    }
    entries
}

/// Every block starts with "BASE", the file's and the block's number.
fn base_data(file: usize, blocks: usize) -> Vec<u8> {
    let mut data = Vec::new();
    for k in 0..blocks {
        let mut block = vec![(file as u8) | 1; 4096];
        block[..4].copy_from_slice(b"BASE");
        block[4..8].copy_from_slice(&(file as u32).to_le_bytes());
        block[8..12].copy_from_slice(&(k as u32).to_le_bytes());
        data.extend_from_slice(&block);
    }
    data.truncate(data.len() - 100);
    data
}

/// Positions of the layer-0 data blocks ("BASE" blocks).
fn base_blocks(image: &[u8]) -> Vec<(usize, &[u8])> {
    let blocks = image.chunks(4096).enumerate();
    blocks.filter(|(_, b)| b.starts_with(b"BASE")).collect()
}

fn options() -> Options {
    let mut o = opts(64 << 20);
    o.inodes = InodeCount::BytesPerInode(16384);
    o
}

/// How many blocks differ between two images of the same size.
fn changed_blocks(a: &std::path::Path, b: &std::path::Path) -> usize {
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(a.len(), b.len());
    a.chunks(4096)
        .zip(b.chunks(4096))
        .filter(|(x, y)| x != y)
        .count()
}

#[test]
fn a_layer_1_change_leaves_layer_0_in_place() {
    let (before, old_summary) = image("layers-before", &tree(1, false), &NoSource, &options());
    let (after, summary) = image("layers-after", &tree(1, true), &NoSource, &options());
    e2fsck(&before);
    e2fsck(&after);
    let fs = ext4_view::Ext4::load_from_path(&*after).unwrap();
    assert_eq!(fs.read("/etc/added").unwrap(), vec![0xa5; 20_000]);
    assert_eq!(
        fs.read("/usr/share/pkg29/file19").unwrap().len(),
        9 * 4096 - 100
    );

    // Every layer-0 data block is where it was.
    let (old, new) = (
        std::fs::read(&*before).unwrap(),
        std::fs::read(&*after).unwrap(),
    );
    let base = base_blocks(&old);
    assert_eq!(
        base.len(),
        (0..600)
            .map(|i| 1 + (i / 20 * 7 + i % 20 * 3) % 12)
            .sum::<usize>()
    );
    assert_eq!(base, base_blocks(&new));
    // Beyond them: superblock, descriptors, bitmaps, a few inode-table
    // blocks, the directories that gained entries, the local files' data.
    let layered = changed_blocks(&before, &after);
    assert!(layered < 30, "{layered} blocks changed");
    // ... all inside what the summaries call volatile, which is little.
    let inside =
        |ranges: &[(u64, u64)], b: u64| ranges.iter().any(|&(s, n)| (s..s + n).contains(&b));
    for (b, (x, y)) in old.chunks(4096).zip(new.chunks(4096)).enumerate() {
        let b = b as u64;
        assert!(
            x == y || inside(&summary.volatile, b) || inside(&old_summary.volatile, b),
            "block {b}: {:?} {:?}",
            old_summary.volatile,
            summary.volatile
        );
    }
    let volatile: u64 = summary.volatile.iter().map(|r| r.1).sum();
    assert!(volatile < summary.used_blocks / 2, "{:?}", summary.volatile);

    // The same change with everything in one layer moves nearly everything
    // (what the layering is for).
    let (flat_before, _) = image("flat-before", &tree(0, false), &NoSource, &options());
    let (flat_after, _) = image("flat-after", &tree(0, true), &NoSource, &options());
    let flat = changed_blocks(&flat_before, &flat_after);
    eprintln!("blocks changed: {layered} layered, {flat} in one layer");
    assert!(flat > 10 * layered, "flat {flat}, layered {layered}");
}
