//! Unpacking `.deb` files in-process: the `ar` container, then `control.tar`
//! and `data.tar` compressed with xz, zstd, gzip or nothing. File contents go
//! into the store; the result is a list of tree entries plus control files.
//!
//! Unpacking is a pure function of the `.deb` bytes, so its result is cached
//! per package digest (see [`unpack_cached`]). The `.deb` is checked against
//! its digest before it is unpacked, and a cached result is used only when
//! its own checksum holds and every blob it names is still in the store.
//!
//! Paths are checked once, here: a path or hard-link target that is
//! absolute or has a `..` component is refused, so no later stage (the
//! image, the sysroot on the host) ever sees one.

use crate::rootfs::tree::{Content, Kind, Node};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read};

/// Bump when the unpacked format or unpacking rules change, so old cache
/// entries are ignored.
const UNPACK_FORMAT: u32 = 2;

/// What a `.deb` contains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebContents {
    /// Members of `control.tar` by name (`control`, `conffiles`, `md5sums`, ...).
    pub control: BTreeMap<String, String>,
    /// Filesystem entries of `data.tar`, in archive order, paths as written
    /// (not yet canonical).
    pub entries: Vec<(String, Node)>,
}

impl DebContents {
    /// The text of the `control` member (empty if it had none).
    pub fn control_text(&self) -> &str {
        self.control.get("control").map_or("", String::as_str)
    }
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
                DataError::Unsafe(reason) => format(format!("{name}: {reason}")),
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
    Unsafe(String),
}

