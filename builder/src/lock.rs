//! The lock file (`boards/<board>.lock`): every package of an image pinned by
//! version, path and SHA-256, plus the archive date that becomes
//! SOURCE_DATE_EPOCH. A build with a lock never re-resolves.

use crate::archive::Pinned;
use crate::config::{Board, Plan};
use crate::store::sha256_hex;
use debian::relation::parse_relation;
use debian::release::Release;
use debian::resolve::{self, ResolveError, Universe};
use debian::version::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Format version written into new locks.
pub const LOCK_VERSION: u32 = 1;

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub source: String,
    pub component: String,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    /// Where the package goes: the image, the cross-compilation sysroot, or both.
    #[serde(rename = "used-by")]
    pub used_by: Vec<Use>,
}

/// A use of a locked package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Use {
    /// Installed in the image.
    Image,
    /// Unpacked into the sysroot that workspace crates are cross-compiled against.
    Sysroot,
    /// Programs taken from it for the initramfs.
    Initramfs,
}

/// A board's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Lock {
    pub version: u32,
    pub board: String,
    pub suite: String,
    pub architecture: String,
    /// The archive's Release date when the lock was made.
    pub release_date: String,
    /// Seconds since the epoch of `release_date`; every timestamp in the image.
    pub source_date_epoch: i64,
    /// Digest of what the recipes request; a different value means the lock is stale.
    pub inputs: String,
    #[serde(rename = "package", default)]
    pub packages: Vec<LockedPackage>,
}

