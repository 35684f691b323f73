//! RAUC bundles in the `verity` format, written without RAUC or root:
//!
//! ```text
//! [ SquashFS: manifest.raucm, rootfs.ext4, rootfs.ext4.block-hash-index ]
//! [ dm-verity hash tree ][ CMS ][ CMS length, u64 BE ]
//! ```
//!
//! The block hash index (SHA-256 of every 4 KiB chunk of the slot image,
//! RAUC's adaptive method `block-hash-index`) lets a device streaming the
//! bundle read only the chunks neither of its root slots already holds;
//! with ext4-writer's stable layout a one-file change is a few hundred
//! chunks.
//!
//! The CMS signature carries the manifest with the tree's root hash, salt
//! and size, so a device that trusts the signer trusts every block of the
//! payload as dm-verity reads it. Everything but the signature derives from
//! the inputs (the salt from the manifest, times from the lock), and both
//! key types sign deterministically, so a bundle is byte-reproducible.

pub mod manifest;
pub mod payload;
pub mod signing;
pub mod verity;

use crate::slot_digest::digest;
use anyhow::{Context as _, Result, bail};
use manifest::{Image, Manifest, Verity};
use sha2::{Digest, Sha256};
use signing::Signer;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The slot class of the root slots in `system.conf`.
pub const SLOT_CLASS: &str = "rootfs";
/// The image's name inside a bundle (`.ext4`: copied raw onto the slot).
pub const IMAGE_NAME: &str = "rootfs.ext4";
/// Its block hash index, named as RAUC looks for it.
pub const INDEX_NAME: &str = "rootfs.ext4.block-hash-index";
pub use crate::slot_digest::CHUNK;

/// A region of a file: the root slot's ext4 inside the `.img`.
#[derive(Debug, Clone)]
pub struct Region {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
}

impl Region {
    fn open(&self) -> Result<impl Read + use<>> {
        let mut file =
            File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        Ok(file.take(self.size))
    }
}

/// What a bundle is made of.
pub struct BundleSpec<'a> {
    /// `vinyl-<board>`: what the device's `system.conf` must name.
    pub compatible: String,
    pub version: String,
    /// The exact build: lock and tree digests.
    pub build: String,
    pub description: String,
    /// The root slot's filesystem.
    pub root: Region,
    /// File times inside the payload (`SOURCE_DATE_EPOCH`).
    pub epoch: u32,
    /// Carry the block hash index (adaptive updates). Always on for
    /// release bundles; off only to measure what it saves.
    pub adaptive: bool,
    pub signer: &'a Signer,
    /// The bundle file; replaced whole, never left half-written.
    pub out: PathBuf,
}

/// A bundle written.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub path: PathBuf,
    pub size: u64,
    /// The signed manifest.
    pub manifest: Manifest,
}

/// Writes the bundle: payload, hash tree, signature.
pub fn write(spec: &BundleSpec) -> Result<Bundle> {
    let slot = digest(spec.root.open()?)
        .with_context(|| format!("reading the root slot from {}", spec.root.path.display()))?;
    if slot.size != spec.root.size {
        bail!(
            "{} ends inside the root slot (read {} of {} bytes)",
            spec.root.path.display(),
            slot.size,
            spec.root.size
        );
    }
    if slot.size % CHUNK as u64 != 0 {
        bail!(
            "the root slot in {} is {} bytes, not a whole number of 4 KiB blocks",
            spec.root.path.display(),
            slot.size
        );
    }
    let mut manifest = Manifest {
        compatible: spec.compatible.clone(),
        version: spec.version.clone(),
        build: spec.build.clone(),
        description: spec.description.clone(),
        slot_class: SLOT_CLASS.to_string(),
        image: Image {
            filename: IMAGE_NAME.to_string(),
            size: slot.size,
            sha256: slot.sha256,
            adaptive: spec.adaptive,
        },
        verity: None,
    };
    let inner = manifest.to_text();

    let dir = spec.out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Created as `creat` would (mode 0644 under the umask), so a web
    // server can serve it.
    use std::os::unix::fs::PermissionsExt as _;
    let mut temp = tempfile::Builder::new()
        .prefix(".bundle-")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let written = |e: std::io::Error| anyhow::anyhow!("writing {}: {e}", spec.out.display());

    // 1. The payload.
    {
        let mut out = BufWriter::new(temp.as_file_mut());
        let mut files = vec![
            payload::PayloadFile {
                name: "manifest.raucm",
                contents: Box::new(std::io::Cursor::new(inner.clone().into_bytes())),
            },
            payload::PayloadFile {
                name: IMAGE_NAME,
                contents: Box::new(spec.root.open()?),
            },
        ];
        if spec.adaptive {
            files.push(payload::PayloadFile {
                name: INDEX_NAME,
                contents: Box::new(std::io::Cursor::new(slot.index)),
            });
        }
        payload::write(&mut out, files, spec.epoch)?;
        out.flush().map_err(written)?;
    }
    let payload_size = temp.as_file_mut().seek(SeekFrom::End(0)).map_err(written)?;
    if payload_size % verity::BLOCK as u64 != 0 {
        bail!("the bundle's SquashFS is {payload_size} bytes, not a multiple of 4096");
    }

    // 2. The hash tree, salted from the manifest (so from the inputs).
    let salt: [u8; 32] = Sha256::new()
        .chain_update(b"vinyl verity salt\n")
        .chain_update(inner.as_bytes())
        .finalize()
        .into();
    let tree = {
        let mut file = temp.reopen().map_err(written)?;
        file.seek(SeekFrom::Start(0)).map_err(written)?;
        verity::hash_tree(
            std::io::BufReader::new(file),
            payload_size / verity::BLOCK as u64,
            &salt,
        )
        .map_err(written)?
    };
    temp.as_file_mut().write_all(&tree.bytes).map_err(written)?;

    // 3. The signed manifest, and its length last.
    manifest.verity = Some(Verity {
        hash: hex::encode(tree.root),
        salt: hex::encode(salt),
        size: tree.bytes.len() as u64,
    });
    let signature = spec.signer.sign(manifest.to_text().as_bytes())?;
    temp.as_file_mut().write_all(&signature).map_err(written)?;
    temp.as_file_mut()
        .write_all(&(signature.len() as u64).to_be_bytes())
        .map_err(written)?;
    temp.as_file().sync_all().map_err(written)?;
    let size = temp.as_file().metadata().map_err(written)?.len();
    temp.persist(&spec.out)
        .map_err(|e| anyhow::anyhow!("writing {}: {}", spec.out.display(), e.error))?;
    Ok(Bundle {
        path: spec.out.clone(),
        size,
        manifest,
    })
}
