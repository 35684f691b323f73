//! Level metering and needle-drop (silence) detection on 48 kHz stereo frames.

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
}