/// Problems with a lock file.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: {message}; delete it and run `cargo run -p builder -- lock --board {board}`", path.display())]
    Unreadable {
        path: PathBuf,
        board: String,
        message: String,
    },
    #[error(
        "{} does not match the recipes of board {board} (they changed since it was written); run `cargo run -p builder -- lock --board {board}` to update it",
        path.display()
    )]
    Stale { path: PathBuf, board: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// Digest of the requests that determine a lock's contents.
pub fn inputs_digest(board: &Board, plan: &Plan) -> String {
    let mut text = format!(
        "suite={}\narchitecture={}\ncomponents={}\n",
        board.suite,
        board.architecture,
        board.components.join(" ")
    );
    for name in plan.packages.keys() {
        text.push_str(&format!("package={name}\n"));
    }
    for name in plan.sysroot_packages.keys() {
        text.push_str(&format!("sysroot={name}\n"));
    }
    for name in plan.initramfs_packages.keys() {
        text.push_str(&format!("initramfs={name}\n"));
    }
    for name in &plan.provides {
        text.push_str(&format!("provides={name}\n"));
    }
    format!("sha256:{}", sha256_hex(text.as_bytes()))
}

impl Lock {
    /// Resolves the plan's requests against an archive into a new lock.
    pub fn resolve(
        board: &Board,
        plan: &Plan,
        release: &Release,
        universe: &Universe,
    ) -> Result<Lock, LockError> {
        let requests = |wanted: &BTreeMap<String, String>| -> Result<Vec<_>, ResolveError> {
            wanted
                .iter()
                .map(|(name, origin)| {
                    let relation = parse_relation(name).map_err(|_| ResolveError::Unknown {
                        name: name.clone(),
                        requested_by: origin.clone(),
                        suggestions: Vec::new(),
                    })?;
                    Ok((relation, origin.clone()))
                })
                .collect()
        };
        let image = resolve::resolve(universe, &requests(&plan.packages)?, &plan.provides)?;
        let sysroot =
            resolve::resolve(universe, &requests(&plan.sysroot_packages)?, &plan.provides)?;
        let initramfs = resolve::resolve(
            universe,
            &requests(&plan.initramfs_packages)?,
            &plan.provides,
        )?;
        let mut all: Vec<usize> = image
            .iter()
            .chain(&sysroot)
            .chain(&initramfs)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();

        let mut packages: Vec<LockedPackage> = all
            .iter()
            .map(|&index| {
                let p = universe.package(index);
                let used_by = [
                    (Use::Image, &image),
                    (Use::Sysroot, &sysroot),
                    (Use::Initramfs, &initramfs),
                ]
                .into_iter()
                .filter(|(_, set)| set.contains(&index))
                .map(|(use_, _)| use_)
                .collect();
                LockedPackage {
                    name: p.name.clone(),
                    version: p.version.to_string(),
                    architecture: p.architecture.clone(),
                    source: p.source.clone(),
                    component: p.component.clone(),
                    filename: p.filename.clone(),
                    size: p.size,
                    sha256: p.sha256.clone(),
                    used_by,
                }
            })
            .collect();
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Lock {
            version: LOCK_VERSION,
            board: board.name.clone(),
            suite: board.suite.clone(),
            architecture: board.architecture.to_string(),
            release_date: release.date.clone(),
            source_date_epoch: release.timestamp,
            inputs: inputs_digest(board, plan),
            packages,
        })
    }

    /// Reads a lock; `Ok(None)` if there is none yet.
    pub fn read(path: &Path, board: &str) -> Result<Option<Lock>, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let unreadable = |message: String| LockError::Unreadable {
            path: path.to_path_buf(),
            board: board.to_string(),
            message,
        };
        let lock: Lock = toml::from_str(&text)
            .map_err(|e| unreadable(crate::config::toml_error_message(&text, &e)))?;
        if lock.version != LOCK_VERSION {
            return Err(unreadable(format!(
                "lock format {} is not the supported format {LOCK_VERSION}",
                lock.version
            )));
        }
        Ok(Some(lock))
    }

    /// The archive this lock was made from, as the floor for the next one
    /// (`path` is where the lock is, for errors).
    pub fn pinned(&self, path: &Path) -> Pinned {
        Pinned {
            lock: path.to_path_buf(),
            board: self.board.clone(),
            date: self.release_date.clone(),
            timestamp: self.source_date_epoch,
        }
    }

    /// Checks the lock still matches the board's requests.
    pub fn check_fresh(&self, path: &Path, board: &Board, plan: &Plan) -> Result<(), LockError> {
        if self.inputs != inputs_digest(board, plan) {
            return Err(LockError::Stale {
                path: path.to_path_buf(),
                board: board.name.clone(),
            });
        }
        Ok(())
    }

    /// The lock as written to disk.
    pub fn to_text(&self) -> String {
        format!(
            "# Generated by `builder lock`; do not edit. Pins every package of board {}.\n{}",
            self.board,
            toml::to_string(self).expect("a lock serialises")
        )
    }

    /// Writes the lock atomically.
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut temp, self.to_text().as_bytes()).map_err(io)?;
        temp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// The lock's own digest, recorded in image manifests.
    pub fn digest(&self) -> String {
        format!("sha256:{}", sha256_hex(self.to_text().as_bytes()))
    }

    /// Packages that go into the image.
    pub fn image_packages(&self) -> impl Iterator<Item = &LockedPackage> {
        self.packages
            .iter()
            .filter(|p| p.used_by.contains(&Use::Image))
    }

    /// Packages the initramfs takes programs from.
    pub fn initramfs_packages(&self) -> impl Iterator<Item = &LockedPackage> {
        self.packages
            .iter()
            .filter(|p| p.used_by.contains(&Use::Initramfs))
    }

    /// Packages that make up the cross-compilation sysroot.
    pub fn sysroot_packages(&self) -> impl Iterator<Item = &LockedPackage> {
        self.packages
            .iter()
            .filter(|p| p.used_by.contains(&Use::Sysroot))
    }
}

