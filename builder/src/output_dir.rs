//! An output directory replaced as one set: at every instant `--out` holds
//! either the complete previous set of outputs or the complete new one.
//!
//! [`OutputDir::lock`] takes an exclusive lock on a hidden file beside the
//! directory (`.<name>.lock`), so two builds never write the same directory,
//! and removes what killed builds left: staging directories beside it
//! (`.<name>.staging-*`; whoever made them is dead, since we hold the lock)
//! and `.tmp*` files inside it (earlier builder versions wrote there).
//! [`OutputDir::stage`] makes a fresh staging directory beside `--out` (same
//! filesystem), the build writes everything into it under final names, and
//! [`Staging::publish`] fsyncs it, writes the [stamp](STAMP) and swaps it in
//! with one `renameat2(RENAME_EXCHANGE)`; the old set, now at the staging
//! path, is removed afterwards.
//!
//! The stamp (`.vinyl-build.json`, part of the set but not one of its
//! outputs) records the build key and every output file's size, mtime and
//! inode as they were in the staging directory; a rename keeps them, so
//! [`OutputDir::is_current`] knows a set is still the one that was written
//! with a few `stat` calls.
//!
//! `--out` may be a directory the user chose: if it exists, is not empty and
//! holds no earlier build (neither our stamp nor a `manifest.json`), it is
//! refused, never swapped away. Files in it that are not ours (a test's
//! `u-boot.bin` beside the image) are carried over into the new set.
//!
//! A build interrupted by SIGINT, SIGTERM or SIGHUP removes its staging
//! directory (and any other path registered with [`RemoveOnSignal`]) and
//! exits with 128 + the signal, once the binary has called
//! [`remove_pending_on_signals`]. A build killed outright leaves its
//! staging directory for the next build to remove.

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, TryLockError};
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The stamp file inside an output directory: the build key and the
/// output files as written. Not an output itself (not reproducible).
pub const STAMP: &str = ".vinyl-build.json";

/// The file that marks a directory written by earlier builder versions.
const MANIFEST: &str = "manifest.json";

/// What `stat` says of an output file, as recorded in the stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileStat {
    size: u64,
    #[serde(rename = "mtime-ns")]
    mtime_ns: i64,
    inode: u64,
}

