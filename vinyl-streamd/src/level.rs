//! Level metering and needle-drop (silence) detection on 48 kHz stereo frames.

use std::sync::Mutex;
use std::time::Duration;

/// Lowest level ever reported, in dBFS: digital silence.
pub const FLOOR_DB: f32 = -120.0;

/// Peak and RMS levels of a block of samples, in dBFS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// Largest absolute sample value.
    pub peak_db: f32,
    /// Root mean square over all channels.
    pub rms_db: f32,
}

impl Levels {
    /// Levels of digital silence.
    pub const SILENT: Levels = Levels {
        peak_db: FLOOR_DB,
        rms_db: FLOOR_DB,
    };

    /// Measures interleaved `samples` (full scale = 1.0).
    pub fn measure(samples: &[f32]) -> Levels {
        if samples.is_empty() {
            return Levels::SILENT;
        }
        let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let rms = (sum / samples.len() as f64).sqrt() as f32;
        Levels {
            peak_db: to_db(peak),
            rms_db: to_db(rms),
        }
    }
}

/// Linear amplitude to dBFS, floored at [`FLOOR_DB`].
pub fn to_db(x: f32) -> f32 {
    if x <= 0.0 {
        FLOOR_DB
    } else {
        (20.0 * x.log10()).max(FLOOR_DB)
    }
}

/// Frames a [`Meter`] remembers: 1.28 s of 20 ms frames, far more than any
/// reader lets pass between two looks.
const METER_FRAMES: usize = 64;

/// Sums of one frame, per channel (left, right).
#[derive(Debug, Clone, Copy, Default)]
struct FrameSums {
    peak: [f32; 2],
    sum_sq: [f64; 2],
    samples: u32,
}

/// Per-channel levels over the frames a reader has not seen yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Largest absolute sample of each channel over those frames, dBFS.
    pub peak_db: [f32; 2],
    /// RMS of each channel over those frames, dBFS.
    pub rms_db: [f32; 2],
    /// How many frames the reading covers (0: nothing new).
    pub frames: u64,
}

/// Per-channel meter for any number of readers polling at their own pace:
/// each reading covers every frame since that reader's previous one, so a
/// peak (a clip) in a frame between two looks is never missed.
#[derive(Debug, Default)]
pub struct Meter {
    ring: Mutex<(u64, Vec<FrameSums>)>,
}

