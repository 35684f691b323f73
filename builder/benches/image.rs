//! Times writing a board's SD card image (default rpi4; `BENCH_BOARD=...`)
//! and reports its sizes:
//!
//! - write: partition table, FAT and the ext4 filesystems (the .img);
//! - outputs: sha256 + multi-threaded xz, bmap, manifest, SBOM;
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
    let out = tempfile::tempdir().expect("temp dir");

    let spec = context
        .image_spec(&lock, out.path(), &Default::default())
        .expect("image spec");
    let sources = image::Sources {
        lock: &lock,
        tree: &tree,
        store: &context.store,
        progress: &context.progress,
    };

    let start = Instant::now();
    let (disk, layout) = image::write_disk(&spec, sources, out.path()).expect("image writes");
    let write = start.elapsed().as_secs_f64();
    let used = outputs::mapped_ranges(&disk, layout.size)
        .iter()
        .map(|(s, e)| e - s)
        .sum::<u64>();
    let start = Instant::now();
    let key = image::build_key(&spec, &lock, &tree);
    let files = outputs::write_all(&spec, sources, &layout, &disk, &key, out.path())
        .expect("outputs write");
    let compress = start.elapsed().as_secs_f64();
    let xz = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "xz"))
        .and_then(|f| std::fs::metadata(f).ok())
        .map_or(0, |m| m.len());

    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!("image of board {board}");
    println!(
        "  root tree        {:>8.1} MB in {} files",
        mb(tree.content_size()),
        tree.len()
    );
    println!(
        "  write .img       {write:>8.2} s   ({:.0} MB image, {:.1} MB used blocks)",
        mb(layout.size),
        mb(used)
    );
    println!("  outputs (xz ...) {compress:>8.2} s");
    println!("  .img.xz          {:>8.1} MB", mb(xz));
}
