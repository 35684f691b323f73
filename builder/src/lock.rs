//! The lock file (`boards/<board>.lock`): every package of an image pinned by
//! version, path and SHA-256, plus the archive date that becomes
//! SOURCE_DATE_EPOCH. A build with a lock never re-resolves.

use crate::archive::Pinned;
use crate::config::{Board, Plan};
use crate::store::{is_sha256_hex, sha256_hex};
use debian::relation::parse_relation;
use debian::release::{Release, parse_rfc2822_utc};
use debian::resolve::{self, ResolveError, Universe};
use debian::version::Version;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

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
    #[error(
        "{}{}: {message}. A lock holds only what `builder lock` wrote: restore it from version control, or delete it and run `cargo run -p builder -- lock --board {board}` to write it anew",
        path.display(),
        line.map(|line| format!(": line {line}")).unwrap_or_default()
    )]
    Invalid {
        path: PathBuf,
        /// The line of the offending value, when it could be found.
        line: Option<usize>,
        board: String,
        /// The key, its value, what is wrong and the valid form.
        message: String,
    },
    #[error(
        "the archive's index lists a package that cannot be locked: {message}; the mirror serves a broken index, try another mirror"
    )]
    BadIndexEntry { message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(
        "boards/{board}.lock: {problem}; the lock was edited or damaged: run `cargo run -p builder -- lock --board {board}` to rewrite it"
    )]
    Inconsistent { board: String, problem: String },
}

/// A value in a lock that breaks its rules (see [`Lock::problem`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    /// The `[[package]]` entry, by index, or `None` for a top-level key.
    package: Option<usize>,
    key: &'static str,
    /// The key, its value, what is wrong and the valid form.
    message: String,
}

impl Problem {
    /// The line of the offending value in the lock's text, found through
    /// the spans TOML records (`None` if it can't be found).
    fn line(&self, text: &str) -> Option<usize> {
        let spans: Spans = toml::from_str(text).ok()?;
        let span = match (self.package, self.key) {
            (Some(index), key) => spans.packages.get(index)?.get(key)?.span(),
            (None, "release-date") => spans.release_date?.span(),
            (None, _) => return None,
        };
        Some(crate::config::line_at(text, span.start))
    }
}

/// Where each value of a lock is in its text.
#[derive(Deserialize)]
struct Spans {
    #[serde(rename = "release-date")]
    release_date: Option<Spanned<IgnoredAny>>,
    #[serde(rename = "package", default)]
    packages: Vec<BTreeMap<String, Spanned<IgnoredAny>>>,
}

/// Debian's package name syntax (Policy 5.6.1): `[a-z0-9][a-z0-9+.-]+`.
fn is_package_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
}

/// A relative path under the archive's `pool/`, every part a real name:
/// no `..`, `.` or empty parts, nothing absolute, no control characters.
fn is_pool_path(path: &str) -> bool {
    path.starts_with("pool/")
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
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
        let lock = Lock {
            version: LOCK_VERSION,
            board: board.name.clone(),
            suite: board.suite.clone(),
            architecture: board.architecture.to_string(),
            release_date: release.date.clone(),
            source_date_epoch: release.timestamp,
            inputs: inputs_digest(board, plan),
            packages,
        };
        // Never write a lock that reading would refuse.
        if let Some(problem) = lock.problem() {
            return Err(LockError::BadIndexEntry {
                message: problem.message,
            });
        }
        Ok(lock)
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
        if let Some(problem) = lock.problem() {
            return Err(LockError::Invalid {
                path: path.to_path_buf(),
                line: problem.line(&text),
                board: board.to_string(),
                message: problem.message,
            });
        }
        Ok(Some(lock))
    }

    /// The first value that breaks the rules every lock `builder lock`
    /// writes keeps, and that the rest of the builder relies on: digests
    /// name store files, file names become download paths, names become
    /// file names in the image.
    fn problem(&self) -> Option<Problem> {
        let top = |key: &'static str, message: String| Problem {
            package: None,
            key,
            message,
        };
        if parse_rfc2822_utc(&self.release_date) != Some(self.source_date_epoch) {
            return Some(top(
                "release-date",
                format!(
                    "release-date = {:?} does not match source-date-epoch = {}: expected a date like \"Sat, 12 Sep 2026 07:55:41 UTC\" that is source-date-epoch seconds after 1970",
                    self.release_date, self.source_date_epoch
                ),
            ));
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut digests: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, package) in self.packages.iter().enumerate() {
            let problem = |key: &'static str, message: String| {
                Some(Problem {
                    package: Some(index),
                    key,
                    message,
                })
            };
            let LockedPackage {
                name,
                architecture,
                filename,
                size,
                sha256,
                ..
            } = package;
            if !is_package_name(name) {
                return problem(
                    "name",
                    format!(
                        "name = {name:?} is not a Debian package name: expected lowercase letters, digits, `+`, `-` and `.`, at least two, starting with a letter or digit"
                    ),
                );
            }
            if let Some(first) = names.insert(name, index) {
                return problem(
                    "name",
                    format!(
                        "name = {name:?} is locked twice (package {} and {}): expected each package once",
                        first + 1,
                        index + 1
                    ),
                );
            }
            if architecture != &self.architecture && architecture != "all" {
                return problem(
                    "architecture",
                    format!(
                        "architecture = {architecture:?} of package {name} is not the lock's: expected {:?} or \"all\"",
                        self.architecture
                    ),
                );
            }
            if !is_pool_path(filename) {
                return problem(
                    "filename",
                    format!(
                        "filename = {filename:?} of package {name} is not a file in the archive's pool: expected a relative path like \"pool/main/b/bash/bash_5.2.37-2_arm64.deb\" (no `..`, `.`, empty or absolute parts, no control characters)"
                    ),
                );
            }
            if *size == 0 {
                return problem(
                    "size",
                    format!(
                        "size = 0 of package {name}: expected the .deb's size in bytes, more than 0"
                    ),
                );
            }
            if !is_sha256_hex(sha256) {
                return problem(
                    "sha256",
                    format!(
                        "sha256 = {sha256:?} of package {name} is not a SHA-256 digest: expected exactly 64 lowercase hex digits (0-9, a-f)"
                    ),
                );
            }
            if let Some(first) = digests.insert(sha256, index) {
                return problem(
                    "sha256",
                    format!(
                        "sha256 = {sha256:?} of package {name} is also the digest of package {}: expected every package file to differ",
                        self.packages[first].name
                    ),
                );
            }
        }
        None
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

