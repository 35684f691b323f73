//! The content-addressed store: verified downloads and unpacked file contents,
//! kept by SHA-256 in the user's cache directory.
//!
//! Every write goes to a temporary file in the store and is renamed into place
//! only when complete and verified, so a killed build never leaves a corrupt
//! entry, and two builds at once at worst both write the same bytes.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

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
}

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
        Ok(Store { root })
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

    /// Whether a blob is present.
    pub fn contains(&self, sha256: &str) -> bool {
        self.path(sha256).is_file()
    }

    /// Reads a whole blob.
    pub fn read(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(sha256);
        fs::read(&path).map_err(io_error(&path))
    }

    /// Opens a blob for streaming.
    pub fn open_blob(&self, sha256: &str) -> Result<fs::File, StoreError> {
        let path = self.path(sha256);
        fs::File::open(&path).map_err(io_error(&path))
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
}
