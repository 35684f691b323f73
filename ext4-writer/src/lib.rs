//! Writes a reproducible ext4 filesystem straight from an in-memory tree.
//!
//! No `mke2fs`, no loop device, no mount and no root privileges: the caller
//! describes every entry (path, kind, owner, mode, mtime, xattrs) and where
//! its content comes from; [`write()`] lays out and encodes the filesystem into
//! a [`std::fs::File`] at a byte offset, writing only non-zero blocks.
//!
//! The same entries and [`Options`] always give byte-identical output,
//! whatever the order of the entry list. [`min_size`] tells how big the
//! filesystem must be; [`write()`] fails with [`Error::TooSmall`] otherwise.
//!
//! The result uses extents, hashed directories, metadata checksums and
//! (optionally) a journal and reserved descriptor blocks for online growth;
//! e2fsck accepts it as is. See the crate's README for the layout.
//!
//! ```no_run
//! use ext4_writer::{Entry, FileData, NoSource, Options, Timestamp};
//! let t = Timestamp::from_secs(1_700_000_000);
//! let entries = vec![
//!     Entry::dir("etc", 0o755, t),
//!     Entry::file("etc/hostname", 0o644, t, FileData::Bytes(b"pi\n".to_vec())),
//!     Entry::symlink("bin", t, "usr/bin"),
//! ];
//! let opts = Options::new(64 << 20, [7; 16]);
//! let file = std::fs::File::create("root.ext4").unwrap();
//! file.set_len(opts.size).unwrap();
//! ext4_writer::write(&file, 0, &entries, &NoSource, &opts).unwrap();
//! ```
//!
//! # Modules
//!
//! Which internal module uses which; there are no cycles. Every module may
//! use the public types defined here (`lib.rs`), which itself uses only
//! `writer`, to re-export [`write()`], [`min_size`] and [`Summary`].
//!
//! ```text
//! writer    (I/O)   -> metadata layout encode tree xattr checksum geometry
//! metadata  (pure)  -> layout encode dir tree checksum geometry
//! layout    (pure)  -> dir tree xattr geometry
//! encode    (pure)  -> xattr checksum geometry
//! dir       (pure)  -> tree checksum geometry
//! tree      (pure)  -> xattr geometry
//! xattr     (pure)  -> checksum geometry
//! checksum, geometry: leaves
//! ```

mod checksum;
mod dir;
mod encode;
mod geometry;
mod layout;
mod metadata;
mod tree;
mod writer;
mod xattr;

use std::io::{self, Read};
use std::path::PathBuf;

pub use writer::{Summary, min_size, write};

/// A point in time with nanosecond precision (seconds since the Unix epoch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01 UTC; ext4 stores 1901..2446.
    pub secs: i64,
    /// Nanoseconds, below 1e9.
    pub nanos: u32,
}

impl Timestamp {
    /// A whole-second timestamp.
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp { secs, nanos: 0 }
    }
}

/// Where a regular file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileData {
    /// The content itself.
    Bytes(Vec<u8>),
    /// A file on the host, read at write time (only its bytes are used).
    Path(PathBuf),
    /// A key handed to the [`ContentSource`] at write time, e.g. a blob digest.
    External(String),
}

/// Streams content for [`FileData::External`] files, so that large trees
/// need not be held in memory.
pub trait ContentSource {
    /// Opens the content stored under `key`; it must yield exactly the size
    /// the entry declares.
    fn open(&self, key: &str) -> io::Result<Box<dyn Read + '_>>;
}

/// A [`ContentSource`] for trees without [`FileData::External`] files.
pub struct NoSource;

impl ContentSource for NoSource {
    fn open(&self, key: &str) -> io::Result<Box<dyn Read + '_>> {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no content source for key {key:?}"),
        ))
    }
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory; its children are the entries below its path.
    Directory,
    /// A regular file of `size` bytes.
    File {
        /// Size in bytes, known up front.
        size: u64,
        /// Where the bytes come from.
        data: FileData,
    },
    /// A symbolic link to `target` (at most 4095 bytes).
    Symlink {
        /// The link target, stored verbatim.
        target: Vec<u8>,
    },
    /// Another name for the (non-directory) entry at `target`, a path
    /// relative to the filesystem root. Its own metadata is ignored.
    HardLink {
        /// Path of the entry this one shares an inode with.
        target: Vec<u8>,
    },
    /// A character device.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A Unix domain socket.
    Socket,
}