impl Meter {
    /// Records one frame of interleaved stereo.
    pub fn push(&self, stereo: &[f32]) {
        let mut f = FrameSums::default();
        for pair in stereo.chunks_exact(2) {
            for (ch, &s) in pair.iter().enumerate() {
                f.peak[ch] = f.peak[ch].max(s.abs());
                f.sum_sq[ch] += f64::from(s) * f64::from(s);
            }
            f.samples += 1;
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let (next, frames) = &mut *ring;
        if frames.len() < METER_FRAMES {
            frames.push(f);
        } else {
            frames[(*next % METER_FRAMES as u64) as usize] = f;
        }
        *next += 1;
    }

    /// The position after the latest frame: a new reader starts here.
    pub fn cursor(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Levels over the frames after `cursor` (at most the last
    /// [`METER_FRAMES`]), and the cursor to pass next time.
    pub fn since(&self, cursor: u64) -> (Reading, u64) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let (next, frames) = (&ring.0, &ring.1);
        let from = cursor.max(next.saturating_sub(frames.len() as u64));
        let mut total = FrameSums::default();
        let mut samples = 0u64;
        for i in from..*next {
            let f = &frames[(i % METER_FRAMES as u64) as usize];
            for ch in 0..2 {
                total.peak[ch] = total.peak[ch].max(f.peak[ch]);
                total.sum_sq[ch] += f.sum_sq[ch];
            }
            samples += u64::from(f.samples);
        }
        let rms = |ch: usize| (total.sum_sq[ch] / samples.max(1) as f64).sqrt() as f32;
        let reading = Reading {
            peak_db: [to_db(total.peak[0]), to_db(total.peak[1])],
            rms_db: [to_db(rms(0)), to_db(rms(1))],
            frames: next.saturating_sub(from),
        };
        (reading, *next)
    }
}

/// Says "silent" once the RMS level stayed below a threshold for a hold time,
/// and "sound" again as soon as one block rises above it.
#[derive(Debug)]
pub struct SilenceDetector {
    threshold_db: f32,
    hold: Duration,
    quiet_for: Duration,
    silent: bool,
}

impl SilenceDetector {
    /// A detector that starts in the "sound" state.
    pub fn new(threshold_db: f32, hold: Duration) -> Self {
        Self {
            threshold_db,
            hold,
            quiet_for: Duration::ZERO,
            silent: false,
        }
    }

    /// Feeds the RMS level of a block lasting `len`; returns the new state
    /// (`true` = silent) when it changed.
    pub fn update(&mut self, rms_db: f32, len: Duration) -> Option<bool> {
        if rms_db < self.threshold_db {
            self.quiet_for += len;
        } else {
            self.quiet_for = Duration::ZERO;
        }
        let silent = self.quiet_for >= self.hold;
        (silent != self.silent).then(|| {
            self.silent = silent;
            silent
        })
    }

    /// Whether the input is currently considered silent.
    pub fn is_silent(&self) -> bool {
        self.silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scale_sine_levels() {
        let s: Vec<f32> = (0..4800)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 48_000.0).sin())
            .collect();
        let l = Levels::measure(&s);
        assert!(l.peak_db.abs() < 0.01, "{l:?}");
        assert!((l.rms_db + 3.01).abs() < 0.05, "{l:?}");
        assert_eq!(Levels::measure(&[0.0; 10]), Levels::SILENT);
    }

    #[test]
    fn silence_needs_hold_time_and_ends_at_once() {
        let frame = Duration::from_millis(20);
        let mut d = SilenceDetector::new(-50.0, Duration::from_millis(100));
        for _ in 0..4 {
            assert_eq!(d.update(-70.0, frame), None);
        }
        assert_eq!(d.update(-70.0, frame), Some(true));
        assert!(d.is_silent());
        assert_eq!(d.update(-70.0, frame), None);
        assert_eq!(d.update(-20.0, frame), Some(false));
        // A short dip does not count as silence.
        assert_eq!(d.update(-70.0, frame), None);
        assert_eq!(d.update(-20.0, frame), None);
        assert!(!d.is_silent());
    }

    #[test]
    fn meter_readers_see_every_peak_since_their_last_look() {
        let m = Meter::default();
        let frame = |l: f32, r: f32| [l, r].repeat(960);
        let start = m.cursor();
        m.push(&frame(0.5, 0.25));
        m.push(&frame(1.0, -0.125)); // a clip between two looks of a slow reader
        m.push(&frame(0.5, 0.25));
        let (fast, c1) = m.since(start + 2);
        assert_eq!(fast.frames, 1);
        assert!((fast.peak_db[0] + 6.02).abs() < 0.01, "{fast:?}");
        let (slow, c3) = m.since(start);
        assert_eq!((slow.frames, c1, c3), (3, start + 3, start + 3));
        assert!(slow.peak_db[0].abs() < 0.01, "{slow:?}");
        assert!((slow.peak_db[1] + 12.04).abs() < 0.01, "{slow:?}");
        // RMS over all three frames: sqrt((0.25 + 1 + 0.25) / 3).
        assert!(
            (slow.rms_db[0] - to_db(0.5f32.sqrt())).abs() < 0.01,
            "{slow:?}"
        );
        // Nothing new: no frames, floor levels.
        let (none, _) = m.since(c3);
        assert_eq!((none.frames, none.peak_db), (0, [FLOOR_DB; 2]));
        // A reader that fell far behind gets the frames still remembered.
        for _ in 0..200 {
            m.push(&frame(0.1, 0.1));
        }
        let (late, c) = m.since(c3);
        assert_eq!((late.frames, c), (METER_FRAMES as u64, c3 + 200));
    }
}
