//! Positioned I/O inside one partition of an image file, for crates that
//! want a `Read + Write + Seek` stream (fatfs, mbrman).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// A window `[offset, offset + len)` of a file.
pub struct PartitionIo<'a> {
    file: &'a File,
    offset: u64,
    len: u64,
    pos: u64,
}

impl<'a> PartitionIo<'a> {
    pub fn new(file: &'a File, offset: u64, len: u64) -> Self {
        PartitionIo {
            file,
            offset,
            len,
            pos: 0,
        }
    }

    fn remaining(&self, want: usize) -> usize {
        want.min(self.len.saturating_sub(self.pos) as usize)
    }
}

impl Read for PartitionIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.remaining(buf.len());
        let n = self.file.read_at(&mut buf[..n], self.offset + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for PartitionIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.remaining(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        let n = self.file.write_at(&buf[..n], self.offset + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for PartitionIo<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(n) => self.len as i128 + n as i128,
            SeekFrom::Current(n) => self.pos as i128 + n as i128,
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the partition",
            ));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}
