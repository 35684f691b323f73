//! A small safe wrapper around libopus's encoder (system library via
//! `opusic-sys` without its bundled build).

use opusic_sys as ffi;
use std::ffi::{CStr, c_int};

/// Samples per channel in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;

/// An Opus encoder for 48 kHz stereo music.
pub struct Encoder {
    raw: *mut ffi::OpusEncoder,
    lookahead: u16,
    buf: Vec<u8>,
}

// SAFETY: the encoder state is owned exclusively and libopus keeps no
// thread-local state, so it may move between threads.
unsafe impl Send for Encoder {}

/// libopus returned an error code.
#[derive(Debug, thiserror::Error)]
#[error("opus {what}: {msg}")]
pub struct OpusError {
    what: &'static str,
    msg: String,
}

fn check(what: &'static str, code: c_int) -> Result<c_int, OpusError> {
    if code < 0 {
        // SAFETY: opus_strerror returns a static NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(ffi::opus_strerror(code)) };
        Err(OpusError {
            what,
            msg: msg.to_string_lossy().into_owned(),
        })
    } else {
        Ok(code)
    }
}

impl Encoder {
    /// A stereo music encoder at `bitrate` bits per second.
    pub fn new(bitrate: u32, complexity: u8) -> Result<Self, OpusError> {
        let mut err = 0;
        // SAFETY: valid arguments; the result is checked before use.
        let raw =
            unsafe { ffi::opus_encoder_create(48_000, 2, ffi::OPUS_APPLICATION_AUDIO, &mut err) };
        check("create", err)?;
        let mut enc = Encoder {
            raw,
            lookahead: 0,
            buf: vec![0; 4000],
        };
        // SAFETY: each request takes exactly the argument type passed.
        unsafe {
            check(
                "bitrate",
                ffi::opus_encoder_ctl(raw, ffi::OPUS_SET_BITRATE_REQUEST, bitrate as i32),
            )?;
            check(
                "complexity",
                ffi::opus_encoder_ctl(
                    raw,
                    ffi::OPUS_SET_COMPLEXITY_REQUEST,
                    c_int::from(complexity),
                ),
            )?;
            check(
                "signal",
                ffi::opus_encoder_ctl(raw, ffi::OPUS_SET_SIGNAL_REQUEST, ffi::OPUS_SIGNAL_MUSIC),
            )?;
            let mut lookahead: i32 = 0;
            check(
                "lookahead",
                ffi::opus_encoder_ctl(
                    raw,
                    ffi::OPUS_GET_LOOKAHEAD_REQUEST,
                    &mut lookahead as *mut i32,
                ),
            )?;
            enc.lookahead = lookahead as u16;
        }
        Ok(enc)
    }

    /// Encoder delay in samples: the `OpusHead` pre-skip.
    pub fn pre_skip(&self) -> u16 {
        self.lookahead
    }

    /// Encodes one 20 ms frame of interleaved stereo into a packet.
    pub fn encode(&mut self, pcm: &[f32]) -> Result<Vec<u8>, OpusError> {
        assert_eq!(pcm.len(), FRAME_SAMPLES * 2, "one 20 ms stereo frame");
        // SAFETY: pcm holds frame_size*2 samples, buf is writable for its length.
        let n = unsafe {
            ffi::opus_encode_float(
                self.raw,
                pcm.as_ptr(),
                FRAME_SAMPLES as c_int,
                self.buf.as_mut_ptr(),
                self.buf.len() as i32,
            )
        };
        let n = check("encode", n)?;
        Ok(self.buf[..n as usize].to_vec())
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: raw came from opus_encoder_create and is freed once.
        unsafe { ffi::opus_encoder_destroy(self.raw) }
    }
}

/// The libopus version string, for `OpusTags` and logs.
pub fn version() -> String {
    // SAFETY: returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(ffi::opus_get_version_string()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_frame_near_the_bitrate() {
        let mut e = Encoder::new(160_000, 10).unwrap();
        assert!(e.pre_skip() > 0 && e.pre_skip() < 1000);
        let frame: Vec<f32> = (0..FRAME_SAMPLES * 2)
            .map(|i| 0.3 * ((i / 2) as f32 * 0.13).sin())
            .collect();
        let mut total = 0;
        for _ in 0..50 {
            total += e.encode(&frame).unwrap().len();
        }
        // 50 frames = 1 s; VBR lands roughly near 160 kbit/s.
        let kbps = total * 8 / 1000;
        assert!((60..=260).contains(&kbps), "{kbps} kbit/s");
        assert!(version().contains("opus"));
    }
}
