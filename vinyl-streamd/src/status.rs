//! Shared daemon state: what `/status`, `/metrics` and the web page report.

use crate::level::{FLOOR_DB, Levels, Meter};
use crate::pcm::PcmFormat;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// What the stream currently carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Audio above the silence threshold.
    Playing,
    /// The source is there but quiet (needle up, between records).
    Silent,
    /// No source: listeners get generated silence.
    NoDevice,
}

#[derive(Debug)]
struct Inner {
    source: Option<(String, PcmFormat)>,
    levels: Levels,
    silent: bool,
    icecast_connected: bool,
}

/// Counters and gauges updated by the pipeline threads.
#[derive(Debug)]
pub struct Status {
    started: Instant,
    inner: Mutex<Inner>,
    /// Current HTTP listeners of `/stream.opus`.
    pub listeners: AtomicUsize,
    /// Listeners dropped for falling behind.
    pub dropped: AtomicU64,
    /// HTTP connections or requests answered 503 (a limit was reached).
    pub refused: AtomicU64,
    /// Listeners served since start.
    pub listeners_total: AtomicU64,
    /// Ogg pages produced.
    pub pages: AtomicU64,
    /// Encoded bytes produced.
    pub bytes: AtomicU64,
    /// 20 ms frames of generated silence (source missing).
    pub filler_frames: AtomicU64,
    /// Capture overruns.
    pub xruns: std::sync::Arc<AtomicU64>,
    /// Times the source was lost.
    pub source_losses: AtomicU64,
    /// Milliseconds since start when the encoder last produced a frame.
    pub last_frame_ms: AtomicU64,
    /// Per-channel levels of every frame, for the page's live meters.
    pub meter: Meter,
    /// MP3 frames produced (only while `/stream.mp3` has listeners).
    pub mp3_frames: AtomicU64,
}

/// A snapshot, as served by `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Station name.
    pub name: String,
    /// Station description.
    pub description: String,
    /// Device or file name, or null.
    pub device: Option<String>,
    /// Sample format, e.g. "S24_3LE 48000 Hz 2ch", or null.
    pub format: Option<String>,
    /// playing, silent or no-device.
    pub state: State,
    /// Current listeners.
    pub listeners: usize,
    /// Peak level of the last frame, dBFS.
    pub peak_dbfs: f32,
    /// RMS level of the last frame, dBFS.
    pub rms_dbfs: f32,
    /// Seconds since start.
    pub uptime_s: u64,
    /// URLs of the Opus stream on this host's addresses.
    pub addresses: Vec<String>,
    /// Every stream served, with its URLs on this host's addresses.
    pub streams: Vec<StreamInfo>,
    /// Whether the Icecast push is connected (false when disabled).
    pub icecast_connected: bool,
    /// The device's self-updater: running version, last check, its result
    /// (null without one).
    pub update: Option<serde_json::Value>,
}

/// One stream the daemon serves, as listed by `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    /// e.g. "/stream.opus".
    pub path: &'static str,
    /// e.g. "audio/ogg".
    pub content_type: &'static str,
    /// The stream on each of this host's addresses.
    pub urls: Vec<String>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            started: Instant::now(),
            inner: Mutex::new(Inner {
                source: None,
                levels: Levels::SILENT,
                silent: false,
                icecast_connected: false,
            }),
            listeners: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            listeners_total: AtomicU64::new(0),
            pages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            filler_frames: AtomicU64::new(0),
            xruns: Default::default(),
            source_losses: AtomicU64::new(0),
            last_frame_ms: AtomicU64::new(0),
            meter: Meter::default(),
            mp3_frames: AtomicU64::new(0),
        }
    }
}

impl Status {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the source that is now delivering (or `None`: gone).
    pub fn set_source(&self, source: Option<(String, PcmFormat)>) {
        let mut i = self.inner();
        if i.source.is_some() && source.is_none() {
            self.source_losses.fetch_add(1, Ordering::Relaxed);
        }
        i.source = source;
    }

    /// Records the levels of the latest frame and the silence state.
    pub fn set_levels(&self, levels: Levels, silent: bool) {
        let mut i = self.inner();
        i.levels = levels;
        i.silent = silent;
        drop(i);
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_frame_ms.store(ms, Ordering::Relaxed);
    }

    /// Records whether the Icecast push is connected.
    pub fn set_icecast(&self, connected: bool) {
        self.inner().icecast_connected = connected;
    }

    /// Seconds since start.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Milliseconds since the encoder last produced a frame.
    pub fn encoder_idle_ms(&self) -> u64 {
        (self.started.elapsed().as_millis() as u64)
            .saturating_sub(self.last_frame_ms.load(Ordering::Relaxed))
    }

