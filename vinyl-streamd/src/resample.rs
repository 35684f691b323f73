//! Sample-rate conversion to Opus's 48 kHz with rubato's synchronous FFT
//! resampler (fixed 147:160 ratio for 44.1 kHz input).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

/// Converts interleaved stereo at some input rate to 48 kHz.
pub struct Resampler {
    inner: Option<Fft<f32>>,
    pending: Vec<f32>,
}

impl Resampler {
    /// A resampler from `rate` to 48 kHz; a pass-through when `rate` is 48 kHz.
    pub fn new(rate: u32) -> anyhow::Result<Self> {
        let inner = if rate == 48_000 {
            None
        } else {
            // ~10 ms chunks keep the added delay small.
            let chunk = (rate / 100) as usize;
            Some(Fft::new(rate as usize, 48_000, chunk, 2, FixedSync::Input)?)
        };
        Ok(Self {
            inner,
            pending: Vec::new(),
        })
    }

    /// Feeds interleaved stereo `input`; appends whatever output is ready.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> anyhow::Result<()> {
        let Some(fft) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        self.pending.extend_from_slice(input);
        loop {
            let need = fft.input_frames_next();
            if self.pending.len() < need * 2 {
                return Ok(());
            }
            let chunk = InterleavedSlice::new(&self.pending[..need * 2], 2, need)?;
            let result = fft.process(&chunk, None)?;
            out.extend_from_slice(&result.take_data());
            self.pending.drain(..need * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::Levels;

    #[test]
    fn converts_44k1_tone_to_48k_keeping_level_and_length() {
        let mut r = Resampler::new(44_100).unwrap();
        let input: Vec<f32> = (0..44_100)
            .flat_map(|i| {
                let s = 0.5 * (i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 44_100.0).sin();
                [s, s]
            })
            .collect();
        let mut out = Vec::new();
        for chunk in input.chunks(2 * 300) {
            r.process(chunk, &mut out).unwrap();
        }
        let frames = out.len() / 2;
        assert!((47_000..=48_000).contains(&frames), "{frames} frames");
        // Skip the resampler's start-up delay before measuring.
        let l = Levels::measure(&out[4800..]);
        assert!((l.rms_db - (-9.03)).abs() < 0.2, "{l:?}");
    }

    #[test]
    fn passes_48k_through() {
        let mut r = Resampler::new(48_000).unwrap();
        let mut out = Vec::new();
        r.process(&[0.1, 0.2], &mut out).unwrap();
        assert_eq!(out, [0.1, 0.2]);
    }
}
