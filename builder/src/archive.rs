//! A verified view of the Debian archive: the signed `InRelease`, then the
//! `Packages` indexes whose SHA-256 it lists. Used only to (re)write locks.
//!
//! A signature only says the archive once published these bytes; a mirror
//! can replay an old, validly signed `InRelease` and roll security updates
//! back. So the release must also be current: not past its `Valid-Until`,
//! and not older than the archive the existing lock was made from.

use crate::fetch::{FetchError, Fetcher};
use crate::store::Store;
use debian::index::{IndexError, parse_packages};
use debian::release::{Keyring, Release, ReleaseError, format_rfc2822_utc};
use debian::resolve::Universe;
use rayon::prelude::*;
use std::io::Read;
use std::path::PathBuf;

/// Failure to obtain a trustworthy index.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("dists/{suite}/InRelease lists no {path}; is {component} a component of {suite}?")]
    MissingIndex {
        suite: String,
        component: String,
        path: String,
    },
    #[error(
        "{file} is dated {date}, older than the archive {} was made from ({locked_date}): this looks like a replayed or stale mirror, and locking from it would roll packages (and their security fixes) back. Use an up-to-date mirror (--mirror URL); to really go back to an older archive, delete {} and run `cargo run -p builder -- lock --board {board}`",
        lock.display(), lock.display()
    )]
    Older {
        file: String,
        date: String,
        lock: PathBuf,
        board: String,
        locked_date: String,
    },
    #[error(
        "{file} expired at {valid_until} (its Valid-Until; it is now {now}): the mirror serves a stale or replayed archive. Use an up-to-date mirror (--mirror URL)"
    )]
    Expired {
        file: String,
        valid_until: String,
        now: String,
    },
}

/// The archive an existing lock was made from: a new lock must not come
/// from an older one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The lock file, for the error.
    pub lock: PathBuf,
    pub board: String,
    /// Its `release-date`, as written.
    pub date: String,
    /// Its `source-date-epoch`: the same date in seconds.
    pub timestamp: i64,
}

/// Checks a verified release is current: dated no earlier than the
/// `pinned` archive of the existing lock (the same date is fine), and not
/// past its `Valid-Until` at `now` (seconds since the epoch). `file` names
/// the `InRelease` in errors.
pub fn check_current(
    file: &str,
    release: &Release,
    pinned: Option<&Pinned>,
    now: i64,
) -> Result<(), ArchiveError> {
    if let Some(pinned) = pinned
        && release.timestamp < pinned.timestamp
    {
        return Err(ArchiveError::Older {
            file: file.to_string(),
            date: release.date.clone(),
            lock: pinned.lock.clone(),
            board: pinned.board.clone(),
            locked_date: pinned.date.clone(),
        });
    }
    if let Some(valid_until) = release.valid_until
        && now > valid_until
    {
        return Err(ArchiveError::Expired {
            file: file.to_string(),
            valid_until: format_rfc2822_utc(valid_until),
            now: format_rfc2822_utc(now),
        });
    }
    Ok(())
}

/// Seconds since the epoch by the wall clock. Only verification uses it
/// (is a release past its `Valid-Until`?); nothing it returns reaches an
/// output.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Everything resolvable for one suite and architecture.
pub struct Archive {
    pub release: Release,
    pub universe: Universe,
}

