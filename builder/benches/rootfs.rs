//! Times the rootfs stage of a board (default qemu-virt; `BENCH_BOARD=rpi4`):
//!
//! - cold: empty cache — download, verify, unpack, parse modules, assemble;
//! - warm: everything cached, but the board changed (its hostname), so the
//!   tree is assembled anew — the usual edit-and-rebuild loop;
//! - nothing changed: everything cached, nothing edited;
//! - re-unpack: packages downloaded but their unpacked contents dropped from
//!   the cache — unpack every .deb again from the local store.
//!
//! Run with `cargo bench -p builder --bench rootfs`. Needs a mirror, like
//! the builder. Cross-compiled crates come from cargo's cache after the first run.

use builder::config::Project;
use builder::pipeline::{Options, Pipeline};
use std::time::Instant;

fn main() {
    let board = std::env::var("BENCH_BOARD").unwrap_or_else(|_| "qemu-virt".into());
    let project = Project::from_workspace();
    let cache = tempfile::tempdir().expect("temp dir");
    let mut options = Options::for_board(&project, &board);
    options.cache_dir = cache.path().to_path_buf();
    options.target_dir = project.root.join("target/builder-tests");
    options.quiet = true;

    let run = |label: &str, hostname: Option<&str>| {
        let mut context = Pipeline::new(project.clone(), &options).expect("board loads");
        if let Some(hostname) = hostname {
            context.board.hostname = hostname.to_string().try_into().expect("a valid hostname");
        }
        let start = Instant::now();
        let (lock, tree) = context.rootfs().expect("rootfs builds");
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{label:<16} {seconds:>7.2} s   ({} packages, {} files, {:.1} MB, tree {})",
            lock.image_packages().count(),
            tree.len(),
            tree.content_size() as f64 / 1e6,
            &tree.digest()[..19]
        );
    };

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("rootfs stage of board {board} on {cores} cores");
    run("cold", None);
    run("warm", Some("bench-changed"));
    run("nothing changed", None);
    for derived in ["unpacked-v1", "modinfo-v1", "sysroot"] {
        let _ = std::fs::remove_dir_all(cache.path().join(derived));
    }
    run("re-unpack", None);
}
