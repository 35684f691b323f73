//! Unpacking `.deb` files in-process: the `ar` container, then `control.tar`
//! and `data.tar` compressed with xz, zstd, gzip or nothing. File contents go
//! into the store; the result is a list of tree entries plus control files.
//!
//! Unpacking is a pure function of the `.deb` bytes, so its result is cached
//! per package digest (see [`unpack_cached`]).

use crate::rootfs::tree::{Content, Kind, Node};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read};

/// Bump when the unpacked format or unpacking rules change, so old cache
/// entries are ignored.
const UNPACK_FORMAT: u32 = 1;

/// What a `.deb` contains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebContents {
    /// Members of `control.tar` by name (`control`, `conffiles`, `md5sums`, ...).
    pub control: BTreeMap<String, String>,
    /// Filesystem entries of `data.tar`, in archive order, paths as written
    /// (not yet canonical).
    pub entries: Vec<(String, Node)>,
}

/// A `.deb` that can't be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{deb}: {reason}")]
    Format { deb: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn decompressor<'a>(name: &str, reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match name.rsplit('.').next() {
        Some("xz") => Box::new(xz2::read::XzDecoder::new_multi_decoder(reader)),
        Some("zst") => Box::new(zstd::stream::read::Decoder::new(reader)?),
        Some("gz") => Box::new(flate2::read::GzDecoder::new(reader)),
        Some("tar") => Box::new(reader),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unsupported member compression {name:?}"),
            ));
        }
    })
}

/// Unpacks a `.deb`, storing file contents in `store`. `deb` names it in errors.
pub fn unpack(deb: &str, reader: impl Read, store: &Store) -> Result<DebContents, DebError> {
    let format = |reason: String| DebError::Format {
        deb: deb.to_string(),
        reason,
    };
    let mut archive = ar::Archive::new(reader);
    let mut control = None;
    let mut entries = None;
    let mut saw_version = false;
    while let Some(member) = archive.next_entry() {
        let member = member.map_err(|e| format(format!("bad ar archive: {e}")))?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if name == "debian-binary" {
            saw_version = true;
        } else if name.starts_with("control.tar") {
            let reader = decompressor(&name, member).map_err(|e| format(e.to_string()))?;
            control = Some(read_control(reader).map_err(|e| format(format!("{name}: {e}")))?);
        } else if name.starts_with("data.tar") {
            let reader = decompressor(&name, member).map_err(|e| format(e.to_string()))?;
            entries = Some(read_data(reader, store).map_err(|e| match e {
                DataError::Io(e) => format(format!("{name}: {e}")),
                DataError::Store(e) => DebError::Store(e),
            })?);
        }
    }
    if !saw_version {
        return Err(format(
            "not a Debian package (no debian-binary member)".into(),
        ));
    }
    Ok(DebContents {
        control: control.ok_or_else(|| format("no control.tar member".into()))?,
        entries: entries.ok_or_else(|| format("no data.tar member".into()))?,
    })
}

fn read_control(reader: impl Read) -> io::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for entry in tar::Archive::new(reader).entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text)?;
        files.insert(name, text);
    }
    Ok(files)
}

enum DataError {
    Io(io::Error),
    Store(StoreError),
}

impl From<io::Error> for DataError {
    fn from(e: io::Error) -> Self {
        DataError::Io(e)
    }
}

fn read_data(reader: impl Read, store: &Store) -> Result<Vec<(String, Node)>, DataError> {
    let mut entries = Vec::new();
    for entry in tar::Archive::new(reader).entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let path = entry.path()?.to_string_lossy().into_owned();
        let link = || -> io::Result<String> {
            Ok(header
                .link_name()?
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default())
        };
        let device = || -> io::Result<(u32, u32)> {
            Ok((
                header.device_major()?.unwrap_or(0),
                header.device_minor()?.unwrap_or(0),
            ))
        };
        let mut xattrs = BTreeMap::new();
        if let Some(extensions) = entry.pax_extensions()? {
            for extension in extensions {
                let extension = extension?;
                if let Ok(key) = extension.key()
                    && let Some(name) = key.strip_prefix("SCHILY.xattr.")
                {
                    xattrs.insert(name.to_string(), extension.value_bytes().to_vec());
                }
            }
        }
        use tar::EntryType;
        let kind = match header.entry_type() {
            EntryType::Directory => Kind::Dir,
            EntryType::Regular | EntryType::Continuous => {
                let mut bytes = Vec::with_capacity(header.size()? as usize);
                entry.read_to_end(&mut bytes)?;
                let sha256 = store.insert_unsynced(&bytes).map_err(DataError::Store)?;
                Kind::File {
                    size: bytes.len() as u64,
                    content: Content::Blob(sha256),
                }
            }
            EntryType::Symlink => Kind::Symlink { target: link()? },
            EntryType::Link => Kind::Hardlink {
                target: crate::rootfs::tree::canonical(&link()?),
            },
            EntryType::Char => {
                let (major, minor) = device()?;
                Kind::CharDevice { major, minor }
            }
            EntryType::Block => {
                let (major, minor) = device()?;
                Kind::BlockDevice { major, minor }
            }
            EntryType::Fifo => Kind::Fifo,
            _ => continue,
        };
        entries.push((
            path,
            Node {
                kind,
                mode: header.mode()? & 0o7777,
                uid: header.uid()? as u32,
                gid: header.gid()? as u32,
                mtime: header.mtime()? as i64,
                xattrs,
            },
        ));
    }
    Ok(entries)
}