impl Archive {
    /// Downloads the release, checks its signature against `keyring` and
    /// that it is current (see [`check_current`]; `pinned` is the archive
    /// of the existing lock, if any), then downloads and verifies the
    /// package indexes.
    pub fn load(
        fetcher: &Fetcher,
        store: &Store,
        keyring: &Keyring,
        suite: &str,
        components: &[String],
        architecture: &str,
        pinned: Option<&Pinned>,
    ) -> Result<Archive, ArchiveError> {
        let in_release_path = format!("dists/{suite}/InRelease");
        let signed = fetcher.get_bytes(&in_release_path)?;
        let file = format!("{}/{in_release_path}", fetcher.mirror().url);
        let text = keyring.verify_cleartext(&file, &String::from_utf8_lossy(&signed))?;
        let release = Release::parse(&file, &text, suite)?;
        check_current(&file, &release, pinned, now())?;

        let packages = components
            .par_iter()
            .map(|component| -> Result<_, ArchiveError> {
                let path = format!("{component}/binary-{architecture}/Packages.xz");
                let (size, sha256) =
                    release
                        .sha256
                        .get(&path)
                        .ok_or_else(|| ArchiveError::MissingIndex {
                            suite: suite.to_string(),
                            component: component.clone(),
                            path: path.clone(),
                        })?;
                let url_path = format!("dists/{suite}/{path}");
                let compressed = fetcher.read(store, &url_path, *size, sha256)?;
                let mut text = String::new();
                xz2::read::XzDecoder::new(&compressed[..])
                    .read_to_string(&mut text)
                    .map_err(|e| IndexError {
                        file: url_path.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(parse_packages(&url_path, &text, component)?)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let universe = Universe::new(packages.into_iter().flatten().collect(), architecture);
        Ok(Archive { release, universe })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    /// Sat, 12 Sep 2026 07:55:41 UTC.
    const LOCKED: i64 = 1_789_199_741;

    fn release(timestamp: i64, valid_until: Option<i64>) -> Release {
        Release {
            codename: "trixie".into(),
            suite: "stable".into(),
            date: format_rfc2822_utc(timestamp),
            timestamp,
            valid_until,
            components: vec!["main".into()],
            sha256: Default::default(),
        }
    }

    fn pinned() -> Pinned {
        Pinned {
            lock: PathBuf::from("boards/rpi4.lock"),
            board: "rpi4".into(),
            date: format_rfc2822_utc(LOCKED),
            timestamp: LOCKED,
        }
    }

    const FILE: &str = "http://127.0.0.1:1/debian/dists/trixie/InRelease";

    #[test]
    fn a_release_as_new_as_the_lock_or_newer_is_current() {
        let now = LOCKED + 30 * DAY;
        for date in [LOCKED, LOCKED + DAY] {
            check_current(FILE, &release(date, None), Some(&pinned()), now).unwrap();
            check_current(FILE, &release(date, Some(now + 1)), Some(&pinned()), now).unwrap();
        }
        // Without a lock, any date is fine.
        check_current(FILE, &release(LOCKED - DAY, None), None, now).unwrap();
    }

    #[test]
    fn an_older_release_than_the_lock_is_refused_with_both_dates_and_the_fix() {
        let error = check_current(FILE, &release(LOCKED - 1, None), Some(&pinned()), LOCKED)
            .unwrap_err()
            .to_string();
        for expected in [
            FILE,
            "Sat, 12 Sep 2026 07:55:40 UTC",
            "Sat, 12 Sep 2026 07:55:41 UTC",
            "boards/rpi4.lock",
            "replayed or stale mirror",
            "Use an up-to-date mirror",
            "delete boards/rpi4.lock and run `cargo run -p builder -- lock --board rpi4`",
        ] {
            assert!(error.contains(expected), "{expected:?} missing in: {error}");
        }
    }

    #[test]
    fn a_release_past_its_valid_until_is_refused() {
        let valid_until = LOCKED + 7 * DAY;
        check_current(FILE, &release(LOCKED, Some(valid_until)), None, valid_until).unwrap();
        let error = check_current(
            FILE,
            &release(LOCKED, Some(valid_until)),
            None,
            valid_until + 1,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            FILE,
            "expired at Sat, 19 Sep 2026 07:55:41 UTC",
            "it is now Sat, 19 Sep 2026 07:55:42 UTC",
            "up-to-date mirror",
        ] {
            assert!(error.contains(expected), "{expected:?} missing in: {error}");
        }
    }
}
