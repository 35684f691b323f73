//! The loop a user lives in, timed end to end through `cargo run -p builder`
//! exactly as README tells them to type it (each figure is one command):
//!
//! - first image build with an empty package cache (downloads, verification,
//!   unpack, image, compression; the builder and vinyl-streamd already
//!   compiled);
//! - the same command again, nothing changed;
//! - one file added to an overlay (a new `.img`, `.img.xz`, checksums,
//!   bmap, manifest);
//! - the other board (`BENCH_OTHER_BOARD`, default qemu-virt) into its own
//!   output directory, twice: the first may download the packages only it
//!   uses, the second has everything cached;
//! - the `.img.xz`'s size;
//! - with `BENCH_COMPILE=1`, the first compile of the builder on a fresh
//!   clone (a new target directory; crates already downloaded).
//!
//! Needs a Debian mirror (`--mirror`'s sources: BUILDER_DEBIAN_MIRROR or
//! the host's apt sources). The package cache is a fresh temporary
//! directory; the added overlay file is removed again when the bench ends.
//! Run with `cargo bench -p builder --bench rebuild`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A file added to an overlay for one measurement, removed on drop (also
/// when a build fails and the bench panics).
struct AddedFile(PathBuf);

impl Drop for AddedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `cargo args...` in `dir` with `env` added; its wall time in seconds.
fn cargo_in(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> f64 {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let start = Instant::now();
    let status = Command::new(cargo)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .current_dir(dir)
        .status()
        .expect("running cargo");
    let seconds = start.elapsed().as_secs_f64();
    assert!(status.success(), "cargo {args:?} failed");
    seconds
}

/// Runs `cargo args...` in the workspace; its wall time in seconds.
fn cargo(args: &[&str]) -> f64 {
    cargo_in(&workspace(), args, &[])
}

fn build(board: &str, cache: &Path, out: &Path) -> f64 {
    cargo(&[
        "run",
        "-q",
        "-p",
        "builder",
        "--",
        "--board",
        board,
        "--quiet",
        "--cache-dir",
        cache.to_str().unwrap(),
        "build",
        "--out",
        out.to_str().unwrap(),
    ])
}

fn main() {
    let board = std::env::var("BENCH_BOARD").unwrap_or_else(|_| "rpi4".into());
    let other = std::env::var("BENCH_OTHER_BOARD").unwrap_or_else(|_| "qemu-virt".into());
    let scratch = tempfile::tempdir().expect("temp dir");
    let cache = scratch.path().join("cache");
    let out = scratch.path().join(&board);
    let report = |name: &str, value: String| println!("  {name:<58} {value}");
    println!("rebuild bench, board {board} (other board {other})");

    // Compile first, so that no figure below includes it.
    cargo(&["build", "-q", "-p", "builder"]);
    cargo(&["run", "-q", "-p", "builder", "--", "--help"]);

    let seconds = build(&board, &cache, &out);
    report(
        "first build, empty package cache",
        format!("{seconds:7.1} s"),
    );
    let seconds = build(&board, &cache, &out);
    report("nothing changed", format!("{seconds:7.2} s"));

    let added = AddedFile(workspace().join("overlay/base/etc/vinyl-rebuild-bench"));
    std::fs::write(&added.0, "one file added by the rebuild bench\n").expect("adding a file");
    let seconds = build(&board, &cache, &out);
    report("one overlay file added", format!("{seconds:7.1} s"));
    drop(added);
    let seconds = build(&board, &cache, &out);
    report("and removed again", format!("{seconds:7.1} s"));

    let other_out = scratch.path().join(&other);
    let seconds = build(&other, &cache, &other_out);
    report(
        &format!("other board ({other}), first time"),
        format!("{seconds:7.1} s"),
    );
    std::fs::remove_dir_all(&other_out).expect("removing the other board's outputs");
    let seconds = build(&other, &cache, &other_out);
    report(
        &format!("other board ({other}), packages and chunks cached"),
        format!("{seconds:7.1} s"),
    );

    let xz = std::fs::read_dir(&out)
        .expect("output directory")
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".img.xz"))
        .expect("an .img.xz");
    let size = std::fs::metadata(&xz).unwrap().len();
    report(".img.xz", format!("{:7.1} MB", size as f64 / 1e6));

    if std::env::var_os("BENCH_COMPILE").is_some_and(|v| v == "1") {
        let clone = scratch.path().join("clone");
        let status = Command::new("git")
            .args(["clone", "-q"])
            .arg(workspace())
            .arg(&clone)
            .status()
            .expect("git clone");
        assert!(status.success());
        let target = scratch.path().join("clone-target");
        let seconds = cargo_in(
            &clone,
            &["build", "-q", "-p", "builder"],
            &[("CARGO_TARGET_DIR", &target)],
        );
        report(
            "first compile of the builder (fresh clone)",
            format!("{seconds:7.1} s"),
        );
    }
}
