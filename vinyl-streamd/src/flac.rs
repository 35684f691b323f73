//! Optional lossless stream: native FLAC frames (encoded by `flacenc`)
//! behind a hand-built `fLaC` + STREAMINFO header, fanned out by a second hub.
//!
//! Each listener gets the header, then whole frames, each carrying its own
//! sync code and frame number; `flacframe::renumber` moves a frame onto a listener's
//! own timeline (see `timeline`).

use crate::hub::Hub;
use crate::timeline::{Chunk, Timeline};
use bytes::Bytes;
use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, StreamInfo};
use flacenc::error::Verify;
use flacenc::source::{Fill, FrameBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};

/// Samples per channel in one FLAC frame (≈ 85 ms at 48 kHz, within the
/// streamable subset).
pub const BLOCK: usize = 4096;
/// Bits per sample of the stream.
pub const BITS: u8 = 24;
const RATE: u32 = 48_000;
const CHANNELS: u8 = 2;

/// `fLaC` marker and a last-block STREAMINFO; sizes, length and MD5 are
/// "unknown" (zero), as a live stream has none.
pub fn stream_header(rate: u32, channels: u8, bits: u8, block: u16) -> Vec<u8> {
    let mut h = b"fLaC".to_vec();
    h.push(0x80); // last metadata block, type 0 = STREAMINFO
    h.extend_from_slice(&34u32.to_be_bytes()[1..]);
    h.extend_from_slice(&block.to_be_bytes()); // min block size
    h.extend_from_slice(&block.to_be_bytes()); // max block size
    h.extend_from_slice(&[0; 6]); // min/max frame size unknown
    // 20 bits rate, 3 bits channels-1, 5 bits bps-1, 36 bits total samples (0).
    let packed: u64 =
        (u64::from(rate) << 44) | (u64::from(channels - 1) << 41) | (u64::from(bits - 1) << 36);
    h.extend_from_slice(&packed.to_be_bytes());
    h.extend_from_slice(&[0; 16]); // MD5 unknown
    h
}

/// Turns 48 kHz stereo `f32` into FLAC frames.
pub struct FlacEncoder {
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    info: StreamInfo,
    frame: FrameBuf,
    pending: Vec<i32>,
    frame_number: usize,
}

impl FlacEncoder {
    /// An encoder for 48 kHz stereo 24-bit frames of [`BLOCK`] samples.
    pub fn new() -> Self {
        let mut config = flacenc::config::Encoder::default();
        config.block_size = BLOCK;
        FlacEncoder {
            config: config.into_verified().expect("valid FLAC config"),
            info: StreamInfo::new(RATE as usize, CHANNELS.into(), BITS.into())
                .expect("valid stream info"),
            frame: FrameBuf::with_size(CHANNELS.into(), BLOCK).expect("valid block size"),
            pending: Vec::with_capacity(BLOCK * 4),
            frame_number: 0,
        }
    }

    /// Adds interleaved stereo; returns the frames completed by it, each
    /// with its frame number as its start.
    pub fn push(&mut self, pcm: &[f32]) -> Vec<Chunk> {
        let full = f64::from((1u32 << (BITS - 1)) - 1);
        self.pending.extend(
            pcm.iter()
                .map(|&s| (f64::from(s) * full).round().clamp(-full - 1.0, full) as i32),
        );
        let mut frames = Vec::new();
        while self.pending.len() >= BLOCK * 2 {
            self.frame
                .fill_interleaved(&self.pending[..BLOCK * 2])
                .expect("block fits the frame buffer");
            self.pending.drain(..BLOCK * 2);
            // Frame numbers are 31-bit; wrapping after years is harmless.
            let n = self.frame_number % (1 << 31);
            self.frame_number += 1;
            match flacenc::encode_fixed_size_frame(&self.config, &self.frame, n, &self.info) {
                Ok(frame) => {
                    let mut sink = ByteSink::new();
                    if frame.write(&mut sink).is_ok() {
                        frames.push(Chunk {
                            bytes: sink.into_inner().into(),
                            start: n as u64,
                        });
                    }
                }
                Err(e) => tracing::error!("FLAC encode: {e:?}"),
            }
        }
        frames
    }
}