impl FileStat {
    fn of(path: &Path) -> io::Result<FileStat> {
        let meta = fs::symlink_metadata(path)?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(FileStat {
            size: meta.len(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            inode: meta.ino(),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Stamp {
    #[serde(rename = "build-key")]
    key: String,
    files: BTreeMap<String, FileStat>,
}

impl Stamp {
    fn read(dir: &Path) -> Option<Stamp> {
        serde_json::from_slice(&fs::read(dir.join(STAMP)).ok()?).ok()
    }
}

/// An output directory, locked against other builds while this value lives.
#[derive(Debug)]
pub struct OutputDir {
    /// Absolute, symbolic links resolved: the directory that is swapped.
    path: PathBuf,
    parent: PathBuf,
    name: OsString,
    _lock: File,
}

impl OutputDir {
    /// Locks `path` for this build (waiting for another build that holds
    /// it), refuses a directory of other files, and removes what killed
    /// builds left beside and inside it. Creates `path`'s parent, not
    /// `path` itself.
    pub fn lock(path: &Path) -> Result<OutputDir> {
        let (resolved, parent, name) = resolve(path)?;
        let lock_path = parent.join(hidden(&name, ".lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("creating the lock file {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                tracing::info!("waiting for another build writing {}", resolved.display());
                lock.lock()
                    .with_context(|| format!("locking {}", lock_path.display()))?;
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()));
            }
        }
        let dir = OutputDir {
            path: resolved,
            parent,
            name,
            _lock: lock,
        };
        refuse_foreign(&dir.path)?;
        dir.remove_leftovers()?;
        Ok(dir)
    }

    /// The directory the set is swapped into (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory holds the set written with `key`, with exactly
    /// the output `files`, each still the file that was written (same size,
    /// mtime and inode). Cheap: only `stat`.
    pub fn is_current(&self, key: &str, files: &[String]) -> bool {
        let Some(stamp) = Stamp::read(&self.path) else {
            return false;
        };
        stamp.key == key
            && stamp.files.len() == files.len()
            && files.iter().all(|name| {
                stamp.files.get(name).is_some_and(|recorded| {
                    FileStat::of(&self.path.join(name)).is_ok_and(|now| &now == recorded)
                })
            })
    }

    /// A fresh, empty staging directory beside the output directory (with
    /// its permissions when it exists, else as `mkdir` makes one: following
    /// the umask, so `out/` can be served or shared). Removed again when
    /// dropped unpublished, or when the process is interrupted.
    pub fn stage(&self) -> Result<Staging<'_>> {
        let prefix = self.staging_prefix();
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).rand_bytes(8);
        if let Ok(meta) = fs::metadata(&self.path) {
            builder.permissions(meta.permissions());
        }
        let path = builder
            .tempdir_in(&self.parent)
            .with_context(|| {
                format!(
                    "creating a staging directory in {} (the outputs are written beside {} and swapped in)",
                    self.parent.display(),
                    self.path.display()
                )
            })?
            .keep();
        Ok(Staging {
            dir: self,
            _remove: RemoveOnSignal::new(&path),
            path,
            published: false,
        })
    }

    fn staging_prefix(&self) -> OsString {
        hidden(&self.name, ".staging-")
    }

    /// Staging directories of killed builds beside the directory, and the
    /// temporary files earlier builder versions wrote inside it.
    fn remove_leftovers(&self) -> Result<()> {
        let prefix = self.staging_prefix();
        let prefix = prefix.as_encoded_bytes();
        let entries = fs::read_dir(&self.parent)
            .with_context(|| format!("reading {}", self.parent.display()))?;
        for entry in entries.flatten() {
            if entry.file_name().as_encoded_bytes().starts_with(prefix) {
                let path = entry.path();
                tracing::info!("removing {}, left by an interrupted build", path.display());
                remove(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        if let Ok(entries) = fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                if is_legacy_temp(&entry.file_name())
                    && entry.file_type().is_ok_and(|t| t.is_file())
                {
                    let path = entry.path();
                    tracing::info!("removing {}, left by an interrupted build", path.display());
                    fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
        Ok(())
    }
}

/// Checks, without locking, that `path` could be an output directory: new,
/// empty, or holding an earlier build. For failing before a long build.
/// Creates nothing.
pub fn check(path: &Path) -> Result<()> {
    match fs::canonicalize(path) {
        Ok(resolved) => refuse_foreign(&resolved),
        // New (or a dangling link, which `OutputDir::lock` names).
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("output directory {}", path.display())),
    }
}

/// A staging directory being filled; see [`Staging::publish`].
#[derive(Debug)]
pub struct Staging<'a> {
    dir: &'a OutputDir,
    path: PathBuf,
    /// Set once swapped in: the path then holds the old set, or nothing.
    published: bool,
    _remove: RemoveOnSignal,
}

impl Staging<'_> {
    /// Where the outputs are written, under their final names.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Swaps the staging directory in as the output directory: records the
    /// `files` (names inside the staging directory, every one of which must
    /// exist) and `key` in the stamp, fsyncs, carries over the entries of
    /// the old directory that are not ours, exchanges the two directories
    /// and removes the old set. `former` names files earlier sets of these
    /// outputs may have had (never carried over, as are those in the old
    /// stamp).
    ///
    /// The exchange is one `renameat2(RENAME_EXCHANGE)`. On a filesystem
    /// that refuses it (EINVAL, ENOSYS, EOPNOTSUPP: some network and FUSE
    /// filesystems) the old set is renamed away and the new one renamed in,
    /// and for that moment `--out` does not exist: a build killed right
    /// then leaves both sets as staging directories, which the next build
    /// removes.
    pub fn publish(mut self, key: &str, files: &[String], former: &[String]) -> Result<()> {
        let mut stamp = Stamp {
            key: key.to_string(),
            files: BTreeMap::new(),
        };
        for name in files {
            let path = self.path.join(name);
            File::open(&path)
                .and_then(|file| file.sync_all())
                .with_context(|| format!("syncing the output {}", path.display()))?;
            let stat =
                FileStat::of(&path).with_context(|| format!("the output {}", path.display()))?;
            stamp.files.insert(name.clone(), stat);
        }
        let stamp_path = self.path.join(STAMP);
        let mut file = File::create(&stamp_path)
            .with_context(|| format!("writing {}", stamp_path.display()))?;
        file.write_all(&serde_json::to_vec_pretty(&stamp)?)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        sync_dir(&self.path)?;

        let target = &self.dir.path;
        let old_stamp = Stamp::read(target);
        let ours: BTreeSet<&str> = files
            .iter()
            .chain(former)
            .chain(old_stamp.iter().flat_map(|s| s.files.keys()))
            .map(String::as_str)
            .chain([STAMP])
            .collect();
        // The signal handler waits while entries move between the two
        // directories: it must never remove a staging directory holding
        // the user's files.
        let mut held = pending();
        let old = if exists(target)? {
            let moved = carry_over(target, &self.path, |name| ours.contains(name))?;
            match exchange(&self.path, target, &mut held) {
                Ok(old) => old,
                Err(error) => {
                    for name in moved {
                        let _ = fs::rename(self.path.join(&name), target.join(&name));
                    }
                    return Err(error);
                }
            }
        } else {
            fs::rename(&self.path, target).with_context(|| {
                format!("renaming {} to {}", self.path.display(), target.display())
            })?;
            None
        };
        self.published = true;
        drop(held);
        sync_dir(&self.dir.parent)?;
        if let Some((old, _remove)) = old
            && let Err(error) = remove(&old)
        {
            tracing::warn!(
                "could not remove the previous outputs {}: {error}",
                old.display()
            );
        }
        Ok(())
    }
}

impl Drop for Staging<'_> {
    /// Unpublished (an error on the way): nothing of it stays.
    fn drop(&mut self) {
        if !self.published {
            let _ = remove(&self.path);
        }
    }
}

/// Exchanges `staging` and `target`; returns where the old set now is,
/// registered for removal on a signal (`pending` is the held registry; the
/// handler cannot run before it is released).
fn exchange(
    staging: &Path,
    target: &Path,
    pending: &mut Vec<PathBuf>,
) -> Result<Option<(PathBuf, RemoveOnSignal)>> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, staging, CWD, target, RenameFlags::EXCHANGE) {
        // The staging path, already registered, now holds the old set.
        Ok(()) => Ok(Some((staging.to_path_buf(), register(pending, staging)))),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            // No atomic exchange here: move the old set away (under a
            // staging name, so the next build removes it if this one is
            // killed), then the new one in.
            let mut away = staging.as_os_str().to_os_string();
            away.push(".old");
            let away = PathBuf::from(away);
            fs::rename(target, &away)
                .with_context(|| format!("renaming {} to {}", target.display(), away.display()))?;
            if let Err(error) = fs::rename(staging, target) {
                let _ = fs::rename(&away, target);
                return Err(error).with_context(|| {
                    format!("renaming {} to {}", staging.display(), target.display())
                });
            }
            // Registered only now: a guard dropped while the registry is
            // held would wait for it forever.
            let registered = register(pending, &away);
            Ok(Some((away, registered)))
        }
        Err(errno) => Err(io::Error::from(errno))
            .with_context(|| format!("swapping {} in as {}", staging.display(), target.display())),
    }
}

