//! The content-addressed store: verified downloads and unpacked file contents,
//! kept by SHA-256 in the user's cache directory.
//!
//! Every write goes to a temporary file in the store and is renamed into place
//! only when complete and verified, so a killed build never leaves a corrupt
//! entry, and two builds at once at worst both write the same bytes.
//!
//! Nothing is trusted because it is in the cache: every read hashes the
//! bytes and compares them with the name they are stored under. A blob that
//! does not match (a flipped bit, a truncated file, a swapped package) is
//! removed at once, so the build that found it can fetch or unpack it again
//! (see [`Store::evictions`]).

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Environment variable overriding the cache directory.
pub const CACHE_ENV: &str = "BUILDER_CACHE_DIR";

/// A SHA-256 digest as lowercase hex.
pub type Sha256Hex = String;

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> Sha256Hex {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `text` is a digest as the store names blobs: exactly 64
/// lowercase hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The store rooted at a cache directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Blobs removed because their bytes did not match their name, shared
    /// by clones of this handle.
    evicted: Arc<Mutex<Vec<PathBuf>>>,
}

/// Temporary files older than this in the store's `tmp/` were left by a
/// build that was killed; no live build keeps one that long.
const STALE_TEMP: Duration = Duration::from_secs(24 * 60 * 60);

