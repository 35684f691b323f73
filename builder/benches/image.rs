//! Times writing a board's SD card image (default rpi4; `BENCH_BOARD=...`)
//! and reports its sizes:
//!
//! - write: partition table, FAT and the ext4 filesystems (the .img);
//! - outputs: sha256 + xz, bmap, manifest, SBOM — with no compressed chunk
//!   in the cache, with every chunk cached, and after one file of the tree
//!   changed (what an overlay edit costs past the rootfs stage);
//! - sizes: the root tree, the .img's used (non-hole) blocks, the .img.xz.
//!
//! The package cache lives in target/bench-cache, so only the first run
//! downloads. Run with `cargo bench -p builder --bench image`.

use builder::config::Project;
use builder::image::{self, outputs};
use builder::pipeline::{Options, Pipeline};
use std::time::Instant;

fn main() {
    let board = std::env::var("BENCH_BOARD").unwrap_or_else(|_| "rpi4".into());
    let project = Project::from_workspace();
    let mut options = Options::for_board(&project, &board);
    options.cache_dir = project.root.join("target/bench-cache");
    options.target_dir = project.root.join("target/builder-tests");
    options.quiet = true;
    let context = Pipeline::new(project.clone(), &options).expect("board loads");
    let (lock, tree) = context.rootfs().expect("rootfs builds");
    let scratch = tempfile::tempdir().expect("temp dir");
    let store = &context.store;
    // The first pass compresses every chunk afresh.
    let _ = std::fs::remove_dir_all(store.root().join("xz-blocks-v1"));

    let write_set = |tree: &builder::rootfs::tree::Tree, run: &str| {
        let out = scratch.path().join(run);
        std::fs::create_dir(&out).expect("out dir");
        let spec = context
            .image_spec(&lock, &out, &Default::default())
            .expect("image spec");
        let sources = image::Sources {
            lock: &lock,
            tree,
            store,
            progress: &context.progress,
        };
        let start = Instant::now();
        let image::Disk {
            file: disk,
            layout,
            volatile,
        } = image::write_disk(&spec, sources, &out).expect("image writes");
        let write = start.elapsed().as_secs_f64();
        let used = outputs::mapped_ranges(&disk, layout.size)
            .iter()
            .map(|(s, e)| e - s)
            .sum::<u64>();
        let blocks_dir = store.root().join("xz-blocks-v1");
        let cached = || std::fs::read_dir(&blocks_dir).map_or(0, |d| d.count());
        let before = cached();
        let start = Instant::now();
        let key = image::build_key(&spec, &lock, tree);
        let chunks = image::xz::plan(layout.size, &volatile);
        let files = outputs::write_all(&spec, sources, &layout, &disk, &chunks, &key, &out)
            .expect("outputs write");
        let compress = start.elapsed().as_secs_f64();
        let xz = files
            .iter()
            .find(|f| f.extension().is_some_and(|e| e == "xz"))
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len());
        let compressed = cached() - before;
        (write, compress, layout.size, used, xz, compressed)
    };

    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!("image of board {board}");
    println!(
        "  root tree        {:>8.1} MB in {} files",
        mb(tree.content_size()),
        tree.len()
    );
    let (write, cold, size, used, xz, compressed) = write_set(&tree, "cold");
    println!(
        "  write .img       {write:>8.2} s   ({:.0} MB image, {:.1} MB used blocks)",
        mb(size),
        mb(used)
    );
    println!(
        "  outputs, no compressed chunk cached     {cold:>8.2} s   ({compressed} distinct {} MiB chunks)",
        image::xz::CHUNK >> 20
    );
    let (_, warm, ..) = write_set(&tree, "warm");
    println!("  outputs, every chunk cached             {warm:>8.2} s");
    // One file edited, as an overlay edit would: same path, new content.
    let mut edited = tree.clone();
    edited.insert(
        "etc/hostname",
        builder::rootfs::tree::Node::file(
            b"edited-by-the-bench\n".to_vec(),
            0o644,
            lock.source_date_epoch,
        ),
    );
    let (edit_write, edit, .., compressed) = write_set(&edited, "edited");
    println!(
        "  one file edited: write .img {edit_write:.2} s + outputs {edit:.2} s = {:.2} s   ({compressed} chunks compressed)",
        edit_write + edit
    );
    println!("  .img.xz          {:>8.1} MB", mb(xz));
}
