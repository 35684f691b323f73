//! `builder inspect`: the partition table of an image, and listing or reading
//! files on its FAT and ext4 partitions — without mounting anything.

use super::io::PartitionIo;
use anyhow::{Context as _, Result, bail};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A partition as the MBR describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub number: usize,
    pub kind: u8,
    pub offset: u64,
    pub size: u64,
    pub bootable: bool,
}

/// Reads the MBR of an image (and its disk identifier).
pub fn partitions(image: &File) -> Result<(u32, Vec<PartitionInfo>)> {
    let mut reader = PartitionIo::new(image, 0, image.metadata()?.len());
    let mbr = mbrman::MBR::read_from(&mut reader, 512).context("no MBR partition table")?;
    let parts = mbr
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(number, p)| PartitionInfo {
            number,
            kind: p.sys,
            offset: u64::from(p.starting_lba) * 512,
            size: u64::from(p.sectors) * 512,
            bootable: p.boot == mbrman::BOOT_ACTIVE,
        })
        .collect();
    Ok((u32::from_le_bytes(mbr.header.disk_signature), parts))
}

/// The partition table as text.
pub fn table(image: &File) -> Result<String> {
    let (disk_id, parts) = partitions(image)?;
    let mut out = format!(
        "disk identifier {disk_id:08x}\n  #  type  boot      start MiB       size MiB  filesystem\n"
    );
    for p in &parts {
        let fs = describe(image, p);
        out.push_str(&format!(
            "  {}  0x{:02x}  {:<4}  {:>13}  {:>13}  {fs}\n",
            p.number,
            p.kind,
            if p.bootable { "*" } else { "" },
            p.offset >> 20,
            p.size >> 20
        ));
    }
    Ok(out)
}

fn describe(image: &File, p: &PartitionInfo) -> String {
    match open(image, p) {
        Ok(Fs::Fat(fs)) => format!("FAT {:?}, volume id {:08X}", fs.fat_type(), fs.volume_id()),
        Ok(Fs::Ext4(fs)) => format!(
            "ext4 {:?} uuid {}",
            fs.label().to_str().unwrap_or("?"),
            fs.uuid()
        ),
        Err(_) => "empty or unknown".into(),
    }
}

/// ext4-view reads through this: the image file at a partition's offset.
struct OffsetReader {
    file: File,
    offset: u64,
}

impl ext4_view::Ext4Read for OffsetReader {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.file.read_exact_at(dst, self.offset + start)?;
        Ok(())
    }
}

enum Fs<'a> {
    Fat(fatfs::FileSystem<PartitionIo<'a>>),
    Ext4(ext4_view::Ext4),
}

fn open<'a>(image: &'a File, p: &PartitionInfo) -> Result<Fs<'a>> {
    if p.kind == 0x0c || p.kind == 0x0b || p.kind == 0x0e {
        let fs = fatfs::FileSystem::new(
            PartitionIo::new(image, p.offset, p.size),
            fatfs::FsOptions::new(),
        )?;
        return Ok(Fs::Fat(fs));
    }
    let reader = OffsetReader {
        file: image.try_clone()?,
        offset: p.offset,
    };
    Ok(Fs::Ext4(
        ext4_view::Ext4::load(Box::new(reader)).map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

fn partition(image: &File, number: usize) -> Result<PartitionInfo> {
    let (_, parts) = partitions(image)?;
    let numbers: Vec<String> = parts.iter().map(|p| p.number.to_string()).collect();
    parts
        .into_iter()
        .find(|p| p.number == number)
        .with_context(|| {
            format!(
                "no partition {number}; the image has {}",
                numbers.join(", ")
            )
        })
}

/// Lists a directory: `mode uid gid size name` per entry, sorted by name.
pub fn list(image_path: &Path, number: usize, dir: &str) -> Result<Vec<String>> {
    let image =
        File::open(image_path).with_context(|| format!("opening {}", image_path.display()))?;
    let p = partition(&image, number)?;
    let mut lines = Vec::new();
    match open(&image, &p)
        .with_context(|| format!("partition {number} holds no filesystem we can read"))?
    {
        Fs::Fat(fs) => {
            let root = fs.root_dir();
            let dir = if dir.trim_matches('/').is_empty() {
                root
            } else {
                root.open_dir(dir.trim_matches('/'))?
            };
            for entry in dir.iter() {
                let entry = entry?;
                let name = entry.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                let kind = if entry.is_dir() { "d" } else { "-" };
                lines.push(format!("{kind} {:>10} {name}", entry.len()));
            }
        }
        Fs::Ext4(fs) => {
            for entry in fs
                .read_dir(dir)
                .map_err(|e| anyhow::anyhow!("{dir}: {e}"))?
            {
                let entry = entry.map_err(|e| anyhow::anyhow!("{e}"))?;
                let name = entry.file_name().display().to_string();
                if name == "." || name == ".." {
                    continue;
                }
                let meta = entry.metadata().map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut line = format!(
                    "{:06o} {:>5} {:>5} {:>10} {name}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.len()
                );
                if meta.is_symlink() {
                    let target = fs
                        .read_link(&entry.path())
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    line.push_str(&format!(" -> {}", target.display()));
                }
                lines.push(line);
            }
        }
    }
    lines.sort_by(|a, b| a.rsplit(' ').next().cmp(&b.rsplit(' ').next()));
    Ok(lines)
}

/// Reads a file (symlinks followed on ext4).
pub fn read(image_path: &Path, number: usize, path: &str) -> Result<Vec<u8>> {
    let image =
        File::open(image_path).with_context(|| format!("opening {}", image_path.display()))?;
    let p = partition(&image, number)?;
    match open(&image, &p)? {
        Fs::Fat(fs) => {
            let mut file = fs
                .root_dir()
                .open_file(path.trim_start_matches('/'))
                .with_context(|| format!("{path} on partition {number}"))?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes)?;
            Ok(bytes)
        }
        Fs::Ext4(fs) => {
            if !path.starts_with('/') {
                bail!("ext4 paths are absolute: /{path}");
            }
            fs.read(path)
                .map_err(|e| anyhow::anyhow!("{path} on partition {number}: {e}"))
        }
    }
}
