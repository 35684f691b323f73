//! The docker backend's runner image, built locally (there is no registry).
//!
//! Our own builder turns the `qemu-runner` board (amd64 Debian packages:
//! QEMU, qemu-img and what they need) into a root filesystem tarball:
//!
//! ```sh
//! cargo run -p builder -- --board qemu-runner build --rootfs-tar FILE
//! ```
//!
//! which `docker import` makes the image `vinyl-qemu-runner:<digest>`, the
//! digest being the tarball's SHA-256 (first 16 hex digits). A tag that
//! already exists is used as it is; the builder itself skips work when
//! nothing changed. Overrides, in order:
//!
//! - `QEMU_TESTS_RUNNER_IMAGE=name:tag`: use this existing local image;
//! - `QEMU_TESTS_RUNNER_TAR=FILE`: import this tarball instead of building one.
//!
//! The image must have `/bin/sh`, `flock` and `nsenter` (util-linux) besides QEMU.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result, tail_lines};
use crate::host::run_checked;
use crate::workdir;

/// The image's repository name.
pub const IMAGE_NAME: &str = "vinyl-qemu-runner";
/// Names an existing image to use as the runner.
pub const RUNNER_IMAGE_ENV: &str = "QEMU_TESTS_RUNNER_IMAGE";
/// Names a root filesystem tarball to import instead of building one.
pub const RUNNER_TAR_ENV: &str = "QEMU_TESTS_RUNNER_TAR";
/// The builder board the runner is made from.
pub const BOARD: &str = "qemu-runner";

/// The image tag for a tarball with this SHA-256 (hex).
pub fn tag_for_digest(sha256_hex: &str) -> String {
    format!("{IMAGE_NAME}:{}", &sha256_hex[..16.min(sha256_hex.len())])
}

/// Makes sure the runner image exists and returns its `name:tag`. Builds
/// and imports at most once per process; other processes wait on a file lock.
pub fn ensure() -> Result<String> {
    static TAG: Mutex<Option<String>> = Mutex::new(None);
    let mut cached = TAG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tag) = cached.as_ref() {
        return Ok(tag.clone());
    }
    let tag = match std::env::var(RUNNER_IMAGE_ENV) {
        Ok(tag) if !tag.trim().is_empty() => {
            if !image_exists(&tag)? {
                return Err(Error::Setup(format!(
                    "{RUNNER_IMAGE_ENV}={tag}: no such local docker image"
                )));
            }
            tag
        }
        _ => build_and_import()?,
    };
    probe_image(&tag)?;
    *cached = Some(tag.clone());
    Ok(tag)
}

fn build_and_import() -> Result<String> {
    let dir = workdir::root()?.join("runner");
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // One build at a time across processes (parallel test binaries).
    let lock_path = dir.join("lock");
    let lock = File::create(&lock_path)
        .map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e.into()))?;

    let tar = match std::env::var_os(RUNNER_TAR_ENV) {
        Some(tar) if !tar.is_empty() => PathBuf::from(tar),
        _ => build_tar(&dir)?,
    };
    let digest = sha256_file(&tar)?;
    let tag = tag_for_digest(&digest);
    if !image_exists(&tag)? {
        let started = Instant::now();
        run_checked(
            Command::new("docker").arg("import").arg(&tar).arg(&tag),
            "importing the runner image",
        )?;
        eprintln!(
            "qemu-tests: imported {} as {tag} in {:.1?}",
            tar.display(),
            started.elapsed()
        );
    }
    Ok(tag)
}

/// Runs the workspace's builder to write the runner's root filesystem tarball.
fn build_tar(dir: &Path) -> Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("qemu-tests lives inside the workspace");
    let board = workspace.join("boards").join(format!("{BOARD}.toml"));
    if !board.is_file() {
        return Err(Error::ToolMissing {
            tool: format!("the {BOARD} board"),
            install: format!(
                "add {} (or set {RUNNER_TAR_ENV} or {RUNNER_IMAGE_ENV})",
                board.display()
            ),
            detail: "the docker runner image is built from it".into(),
        });
    }
    let tar = dir.join("qemu-runner-rootfs.tar");
    let log = dir.join("build.log");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "run", "--quiet", "-p", "builder", "--", "--board", BOARD, "build", "--out",
        ])
        .arg(dir.join("out"))
        .arg("--rootfs-tar")
        .arg(&tar);
    let started = Instant::now();
    let output = command
        .output()
        .map_err(|e| Error::io(format!("running {command:?}"), e))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = fs::write(&log, &text);
    if !output.status.success() || !tar.is_file() {
        return Err(Error::Setup(format!(
            "building the docker runner image's root filesystem failed ({}):\n  {command:?}\n  \
             full output: {}\n{}\n  (or set {RUNNER_TAR_ENV}=FILE or {RUNNER_IMAGE_ENV}=name:tag)",
            output.status,
            log.display(),
            tail_lines(&text, 30)
        )));
    }
    eprintln!(
        "qemu-tests: built the runner root filesystem {} in {:.1?}",
        tar.display(),
        started.elapsed()
    );
    Ok(tar)
}

fn sha256_file(path: &Path) -> Result<String> {
    let what = || format!("reading {}", path.display());
    let mut file = File::open(path).map_err(|e| Error::io(what(), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(what(), e)),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What the harness runs inside the container.
const PROBE: &str = "for p in qemu-system-aarch64 qemu-img flock nsenter kill; do \
     command -v $p >/dev/null || { echo \"$p is missing\"; exit 1; }; done; \
     qemu-system-aarch64 --version && qemu-img --version >/dev/null";

/// Checks that `tag` can run the harness's container script: `/bin/sh`,
/// QEMU, qemu-img, `flock`, `nsenter`.
fn probe_image(tag: &str) -> Result<()> {
    let output = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            tag,
            "/bin/sh",
            "-c",
            PROBE,
        ])
        .output()
        .map_err(|e| Error::io("running docker run", e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Setup(format!(
        "the docker runner image {tag} cannot run the harness (it needs /bin/sh, \
         qemu-system-aarch64, qemu-img, flock and nsenter; it is built from \
         boards/{BOARD}.toml): `docker run {tag} /bin/sh -c …` failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
}

/// Whether the local image `tag` exists (never pulls).
pub fn image_exists(tag: &str) -> Result<bool> {
    let status = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", tag])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| Error::io("running docker image inspect", e))?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_the_digest_prefix() {
        assert_eq!(
            tag_for_digest("0123456789abcdef0123456789abcdef"),
            "vinyl-qemu-runner:0123456789abcdef"
        );
    }

    #[test]
    fn file_digest() {
        let path = std::env::temp_dir().join(format!("qemu-tests-digest-{}", std::process::id()));
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        fs::remove_file(&path).unwrap();
    }
}
