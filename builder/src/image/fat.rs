//! The FAT32 boot partition, written with the `fatfs` crate inside the image
//! file at the partition's offset. Timestamps are the lock's epoch.

use super::io::PartitionIo;
use fatfs::{
    Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;

/// A fixed clock for fatfs, so every directory entry gets the same time.
#[derive(Debug)]
struct FixedTime(DateTime);

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// A FAT date/time from seconds since the epoch (FAT cannot go before 1980).
fn fat_time(epoch: i64) -> DateTime {
    let (year, month, day) = super::civil_date(epoch);
    let secs = epoch.rem_euclid(86_400);
    DateTime {
        date: Date {
            year: year.clamp(1980, 2107) as u16,
            month: month as u16,
            day: day as u16,
        },
        time: Time {
            hour: (secs / 3600) as u16,
            min: (secs / 60 % 60) as u16,
            sec: (secs % 60) as u16,
            millis: 0,
        },
    }
}

/// Formats FAT32 at `offset` and writes `files` (FAT path → bytes), creating
/// directories as needed, in sorted order.
pub fn write(
    file: &File,
    offset: u64,
    size: u64,
    volume_id: u32,
    files: &BTreeMap<String, Vec<u8>>,
    epoch: i64,
) -> std::io::Result<()> {
    let mut label = *b"BOOT       ";
    label[..4].copy_from_slice(b"BOOT");
    fatfs::format_volume(
        PartitionIo::new(file, offset, size),
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat32)
            .volume_id(volume_id)
            .volume_label(label),
    )?;
    // fatfs wants a &'static clock; one small leak per image written.
    let clock: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_time(epoch))));
    let fs = FileSystem::new(
        PartitionIo::new(file, offset, size),
        FsOptions::new().time_provider(clock),
    )?;
    {
        let root = fs.root_dir();
        for (path, bytes) in files {
            let mut dir = root.clone();
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let Some((name, parents)) = parts.split_last() else {
                continue;
            };
            for parent in parents {
                dir = match dir.open_dir(parent) {
                    Ok(existing) => existing,
                    Err(_) => dir.create_dir(parent)?,
                };
            }
            let mut out = dir.create_file(name)?;
            out.truncate()?;
            out.write_all(bytes)?;
        }
    }
    fs.unmount()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_time_is_the_civil_date() {
        let t = fat_time(1_789_199_741); // Sat, 12 Sep 2026 07:55:41 UTC
        assert_eq!((t.date.year, t.date.month, t.date.day), (2026, 9, 12));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (7, 55, 41));
        assert_eq!(fat_time(0).date.year, 1980, "FAT starts in 1980");
    }

    #[test]
    fn writes_a_readable_deterministic_fat32() {
        let write_once = || {
            let file = tempfile::tempfile().unwrap();
            file.set_len(300 << 20).unwrap();
            let files = BTreeMap::from([
                ("config.txt".to_string(), b"arm_64bit=1\n".to_vec()),
                ("overlays/disable-bt.dtbo".to_string(), vec![7u8; 5000]),
                ("a-long-file-name.dat".to_string(), vec![]),
            ]);
            write(
                &file,
                1 << 20,
                256 << 20,
                0x1234_abcd,
                &files,
                1_789_199_741,
            )
            .unwrap();
            file
        };
        let (a, b) = (write_once(), write_once());
        let read_all = |f: &File| {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::BufReader::new(f.try_clone().unwrap()),
                &mut bytes,
            )
            .unwrap();
            bytes
        };
        assert_eq!(read_all(&a), read_all(&b), "byte-identical");
        let fs =
            FileSystem::new(PartitionIo::new(&a, 1 << 20, 256 << 20), FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), FatType::Fat32);
        assert_eq!(fs.volume_id(), 0x1234_abcd);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut fs.root_dir().open_file("config.txt").unwrap(),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "arm_64bit=1\n");
        let entry = fs
            .root_dir()
            .iter()
            .map(|e| e.unwrap())
            .find(|e| e.file_name() == "a-long-file-name.dat")
            .unwrap();
        assert_eq!(entry.modified().date.year, 2026);
        assert_eq!(
            fs.root_dir().open_dir("overlays").unwrap().iter().count(),
            3,
            ". .. and the file"
        );
    }
}