/// Moves the entries of `from` that are not `ours` into `to`: files by a
/// hard link (the original stays in the old set until the swap is done),
/// anything else by a rename. Returns the renamed names, for putting back.
fn carry_over(from: &Path, to: &Path, ours: impl Fn(&str) -> bool) -> Result<Vec<OsString>> {
    let mut moved = Vec::new();
    let entries = fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(&ours) {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(&name));
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && fs::hard_link(&source, &dest).is_ok() {
            continue;
        }
        if let Err(error) = fs::rename(&source, &dest) {
            for name in moved {
                let _ = fs::rename(to.join(&name), from.join(&name));
            }
            return Err(error).with_context(|| {
                format!("carrying {} over into the new outputs", source.display())
            });
        }
        moved.push(name);
    }
    Ok(moved)
}

/// `path` made absolute with symbolic links resolved (a link to a directory
/// swaps the directory, not the link), its parent (created if missing) and
/// its name.
fn resolve(path: &Path) -> Result<(PathBuf, PathBuf, OsString)> {
    let absolute = std::path::absolute(path)
        .with_context(|| format!("output directory {}", path.display()))?;
    let resolved = match fs::canonicalize(&absolute) {
        Ok(resolved) => resolved,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(&absolute).is_ok() {
                bail!(
                    "output directory {} is a symbolic link to nothing",
                    path.display()
                );
            }
            let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
                bail!("{} cannot be an output directory", path.display());
            };
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            fs::canonicalize(parent)
                .with_context(|| format!("output directory {}", path.display()))?
                .join(name)
        }
        Err(e) => {
            return Err(e).with_context(|| format!("output directory {}", path.display()));
        }
    };
    let (Some(parent), Some(name)) = (resolved.parent(), resolved.file_name()) else {
        bail!("{} cannot be an output directory", path.display());
    };
    Ok((resolved.clone(), parent.to_path_buf(), name.to_os_string()))
}