    /// A consistent snapshot for reporting; `name`, `description`, `addresses`
    /// and `streams` are filled in by the caller.
    pub fn snapshot(&self) -> Snapshot {
        let i = self.inner();
        let state = match (&i.source, i.silent) {
            (None, _) => State::NoDevice,
            (Some(_), true) => State::Silent,
            (Some(_), false) => State::Playing,
        };
        Snapshot {
            name: String::new(),
            description: String::new(),
            device: i.source.as_ref().map(|(n, _)| n.clone()),
            format: i.source.as_ref().map(|(_, f)| f.to_string()),
            state,
            listeners: self.listeners.load(Ordering::Relaxed),
            peak_dbfs: i.levels.peak_db,
            rms_dbfs: i.levels.rms_db,
            uptime_s: self.uptime_s(),
            addresses: Vec::new(),
            streams: Vec::new(),
            icecast_connected: i.icecast_connected,
            update: None,
        }
    }

    /// Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let s = self.snapshot();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP vinyl_{name} {help}\n# TYPE vinyl_{name} {kind}\nvinyl_{name} {value}\n"
            ));
        };
        metric(
            "listeners",
            "gauge",
            "Current stream listeners.",
            s.listeners.to_string(),
        );
        metric(
            "listeners_total",
            "counter",
            "Listeners served since start.",
            c(&self.listeners_total).to_string(),
        );
        metric(
            "listeners_dropped_total",
            "counter",
            "Listeners dropped for falling behind.",
            c(&self.dropped).to_string(),
        );
        metric(
            "http_refused_total",
            "counter",
            "Connections or requests answered 503 because a limit was reached.",
            c(&self.refused).to_string(),
        );
        metric(
            "pages_total",
            "counter",
            "Ogg pages produced.",
            c(&self.pages).to_string(),
        );
        metric(
            "encoded_bytes_total",
            "counter",
            "Encoded bytes produced.",
            c(&self.bytes).to_string(),
        );
        metric(
            "mp3_frames_total",
            "counter",
            "MP3 frames produced (the MP3 encoder runs only while /stream.mp3 has listeners).",
            c(&self.mp3_frames).to_string(),
        );
        metric(
            "filler_frames_total",
            "counter",
            "20 ms frames of silence generated while the source was missing.",
            c(&self.filler_frames).to_string(),
        );
        metric(
            "xruns_total",
            "counter",
            "Capture overruns.",
            c(&self.xruns).to_string(),
        );
        metric(
            "source_losses_total",
            "counter",
            "Times the source went away.",
            c(&self.source_losses).to_string(),
        );
        metric(
            "source_up",
            "gauge",
            "1 while a source delivers audio.",
            u8::from(s.device.is_some()).to_string(),
        );
        metric(
            "silent",
            "gauge",
            "1 while the input is below the silence threshold.",
            u8::from(s.state == State::Silent).to_string(),
        );
        metric(
            "peak_dbfs",
            "gauge",
            "Peak level of the latest frame.",
            s.peak_dbfs.max(FLOOR_DB).to_string(),
        );
        metric(
            "rms_dbfs",
            "gauge",
            "RMS level of the latest frame.",
            s.rms_dbfs.max(FLOOR_DB).to_string(),
        );
        metric(
            "icecast_connected",
            "gauge",
            "1 while the Icecast push is connected.",
            u8::from(s.icecast_connected).to_string(),
        );
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since start.",
            s.uptime_s.to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcm::SampleFormat;

    #[test]
    fn state_follows_source_and_silence() {
        let s = Status::default();
        assert_eq!(s.snapshot().state, State::NoDevice);
        let f = PcmFormat {
            rate: 44_100,
            channels: 2,
            sample: SampleFormat::S16,
        };
        s.set_source(Some(("hw:CARD=X,DEV=0".into(), f)));
        assert_eq!(s.snapshot().state, State::Playing);
        assert_eq!(s.snapshot().format.as_deref(), Some("S16_LE 44100 Hz 2ch"));
        s.set_levels(Levels::SILENT, true);
        assert_eq!(s.snapshot().state, State::Silent);
        s.set_source(None);
        assert_eq!(s.snapshot().state, State::NoDevice);
        assert_eq!(s.source_losses.load(Ordering::Relaxed), 1);
        let m = s.metrics();
        assert!(m.contains("vinyl_source_losses_total 1\n"), "{m}");
        assert!(m.contains("# TYPE vinyl_listeners gauge\n"), "{m}");
    }
}
