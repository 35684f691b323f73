//! MPEG-1 Layer III frame headers and a splitter that turns an encoder's
//! byte output (not frame-aligned) into whole frames.
//!
//! Only what the live stream needs: MPEG-1 (32, 44.1, 48 kHz), Layer III.

/// The fields of a frame header that determine where the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bitrate in kbit/s.
    pub kbps: u32,
    /// Sample rate in Hz.
    pub rate: u32,
    /// Whether the frame carries one padding byte.
    pub padding: bool,
}

/// Samples per channel in one MPEG-1 Layer III frame.
pub const SAMPLES_PER_FRAME: usize = 1152;

/// Bitrates (kbit/s) of MPEG-1 Layer III by header index; 0 = free format.
const KBPS: [u32; 15] = [
    0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];
/// Sample rates of MPEG-1 by header index.
const RATES: [u32; 3] = [44_100, 48_000, 32_000];

impl Header {
    /// Parses the 4 header bytes at the start of `b`: 11-bit sync, MPEG-1,
    /// Layer III, a bitrate (free format and "bad" rejected), a sample rate.
    pub fn parse(b: &[u8]) -> Option<Header> {
        let b: [u8; 4] = b.get(..4)?.try_into().ok()?;
        // sync (11 bits), version 11 = MPEG-1, layer 01 = III
        if b[0] != 0xFF || b[1] & 0xFE != 0xFA {
            return None;
        }
        let kbps = *KBPS.get(usize::from(b[2] >> 4)).filter(|&&k| k != 0)?;
        let rate = *RATES.get(usize::from((b[2] >> 2) & 3))?;
        Some(Header {
            kbps,
            rate,
            padding: b[2] & 2 != 0,
        })
    }

    /// Length of the whole frame, header included, in bytes.
    pub fn frame_len(&self) -> usize {
        (144 * self.kbps as usize * 1000) / self.rate as usize + usize::from(self.padding)
    }
}

/// Collects encoder output and hands out complete frames only.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    skipped: u64,
}

impl Splitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `data`; returns the frames it completed, concatenated, and how
    /// many there are. Bytes that are not part of a frame (before a sync
    /// word) are dropped and counted in [`Splitter::skipped`].
    pub fn push(&mut self, data: &[u8]) -> (Vec<u8>, usize) {
        self.buf.extend_from_slice(data);
        let (mut at, mut frames, mut out) = (0, 0, Vec::new());
        while self.buf.len() - at >= 4 {
            let rest = &self.buf[at..];
            let Some(h) = Header::parse(rest) else {
                // Not a frame start: skip to the next byte that could begin one.
                let skip = rest[1..]
                    .iter()
                    .position(|&b| b == 0xFF)
                    .map_or(rest.len(), |p| p + 1);
                self.skipped += skip as u64;
                at += skip;
                continue;
            };
            let len = h.frame_len();
            if rest.len() < len {
                break;
            }
            out.extend_from_slice(&rest[..len]);
            at += len;
            frames += 1;
        }
        self.buf.drain(..at);
        (out, frames)
    }

    /// Bytes dropped because they did not belong to a frame.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with a valid header for `kbps`/`rate_index`/`padding` and a
    /// body of `fill` bytes.
    fn frame(kbps_index: u8, rate_index: u8, padding: bool, fill: u8) -> Vec<u8> {
        let hdr = [
            0xFF,
            0xFB,
            (kbps_index << 4) | (rate_index << 2) | (u8::from(padding) << 1),
            0xC4,
        ];
        let len = Header::parse(&hdr).unwrap().frame_len();
        let mut f = hdr.to_vec();
        f.resize(len, fill);
        f
    }

    #[test]
    fn header_fields_and_lengths() {
        // 0xFFFB 0xB4 = 192 kbit/s, 48 kHz, no padding (what LAME writes here).
        let h = Header::parse(&[0xFF, 0xFB, 0xB4, 0x44]).unwrap();
        assert_eq!(
            h,
            Header {
                kbps: 192,
                rate: 48_000,
                padding: false
            }
        );
        assert_eq!(h.frame_len(), 576);
        // 128 kbit/s 44.1 kHz: 417 bytes, 418 with padding.
        assert_eq!(
            Header::parse(&[0xFF, 0xFB, 0x90, 0]).unwrap().frame_len(),
            417
        );
        assert_eq!(
            Header::parse(&[0xFF, 0xFB, 0x92, 0]).unwrap().frame_len(),
            418
        );
        // 320 kbit/s 32 kHz: 1440 bytes.
        assert_eq!(
            Header::parse(&[0xFF, 0xFB, 0xE8, 0]).unwrap().frame_len(),
            1440
        );
        // No CRC (protection bit 1) and with CRC (0) are both Layer III.
        assert!(Header::parse(&[0xFF, 0xFA, 0xB4, 0]).is_some());
    }

    #[test]
    fn non_frames_are_rejected() {
        for bad in [
            [0xFF, 0xF3, 0xB4, 0], // MPEG-2
            [0xFF, 0xFD, 0xB4, 0], // Layer II
            [0xFF, 0xFB, 0x04, 0], // free format
            [0xFF, 0xFB, 0xF4, 0], // bad bitrate index
            [0xFF, 0xFB, 0xBC, 0], // reserved sample rate
            [0xFE, 0xFB, 0xB4, 0], // no sync
            [b'I', b'D', b'3', 4], // ID3 tag
        ] {
            assert_eq!(Header::parse(&bad), None, "{bad:02X?}");
        }
        assert_eq!(Header::parse(&[0xFF, 0xFB]), None);
    }

    #[test]
    fn output_split_anywhere_comes_out_as_whole_frames() {
        let mut stream = Vec::new();
        let mut lens = Vec::new();
        for (i, (k, r, p)) in [(11, 1, false), (9, 0, true), (9, 0, false), (14, 2, false)]
            .into_iter()
            .enumerate()
        {
            let f = frame(k, r, p, i as u8);
            lens.push(f.len());
            stream.extend(f);
        }
        // Feed in every chunk size from 1 byte to the whole stream.
        for chunk in 1..=stream.len() {
            let mut s = Splitter::new();
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                let (out, n) = s.push(c);
                // Each output is whole frames: it starts with a header, and
                // walking the headers lands exactly on its end.
                let mut at = 0;
                for _ in 0..n {
                    at += Header::parse(&out[at..]).unwrap().frame_len();
                }
                assert_eq!(at, out.len(), "chunk size {chunk}");
                got.extend(out);
            }
            assert_eq!(got, stream, "chunk size {chunk}");
            assert_eq!(s.skipped(), 0);
        }
        assert_eq!(lens, [576, 418, 417, 1440]);
    }

    #[test]
    fn junk_before_and_between_frames_is_dropped() {
        let a = frame(11, 1, false, 0x11);
        let b = frame(11, 1, false, 0x22);
        let mut stream = b"ID3\x04junk\xFF\xFF".to_vec();
        stream.extend(&a);
        stream.extend([0xFF, 0x00, 0x12]);
        stream.extend(&b);
        stream.extend(&a[..100]);
        let mut s = Splitter::new();
        let (out, n) = s.push(&stream);
        assert_eq!(n, 2);
        assert_eq!(out, [a.clone(), b].concat());
        assert_eq!(s.skipped(), 10 + 3);
        // The partial frame completes with the next push.
        let (out, n) = s.push(&a[100..]);
        assert_eq!((out, n), (a, 1));
    }
}
