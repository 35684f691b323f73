//! The two copies of the boot state in the boot directory: reading them,
//! and writing a new state over the losing copy so that a power cut at any
//! instant leaves the previous winner readable.

use ab_state::{STATE_FILES, State};
use anyhow::{Context, Result, bail};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::Command;

/// One copy as read.
#[derive(Debug)]
pub struct Copy {
    /// Its file name (`ab-state-0.env`).
    pub file: &'static str,
    /// The state, or why the copy is not usable (`missing`, a bad CRC, …).
    pub state: Result<State, String>,
}

/// Both copies and the state in force.
#[derive(Debug)]
pub struct BootState {
    /// The copies, by copy number.
    pub copies: [Copy; 2],
    /// The winning copy; `None` when neither is valid.
    pub winner: Option<usize>,
    /// The winner's state, or (neither valid) a new image's state, which
    /// is what the boot script then boots: slot a.
    pub state: State,
}

impl BootState {
    /// The copy a write goes to: the loser (copy 0 when neither is valid).
    pub fn target(&self) -> usize {
        self.winner.map_or(0, ab_state::write_target)
    }
}

/// Reads both copies. A missing or corrupt copy is not valid; both missing
/// is an error (the boot partition is probably not mounted there), as is a
/// file that cannot be read.
pub fn read(dir: &Path) -> Result<BootState> {
    let meta = std::fs::metadata(dir).with_context(|| {
        format!(
            "the boot directory {}: is the boot partition mounted? (VINYL_BOOT_DIR names another directory)",
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        bail!("the boot directory {} is not a directory", dir.display());
    }
    let mut bytes: [Option<Vec<u8>>; 2] = [None, None];
    for (copy, file) in STATE_FILES.iter().enumerate() {
        let path = dir.join(file);
        match std::fs::read(&path) {
            Ok(content) => bytes[copy] = Some(content),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "reading {}: check the boot partition (fsck.vfat) before changing the boot state",
                        path.display()
                    )
                });
            }
        }
    }
    if bytes.iter().all(Option::is_none) {
        bail!(
            "no boot state in {}: neither {} nor {} exists; is the boot partition mounted there? \
             (VINYL_BOOT_DIR names another directory)",
            dir.display(),
            STATE_FILES[0],
            STATE_FILES[1]
        );
    }
    let copies = [0, 1].map(|copy| Copy {
        file: STATE_FILES[copy],
        state: match &bytes[copy] {
            None => Err("missing".to_string()),
            Some(content) => State::from_bytes(content).map_err(|e| e.to_string()),
        },
    });
    let winner = ab_state::current([bytes[0].as_deref(), bytes[1].as_deref()]);
    Ok(BootState {
        copies,
        winner: winner.as_ref().map(|(copy, _)| *copy),
        state: winner.map_or_else(|| State::initial(0), |(_, state)| state),
    })
}

/// What [`update`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The copy written.
    pub copy: usize,
    /// The state now in force.
    pub state: State,
}

/// Applies `change` to the state in force and, if it returns a new state,
/// writes that over the losing copy (see [`write_copy`]), remounting a
/// read-only boot directory read-write for the write and read-only again
/// afterwards. Writes nothing when `change` returns `None`.
///
/// Writers take an exclusive `flock` on the directory, so two never
/// interleave.
pub fn update(dir: &Path, change: impl FnOnce(&State) -> Option<State>) -> Result<Option<Written>> {
    let dir_file =
        File::open(dir).with_context(|| format!("opening the boot directory {}", dir.display()))?;
    rustix::fs::flock(&dir_file, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", dir.display()))?;
    let current = read(dir)?;
    let Some(next) = change(&current.state) else {
        return Ok(None);
    };
    let copy = current.target();
    let path = dir.join(STATE_FILES[copy]);
    let read_only = rustix::fs::statvfs(dir)
        .with_context(|| format!("checking how {} is mounted", dir.display()))?
        .f_flag
        .contains(rustix::fs::StatVfsMountFlags::RDONLY);
    writable(dir, read_only, &mut remount, || {
        write_copy(&path, &next.to_bytes()).with_context(|| {
            format!(
                "writing {} (the other copy still holds the previous state)",
                path.display()
            )
        })?;
        dir_file
            .sync_all()
            .with_context(|| format!("syncing the boot directory {}", dir.display()))
    })?;
    Ok(Some(Written { copy, state: next }))
}

/// Writes one copy in place: the existing file is overwritten without
/// truncation (as U-Boot does: nothing is reallocated on the FAT), created
/// only when missing, and synced before this returns.
pub fn write_copy(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.write_all(bytes)?;
    // A longer file would fail U-Boot's CRC over the whole file.
    if file.metadata()?.len() != bytes.len() as u64 {
        file.set_len(bytes.len() as u64)?;
    }
    file.sync_all()
}

/// How the boot directory is to be mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `remount,rw`, for the write.
    ReadWrite,
    /// `remount,ro`, afterwards.
    ReadOnly,
}