/// Human-readable changes from `old` to `new`, one line each: the archive
/// date if it changed, then packages sorted by name. A package that would
/// move to an older version is marked `DOWNGRADE`.
pub fn diff(old: Option<&Lock>, new: &Lock) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(old) = old
        && old.release_date != new.release_date
    {
        lines.push(format!(
            "  release date: {} -> {}",
            old.release_date, new.release_date
        ));
    }
    let old: BTreeMap<&str, &LockedPackage> = old
        .into_iter()
        .flat_map(|lock| &lock.packages)
        .map(|p| (p.name.as_str(), p))
        .collect();
    let new_map: BTreeMap<&str, &LockedPackage> =
        new.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut names: Vec<&str> = old.keys().chain(new_map.keys()).copied().collect();
    names.sort();
    names.dedup();
    lines.extend(
        names
            .into_iter()
            .filter_map(|name| match (old.get(name), new_map.get(name)) {
                (None, Some(p)) => Some(format!("  added    {name} {}", p.version)),
                (Some(p), None) => Some(format!("  removed  {name} {}", p.version)),
                (Some(a), Some(b)) if is_downgrade(&a.version, &b.version) => {
                    Some(format!("  DOWNGRADE {name} {} -> {}", a.version, b.version))
                }
                (Some(a), Some(b)) if a.version != b.version => {
                    Some(format!("  updated  {name} {} -> {}", a.version, b.version))
                }
                _ => None,
            }),
    );
    lines
}

/// Whether going from version `old` to `new` goes back, by dpkg's ordering.
fn is_downgrade(old: &str, new: &str) -> bool {
    match (Version::parse(old), Version::parse(new)) {
        (Ok(old), Ok(new)) => new < old,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            architecture: "arm64".into(),
            source: name.into(),
            component: "main".into(),
            filename: format!("pool/main/{name}.deb"),
            size: 1,
            sha256: "00".repeat(32),
            used_by: vec![Use::Image],
        }
    }

    fn lock(packages: Vec<LockedPackage>) -> Lock {
        Lock {
            version: LOCK_VERSION,
            board: "test".into(),
            suite: "trixie".into(),
            architecture: "arm64".into(),
            release_date: "Sat, 12 Sep 2026 07:55:41 UTC".into(),
            source_date_epoch: 1_789_199_741,
            inputs: "sha256:x".into(),
            packages,
        }
    }

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.lock");
        let original = lock(vec![package("a", "1"), package("b", "2")]);
        original.write(&path).unwrap();
        assert_eq!(Lock::read(&path, "test").unwrap(), Some(original));
        assert_eq!(
            Lock::read(&dir.path().join("none.lock"), "test").unwrap(),
            None
        );
    }

    #[test]
    fn garbage_lock_names_file_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.lock");
        std::fs::write(&path, "version = 1\nboard = 3\n").unwrap();
        let error = Lock::read(&path, "test").unwrap_err().to_string();
        assert!(error.contains("test.lock"), "{error}");
        assert!(error.contains("builder -- lock --board test"), "{error}");
    }

    #[test]
    fn diff_lists_added_removed_updated() {
        let old = lock(vec![
            package("a", "1"),
            package("b", "1"),
            package("c", "1"),
        ]);
        let new = lock(vec![
            package("a", "1"),
            package("b", "2"),
            package("d", "1"),
        ]);
        assert_eq!(
            diff(Some(&old), &new),
            ["  updated  b 1 -> 2", "  removed  c 1", "  added    d 1"]
        );
    }

    #[test]
    fn diff_shows_the_date_change_and_marks_downgrades() {
        let old = lock(vec![
            package("a", "2.0"),
            package("b", "1.0~rc1"),
            package("c", "1:0.5"),
        ]);
        let mut new = lock(vec![
            package("a", "1.0"),
            package("b", "1.0"),
            package("c", "2.0"),
        ]);
        new.release_date = "Sat, 19 Sep 2026 07:55:41 UTC".into();
        assert_eq!(
            diff(Some(&old), &new),
            [
                "  release date: Sat, 12 Sep 2026 07:55:41 UTC -> Sat, 19 Sep 2026 07:55:41 UTC",
                "  DOWNGRADE a 2.0 -> 1.0",
                "  updated  b 1.0~rc1 -> 1.0",
                "  DOWNGRADE c 1:0.5 -> 2.0",
            ]
        );
        assert_eq!(diff(None, &new).len(), 3, "a new lock lists only packages");
    }
}