impl Lock {
    /// Checks the lock against the packages it pins, as their own control
    /// files describe them (`unpacked`: each locked package with the text
    /// of its `control` member): every `.deb` is the package and version
    /// its entry names, every request of the recipes is there, and every
    /// dependency of every package is in the set. A hand-edited lock (an
    /// entry deleted, or given another package's digest) fails here.
    pub fn check_packages<'a>(
        &self,
        unpacked: impl IntoIterator<Item = (&'a LockedPackage, &'a str)>,
        requests: &[String],
        assumed: &std::collections::BTreeSet<String>,
    ) -> Result<(), LockError> {
        let inconsistent = |problem: String| LockError::Inconsistent {
            board: self.board.clone(),
            problem,
        };
        let mut index = String::new();
        for (package, control) in unpacked {
            let paragraphs = debian::deb822::parse(control).unwrap_or_default();
            let field = |name: &str| paragraphs.first().and_then(|p| p.get(name)).unwrap_or("");
            let found = (field("Package"), field("Version"), field("Architecture"));
            let same_version = match (Version::parse(found.1), Version::parse(&package.version)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if found.0 != package.name || !same_version || found.2 != package.architecture {
                return Err(inconsistent(format!(
                    "the entry for {} {} ({}) has SHA-256 {}, but that .deb is {} {} ({})",
                    package.name,
                    package.version,
                    package.architecture,
                    package.sha256,
                    found.0,
                    found.1,
                    found.2
                )));
            }
            index.push_str(control.trim_end());
            index.push_str(&format!(
                "\nFilename: {}\nSize: {}\nSHA256: {}\n\n",
                package.filename, package.size, package.sha256
            ));
        }
        let installed = debian::index::parse_packages("control", &index, "main")
            .map_err(|e| inconsistent(format!("a package's control file: {e}")))?;
        let installed = Universe::new(installed, &self.architecture);
        let requests: Vec<_> = requests
            .iter()
            .filter_map(|request| parse_relation(request).ok())
            .collect();
        let missing = resolve::unmet(&installed, &requests, assumed);
        if let Some((who, what)) = missing.first() {
            return Err(inconsistent(format!(
                "{who} needs {what}, which no package of the lock provides{}",
                match missing.len() {
                    1 => String::new(),
                    n => format!(" ({} more unmet)", n - 1),
                }
            )));
        }
        Ok(())
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
        let original = lock(vec![distinct("aa", "1"), distinct("bb", "2")]);
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

    /// A package whose digest differs from every other's (`package` gives all the same).
    fn distinct(name: &str, version: &str) -> LockedPackage {
        LockedPackage {
            sha256: sha256_hex(name.as_bytes()),
            ..package(name, version)
        }
    }

    /// Writes `lock` (whatever it holds) and reads it back; on an error,
    /// returns it with the line that `key` of package `index` (or of the
    /// top level) is on in the written text.
    fn read_back(lock: &Lock, index: Option<usize>, key: &str) -> (String, usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.lock");
        let text = lock.to_text();
        std::fs::write(&path, &text).unwrap();
        let error = Lock::read(&path, "test").unwrap_err().to_string();
        let start = match index {
            None => 0,
            Some(index) => text.match_indices("[[package]]").nth(index).unwrap().0,
        };
        let at = start + text[start..].find(&format!("\n{key} = ")).unwrap() + 1;
        assert!(error.contains("test.lock: line "), "{error}");
        assert!(
            error.contains("delete it and run `cargo run -p builder -- lock --board test`"),
            "{error}"
        );
        (error, crate::config::line_at(&text, at))
    }

    /// A lock of three valid packages with package 1 changed by `change`,
    /// read back: the error must name the line of `key` in that package.
    fn bad_entry(key: &str, change: impl FnOnce(&mut LockedPackage)) -> String {
        let mut packages = vec![
            distinct("aa", "1"),
            distinct("bb", "1"),
            distinct("cc", "1"),
        ];
        change(&mut packages[1]);
        let (error, line) = read_back(&lock(packages), Some(1), key);
        assert!(
            error.contains(&format!("test.lock: line {line}: {key} = ")),
            "{error}"
        );
        error
    }

    #[test]
    fn a_valid_lock_reads_and_all_is_any_architecture() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.lock");
        let mut packages = vec![distinct("a0", "1"), distinct("lib+x.y-z0", "1")];
        packages[0].architecture = "all".into();
        let original = lock(packages);
        original.write(&path).unwrap();
        assert_eq!(Lock::read(&path, "test").unwrap(), Some(original));
    }

    #[test]
    fn a_bad_digest_is_an_error_on_its_line_not_a_panic() {
        for bad in [
            "ab",
            "",
            &"A".repeat(64),
            &"0".repeat(63),
            "../../../../etc/passwd",
        ] {
            let error = bad_entry("sha256", |p| p.sha256 = bad.into());
            assert!(
                error.contains("expected exactly 64 lowercase hex digits"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_file_name_outside_the_pool_is_refused() {
        for bad in [
            "/etc/passwd",
            "pool/../../etc/passwd",
            "pool/main/./x.deb",
            "pool//x.deb",
            "pool/",
            "debs/x.deb",
            "pool/x\n.deb",
            "pool/x\0.deb",
        ] {
            let error = bad_entry("filename", |p| p.filename = bad.into());
            assert!(
                error.contains("not a file in the archive's pool"),
                "{error}"
            );
            assert!(error.contains("expected a relative path like"), "{error}");
        }
    }

    #[test]
    fn a_bad_package_name_is_refused() {
        for bad in ["Bash", "x", "-x", "a/b", "a b", ".."] {
            let error = bad_entry("name", |p| p.name = bad.into());
            assert!(error.contains("not a Debian package name"), "{error}");
        }
    }

    #[test]
    fn an_empty_size_and_a_foreign_architecture_are_refused() {
        let error = bad_entry("size", |p| p.size = 0);
        assert!(error.contains("more than 0"), "{error}");
        let error = bad_entry("architecture", |p| p.architecture = "amd64".into());
        assert!(error.contains("expected \"arm64\" or \"all\""), "{error}");
    }

    #[test]
    fn a_package_locked_twice_or_a_shared_digest_is_refused() {
        let error = bad_entry("name", |p| p.name = "aa".into());
        assert!(error.contains("locked twice (package 1 and 2)"), "{error}");
        let error = bad_entry("sha256", |p| p.sha256 = sha256_hex(b"aa"));
        assert!(error.contains("also the digest of package aa"), "{error}");
    }

    #[test]
    fn a_release_date_that_disagrees_with_the_epoch_is_refused() {
        let mut bad = lock(vec![distinct("aa", "1")]);
        bad.source_date_epoch += 1;
        let (error, line) = read_back(&bad, None, "release-date");
        assert!(
            error.contains(&format!("test.lock: line {line}: release-date = ")),
            "{error}"
        );
        assert!(
            error.contains("does not match source-date-epoch"),
            "{error}"
        );
    }

    #[test]
    fn the_project_locks_are_valid() {
        let boards = crate::config::Project::from_workspace().boards_dir();
        for entry in std::fs::read_dir(&boards).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "lock") {
                let board = path.file_stem().unwrap().to_string_lossy().into_owned();
                let lock = Lock::read(&path, &board).unwrap().unwrap();
                assert!(!lock.packages.is_empty(), "{}", path.display());
            }
        }
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
