//! What a listener hears, measured: the frequency, level and purity of a
//! tone in decoded PCM. Pure functions, so the end-to-end test's judgement
//! of "a 1 kHz tone came through" is itself tested.
//!
//! ```
//! use qemu_tests::tone::{Tone, measure};
//! let rate = 48_000;
//! let sine: Vec<f32> = (0..rate)
//!     .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin())
//!     .collect();
//! let tone = measure(&sine, rate).unwrap();
//! assert!((tone.frequency_hz - 1000.0).abs() < 0.1);
//! assert!(tone.is_tone(1000.0, 5.0));
//! ```

/// Below this RMS level (dBFS) a window is silence: no tone is measured.
pub const SILENCE_DBFS: f64 = -60.0;

/// A measured window of audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tone {
    /// Frequency from the spacing of upward zero crossings, interpolated
    /// between samples.
    pub frequency_hz: f64,
    /// Root-mean-square level, dB relative to full scale (a full-scale sine
    /// is -3.01 dBFS).
    pub rms_dbfs: f64,
    /// Highest absolute sample, dBFS.
    pub peak_dbfs: f64,
    /// Energy of the best-fitting sine at `frequency_hz` over the energy of
    /// everything else (noise, distortion, other tones), in dB: a SINAD.
    pub sinad_db: f64,
}

impl Tone {
    /// Whether this is a clean tone at `hz` ± `tolerance_hz`: the frequency
    /// matches and the sine carries at least 20 dB more energy than the rest.
    pub fn is_tone(&self, hz: f64, tolerance_hz: f64) -> bool {
        (self.frequency_hz - hz).abs() <= tolerance_hz && self.sinad_db >= 20.0
    }
}

/// The RMS level of `samples` (full scale ±1.0) in dBFS; `-inf` for digital
/// silence.
pub fn rms_dbfs(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    10.0 * (energy / samples.len() as f64).log10()
}

/// Measures the tone in `samples` (mono, full scale ±1.0, at `rate` Hz).
/// `None` for silence (below [`SILENCE_DBFS`]) or fewer than two cycles.
pub fn measure(samples: &[f32], rate: u32) -> Option<Tone> {
    let rms = rms_dbfs(samples);
    if rms < SILENCE_DBFS {
        return None;
    }
    let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / samples.len() as f64;
    let x: Vec<f64> = samples.iter().map(|&s| f64::from(s) - mean).collect();

    // Upward zero crossings, each placed between its two samples.
    let crossings: Vec<f64> = x
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, w)| i as f64 + w[0] / (w[0] - w[1]))
        .collect();
    let (first, last) = (crossings.first()?, crossings.last()?);
    if crossings.len() < 3 {
        return None;
    }
    let frequency_hz = (crossings.len() - 1) as f64 * f64::from(rate) / (last - first);

    // Least-squares fit of a sine at that frequency over whole cycles; what
    // it leaves is noise and distortion.
    let span = &x[first.ceil() as usize..=last.floor() as usize];
    let omega = 2.0 * std::f64::consts::PI * frequency_hz / f64::from(rate);
    let (mut a, mut b) = (0.0, 0.0);
    for (i, &v) in span.iter().enumerate() {
        a += v * (omega * i as f64).cos();
        b += v * (omega * i as f64).sin();
    }
    let n = span.len() as f64;
    let (a, b) = (2.0 * a / n, 2.0 * b / n);
    let (mut signal, mut rest) = (0.0, 0.0);
    for (i, &v) in span.iter().enumerate() {
        let fit = a * (omega * i as f64).cos() + b * (omega * i as f64).sin();
        signal += fit * fit;
        rest += (v - fit) * (v - fit);
    }
    let peak = samples.iter().fold(0.0f32, |m, &s| m.max(s.abs()));
    Some(Tone {
        frequency_hz,
        rms_dbfs: rms,
        peak_dbfs: 20.0 * f64::from(peak).log10(),
        sinad_db: 10.0 * (signal / rest.max(f64::MIN_POSITIVE)).log10(),
    })
}