/// Runs `write` with `dir` writable: a read-only mount is remounted
/// read-write first and read-only afterwards, whether `write` failed or
/// not. A failure to remount read-only is a warning: the state is written.
pub fn writable<T>(
    dir: &Path,
    read_only: bool,
    remount: &mut dyn FnMut(&Path, Mode) -> Result<()>,
    write: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if !read_only {
        return write();
    }
    remount(dir, Mode::ReadWrite)?;
    let result = write();
    if let Err(e) = remount(dir, Mode::ReadOnly) {
        eprintln!(
            "vinyl-update: warning: {e:#}; {} stays writable until it is remounted or the device reboots",
            dir.display()
        );
    }
    result
}

/// `mount -o remount,rw|ro DIR`.
fn remount(dir: &Path, mode: Mode) -> Result<()> {
    let option = match mode {
        Mode::ReadWrite => "remount,rw",
        Mode::ReadOnly => "remount,ro",
    };
    let command = format!("mount -o {option} {}", dir.display());
    let output = Command::new("mount")
        .args(["-o", option])
        .arg(dir)
        .output()
        .with_context(|| format!("running `{command}`"))?;
    if !output.status.success() {
        bail!(
            "`{command}` failed ({}): {}; changing the boot state needs root",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_directory_is_remounted_around_the_write() {
        let dir = Path::new("/boot/firmware");
        let mut calls = Vec::new();
        let result = writable(
            dir,
            true,
            &mut |_, mode| {
                calls.push(mode);
                Ok(())
            },
            || anyhow::Ok(7),
        );
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls, [Mode::ReadWrite, Mode::ReadOnly]);
    }

    #[test]
    fn read_only_again_even_when_the_write_fails() {
        let mut calls = Vec::new();
        let result: Result<()> = writable(
            Path::new("/boot/firmware"),
            true,
            &mut |_, mode| {
                calls.push(mode);
                Ok(())
            },
            || bail!("disk full"),
        );
        assert_eq!(result.unwrap_err().to_string(), "disk full");
        assert_eq!(calls, [Mode::ReadWrite, Mode::ReadOnly]);
    }

    #[test]
    fn no_write_when_the_remount_fails_and_none_when_writable() {
        let mut wrote = false;
        let result = writable(
            Path::new("/boot/firmware"),
            true,
            &mut |_, _| bail!("not root"),
            || {
                wrote = true;
                Ok(())
            },
        );
        assert!(result.is_err() && !wrote);
        let mut calls = 0;
        writable(
            Path::new("/tmp"),
            false,
            &mut |_, _| {
                calls += 1;
                Ok(())
            },
            || Ok(()),
        )
        .unwrap();
        assert_eq!(calls, 0);
    }

    #[test]
    fn overwrites_in_place_and_fixes_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ab-state-1.env");
        write_copy(&path, &[1; 16]).unwrap();
        std::fs::write(&path, [9; 20]).unwrap();
        write_copy(&path, &[2; 16]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), [2; 16]);
    }
}
