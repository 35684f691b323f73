//! The capture thread: opens the source, converts and resamples its audio,
//! and hands 48 kHz stereo to the encoder. When the source fails or ends it
//! reports "no device" and tries again, for ever.

use crate::config::SourceConfig;
use crate::resample::Resampler;
use crate::source;
use crate::status::Status;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// Runs until the encoder is gone.
pub fn run(config: SourceConfig, status: Arc<Status>, tx: SyncSender<Vec<f32>>) {
    let retry = Duration::from_millis(config.retry_ms);
    let mut last_error = String::new();
    loop {
        let mut src = match source::open(&config, &status.xruns) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("{e:#}");
                if msg != last_error {
                    tracing::warn!("source unavailable, retrying every {retry:?}: {msg}");
                    last_error = msg;
                }
                std::thread::sleep(retry);
                continue;
            }
        };
        last_error.clear();
        let format = src.format();
        tracing::info!(source = %src.name(), %format, "capturing");
        status.set_source(Some((src.name(), format)));
        let mut resampler = match Resampler::new(format.rate) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("resampler: {e:#}");
                return;
            }
        };
        // About 10 ms per read: low latency without waking too often.
        let mut buf = vec![0u8; format.frame_bytes() * (format.rate as usize / 100)];
        let mut stereo = Vec::new();
        let outcome = loop {
            match src.read(&mut buf) {
                Ok(0) => break "ended".to_string(),
                Ok(n) => {
                    stereo.clear();
                    crate::pcm::to_stereo_f32(&buf[..n], format, &mut stereo);
                    let mut out = Vec::with_capacity(stereo.len() * 2);
                    if let Err(e) = resampler.process(&stereo, &mut out) {
                        break format!("resampler: {e:#}");
                    }
                    if !out.is_empty() && tx.send(out).is_err() {
                        return;
                    }
                }
                Err(e) => break format!("failed: {e:#}"),
            }
        };
        status.set_source(None);
        tracing::warn!(source = %src.name(), "source {outcome}; streaming silence");
        if !src.reopen_after_end() {
            // Nothing will come back (stdin closed, file played once): keep
            // the sender alive so the encoder goes on streaming silence.
            loop {
                std::thread::park();
            }
        }
        drop(src);
        std::thread::sleep(retry);
    }
}