/// Signed 16-bit little-endian PCM (what `ffmpeg -f s16le` writes) as
/// samples in ±1.0; a trailing odd byte is ignored.
pub fn from_s16le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// A mono 16-bit WAV file of `samples`, for a person to listen to what a
/// test heard.
pub fn wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &s in samples {
        let v = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    fn sine(hz: f64, amplitude: f64, seconds: f64) -> Vec<f32> {
        (0..(seconds * f64::from(RATE)) as usize)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(RATE)).sin())
                    as f32
            })
            .collect()
    }

    /// A repeatable pseudo-random sequence in ±1 (xorshift).
    fn noise(len: usize, amplitude: f32) -> Vec<f32> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                amplitude * ((state >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            })
            .collect()
    }

    #[test]
    fn a_clean_sine_is_measured_exactly() {
        for hz in [440.0, 997.0, 1000.0, 1003.0, 4000.0] {
            let tone = measure(&sine(hz, 0.8, 0.5), RATE).unwrap();
            assert!((tone.frequency_hz - hz).abs() < 0.05, "{hz}: {tone:?}");
            assert!((tone.peak_dbfs - 20.0 * 0.8f64.log10()).abs() < 0.01);
            // RMS of a sine is its peak less 3.01 dB.
            assert!((tone.rms_dbfs - (tone.peak_dbfs - 3.01)).abs() < 0.05);
            assert!(tone.sinad_db > 60.0, "{tone:?}");
        }
        assert!(
            measure(&sine(1000.0, 0.5, 1.0), RATE)
                .unwrap()
                .is_tone(1000.0, 5.0)
        );
    }

    #[test]
    fn the_frequency_tolerance_is_enforced() {
        let off = measure(&sine(1006.0, 0.5, 1.0), RATE).unwrap();
        assert!(!off.is_tone(1000.0, 5.0), "{off:?}");
        assert!(off.is_tone(1006.0, 5.0));
    }

    #[test]
    fn noise_and_a_second_tone_are_not_a_clean_tone() {
        let quiet_noise: Vec<f32> = sine(1000.0, 0.5, 1.0)
            .iter()
            .zip(noise(RATE as usize, 0.01))
            .map(|(s, n)| s + n)
            .collect();
        let tone = measure(&quiet_noise, RATE).unwrap();
        assert!(tone.is_tone(1000.0, 5.0), "{tone:?}");

        let loud_noise = noise(RATE as usize, 0.5);
        assert!(
            measure(&loud_noise, RATE).is_none_or(|t| !t.is_tone(1000.0, 5.0)),
            "noise measured as a tone"
        );

        let chord: Vec<f32> = sine(1000.0, 0.4, 1.0)
            .iter()
            .zip(sine(1500.0, 0.4, 1.0))
            .map(|(a, b)| a + b)
            .collect();
        assert!(
            measure(&chord, RATE).is_none_or(|t| !t.is_tone(1000.0, 5.0)),
            "two tones measured as one"
        );
    }

    #[test]
    fn silence_is_not_measured() {
        assert_eq!(measure(&vec![0.0; 48_000], RATE), None);
        assert_eq!(measure(&noise(48_000, 0.0005), RATE), None);
        assert_eq!(measure(&[], RATE), None);
        assert_eq!(rms_dbfs(&[]), f64::NEG_INFINITY);
    }

    #[test]
    fn pcm_and_wav_round_trip() {
        let bytes = [0x00, 0x80, 0xff, 0x7f, 0x00, 0x40, 0x01];
        assert_eq!(from_s16le(&bytes), [-1.0, 32767.0 / 32768.0, 0.5]);
        let wav = wav(&[-1.0, 0.5], 48_000);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(wav.len(), 44 + 4);
        assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 48_000);
        assert_eq!(from_s16le(&wav[44..]), [-1.0, 0.5]);
    }
}