/// Content that did not match what it was supposed to be.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{what}: expected SHA-256 {expected} ({expected_size} bytes), got {actual} ({actual_size} bytes); the mirror served different bytes than the signed index promises"
    )]
    Mismatch {
        what: String,
        expected: String,
        expected_size: u64,
        actual: String,
        actual_size: u64,
    },
    #[error(
        "cache entry {} does not hold the bytes it is named after (SHA-256 {sha256}, found {actual}); it was tampered with or damaged, and has been removed so that it is fetched or unpacked again", path.display()
    )]
    Corrupt {
        path: PathBuf,
        sha256: String,
        actual: String,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// The default cache directory: `$BUILDER_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/vinyl-builder` (`~/.cache/vinyl-builder`).
    pub fn default_root() -> PathBuf {
        match std::env::var_os(CACHE_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => dirs::cache_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("vinyl-builder"),
        }
    }

    /// Opens (creating if needed) a store under `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for dir in ["sha256", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        remove_stale_temps(&root.join("tmp"));
        Ok(Store {
            root,
            evicted: Arc::default(),
        })
    }

    /// The cache directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    /// Digests come from the store itself or from a validated lock; anything
    /// else (which would be a bug) maps to a name no blob is ever stored
    /// under, inside the store: never a panic, never a path outside it.
    pub fn path(&self, sha256: &str) -> PathBuf {
        if !is_sha256_hex(sha256) {
            return self.root.join("sha256").join("not-a-digest");
        }
        self.root
            .join("sha256")
            .join(&sha256[..2])
            .join(&sha256[2..])
    }

    /// Whether a blob is present (not whether it is intact: reads check that).
    pub fn contains(&self, sha256: &str) -> bool {
        self.path(sha256).is_file()
    }

    /// Reads a whole blob and checks it against its name. A blob that does
    /// not match is removed and reported as [`StoreError::Corrupt`].
    pub fn read(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(sha256);
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(self.evict(sha256, actual));
        }
        Ok(bytes)
    }

    /// Removes a blob found not to match its name and returns the error
    /// that says so.
    fn evict(&self, sha256: &str, actual: String) -> StoreError {
        let path = self.path(sha256);
        tracing::warn!(
            "cache entry {} is damaged (SHA-256 {actual}); removed it",
            path.display()
        );
        // If removal fails the next read finds the same mismatch again.
        let _ = fs::remove_file(&path);
        self.evicted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path.clone());
        StoreError::Corrupt {
            path,
            sha256: sha256.to_string(),
            actual,
        }
    }

    /// How many damaged blobs this store (and its clones) has removed so
    /// far: a build that failed after one was removed can run again and
    /// replace it.
    pub fn evictions(&self) -> usize {
        self.evicted().len()
    }

    /// The paths of the blobs [`Store::evictions`] counts, in order.
    pub fn evicted(&self) -> Vec<PathBuf> {
        self.evicted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A temporary file inside the store (same filesystem, so rename is atomic).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = self.root.join("tmp");
        tempfile::NamedTempFile::new_in(&dir).map_err(io_error(&dir))
    }

    /// Adds bytes to the store (durably) and returns their digest.
    pub fn insert(&self, bytes: &[u8]) -> Result<Sha256Hex, StoreError> {
        self.insert_bytes(bytes, true)
    }

    fn insert_bytes(&self, bytes: &[u8], durable: bool) -> Result<Sha256Hex, StoreError> {
        let digest = sha256_hex(bytes);
        if !self.contains(&digest) {
            let mut temp = self.temp_file()?;
            temp.write_all(bytes).map_err(io_error(temp.path()))?;
            if durable {
                self.commit(temp, &digest)?;
            } else {
                self.rename_into_place(temp, &digest)?;
            }
        }
        Ok(digest)
    }

    /// Streams `reader` into the store, verifying size and SHA-256 before the
    /// blob becomes visible. `what` names the content in errors.
    pub fn insert_verified(
        &self,
        what: &str,
        mut reader: impl Read,
        expected_size: u64,
        expected_sha256: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<(), StoreError> {
        let mut temp = self.temp_file()?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buffer).map_err(|source| StoreError::Io {
                path: PathBuf::from(what),
                source,
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            temp.write_all(&buffer[..n])
                .map_err(io_error(temp.path()))?;
            size += n as u64;
            progress(n as u64);
        }
        let actual = hex::encode(hasher.finalize());
        if size != expected_size || actual != expected_sha256 {
            return Err(StoreError::Mismatch {
                what: what.to_string(),
                expected: expected_sha256.to_string(),
                expected_size,
                actual,
                actual_size: size,
            });
        }
        self.commit(temp, expected_sha256)
    }

    /// Adds bytes without forcing them to disk; call [`Store::sync`] before
    /// recording anything that refers to them. Used for the thousands of
    /// small files unpacked from packages, where one sync beats one per file.
    pub fn insert_unsynced(&self, bytes: &[u8]) -> Result<Sha256Hex, StoreError> {
        self.insert_bytes(bytes, false)
    }

    /// Flushes everything written to the store's filesystem to disk.
    pub fn sync(&self) -> Result<(), StoreError> {
        let dir = fs::File::open(&self.root).map_err(io_error(&self.root))?;
        rustix::fs::syncfs(&dir).map_err(|e| StoreError::Io {
            path: self.root.clone(),
            source: e.into(),
        })
    }

    /// Makes a complete temporary file durable and visible under its digest.
    fn commit(&self, temp: tempfile::NamedTempFile, sha256: &str) -> Result<(), StoreError> {
        temp.as_file().sync_data().map_err(io_error(temp.path()))?;
        self.rename_into_place(temp, sha256)
    }

    fn rename_into_place(
        &self,
        temp: tempfile::NamedTempFile,
        sha256: &str,
    ) -> Result<(), StoreError> {
        let path = self.path(sha256);
        let parent = path.parent().expect("blob paths have a parent");
        fs::create_dir_all(parent).map_err(io_error(parent))?;
        temp.persist(&path).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// A directory in the cache for derived data (e.g. unpacked-package
    /// manifests), created if needed.
    pub fn subdir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let path = self.root.join(name);
        fs::create_dir_all(&path).map_err(io_error(&path))?;
        Ok(path)
    }

    /// Atomically writes a derived file under [`Store::subdir`].
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let mut temp = self.temp_file()?;
        temp.write_all(bytes).map_err(io_error(temp.path()))?;
        temp.persist(path).map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// Removes temporary files a killed build left in the store.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_is_content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = store.insert(b"hello").unwrap();
        assert_eq!(digest, sha256_hex(b"hello"));
        assert_eq!(store.insert(b"hello").unwrap(), digest);
        assert_eq!(store.read(&digest).unwrap(), b"hello");
    }

    #[test]
    fn concurrent_writers_of_the_same_blob_are_safe() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
        let digest = sha256_hex(&bytes);
        std::thread::scope(|scope| {
            for n in 0..8 {
                let (root, bytes, digest) = (dir.path(), &bytes, &digest);
                scope.spawn(move || {
                    // Separate Store handles, as two builds would have.
                    let store = Store::open(root).unwrap();
                    if n % 2 == 0 {
                        assert_eq!(&store.insert_unsynced(bytes).unwrap(), digest);
                    } else {
                        store
                            .insert_verified("x", &bytes[..], bytes.len() as u64, digest, |_| {})
                            .unwrap();
                    }
                });
            }
        });
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.read(&digest).unwrap(), bytes);
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no temp files left"
        );
    }

    #[test]
    fn an_odd_digest_never_panics_nor_leaves_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for odd in ["", "a", "../../etc/passwd", &"A".repeat(64), "é"] {
            assert!(store.path(odd).starts_with(dir.path().join("sha256")));
            assert!(!store.contains(odd));
            assert!(store.read(odd).is_err());
        }
    }

    #[test]
    fn verified_insert_rejects_wrong_bytes_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let expected = sha256_hex(b"good");
        let error = store
            .insert_verified("pool/x.deb", &b"evil"[..], 4, &expected, |_| {})
            .unwrap_err();
        assert!(error.to_string().contains("pool/x.deb"), "{error}");
        assert!(!store.contains(&expected));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        store
            .insert_verified("pool/x.deb", &b"good"[..], 4, &expected, |_| {})
            .unwrap();
        assert!(store.contains(&expected));
    }

    #[test]
    fn a_damaged_blob_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = store.insert(b"genuine bytes").unwrap();
        let path = store.path(&digest);
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let error = store.read(&digest).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains(&path.display().to_string()));
        assert!(!store.contains(&digest), "evicted");
        assert_eq!(store.evictions(), 1);
        assert_eq!(store.clone().evictions(), 1, "clones share the count");
        // Repaired by inserting the genuine bytes again.
        store.insert(b"genuine bytes").unwrap();
        assert_eq!(store.read(&digest).unwrap(), b"genuine bytes");
    }

    #[test]
    fn truncated_and_swapped_blobs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.insert(b"package a").unwrap();
        let b = store.insert(b"package b").unwrap();
        fs::write(store.path(&a), b"package").unwrap();
        fs::copy(store.path(&a), store.path(&b)).unwrap();
        assert!(matches!(store.read(&a), Err(StoreError::Corrupt { .. })));
        assert!(matches!(store.read(&b), Err(StoreError::Corrupt { .. })));
        assert_eq!(store.evictions(), 2);
    }
}
