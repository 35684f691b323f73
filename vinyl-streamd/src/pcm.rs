//! PCM sample formats and conversion of raw little-endian bytes to
//! interleaved stereo `f32`.

use serde::{Deserialize, Serialize};

/// Integer sample layouts the sources understand (all little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SampleFormat {
    /// 16-bit.
    S16,
    /// 24-bit in the low bits of a 32-bit word (ALSA `S24_LE`).
    S24,
    /// 24-bit packed in 3 bytes (ALSA `S24_3LE`, common on USB cards).
    #[serde(rename = "s24_3")]
    #[value(name = "s24_3")]
    S24_3,
    /// 32-bit.
    S32,
}

impl SampleFormat {
    /// Bytes one sample occupies.
    pub fn bytes(self) -> usize {
        match self {
            SampleFormat::S16 => 2,
            SampleFormat::S24_3 => 3,
            SampleFormat::S24 | SampleFormat::S32 => 4,
        }
    }

    /// The ALSA name, for status reports.
    pub fn alsa_name(self) -> &'static str {
        match self {
            SampleFormat::S16 => "S16_LE",
            SampleFormat::S24 => "S24_LE",
            SampleFormat::S24_3 => "S24_3LE",
            SampleFormat::S32 => "S32_LE",
        }
    }

    /// Decodes one sample to the range [-1, 1).
    fn decode(self, b: &[u8]) -> f32 {
        match self {
            SampleFormat::S16 => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
            SampleFormat::S24_3 => {
                (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0
            }
            // Sign-extend from bit 23; the top byte is padding.
            SampleFormat::S24 => {
                (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0
            }
            SampleFormat::S32 => {
                i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0
            }
        }
    }
}

/// Shape of a PCM stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    /// Frames per second.
    pub rate: u32,
    /// Interleaved channels (1 or 2).
    pub channels: u16,
    /// Sample layout.
    pub sample: SampleFormat,
}

impl PcmFormat {
    /// Bytes per frame.
    pub fn frame_bytes(&self) -> usize {
        self.sample.bytes() * usize::from(self.channels)
    }
}

impl std::fmt::Display for PcmFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} Hz {}ch",
            self.sample.alsa_name(),
            self.rate,
            self.channels
        )
    }
}

/// Appends whole frames of `bytes` to `out` as interleaved stereo; mono is
/// duplicated, extra channels beyond two are dropped. Returns frames decoded.
pub fn to_stereo_f32(bytes: &[u8], format: PcmFormat, out: &mut Vec<f32>) -> usize {
    let size = format.sample.bytes();
    let frames = bytes.len() / format.frame_bytes();
    out.reserve(frames * 2);
    for frame in bytes.chunks_exact(format.frame_bytes()) {
        let left = format.sample.decode(&frame[..size]);
        let right = if format.channels >= 2 {
            format.sample.decode(&frame[size..2 * size])
        } else {
            left
        };
        out.push(left);
        out.push(right);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(sample: SampleFormat, channels: u16) -> PcmFormat {
        PcmFormat {
            rate: 48_000,
            channels,
            sample,
        }
    }

    #[test]
    fn decodes_each_format() {
        let mut out = Vec::new();
        let s16 = [0x00, 0x40, 0x00, 0xc0]; // 0.5, -0.5
        assert_eq!(to_stereo_f32(&s16, fmt(SampleFormat::S16, 2), &mut out), 1);
        assert_eq!(out, [0.5, -0.5]);

        out.clear();
        let s24_3 = [0x00, 0x00, 0x40, 0x00, 0x00, 0xc0];
        to_stereo_f32(&s24_3, fmt(SampleFormat::S24_3, 2), &mut out);
        assert_eq!(out, [0.5, -0.5]);

        out.clear();
        // S24_LE with garbage in the padding byte must still sign-extend bit 23.
        let s24 = [0x00, 0x00, 0x40, 0x77, 0x00, 0x00, 0xc0, 0x00];
        to_stereo_f32(&s24, fmt(SampleFormat::S24, 2), &mut out);
        assert_eq!(out, [0.5, -0.5]);

        out.clear();
        let s32 = [0, 0, 0, 0x40, 0, 0, 0, 0xc0];
        to_stereo_f32(&s32, fmt(SampleFormat::S32, 2), &mut out);
        assert_eq!(out, [0.5, -0.5]);
    }

    #[test]
    fn mono_is_duplicated_and_partial_frames_ignored() {
        let mut out = Vec::new();
        let n = to_stereo_f32(&[0x00, 0x40, 0x00], fmt(SampleFormat::S16, 1), &mut out);
        assert_eq!(n, 1);
        assert_eq!(out, [0.5, 0.5]);
    }
}
