//! Audio sources. Each delivers whole frames of little-endian PCM bytes; the
//! capture loop turns them into 48 kHz stereo `f32`.

mod alsa;
mod file;
mod tone;

use crate::config::{SourceConfig, SourceKind};
use crate::pcm::PcmFormat;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// A running source of PCM.
pub trait Source: Send {
    /// Human-readable device or file name.
    fn name(&self) -> String;
    /// Format of the bytes `read` returns.
    fn format(&self) -> PcmFormat;
    /// Fills `buf` with whole frames; `Ok(0)` means the source has ended.
    fn read(&mut self, buf: &mut [u8]) -> anyhow::Result<usize>;
    /// Whether to open the source again after it ended (a FIFO, a device).
    fn reopen_after_end(&self) -> bool {
        true
    }
}

/// Opens the configured source. `xruns` counts ALSA overruns.
pub fn open(config: &SourceConfig, xruns: &Arc<AtomicU64>) -> anyhow::Result<Box<dyn Source>> {
    Ok(match config.kind {
        SourceKind::Alsa => Box::new(alsa::AlsaSource::open(config, xruns.clone())?),
        SourceKind::File => Box::new(file::FileSource::open(config)?),
        SourceKind::Stdin => Box::new(file::StdinSource::new(config)),
        SourceKind::Tone => Box::new(tone::Tone::new(config)),
    })
}

/// Reads until `buf` is full or the input ends; returns whole frames only,
/// so a slow writer never splits a frame between calls.
fn read_frames(r: &mut dyn Read, buf: &mut [u8], frame_bytes: usize) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n - n % frame_bytes)
}
