//! Per-machine work directories: `<root>/<name>-<pid>-<n>/`, stable and
//! findable, kept after the test (only the big or stale files are removed).
//!
//! `<root>` is `$QEMU_TESTS_DIR` if set, else `<cargo target dir>/qemu-tests`
//! (found from the test executable's path, `<target>/<profile>/deps/…`),
//! else `<temp dir>/qemu-tests`.
//!
//! A leaf: it owns the names of the files in a work directory ([`Layout`]),
//! which the command lines, the backends and the machine all use.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

/// Overrides the directory work directories are made in.
pub const DIR_ENV: &str = "QEMU_TESTS_DIR";

/// The longest path a unix socket may have (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Where work directories go (see the module documentation).
pub fn root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
        return absolute(Path::new(&dir));
    }
    if let Some(target) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(target_dir_of)
    {
        return Ok(target.join("qemu-tests"));
    }
    Ok(std::env::temp_dir().join("qemu-tests"))
}

/// The cargo target directory of an executable at `<target>/<profile>/deps/x`
/// (tests) or `<target>/<profile>/examples/x`.
pub fn target_dir_of(exe: &Path) -> Option<PathBuf> {
    let parent = exe.parent()?;
    match parent.file_name()?.to_str()? {
        "deps" | "examples" => Some(parent.parent()?.parent()?.to_path_buf()),
        _ => None,
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(format!("resolving {}", path.display()), e))
}

/// `name` with every character but letters, digits, `.`, `_` and `-`
/// replaced by `_`, at most 40 characters (socket paths are short).
pub fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if clean.is_empty() { "vm".into() } else { clean }
}

/// Creates a fresh work directory for machine `name` under `root`.
pub fn create(root: &Path, name: &str) -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    fs::create_dir_all(root).map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
    let name = sanitize(name);
    let pid = std::process::id();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("{name}-{pid}-{n}"));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            // left over from an earlier run whose process had our pid
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
        }
    }
}

/// Tidies work directories whose test process died without dropping its
/// machine (SIGKILL, abort): their lock file is no longer held, so their
/// overlay and sockets are removed. Logs stay. Directories of live
/// processes are left alone.
pub fn sweep_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let layout = Layout::new(entry.path());
        if is_stale(&layout.dir) {
            for file in [
                &layout.overlay,
                &layout.shell_socket,
                &layout.qmp_socket,
                &layout.lock,
            ] {
                let _ = fs::remove_file(file);
            }
        }
    }
}

/// Whether work directory `dir` belonged to a machine whose test process is
/// gone: it has a lock file that nobody holds. (A dropped machine removes
/// its lock file: its directory is finished, not stale.)
pub fn is_stale(dir: &Path) -> bool {
    let Ok(lock) = fs::File::open(Layout::new(dir).lock) else {
        return false;
    };
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

/// Whether a live test process holds `dir`'s lock, i.e. its machine runs.
pub fn is_live(dir: &Path) -> bool {
    let Ok(lock) = fs::File::open(Layout::new(dir).lock) else {
        return false;
    };
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
}

/// The files of one machine's work directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The work directory itself.
    pub dir: PathBuf,
    /// The serial console log (kept).
    pub console_log: PathBuf,
    /// QEMU's and qemu-img's stdout and stderr (kept).
    pub qemu_log: PathBuf,
    /// The command line that was run, for reproducing by hand (kept).
    pub command_file: PathBuf,
    /// The qcow2 overlay the machine writes to (removed on drop).
    pub overlay: PathBuf,
    /// The host end of the guest shell channel (removed on drop).
    pub shell_socket: PathBuf,
    /// QEMU's QMP socket (removed on drop).
    pub qmp_socket: PathBuf,
    /// Held locked by the test process while the machine lives; the docker
    /// backend's container kills QEMU when the lock is released.
    pub lock: PathBuf,
    /// The docker backend writes QEMU's exit status here.
    pub exit_file: PathBuf,
}

impl Layout {
    /// The layout of work directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Layout {
            console_log: dir.join("console.log"),
            qemu_log: dir.join("qemu.log"),
            command_file: dir.join("command.sh"),
            overlay: dir.join("disk.qcow2"),
            shell_socket: dir.join("shell.sock"),
            qmp_socket: dir.join("qmp.sock"),
            lock: dir.join("alive.lock"),
            exit_file: dir.join("qemu.exit"),
            dir,
        }
    }
}

/// Writes `command` to the work directory's `command.sh`, to re-run by hand.
pub fn write_command_file(layout: &Layout, command: &str) -> Result<()> {
    let text = format!(
        "#!/bin/sh\n# How qemu-tests started this machine (work directory {}).\n{command}\n",
        layout.dir.display()
    );
    fs::write(&layout.command_file, text)
        .map_err(|e| Error::io(format!("writing {}", layout.command_file.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_dir_from_test_executables() {
        assert_eq!(
            target_dir_of(Path::new("/w/target/debug/deps/harness-0123")),
            Some(PathBuf::from("/w/target"))
        );
        assert_eq!(
            target_dir_of(Path::new(
                "/w/t/aarch64-unknown-linux-gnu/release/examples/x"
            )),
            Some(PathBuf::from("/w/t/aarch64-unknown-linux-gnu"))
        );
        assert_eq!(target_dir_of(Path::new("/usr/bin/prog")), None);
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("boot a/b: ok"), "boot_a_b__ok");
        assert_eq!(sanitize(""), "vm");
        assert_eq!(sanitize(&"x".repeat(100)).len(), 40);
    }

    #[test]
    fn work_dirs_are_fresh() {
        let root = std::env::temp_dir().join(format!("qemu-tests-workdir-{}", std::process::id()));
        let a = create(&root, "m").unwrap();
        let b = create(&root, "m").unwrap();
        assert_ne!(a, b);
        let prefix = format!("m-{}-", std::process::id());
        assert!(
            a.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&prefix)
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn stale_dirs_lose_their_overlay_but_live_ones_do_not() {
        let root = std::env::temp_dir().join(format!("qemu-tests-sweep-{}", std::process::id()));
        let stale = Layout::new(create(&root, "stale").unwrap());
        let live = Layout::new(create(&root, "live").unwrap());
        for layout in [&stale, &live] {
            fs::write(&layout.overlay, "qcow2").unwrap();
            fs::write(&layout.console_log, "log").unwrap();
            fs::write(&layout.lock, "").unwrap();
        }
        let held = fs::File::open(&live.lock).unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
        sweep_stale(&root);
        assert!(!stale.overlay.exists() && !stale.lock.exists());
        assert!(stale.console_log.exists());
        assert!(live.overlay.exists() && live.lock.exists());
        drop(held);
        fs::remove_dir_all(&root).unwrap();
    }
}
