//! A built-in sine tone, generated in real time: for tests, benches and
//! checking a listener's setup.

use super::Source;
use crate::config::SourceConfig;
use crate::pcm::{PcmFormat, SampleFormat};
use std::time::{Duration, Instant};

/// A sine tone at a fixed frequency and level, paced by the clock.
pub struct Tone {
    format: PcmFormat,
    step: f64,
    amplitude: f64,
    phase: f64,
    frames: u64,
    start: Instant,
}

impl Tone {
    /// A tone as configured (`tone_hz`, `tone_dbfs`, `rate`).
    pub fn new(c: &SourceConfig) -> Self {
        Tone {
            format: PcmFormat {
                rate: c.rate,
                channels: 2,
                sample: SampleFormat::S32,
            },
            step: std::f64::consts::TAU * f64::from(c.tone_hz) / f64::from(c.rate),
            amplitude: 10f64.powf(f64::from(c.tone_dbfs) / 20.0),
            phase: 0.0,
            frames: 0,
            start: Instant::now(),
        }
    }
}

impl Source for Tone {
    fn name(&self) -> String {
        "test tone".into()
    }

    fn format(&self) -> PcmFormat {
        self.format
    }

    fn read(&mut self, buf: &mut [u8]) -> anyhow::Result<usize> {
        let due =
            self.start + Duration::from_secs_f64(self.frames as f64 / f64::from(self.format.rate));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let mut n = 0;
        for frame in buf.chunks_exact_mut(8) {
            let s = (self.phase.sin() * self.amplitude * f64::from(i32::MAX)) as i32;
            frame[..4].copy_from_slice(&s.to_le_bytes());
            frame[4..].copy_from_slice(&s.to_le_bytes());
            self.phase = (self.phase + self.step) % std::f64::consts::TAU;
            n += 8;
        }
        self.frames += (n / 8) as u64;
        Ok(n)
    }
}
