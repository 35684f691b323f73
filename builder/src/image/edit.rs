//! Changing a built image in place, without mounting: overwrite a file on
//! the FAT boot partition (the A/B boot state, say) or write a new
//! filesystem into a root slot. The QEMU tests set up A/B scenarios with
//! these; an update client on the device does the same to the live disk.

use super::inspect::{PartitionInfo, partitions};
use super::io::PartitionIo;
use anyhow::{Context as _, Result, bail};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

fn partition(image: &File, number: usize, what: &Path) -> Result<PartitionInfo> {
    let (_, parts) = partitions(image)?;
    parts
        .into_iter()
        .find(|p| p.number == number)
        .with_context(|| format!("{} has no partition {number}", what.display()))
}

fn open_rw(image: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("opening {} for writing", image.display()))
}

/// Replaces the content of `path` on the FAT partition `number` (creating
/// the file if needed).
pub fn write_fat_file(image: &Path, number: usize, path: &str, bytes: &[u8]) -> Result<()> {
    let file = open_rw(image)?;
    let p = partition(&file, number, image)?;
    let fs = fatfs::FileSystem::new(
        PartitionIo::new(&file, p.offset, p.size),
        fatfs::FsOptions::new(),
    )
    .with_context(|| format!("partition {number} of {} is not FAT", image.display()))?;
    {
        let mut target = fs.root_dir().create_file(path.trim_start_matches('/'))?;
        target.truncate()?;
        target.write_all(bytes)?;
        target.flush()?;
    }
    fs.unmount()?;
    file.sync_all()?;
    Ok(())
}

/// Writes a fresh ext4 filesystem holding `entries` into partition `number`
/// (a root slot), replacing whatever was there.
pub fn write_ext4_partition(
    image: &Path,
    number: usize,
    entries: &[ext4_writer::Entry],
    source: &dyn ext4_writer::ContentSource,
    label: &str,
    uuid: [u8; 16],
) -> Result<()> {
    let file = open_rw(image)?;
    let p = partition(&file, number, image)?;
    if p.kind != 0x83 {
        bail!(
            "partition {number} of {} is not a Linux partition",
            image.display()
        );
    }
    let mut options = ext4_writer::Options::new(p.size, uuid);
    options.label = label.into();
    options.assume_zeroed = false;
    ext4_writer::write(&file, p.offset, entries, source, &options)
        .with_context(|| format!("writing ext4 into partition {number}"))?;
    file.sync_all()?;
    Ok(())
}
