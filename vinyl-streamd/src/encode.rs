//! The encoder thread: 48 kHz stereo in, Ogg Opus pages out to the hub.
//!
//! It also keeps the stream alive: when the source delivers nothing for
//! [`GAP`], it encodes silence in real time, so listeners stay in the same
//! logical stream until capture resumes.

use crate::hub::Hub;
use crate::level::{Levels, SilenceDetector};
use crate::oggopus::Muxer;
use crate::opus::{Encoder, FRAME_SAMPLES};
use crate::status::Status;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

/// How long the source may stay quiet before silence is generated.
pub const GAP: Duration = Duration::from_millis(100);
/// Duration of one Opus frame.
pub const FRAME: Duration = Duration::from_millis(20);

/// Shell commands run when the silence state changes.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// Run when silence starts.
    pub on_silence: String,
    /// Run when sound returns.
    pub on_sound: String,
}

/// Everything the encoder thread owns.
pub struct EncodeLoop {
    /// libopus encoder.
    pub encoder: Encoder,
    /// Ogg muxer of the single logical stream.
    pub muxer: Muxer,
    /// Where pages go.
    pub hub: Arc<Hub>,
    /// Where levels and counters go.
    pub status: Arc<Status>,
    /// Needle-drop detection.
    pub silence: SilenceDetector,
    /// Commands for silence transitions.
    pub hooks: Hooks,
    /// The FLAC encoder's input, when the lossless stream is on.
    pub flac: Option<SyncSender<Vec<f32>>>,
    /// The MP3 encoder's input, when the MP3 stream is on.
    pub mp3: Option<crate::mp3::Input>,
}

impl EncodeLoop {
    /// Runs until every sender of `rx` is gone.
    pub fn run(mut self, rx: Receiver<Vec<f32>>) {
        let n = FRAME_SAMPLES * 2;
        let mut pending: Vec<f32> = Vec::with_capacity(n * 4);
        let silence = vec![0f32; n];
        let mut deadline = Instant::now() + GAP;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(chunk) => {
                    pending.extend_from_slice(&chunk);
                    let mut used = 0;
                    while pending.len() - used >= n {
                        self.frame(&pending[used..used + n], false);
                        used += n;
                    }
                    pending.drain(..used);
                    deadline = Instant::now() + GAP;
                }
                Err(RecvTimeoutError::Timeout) => {
                    pending.clear();
                    self.frame(&silence, true);
                    self.status.filler_frames.fetch_add(1, Ordering::Relaxed);
                    // Keep real-time pace, but never burst after a long stall.
                    deadline = (deadline + FRAME).max(Instant::now() - FRAME);
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn frame(&mut self, pcm: &[f32], filler: bool) {
        let levels = Levels::measure(pcm);
        if !filler && let Some(silent) = self.silence.update(levels.rms_db, FRAME) {
            tracing::info!(silent, rms_dbfs = levels.rms_db, "silence state changed");
            let cmd = if silent {
                &self.hooks.on_silence
            } else {
                &self.hooks.on_sound
            };
            run_hook(cmd);
        }
        self.status.set_levels(levels, self.silence.is_silent());
        self.status.meter.push(pcm);
        if let Some(flac) = &self.flac {
            // Never wait for the lossless encoder; a full queue loses a frame there only.
            let _ = flac.try_send(pcm.to_vec());
        }
        if let Some(mp3) = &mut self.mp3 {
            mp3.offer(pcm);
        }
        let packet = match self.encoder.encode(pcm) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        if let Some(page) = self.muxer.push(packet, FRAME_SAMPLES as u64) {
            self.status.pages.fetch_add(1, Ordering::Relaxed);
            self.status
                .bytes
                .fetch_add(page.bytes.len() as u64, Ordering::Relaxed);
            self.hub.publish(page);
        }
    }
}

fn run_hook(cmd: &str) {
    if cmd.is_empty() {
        return;
    }
    let cmd = cmd.to_string();
    // Waited for on its own thread so the encoder never blocks and no zombie stays.
    std::thread::spawn(move || {
        match std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .status()
        {
            Ok(s) if !s.success() => tracing::warn!(%cmd, %s, "hook failed"),
            Err(e) => tracing::warn!(%cmd, "hook could not run: {e}"),
            Ok(_) => {}
        }
    });
}