/// Fails unless `dir` is missing, empty (but for earlier versions'
/// temporary files) or holds an earlier build.
fn refuse_foreign(dir: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("output directory {}", dir.display())),
    };
    if !meta.is_dir() {
        bail!(
            "output directory {} is not a directory; choose an empty or new directory (--out DIR)",
            dir.display()
        );
    }
    let mut others = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name();
        if name == STAMP || name == MANIFEST {
            return Ok(());
        }
        if !is_legacy_temp(&name) {
            others += 1;
        }
    }
    if others > 0 {
        bail!(
            "output directory {} is not empty and holds no earlier build (no {MANIFEST}); \
             the builder replaces its output directory as a whole and will not replace this one: \
             choose an empty or new directory (--out DIR)",
            dir.display()
        );
    }
    Ok(())
}

/// `tempfile`'s default name, `.tmp` and six letters or digits: what
/// earlier builder versions left in the output directory when killed.
fn is_legacy_temp(name: &OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.len() == 10 && name.starts_with(b".tmp") && name[4..].iter().all(u8::is_ascii_alphanumeric)
}

/// `.<name><suffix>`.
fn hidden(name: &OsStr, suffix: &str) -> OsString {
    let mut hidden = OsString::from(".");
    hidden.push(name);
    hidden.push(suffix);
    hidden
}

fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("output directory {}", path.display())),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Removes a file or a whole directory.
fn remove(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

// Removal on SIGINT, SIGTERM and SIGHUP.

/// Paths a signal removes: partial outputs of the running build.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A path (file or directory) that an interruption removes, as long as this
/// value lives. Works once [`remove_pending_on_signals`] was called.
#[derive(Debug)]
pub struct RemoveOnSignal(PathBuf);

impl RemoveOnSignal {
    pub fn new(path: &Path) -> RemoveOnSignal {
        register(&mut pending(), path)
    }
}

/// [`RemoveOnSignal::new`] with the registry already held.
fn register(pending: &mut Vec<PathBuf>, path: &Path) -> RemoveOnSignal {
    pending.push(path.to_path_buf());
    RemoveOnSignal(path.to_path_buf())
}

impl Drop for RemoveOnSignal {
    fn drop(&mut self) {
        let mut pending = pending();
        if let Some(index) = pending.iter().rposition(|p| *p == self.0) {
            pending.remove(index);
        }
    }
}

/// Installs the handler (for the `builder` binary): on SIGINT, SIGTERM or
/// SIGHUP it removes every registered path and exits with 128 + the signal
/// (130, 143, 129). It runs on a thread of its own, and waits while a
/// [`Staging::publish`] moves directories.
pub fn remove_pending_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the signal handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Held until exit: no swap starts after this.
                let pending = pending();
                for path in pending.iter() {
                    let _ = remove(path);
                }
                eprintln!("interrupted: partial outputs removed");
                std::process::exit(128 + signal);
            }
        })
        .context("starting the signal handler thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Publishes a set of `files` (name, content) into `out` with `key`.
    fn publish(out: &Path, key: &str, files: &[(&str, &str)]) -> Result<()> {
        let dir = OutputDir::lock(out)?;
        let staging = dir.stage()?;
        for (name, content) in files {
            fs::write(staging.path().join(name), content)?;
        }
        let list: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
        staging.publish(key, &list, &names(&["a.gz"]))
    }

    /// The names in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_set_replaces_the_old_one_completely() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("out");
        publish(
            &out,
            "k1",
            &[("a", "old a"), ("a.gz", "old gz"), ("manifest.json", "1")],
        )
        .unwrap();
        assert_eq!(listing(&out), [STAMP, "a", "a.gz", "manifest.json"]);
        publish(&out, "k2", &[("a", "new a"), ("manifest.json", "2")]).unwrap();
        assert_eq!(
            listing(&out),
            [STAMP, "a", "manifest.json"],
            "nothing of the old set is left"
        );
        assert_eq!(fs::read_to_string(out.join("a")).unwrap(), "new a");
        let dir = OutputDir::lock(&out).unwrap();
        assert!(dir.is_current("k2", &names(&["a", "manifest.json"])));
        assert!(!dir.is_current("k1", &names(&["a", "manifest.json"])));
        assert!(!dir.is_current("k2", &names(&["a"])), "a different set");
        drop(dir);
        // Beside it only the lock file: no staging directory, no old set.
        assert_eq!(listing(parent.path()), [".out.lock", "out"]);
    }

    #[test]
    fn an_unpublished_staging_directory_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("out");
        publish(&out, "k1", &[("a", "old")]).unwrap();
        {
            let dir = OutputDir::lock(&out).unwrap();
            let staging = dir.stage().unwrap();
            fs::write(staging.path().join("a"), "half").unwrap();
            assert!(pending().contains(&staging.path().to_path_buf()));
            // dropped: an error on the way
        }
        assert_eq!(listing(parent.path()), [".out.lock", "out"]);
        assert_eq!(fs::read_to_string(out.join("a")).unwrap(), "old");
        // A missing output is an error, and nothing changes either.
        let dir = OutputDir::lock(&out).unwrap();
        let staging = dir.stage().unwrap();
        let error = staging.publish("k2", &names(&["a"]), &[]).unwrap_err();
        assert!(format!("{error:#}").contains("the output"), "{error:#}");
        drop(dir);
        assert_eq!(listing(parent.path()), [".out.lock", "out"]);
        assert_eq!(fs::read_to_string(out.join("a")).unwrap(), "old");
    }

    #[test]
    fn leftovers_of_a_killed_build_are_removed_by_the_next() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("out");
        publish(&out, "k1", &[("a", "old")]).unwrap();
        // What killed builds leave: a staging directory (also one moved
        // away by the fallback), an earlier version's temporary file.
        let stale = parent.path().join(".out.staging-dead0001");
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("a.img"), "partial").unwrap();
        fs::create_dir(parent.path().join(".out.staging-dead0002.old")).unwrap();
        fs::write(out.join(".tmpAb12Cd"), "partial").unwrap();
        // Not ours: another output directory's staging, a user's file.
        fs::create_dir(parent.path().join(".other.staging-alive001")).unwrap();
        fs::write(out.join(".tmp-notes"), "mine").unwrap();
        let dir = OutputDir::lock(&out).unwrap();
        assert_eq!(
            listing(parent.path()),
            [".other.staging-alive001", ".out.lock", "out"]
        );
        assert_eq!(listing(&out), [".tmp-notes", STAMP, "a"]);
        assert!(dir.is_current("k1", &names(&["a"])));
    }

    #[test]
    fn a_directory_of_other_files_is_refused_and_left_alone() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("photos");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("holiday.jpg"), "jpeg").unwrap();
        fs::write(out.join(".tmpAb12Cd"), "not ours either").unwrap();
        for error in [
            check(&out).unwrap_err(),
            publish(&out, "k", &[("a", "x")]).unwrap_err(),
        ] {
            let message = format!("{error:#}");
            assert!(message.contains(&out.display().to_string()), "{message}");
            assert!(
                message.contains("choose an empty or new directory"),
                "{message}"
            );
        }
        assert_eq!(listing(&out), [".tmpAb12Cd", "holiday.jpg"]);
        assert_eq!(fs::read_to_string(out.join("holiday.jpg")).unwrap(), "jpeg");
        // A file is not a directory; an empty directory is fine.
        fs::write(parent.path().join("file"), "").unwrap();
        let error = format!("{:#}", check(&parent.path().join("file")).unwrap_err());
        assert!(error.contains("is not a directory"), "{error}");
        let empty = parent.path().join("empty");
        fs::create_dir(&empty).unwrap();
        publish(&empty, "k", &[("a", "x")]).unwrap();
        assert_eq!(listing(&empty), [STAMP, "a"]);
        // An earlier version's output directory (a manifest, no stamp) is ours.
        let legacy = parent.path().join("legacy");
        fs::create_dir(&legacy).unwrap();
        fs::write(legacy.join("manifest.json"), "{}").unwrap();
        fs::write(legacy.join("a"), "old").unwrap();
        publish(&legacy, "k", &[("a", "new"), ("manifest.json", "{}")]).unwrap();
        assert_eq!(fs::read_to_string(legacy.join("a")).unwrap(), "new");
    }

    /// A new output directory and its files get the modes `mkdir` and
    /// `creat` give under the process's umask (the issue of 0600 outputs).
    #[test]
    fn a_new_output_directory_follows_the_umask() {
        use std::os::unix::fs::PermissionsExt as _;
        let parent = tempfile::tempdir().unwrap();
        let reference = parent.path().join("reference");
        fs::create_dir(&reference).unwrap();
        fs::write(reference.join("a"), "").unwrap();
        let out = parent.path().join("out");
        publish(&out, "k", &[("a", "new")]).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), mode(&reference));
        assert_eq!(mode(&out.join("a")), mode(&reference.join("a")));
        assert_eq!(mode(&out.join(STAMP)), mode(&reference.join("a")));
    }

    #[test]
    fn files_that_are_not_ours_are_carried_over() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("out");
        publish(&out, "k1", &[("a", "old"), ("a.gz", "old gz")]).unwrap();
        fs::write(out.join("u-boot.bin"), "firmware").unwrap();
        fs::create_dir(out.join("logs")).unwrap();
        fs::write(out.join("logs/run.txt"), "log").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&out, fs::Permissions::from_mode(0o750)).unwrap();
        publish(&out, "k2", &[("a", "new")]).unwrap();
        assert_eq!(listing(&out), [STAMP, "a", "logs", "u-boot.bin"]);
        assert_eq!(
            fs::read_to_string(out.join("u-boot.bin")).unwrap(),
            "firmware"
        );
        assert_eq!(fs::read_to_string(out.join("logs/run.txt")).unwrap(), "log");
        assert_eq!(
            fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o750,
            "the directory keeps its permissions"
        );
        assert_eq!(listing(parent.path()), [".out.lock", "out"]);
    }

    #[test]
    fn a_symlinked_output_directory_is_swapped_behind_the_link() {
        let parent = tempfile::tempdir().unwrap();
        let real = parent.path().join("real");
        let link = parent.path().join("link");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        publish(&link, "k", &[("a", "x")]).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(fs::read_to_string(real.join("a")).unwrap(), "x");
    }

    #[test]
    fn up_to_date_means_the_same_key_and_the_same_files_on_disk() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("out");
        let set = names(&["a", "manifest.json"]);
        let current = || OutputDir::lock(&out).unwrap().is_current("k", &set);
        let fresh = || publish(&out, "k", &[("a", "aaaa"), ("manifest.json", "{}")]).unwrap();
        fresh();
        assert!(current());

        // Touched: same bytes, another mtime.
        let file = File::options().write(true).open(out.join("a")).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        drop(file);
        assert!(!current(), "touched");

        fresh();
        // Rewritten in place with the same size (after a tick of the
        // filesystem's clock, so the mtime can differ).
        std::thread::sleep(std::time::Duration::from_millis(50));
        fs::write(out.join("manifest.json"), "[]").unwrap();
        assert!(!current(), "rewritten");

        fresh();
        // Replaced by another file with the same content and times.
        let a = out.join("a");
        let times = fs::metadata(&a).unwrap().modified().unwrap();
        fs::write(out.join("a.new"), "aaaa").unwrap();
        File::options()
            .write(true)
            .open(out.join("a.new"))
            .unwrap()
            .set_modified(times)
            .unwrap();
        fs::rename(out.join("a.new"), &a).unwrap();
        assert!(!current(), "replaced (another inode)");

        fresh();
        fs::remove_file(out.join("a")).unwrap();
        assert!(!current(), "deleted");

        fresh();
        fs::remove_file(out.join(STAMP)).unwrap();
        assert!(!current(), "no stamp");

        fresh();
        fs::write(out.join(STAMP), "{ not json").unwrap();
        assert!(!current(), "a broken stamp");

        fresh();
        assert!(current(), "and a fresh set is current again");
    }

    #[test]
    fn a_second_build_waits_for_the_lock() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("out");
        let first = OutputDir::lock(&out).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiter = {
            let out = out.clone();
            std::thread::spawn(move || {
                let second = OutputDir::lock(&out).unwrap();
                sender.send(()).unwrap();
                drop(second);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(receiver.try_recv().is_err(), "the lock is held");
        drop(first);
        receiver
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the second build runs once the first is done");
        waiter.join().unwrap();
    }

    #[test]
    fn stale_temp_names_are_only_tempfiles_default() {
        assert!(is_legacy_temp(OsStr::new(".tmpAb12Cd")));
        assert!(!is_legacy_temp(OsStr::new(".tmp-notes")));
        assert!(!is_legacy_temp(OsStr::new(".tmpAb12Cd.jpg")));
        assert!(!is_legacy_temp(OsStr::new("tmpAb12Cd01")));
    }
}
