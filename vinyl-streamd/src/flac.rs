//! Optional lossless stream: native FLAC frames (encoded by `flacenc`)
//! behind a hand-built `fLaC` + STREAMINFO header, fanned out by a second hub.
//!
//! Each listener gets the header, then whole frames, each carrying its own
//! sync code and frame number; [`renumber`] moves a frame onto a listener's
//! own timeline (see `timeline`).

use crate::hub::{Chunk, Hub};
use crate::timeline::Timeline;
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

/// Where a frame header's coded number starts: after sync code, block
/// size and rate, channels and sample size.
const NUMBER_AT: usize = 4;

/// The frame number of a fixed-block-size frame, if `frame` starts with a
/// valid one.
pub fn frame_number(frame: &[u8]) -> Option<u64> {
    header_fields(frame).map(|(number, _, _)| number)
}

/// A copy of `frame` with frame number `number`: the header's coded number
/// rewritten (its length may change), header CRC-8 and frame CRC-16
/// recomputed. `None` if `frame` is not a whole fixed-block-size frame.
pub fn renumber(frame: &[u8], number: u64) -> Option<Vec<u8>> {
    let (_, number_len, header_len) = header_fields(frame)?;
    if frame.len() < header_len + 2 || number >= 1 << 31 {
        return None;
    }
    let mut out = Vec::with_capacity(frame.len() + 6);
    out.extend_from_slice(&frame[..NUMBER_AT]);
    out.extend_from_slice(&utf8_number(number));
    // Optional block size and sample rate bytes, up to (not including) the CRC-8.
    out.extend_from_slice(&frame[NUMBER_AT + number_len..header_len - 1]);
    out.push(crc8(&out));
    out.extend_from_slice(&frame[header_len..frame.len() - 2]);
    out.extend_from_slice(&crc16(&out).to_be_bytes());
    Some(out)
}

/// Parses a frame header: (frame number, its coded length, header length
/// including the CRC-8), after checking the sync code and the CRC-8.
fn header_fields(frame: &[u8]) -> Option<(u64, usize, usize)> {
    // 0xFFF8: sync code, reserved 0, fixed block size (numbers count frames).
    if frame.len() < NUMBER_AT + 2 || frame[0] != 0xFF || frame[1] != 0xF8 {
        return None;
    }
    let first = frame[NUMBER_AT];
    let extra = first.leading_ones() as usize;
    let (number_len, mut number) = match extra {
        0 => (1, u64::from(first)),
        2..=6 => (extra, u64::from(first & (0x7F >> extra))),
        _ => return None,
    };
    for &b in frame.get(NUMBER_AT + 1..NUMBER_AT + number_len)? {
        if b & 0xC0 != 0x80 {
            return None;
        }
        number = number << 6 | u64::from(b & 0x3F);
    }
    let block_bytes = match frame[2] >> 4 {
        6 => 1,
        7 => 2,
        _ => 0,
    };
    let rate_bytes = match frame[2] & 0x0F {
        12 => 1,
        13 | 14 => 2,
        _ => 0,
    };
    let header_len = NUMBER_AT + number_len + block_bytes + rate_bytes + 1;
    let header = frame.get(..header_len)?;
    (crc8(&header[..header_len - 1]) == header[header_len - 1])
        .then_some((number, number_len, header_len))
}

/// FLAC's "UTF-8" coding of a frame number (up to 31 bits).
fn utf8_number(n: u64) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    // Each byte after the first carries 6 bits; the first 7 - len.
    let len = (2..6).find(|&len| n < 1 << (5 * len + 1)).unwrap_or(6);
    let mut out = vec![0u8; len];
    let mut rest = n;
    for b in out[1..].iter_mut().rev() {
        *b = 0x80 | (rest & 0x3F) as u8;
        rest >>= 6;
    }
    out[0] = (0xFF00u16 >> len) as u8 | rest as u8;
    out
}

/// CRC-8 of a frame header: polynomial 0x07, initial value 0.
fn crc8(data: &[u8]) -> u8 {
    static CRC: crc::Crc<u8> = crc::Crc::<u8>::new(&crc::CRC_8_SMBUS);
    CRC.checksum(data)
}

/// CRC-16 of a whole frame: polynomial 0x8005, initial value 0.
fn crc16(data: &[u8]) -> u16 {
    static CRC: crc::Crc<u16, crc::Table<16>> =
        crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_UMTS);
    CRC.checksum(data)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(
                crc16(&moved[..moved.len() - 2]).to_be_bytes(),
                moved[moved.len() - 2..]
            );
            assert_eq!(renumber(&moved, 0).unwrap(), frame.to_vec(), "{n:#x}");
        }
        assert_eq!(
            utf8_number(0x7FFF_FFFF),
            [0xFD, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF]
        );
        let mut damaged = frame.to_vec();
        damaged[4] ^= 1;
        assert_eq!(renumber(&damaged, 1), None, "header CRC is checked");
        assert_eq!(renumber(b"OggS", 1), None);
    }
}