/// Where the unpack result of the `.deb` with this digest is cached.
fn cache_path(store: &Store, sha256: &str) -> Result<std::path::PathBuf, DebError> {
    let dir = store.subdir(&format!("unpacked-v{UNPACK_FORMAT}"))?;
    Ok(dir.join(format!("{sha256}.json")))
}

/// The cached unpack result of a `.deb`, if an earlier build recorded one.
pub fn cached(store: &Store, sha256: &str) -> Result<Option<DebContents>, DebError> {
    let path = cache_path(store, sha256)?;
    Ok(std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// Unpacks the `.deb` with this digest from the store. Its blobs are not yet
/// durable: call [`Store::sync`], then [`record`].
pub fn unpack_stored(store: &Store, name: &str, sha256: &str) -> Result<DebContents, DebError> {
    unpack(name, io::BufReader::new(store.open_blob(sha256)?), store)
}

/// Caches an unpack result. Call only after [`Store::sync`], so a recorded
/// entry never refers to blobs a crash could lose.
pub fn record(store: &Store, sha256: &str, contents: &DebContents) -> Result<(), DebError> {
    let json = serde_json::to_vec(contents).expect("serialisable");
    store.write_atomic(&cache_path(store, sha256)?, &json)?;
    Ok(())
}

/// [`cached`], else unpack, sync and [`record`].
pub fn unpack_cached(store: &Store, name: &str, sha256: &str) -> Result<DebContents, DebError> {
    if let Some(contents) = cached(store, sha256)? {
        return Ok(contents);
    }
    let contents = unpack_stored(store, name, sha256)?;
    store.sync()?;
    record(store, sha256, &contents)?;
    Ok(contents)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a small but real `.deb` (ar + control.tar.gz + data.tar.xz).
    pub fn build_deb(
        control: &str,
        files: &[(&str, &[u8], u32)],
        symlinks: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut control_tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(control.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        control_tar
            .append_data(&mut header, "./control", control.as_bytes())
            .unwrap();
        let control_tar = control_tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &control_tar).unwrap();
        let control_gz = gz.finish().unwrap();

        let header = |kind: tar::EntryType, mode: u32, size: u64| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(size);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_700_000_000);
            header
        };
        let mut data = tar::Builder::new(Vec::new());
        for dir in ["./", "./bin/"] {
            let mut dir_header = header(tar::EntryType::Directory, 0o755, 0);
            data.append_data(&mut dir_header, dir, io::empty()).unwrap();
        }
        for (path, bytes, mode) in files {
            let mut file = header(tar::EntryType::Regular, *mode, bytes.len() as u64);
            file.set_gid(43);
            data.append_data(&mut file, path, *bytes).unwrap();
        }
        for (path, target) in symlinks {
            let mut link = header(tar::EntryType::Symlink, 0o777, 0);
            data.append_link(&mut link, path, target).unwrap();
        }
        let data = data.into_inner().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        io::Write::write_all(&mut xz, &data).unwrap();
        let data_xz = xz.finish().unwrap();

        let mut deb = ar::Builder::new(Vec::new());
        for (name, bytes) in [
            ("debian-binary", &b"2.0\n"[..]),
            ("control.tar.gz", &control_gz),
            ("data.tar.xz", &data_xz),
        ] {
            let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
            deb.append(&header, bytes).unwrap();
        }
        deb.into_inner().unwrap()
    }

    #[test]
    fn unpacks_a_real_deb_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let deb = build_deb(
            "Package: hello\nVersion: 1.0\nArchitecture: arm64\n",
            &[("./bin/hello", b"#!/bin/sh\necho hi\n", 0o4755)],
            &[("./bin/hi", "hello")],
        );
        let contents = unpack("hello.deb", &deb[..], &store).unwrap();
        assert!(contents.control["control"].starts_with("Package: hello"));
        let (path, node) = &contents.entries[2];
        assert_eq!(crate::rootfs::tree::canonical(path), "usr/bin/hello");
        assert_eq!(node.mode, 0o4755);
        assert_eq!(node.gid, 43);
        assert_eq!(node.mtime, 1_700_000_000);
        let Kind::File {
            size,
            content: Content::Blob(sha),
        } = &node.kind
        else {
            panic!("not a file: {node:?}");
        };
        assert_eq!(*size, 18);
        assert_eq!(store.read(sha).unwrap(), b"#!/bin/sh\necho hi\n");
        assert_eq!(
            contents.entries[3].1.kind,
            Kind::Symlink {
                target: "hello".into()
            }
        );
    }

    #[test]
    fn garbage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let error = unpack("broken.deb", &b"!<arch>\nnonsense"[..], &store).unwrap_err();
        assert!(error.to_string().starts_with("broken.deb:"), "{error}");
    }

    #[test]
    fn cached_unpack_equals_fresh_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let deb = build_deb("Package: a\n", &[("./etc/a", b"x", 0o644)], &[]);
        let sha = store.insert(&deb).unwrap();
        let first = unpack_cached(&store, "a.deb", &sha).unwrap();
        let second = unpack_cached(&store, "a.deb", &sha).unwrap();
        assert_eq!(first, second);
        assert_eq!(first, unpack("a.deb", &deb[..], &store).unwrap());
    }
}
