//! A real build of qemu-virt, through the `builder` binary, interrupted
//! while it writes its outputs: `--out` keeps the complete previous set and
//! nothing partial is left; the next build completes the new set.
//!
//! Needs a Debian mirror (from $BUILDER_DEBIAN_MIRROR or the host's apt
//! sources) and the cross toolchain (`builder doctor`): without them it
//! fails in CI and is skipped, with the reason, in a local run. It shares
//! the default package cache and `target/builder-tests` with the QEMU
//! tests' qemu-virt builds: the same sysroot path means the same cross
//! build of vinyl-streamd, so whichever runs first downloads and compiles
//! for both.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::prerequisites_or_skip;

const NAME: &str = "vinyl-qemu-virt";

fn workspace() -> PathBuf {
    builder::config::Project::from_workspace().root
}

/// `builder --board qemu-virt build --out <out> --xz-level 0 <extra>`.
fn build(out: &Path, extra: &[&str]) -> Command {
    let root = workspace();
    let mut command = Command::new(env!("CARGO_BIN_EXE_builder"));
    command
        .arg("--cache-dir")
        .arg(builder::store::Store::default_root())
        .args(["--quiet", "--board", "qemu-virt", "build", "--out"])
        .arg(out)
        .args(["--xz-level", "0"])
        .args(extra)
        // The outer `cargo test` owns the default target directory.
        .env("CARGO_TARGET_DIR", root.join("target/builder-tests"))
        .stdin(Stdio::null());
    command
}

fn run(mut command: Command) -> ExitStatus {
    let output = command.output().expect("the builder runs");
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.status
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// `sha256sum -c` of every `.sha256` file, run in `out` as a user would.
fn checksums_pass(out: &Path) {
    let sums: Vec<String> = listing(out)
        .into_iter()
        .filter(|n| n.ends_with(".sha256"))
        .collect();
    assert!(!sums.is_empty(), "no checksum files in {}", out.display());
    let output = Command::new("sha256sum")
        .arg("-c")
        .args(&sums)
        .current_dir(out)
        .output()
        .expect("sha256sum runs");
    assert!(
        output.status.success(),
        "sha256sum -c {sums:?} in {}:\n{}{}",
        out.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Staging directories beside `out` and temporary files inside it.
fn leftovers(out: &Path) -> Vec<String> {
    let parent = listing(out.parent().unwrap())
        .into_iter()
        .filter(|n| n.starts_with(".out.") && n != ".out.lock");
    let inside = listing(out).into_iter().filter(|n| n.starts_with(".tmp"));
    parent.chain(inside).collect()
}

/// The staging directory of the running build, once there is one.
fn staging(out: &Path) -> Option<PathBuf> {
    listing(out.parent().unwrap())
        .into_iter()
        .find(|n| n.starts_with(".out.staging-"))
        .map(|n| out.parent().unwrap().join(n))
}

/// Sends SIGTERM to `child` as soon as `ready` (polled) says it is in the
/// middle of `what`; returns how it ended and what it printed.
fn terminate_when(
    mut child: std::process::Child,
    ready: impl Fn() -> bool,
    what: &str,
) -> (ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the build ended ({status}) before it was seen {what}; stderr: {}",
                std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "never seen {what}");
        if ready() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(!status.success(), "{status}: {stderr}");
    (status, stderr)
}

#[test]
fn a_build_interrupted_while_writing_leaves_the_previous_outputs_whole() {
    if !prerequisites_or_skip("a_build_interrupted_while_writing_leaves_the_previous_outputs_whole")
    {
        return;
    }
    let started = Instant::now();
    let root = workspace().join("target/builder-tests");
    std::fs::create_dir_all(&root).unwrap();
    // On the workspace's disk: the raw image is 2 GiB (sparse).
    let dir = tempfile::tempdir_in(&root).unwrap();
    let out = dir.path().join("out");

    // The first set.
    run(build(&out, &[]));
    let first = listing(&out);
    assert!(first.contains(&format!("{NAME}.img")), "{first:?}");
    assert!(
        first.contains(&".vinyl-build.json".to_string()),
        "{first:?}"
    );
    checksums_pass(&out);
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();
    eprintln!("first build: {:.0?}", started.elapsed());

    // A build that also writes the root filesystem tar, terminated while
    // the tar's temporary file grows: no temporary file is left.
    let tar = dir.path().join("root.tar");
    let tar_arg = tar.to_str().unwrap();
    let child = build(&out, &["--rootfs-tar", tar_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let partial_tar = || {
        listing(dir.path())
            .into_iter()
            .find(|n| n.starts_with(".root.tar."))
            .and_then(|n| std::fs::metadata(dir.path().join(n)).ok())
            .is_some_and(|m| m.len() > 1 << 20)
    };
    let (status, stderr) = terminate_when(child, partial_tar, "writing the tar");
    assert_eq!(status.code(), Some(143), "{status}: {stderr}");
    assert_eq!(
        listing(dir.path()),
        [".out.lock", "out"],
        "partial tar left"
    );
    assert_eq!(listing(&out), first);

    // A second build with other outputs (a .img.gz too), terminated while
    // it compresses into its staging directory.
    let second = Instant::now();
    let child = build(&out, &["--gzip"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let compressing = || {
        staging(&out)
            .and_then(|dir| std::fs::metadata(dir.join(format!("{NAME}.img.gz"))).ok())
            .is_some_and(|m| m.len() > 1 << 20)
    };
    let (status, stderr) = terminate_when(child, compressing, "compressing");
    eprintln!("second build terminated after {:.0?}", second.elapsed());
    assert!(!status.success(), "{status}: {stderr}");
    assert_eq!(
        status.code(),
        Some(143),
        "128 + SIGTERM: {status}: {stderr}"
    );
    // The complete old set, byte for byte as checked, and nothing else.
    assert_eq!(listing(&out), first);
    checksums_pass(&out);
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), manifest);
    assert_eq!(
        leftovers(&out),
        Vec::<String>::new(),
        "partial outputs left"
    );

    // The second build, completed: the new set, consistent.
    let third = Instant::now();
    run(build(&out, &["--gzip"]));
    eprintln!("second build completed in {:.0?}", third.elapsed());
    let mut expected = first.clone();
    expected.extend([format!("{NAME}.img.gz"), format!("{NAME}.img.gz.sha256")]);
    expected.sort();
    assert_eq!(listing(&out), expected);
    checksums_pass(&out);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let stamp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(".vinyl-build.json")).unwrap()).unwrap();
    assert_eq!(manifest["build-key"], stamp["build-key"]);
    assert_eq!(
        stamp["files"].as_object().unwrap().len(),
        expected.len() - 1,
        "every output but the stamp is in the stamp"
    );
    assert_eq!(leftovers(&out), Vec::<String>::new());
    eprintln!("whole test: {:.0?}", started.elapsed());
}