/// One entry of the tree to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the filesystem root, `/`-separated (e.g. `usr/bin/ls`).
    /// An empty path (or `/`, `.`) is the root directory itself.
    pub path: Vec<u8>,
    /// What the entry is.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub mode: u16,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Used for the access, change, modification and creation times.
    pub mtime: Timestamp,
    /// Extended attributes by full name (`user.*`, `trusted.*`, `security.*`,
    /// `system.posix_acl_access`, `system.posix_acl_default`), raw values.
    /// POSIX ACLs may be given in the VFS xattr format (version 2) and are
    /// converted to ext4's on-disk format.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Placement layer (default 0). Inodes are numbered by (layer, path)
    /// and the data of layer-0 files comes first, in a region sized by
    /// their sizes alone; directories and the files of later layers follow.
    /// Put what rarely changes (packages) in layer 0 and what the user
    /// edits (overlays, generated files) in layer 1: adding or changing a
    /// layer-1 file then leaves every layer-0 inode and data block where
    /// it was, which keeps compressed-chunk caches and delta updates small.
    pub layer: u8,
}

impl Entry {
    /// An entry owned by root with no xattrs.
    pub fn new(path: impl AsRef<[u8]>, kind: Kind, mode: u16, mtime: Timestamp) -> Self {
        Entry {
            path: path.as_ref().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: Vec::new(),
            layer: 0,
        }
    }

    /// A directory owned by root.
    pub fn dir(path: impl AsRef<[u8]>, mode: u16, mtime: Timestamp) -> Self {
        Self::new(path, Kind::Directory, mode, mtime)
    }

    /// A regular file owned by root; for [`FileData::Bytes`] the size is the
    /// length of the bytes. Other content needs its size: use
    /// [`Entry::external`] or [`Entry::host_file`].
    pub fn file(path: impl AsRef<[u8]>, mode: u16, mtime: Timestamp, data: FileData) -> Self {
        let size = match &data {
            FileData::Bytes(b) => b.len() as u64,
            _ => 0,
        };
        Self::new(path, Kind::File { size, data }, mode, mtime)
    }

    /// A regular file of `size` bytes owned by root, whose content the
    /// [`ContentSource`] streams under `key`.
    pub fn external(
        path: impl AsRef<[u8]>,
        mode: u16,
        mtime: Timestamp,
        size: u64,
        key: impl Into<String>,
    ) -> Self {
        let data = FileData::External(key.into());
        Self::new(path, Kind::File { size, data }, mode, mtime)
    }

    /// A regular file of `size` bytes owned by root, read from a host file
    /// at write time (only its bytes are used).
    pub fn host_file(
        path: impl AsRef<[u8]>,
        mode: u16,
        mtime: Timestamp,
        size: u64,
        host: impl Into<PathBuf>,
    ) -> Self {
        let data = FileData::Path(host.into());
        Self::new(path, Kind::File { size, data }, mode, mtime)
    }

    /// A symlink (mode 0777) owned by root.
    pub fn symlink(path: impl AsRef<[u8]>, mtime: Timestamp, target: impl AsRef<[u8]>) -> Self {
        let target = target.as_ref().to_vec();
        Self::new(path, Kind::Symlink { target }, 0o777, mtime)
    }

    /// A hard link to the entry at `target`.
    pub fn hard_link(path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let target = target.as_ref().to_vec();
        Self::new(path, Kind::HardLink { target }, 0, Timestamp::default())
    }

    /// Sets the owner.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Sets the placement layer (see [`Entry::layer`]).
    pub fn layer(mut self, layer: u8) -> Self {
        self.layer = layer;
        self
    }

    /// Adds an extended attribute.
    pub fn xattr(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.xattrs
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }
}

