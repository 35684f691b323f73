//! The bundle's payload: a SquashFS holding the manifest and the slot
//! image, written by `backhand` with fixed times, owners and modes so the
//! same inputs give the same bytes. Blocks of zeros (most of an ext4 slot)
//! become holes, as mksquashfs makes them.

use anyhow::{Result, anyhow};
use backhand::compression::{CompressionOptions, Compressor, Zstd};
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};
use std::io::{Read, Seek, Write};

/// zstd level: the kernel reads zstd SquashFS (Debian's `SQUASHFS_ZSTD`);
/// this level is a fair trade of bundle size against build time.
pub const ZSTD_LEVEL: u32 = 9;

/// A file in the payload.
pub struct PayloadFile<'a> {
    pub name: &'a str,
    pub contents: Box<dyn Read + 'a>,
}

/// Writes the SquashFS to `out`, padded to 4096 bytes as a verity payload
/// must be.
pub fn write(out: impl Write + Seek, files: Vec<PayloadFile<'_>>, epoch: u32) -> Result<()> {
    let mut fs = FilesystemWriter::default();
    fs.set_time(epoch);
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    fs.set_only_root_id();
    fs.set_compressor(
        FilesystemCompressor::new(
            Compressor::Zstd,
            Some(CompressionOptions::Zstd(Zstd {
                compression_level: ZSTD_LEVEL,
            })),
        )
        .map_err(|e| anyhow!("SquashFS compressor: {e}"))?,
    );
    let header = NodeHeader::new(0o644, 0, 0, epoch);
    for file in files {
        fs.push_file(file.contents, file.name, header)
            .map_err(|e| anyhow!("adding {} to the bundle: {e}", file.name))?;
    }
    fs.write(out)
        .map_err(|e| anyhow!("writing the bundle's SquashFS: {e}"))?;
    Ok(())
}