impl Default for FlacEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts the FLAC thread; returns its hub and the sender for 48 kHz stereo.
pub fn start(queue_frames: usize, burst_frames: usize) -> (Arc<Hub>, SyncSender<Vec<f32>>) {
    let header = stream_header(RATE, CHANNELS, BITS, BLOCK as u16);
    let hub = Arc::new(Hub::new(
        Bytes::from(header),
        Timeline::Flac,
        queue_frames,
        burst_frames,
    ));
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let h = hub.clone();
    std::thread::Builder::new()
        .name("flac".into())
        .spawn(move || run(rx, &h))
        .expect("spawn FLAC thread");
    (hub, tx)
}

fn run(rx: Receiver<Vec<f32>>, hub: &Hub) {
    let mut enc = FlacEncoder::new();
    for pcm in rx {
        for frame in enc.push(&pcm) {
            hub.publish(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flacframe::{frame_number, renumber};
    use crate::timeline::Rebase;

    #[test]
    fn streaminfo_layout() {
        let h = stream_header(48_000, 2, 24, 4096);
        assert_eq!(h.len(), 4 + 4 + 34);
        assert_eq!(&h[..4], b"fLaC");
        assert_eq!(&h[4..8], &[0x80, 0, 0, 34]);
        assert_eq!(&h[8..12], &[0x10, 0x00, 0x10, 0x00]);
        // 48000 = 0x0BB80 in 20 bits, then 001 (2 ch), 10111 (24 bit).
        assert_eq!(&h[18..22], &[0x0B, 0xB8, 0x03, 0x70]);
    }

    #[test]
    fn frames_start_with_sync_code_and_compress_silence() {
        let mut e = FlacEncoder::new();
        assert!(e.push(&vec![0.0; BLOCK]).is_empty());
        let frames = e.push(&vec![0.0; BLOCK * 3]);
        assert_eq!(frames.len(), 2);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(&f.bytes[..2], &[0xFF, 0xF8]);
            assert!(
                f.bytes.len() < 100,
                "silence should be tiny: {}",
                f.bytes.len()
            );
            assert_eq!(
                (f.start, frame_number(&f.bytes)),
                (i as u64, Some(i as u64))
            );
        }
    }

    #[test]
    fn renumbering_round_trips_across_number_lengths() {
        let mut e = FlacEncoder::new();
        let tone: Vec<f32> = (0..BLOCK * 2)
            .map(|i| (i as f32 * 0.01).sin() * 0.5)
            .collect();
        let frame = e.push(&tone).remove(0).bytes;
        // Renumbering a frame to its own number gives the encoder's bytes:
        // both CRCs and the number coding match flacenc's.
        assert_eq!(renumber(&frame, 0).unwrap(), frame.to_vec());
        for n in [1, 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x1_0000, 0x7FFF_FFFF] {
            let moved = renumber(&frame, n).unwrap();
            assert_eq!(frame_number(&moved), Some(n), "{n:#x}");
            assert_eq!(renumber(&moved, 0).unwrap(), frame.to_vec(), "{n:#x}");
        }
        let mut damaged = frame.to_vec();
        damaged[4] ^= 1;
        assert_eq!(renumber(&damaged, 1), None, "header CRC is checked");
        assert_eq!(renumber(b"OggS", 1), None);
    }

    #[test]
    fn flac_listener_frames_are_renumbered_from_zero() {
        let mut encoder = FlacEncoder::new();
        let frames = encoder.push(&vec![0.25; BLOCK * 2 * 4]);
        assert_eq!(frames.len(), 4);
        let mut rebase = Rebase::new(Timeline::Flac);
        for (i, frame) in frames[2..].iter().enumerate() {
            let mine = rebase.apply(frame);
            assert_eq!(frame_number(&frame.bytes), Some(i as u64 + 2));
            assert_eq!(frame_number(&mine), Some(i as u64));
        }
    }
}