/// How many inodes the filesystem gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InodeCount {
    /// What the tree needs plus 25 % (at least 256) headroom.
    Auto,
    /// Exactly this many (rounded up to fill whole inode-table blocks per group).
    Count(u32),
    /// One inode per this many bytes of filesystem (mke2fs uses 16384); suits
    /// filesystems that will be grown, since each new group gets as many inodes.
    BytesPerInode(u32),
}

/// Filesystem-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Filesystem size in bytes (rounded down to whole blocks).
    pub size: u64,
    /// Block size; only 4096 is supported.
    pub block_size: u32,
    /// Filesystem UUID; also seeds every metadata checksum.
    pub uuid: [u8; 16],
    /// Seed for directory-index hashes.
    pub hash_seed: [u8; 16],
    /// Volume label, at most 16 bytes.
    pub label: String,
    /// Creation/write/check time recorded in the superblock.
    pub timestamp: Timestamp,
    /// Number of inodes.
    pub inodes: InodeCount,
    /// Blocks reserved for root (default 0).
    pub reserved_blocks: u64,
    /// Size of an internal jbd2 journal in blocks, or `None` for no journal.
    pub journal_blocks: Option<u32>,
    /// Reserve group-descriptor blocks (the `resize_inode` feature, as mke2fs
    /// does) so that the mounted filesystem can grow online up to this many
    /// bytes without converting to `meta_bg`. `None`: no reservation.
    pub grow_to: Option<u64>,
    /// The output region already reads as zeros (a new file sized with
    /// `set_len`, or a hole), so all-zero blocks need not be written and the
    /// image stays sparse. Set to `false` when writing over old data: every
    /// block that must be zero is then written (default `true`).
    pub assume_zeroed: bool,
    /// Leave all-zero blocks of regular files unallocated (holes), so they
    /// take no space in the filesystem either. Sizes are still checked
    /// as if there were no holes.
    pub sparse_files: bool,
}

impl Options {
    /// Defaults: 4 KiB blocks, zero hash seed (the kernel then uses its
    /// default seed), empty label, timestamp 0, automatic inode count, no
    /// reserved blocks, no journal, no growth reservation, a zeroed target,
    /// sparse files.
    pub fn new(size: u64, uuid: [u8; 16]) -> Self {
        Options {
            size,
            block_size: 4096,
            uuid,
            hash_seed: [0; 16],
            label: String::new(),
            timestamp: Timestamp::default(),
            inodes: InodeCount::Auto,
            reserved_blocks: 0,
            journal_blocks: None,
            grow_to: None,
            assume_zeroed: true,
            sparse_files: true,
        }
    }

    /// The journal size mke2fs would choose for a filesystem of `size` bytes.
    pub fn default_journal_blocks(size: u64) -> u32 {
        match size / 4096 {
            n if n < 32 * 1024 => 1024,
            n if n < 256 * 1024 => 4096,
            n if n < 512 * 1024 => 8192,
            n if n < 4096 * 1024 => 16384,
            n if n < 8192 * 1024 => 32768,
            n if n < 16384 * 1024 => 65536,
            n if n < 32768 * 1024 => 131072,
            _ => 262144,
        }
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tree does not fit in the requested size.
    #[error("filesystem too small: the tree needs {needed} bytes, {available} available")]
    TooSmall {
        /// Minimum filesystem size in bytes for this tree and options.
        needed: u64,
        /// The size that was requested.
        available: u64,
    },
    /// An entry is malformed or conflicts with another.
    #[error("invalid entry {path:?}: {reason}")]
    InvalidEntry {
        /// The entry's path (lossy UTF-8).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Reading a file's content failed.
    #[error("reading content of {path:?}: {source}")]
    Content {
        /// The entry's path (lossy UTF-8).
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A file's content was not as long as its declared size.
    #[error("content of {path:?} is not {expected} bytes long as declared")]
    ContentSize {
        /// The entry's path (lossy UTF-8).
        path: String,
        /// The declared size.
        expected: u64,
    },
    /// Writing the image failed.
    #[error("writing the image at byte {offset}: {source}")]
    Write {
        /// Absolute byte offset in the output file.
        offset: u64,
        /// The underlying error.
        source: io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}