/// Refuses a path from a package that could leave the root it is unpacked
/// into: absolute, with a `..` component, or with a NUL byte.
pub fn check_path(path: &str) -> Result<(), String> {
    let problem = if path.starts_with('/') {
        "is absolute"
    } else if path.contains('\0') {
        "contains a NUL byte"
    } else if path.split('/').any(|part| part == "..") {
        "has a \"..\" component"
    } else {
        return Ok(());
    };
    Err(format!(
        "path {path:?} {problem}; a package may only name paths inside its root, so it was refused"
    ))
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
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        check_path(&path).map_err(DataError::Unsafe)?;
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
            EntryType::Link => {
                let target = link()?;
                check_path(&target).map_err(|e| DataError::Unsafe(format!("hard link {e}")))?;
                Kind::Hardlink {
                    target: crate::rootfs::tree::canonical(&target),
                }
            }
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

/// The cached unpack result of a `.deb`, if an earlier build recorded one
/// and it is intact: its checksum line matches the record, and every blob
/// it names is in the store. Anything else means "unpack again".
pub fn cached(store: &Store, sha256: &str) -> Result<Option<DebContents>, DebError> {
    let path = cache_path(store, sha256)?;
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let Some(contents) = parse_record(&bytes) else {
        tracing::warn!("{} is damaged; unpacking again", path.display());
        return Ok(None);
    };
    let missing = contents
        .entries
        .iter()
        .find_map(|(_, node)| match &node.kind {
            Kind::File {
                content: Content::Blob(blob),
                ..
            } if !store.contains(blob) => Some(blob),
            _ => None,
        });
    if let Some(blob) = missing {
        tracing::info!(
            "{}: blob {blob} is no longer in the store; unpacking again",
            path.display()
        );
        return Ok(None);
    }
    Ok(Some(contents))
}

/// A record is the SHA-256 of its JSON on the first line, then the JSON.
fn render_record(contents: &DebContents) -> Vec<u8> {
    let json = serde_json::to_vec(contents).expect("serialisable");
    let mut record = format!("{}\n", crate::store::sha256_hex(&json)).into_bytes();
    record.extend(json);
    record
}

fn parse_record(bytes: &[u8]) -> Option<DebContents> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let (checksum, json) = (&bytes[..newline], &bytes[newline + 1..]);
    if checksum != crate::store::sha256_hex(json).as_bytes() {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// Unpacks the `.deb` with this digest from the store, after checking its
/// bytes against the digest. Its blobs are not yet durable: call
/// [`Store::sync`], then [`record`].
pub fn unpack_stored(store: &Store, name: &str, sha256: &str) -> Result<DebContents, DebError> {
    let deb = store.read(sha256)?;
    unpack(name, &deb[..], store)
}

/// Caches an unpack result. Call only after [`Store::sync`], so a recorded
/// entry never refers to blobs a crash could lose.
pub fn record(store: &Store, sha256: &str, contents: &DebContents) -> Result<(), DebError> {
    store.write_atomic(&cache_path(store, sha256)?, &render_record(contents))?;
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
        deb_with_data(control, &data.into_inner().unwrap())
    }

    /// A `.deb` around a ready-made `data.tar` (for archives the tar
    /// crate's builder refuses to write, such as paths with `..`).
    pub fn deb_with_data(control: &str, data: &[u8]) -> Vec<u8> {
        let mut control_tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(control.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        control_tar
            .append_data(&mut header, "./control", control.as_bytes())
            .unwrap();
        let control_tar = control_tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &control_tar).unwrap();
        let control_gz = gz.finish().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        io::Write::write_all(&mut xz, data).unwrap();
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

    /// A one-entry tar whose header names are written raw (the tar
    /// crate's builder refuses `..`).
    fn raw_tar(kind: tar::EntryType, name: &str, link: &str, bytes: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        let mut data = tar::Builder::new(Vec::new());
        data.append(&header, bytes).unwrap();
        data.into_inner().unwrap()
    }

    #[test]
    fn paths_leaving_the_root_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for evil in ["./../../escaped", "../x", "./usr/../../etc/passwd"] {
            let data = raw_tar(tar::EntryType::Regular, evil, "", b"x");
            let deb = deb_with_data("Package: evil\n", &data);
            let error = unpack("pool/evil.deb", &deb[..], &store)
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("pool/evil.deb: data.tar.xz: path"),
                "{error}"
            );
            assert!(error.contains(evil), "{error}");
            assert!(error.contains("\"..\" component"), "{error}");
        }
        assert!(check_path("/etc/passwd").unwrap_err().contains("absolute"));
        assert!(check_path("./usr/bin/a..b").is_ok());
        assert!(check_path("./usr/..x/y").is_ok());
    }

    #[test]
    fn a_hard_link_leaving_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = raw_tar(tar::EntryType::Link, "./usr/lnk", "../../etc/shadow", b"");
        let error = read_data(&data[..], &store).expect_err("refused");
        let DataError::Unsafe(reason) = error else {
            panic!("not refused as unsafe");
        };
        assert!(
            reason.starts_with("hard link path \"../../etc/shadow\""),
            "{reason}"
        );
    }

    #[test]
    fn a_damaged_package_or_record_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let deb = build_deb("Package: a\n", &[("./etc/a", b"genuine", 0o644)], &[]);
        let sha = store.insert(&deb).unwrap();
        let first = unpack_cached(&store, "a.deb", &sha).unwrap();

        // A flipped bit in the record: unpacked again, same result.
        let record = cache_path(&store, &sha).unwrap();
        let mut bytes = std::fs::read(&record).unwrap();
        let last = bytes.len() - 5;
        bytes[last] ^= 1;
        std::fs::write(&record, &bytes).unwrap();
        assert!(cached(&store, &sha).unwrap().is_none());
        assert_eq!(unpack_cached(&store, "a.deb", &sha).unwrap(), first);

        // A blob the record names is gone (evicted): unpacked again.
        let blob = crate::store::sha256_hex(b"genuine");
        std::fs::remove_file(store.path(&blob)).unwrap();
        assert!(cached(&store, &sha).unwrap().is_none());
        assert_eq!(unpack_cached(&store, "a.deb", &sha).unwrap(), first);
        assert_eq!(store.read(&blob).unwrap(), b"genuine");

        // A crafted .deb swapped in under the genuine digest: refused and
        // removed, never unpacked.
        std::fs::remove_file(record).unwrap();
        let crafted = build_deb("Package: a\n", &[("./etc/a", b"crafted", 0o4755)], &[]);
        std::fs::write(store.path(&sha), crafted).unwrap();
        let error = unpack_cached(&store, "a.deb", &sha).unwrap_err();
        assert!(
            matches!(error, DebError::Store(StoreError::Corrupt { .. })),
            "{error}"
        );
        assert!(!store.contains(&sha));
        assert!(!store.contains(&crate::store::sha256_hex(b"crafted")));
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
