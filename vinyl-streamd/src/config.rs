//! Configuration: built-in defaults, then TOML files, then command-line flags.
//!
//! Files and flags are merged as TOML values before one typed
//! deserialisation, so every error names the offending key.

use crate::pcm::SampleFormat;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default configuration file.
pub const ETC_CONFIG: &str = "/etc/vinyl-streamd/config.toml";
/// Overrides on the writable data partition, merged over [`ETC_CONFIG`].
pub const DATA_CONFIG: &str = "/data/vinyl-streamd/config.toml";

/// Where the audio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// An ALSA capture device.
    Alsa,
    /// A WAV or raw PCM file (or FIFO), played in real time.
    File,
    /// Raw PCM on standard input, paced by its writer.
    Stdin,
    /// A built-in sine tone.
    Tone,
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Audio input.
    pub source: SourceConfig,
    /// Opus encoding.
    pub encoder: EncoderConfig,
    /// HTTP server.
    pub http: HttpConfig,
    /// Needle-drop detection.
    pub silence: SilenceConfig,
    /// Optional push to an Icecast server.
    pub icecast: IcecastConfig,
}

/// `[source]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// Kind of source.
    pub kind: SourceKind,
    /// ALSA: "auto" (first USB Audio Class capture card), a card id or name, a device string, or a configured PCM name.
    pub device: String,
    /// Sample rate: ALSA preference, rate of raw/stdin input, tone rate. 44100 or 48000.
    pub rate: u32,
    /// Sample format: ALSA preference (unset = best available) and raw/stdin layout (unset = s16).
    pub format: Option<SampleFormat>,
    /// Channels of raw/stdin input (1 or 2); ALSA asks for 2 and accepts 1.
    pub channels: u16,
    /// File source: path of a WAV or raw PCM file, or a FIFO.
    pub path: PathBuf,
    /// File source: start over at the end of a regular file.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Tone source: frequency in Hz.
    pub tone_hz: f32,
    /// Tone source: peak level in dBFS.
    pub tone_dbfs: f32,
    /// ALSA period in milliseconds (how often audio is read).
    pub period_ms: u32,
    /// ALSA ring buffer in milliseconds (headroom against xruns).
    pub buffer_ms: u32,
    /// Pause between attempts to reopen a missing or failed source, in milliseconds.
    pub retry_ms: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::Alsa,
            device: "auto".into(),
            rate: 48_000,
            format: None,
            channels: 2,
            path: PathBuf::new(),
            looping: true,
            tone_hz: 1000.0,
            tone_dbfs: -6.0,
            period_ms: 10,
            buffer_ms: 200,
            retry_ms: 1000,
        }
    }
}

/// `[encoder]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderConfig {
    /// Opus bitrate in kbit/s (6 to 510).
    pub bitrate_kbps: u32,
    /// Opus complexity (0 to 10).
    pub complexity: u8,
    /// 20 ms Opus packets per Ogg page; 1 gives the lowest latency.
    pub packets_per_page: usize,
    /// Also serve lossless FLAC (48 kHz, 24-bit) at `/stream.flac`.
    pub flac: bool,
    /// Constant bitrate in kbit/s of the MP3 stream at `/stream.mp3`
    /// (48 kHz stereo; one of [`crate::mp3::BITRATES`]); 0 turns it off.
    pub mp3_kbps: u32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            bitrate_kbps: 160,
            complexity: 10,
            packets_per_page: 1,
            flac: false,
            mp3_kbps: 192,
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Addresses to listen on.
    #[serde(deserialize_with = "listen_addresses")]
    pub listen: Vec<SocketAddr>,
    /// Station name (`icy-name` header, page title).
    pub name: String,
    /// Station description (`icy-description` header).
    pub description: String,
    /// Most simultaneous stream listeners; further stream requests get 503.
    /// Counted once a request has arrived; the page, `/status` and
    /// `/metrics` have slots of their own.
    pub max_connections: usize,
    /// Most open connections from one address (IPv4-mapped IPv6 counts as
    /// IPv4), idle ones included; more are answered 503 and closed.
    pub max_per_address: usize,
    /// Audio a listener may fall behind before it is dropped, in milliseconds.
    pub client_queue_ms: u64,
    /// Kernel send buffer per connection in KiB (small = slow clients are noticed quickly).
    pub send_buffer_kib: usize,
    /// Recent audio a new listener gets at once, in milliseconds, so players
    /// start quickly; it adds as much delay for that listener (0 = none).
    pub burst_ms: u64,
    /// The device's self-updater record (`vinyl-update check` writes it),
    /// shown as `update` in `/status` and on the page; "" for none. The
    /// running release (`/usr/lib/vinyl/release`) is shown with it.
    pub update_state: std::path::PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: vec!["[::]:8000".parse().unwrap()],
            name: "Vinyl".into(),
            description: "Live from the turntable".into(),
            max_connections: 2000,
            max_per_address: 32,
            client_queue_ms: 4000,
            send_buffer_kib: 64,
            burst_ms: DEFAULT_BURST_MS,
            update_state: "/data/vinyl-update/state.json".into(),
        }
    }
}

/// Default start burst: see `http.burst_ms`.
pub const DEFAULT_BURST_MS: u64 = 1000;

/// `[silence]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SilenceConfig {
    /// RMS level in dBFS below which audio counts as silence.
    pub threshold_db: f32,
    /// Seconds below the threshold before the state becomes "silent".
    pub hold_s: f32,
    /// Shell command run when silence starts (empty = none).
    pub on_silence: String,
    /// Shell command run when sound returns (empty = none).
    pub on_sound: String,
}

impl Default for SilenceConfig {
    fn default() -> Self {
        Self {
            threshold_db: -50.0,
            hold_s: 10.0,
            on_silence: String::new(),
            on_sound: String::new(),
        }
    }
}

/// What the Icecast push sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IcecastFormat {
    /// MP3, `audio/mpeg`: every player plays an Icecast MP3 mount at any
    /// uptime (needs `encoder.mp3_kbps` > 0).
    Mp3,
    /// Ogg Opus, `audio/ogg`. Icecast passes stream positions through, so
    /// VLC 3.0 stops on such a mount once the push has run a few seconds.
    Opus,
}

impl IcecastFormat {
    /// The `Content-Type` of the push.
    pub fn content_type(self) -> &'static str {
        match self {
            IcecastFormat::Mp3 => "audio/mpeg",
            IcecastFormat::Opus => "audio/ogg",
        }
    }
}

/// `[icecast]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IcecastConfig {
    /// Mount URL, e.g. `http://icecast.example:8000/vinyl.mp3`; empty disables the push.
    pub url: String,
    /// Format pushed: `mp3` (default, plays everywhere) or `opus`.
    pub format: IcecastFormat,
    /// Source user name.
    pub user: String,
    /// Source password.
    pub password: String,
    /// Longest pause between reconnection attempts, in seconds.
    pub max_backoff_s: u64,
}

impl Default for IcecastConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            format: IcecastFormat::Mp3,
            user: "source".into(),
            password: String::new(),
            max_backoff_s: 30,
        }
    }
}

/// A configuration error, naming the key (or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid TOML.
    #[error("config file {path} is not valid TOML at line {line} ({text}): {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// That line, trimmed (it names the key, if any).
        text: String,
        /// Parser message.
        message: String,
    },
    /// A key has a bad type or value, or is unknown.
    #[error("bad config key `{key}`: {message}")]
    Key {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
}

/// Reads one TOML file into a table.
pub fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|e| {
        let at = e.span().map_or(0, |s| s.start).min(text.len());
        let line = text[..at].matches('\n').count() + 1;
        ConfigError::Syntax {
            path: path.into(),
            line,
            text: format!("{:?}", text.lines().nth(line - 1).unwrap_or("").trim()),
            message: one_line(e.message()),
        }
    })
}

/// Joins a possibly multi-line message into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Merges `over` into `base`, recursing into tables.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets a dotted `key` (e.g. `http.listen`) in `table`.
pub fn set(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut t = table;
    for p in parts {
        t = t
            .entry(p)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .expect("section is a table");
    }
    t.insert(last.into(), value);
}

impl Config {
    /// Builds the typed configuration from a merged table and validates it.
    pub fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let message = e.into_inner().to_string();
                // toml adds the key on a line of its own; the error names it already.
                let message: Vec<&str> =
                    message.lines().filter(|l| !l.starts_with("in `")).collect();
                key_error(&key, one_line(&message.join("\n")))
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Loads `explicit` if given, otherwise [`ETC_CONFIG`] then [`DATA_CONFIG`]
    /// (each only if present), then applies `overrides`.
    pub fn load(explicit: Option<&Path>, overrides: toml::Table) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        match explicit {
            Some(path) => table = read_file(path)?,
            None => {
                for path in [ETC_CONFIG, DATA_CONFIG].map(Path::new) {
                    if path.exists() {
                        merge(&mut table, read_file(path)?);
                    }
                }
            }
        }
        merge(&mut table, overrides);
        Config::from_table(table)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.source;
        if ![44_100, 48_000].contains(&s.rate) {
            return Err(key_error(
                "source.rate",
                format!("must be 44100 or 48000 (got {})", s.rate),
            ));
        }
        if !(1..=2).contains(&s.channels) {
            return Err(key_error(
                "source.channels",
                format!("must be 1 or 2 (got {})", s.channels),
            ));
        }
        if s.kind == SourceKind::File && s.path.as_os_str().is_empty() {
            return Err(key_error(
                "source.path",
                "required when source.kind = \"file\"",
            ));
        }
        range("source.tone_hz", s.tone_hz, 1.0, 20_000.0)?;
        range("source.tone_dbfs", s.tone_dbfs, -120.0, 0.0)?;
        // Longer periods would look like source gaps to the encoder (see encode::GAP).
        range("source.period_ms", s.period_ms, 1, 50)?;
        // At least two periods, so ALSA can double-buffer.
        range("source.buffer_ms", s.buffer_ms, 2 * s.period_ms, 2000)?;
        // Below 100 ms a missing device would be retried in a busy loop.
        range("source.retry_ms", s.retry_ms, 100, 600_000)?;
        let e = &self.encoder;
        range("encoder.bitrate_kbps", e.bitrate_kbps, 6, 510)?;
        range("encoder.complexity", e.complexity, 0, 10)?;
        range("encoder.packets_per_page", e.packets_per_page, 1, 50)?;
        if e.mp3_kbps != 0 && !crate::mp3::BITRATES.contains(&e.mp3_kbps) {
            return Err(key_error(
                "encoder.mp3_kbps",
                format!(
                    "must be 0 (off) or 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256 or 320 (got {})",
                    e.mp3_kbps
                ),
            ));
        }
        let h = &self.http;
        if h.listen.is_empty() {
            return Err(key_error("http.listen", "needs at least one address"));
        }
        range("http.max_connections", h.max_connections, 1, 100_000)?;
        range("http.max_per_address", h.max_per_address, 1, 100_000)?;
        range("http.client_queue_ms", h.client_queue_ms, 100, 60_000)?;
        range("http.send_buffer_kib", h.send_buffer_kib, 4, 4096)?;
        range("http.burst_ms", h.burst_ms, 0, 10_000)?;
        range(
            "silence.threshold_db",
            self.silence.threshold_db,
            -120.0,
            0.0,
        )?;
        range("silence.hold_s", self.silence.hold_s, 0.0, 86_400.0)?;
        let url = &self.icecast.url;
        if !url.is_empty() && crate::icecast::Target::parse(url).is_none() {
            return Err(key_error(
                "icecast.url",
                format!("must look like http://host:port/mount (got {url:?})"),
            ));
        }
        range("icecast.max_backoff_s", self.icecast.max_backoff_s, 1, 3600)?;
        if self.icecast.format == IcecastFormat::Mp3 && e.mp3_kbps == 0 && !url.is_empty() {
            return Err(key_error(
                "icecast.format",
                "is mp3 but encoder.mp3_kbps = 0 (off): set a bitrate or format = \"opus\"",
            ));
        }
        Ok(())
    }
}

/// Checks `lo <= value <= hi` (so NaN never passes). The bounds print
/// plainly, the value in `Debug` form, so `1e30` stays `1e30`.
fn range<T>(key: &str, value: T, lo: T, hi: T) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display + std::fmt::Debug,
{
    if lo <= value && value <= hi {
        Ok(())
    } else {
        Err(key_error(
            key,
            format!("must be {lo} to {hi} (got {value:?})"),
        ))
    }
}

/// Parses one listen address, naming the port range when the port is out of it.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if let Some((_, port)) = text.rsplit_once(':')
        && let Ok(port) = port.parse::<u128>()
        && port > u128::from(u16::MAX)
    {
        return Err(format!("port must be 0 to 65535 (got {port} in {text:?})"));
    }
    Err(format!(
        "must be an IP address and port like [::]:8000 or 0.0.0.0:8000 (got {text:?})"
    ))
}

fn listen_addresses<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|a| parse_listen(a).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_table(text.parse().unwrap())
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.http.listen[0].to_string(), "[::]:8000");
        assert_eq!(c.encoder.bitrate_kbps, 160);
        // Sonos and older iPhones need MP3: on unless turned off.
        assert_eq!(c.encoder.mp3_kbps, 192);
        assert_eq!(
            parse("[encoder]\nmp3_kbps = 0").unwrap().encoder.mp3_kbps,
            0
        );
    }

    #[test]
    fn errors_name_the_key() {
        let msg = parse("[encoder]\nbitrate_kbps = \"fast\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`encoder.bitrate_kbps`"), "{msg}");
        let msg = parse("[http]\nlisten = [\"nowhere\"]")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`http.listen"), "{msg}");
        let msg = parse("[source]\nrate = 22050").unwrap_err().to_string();
        assert!(msg.contains("`source.rate`"), "{msg}");
        let msg = parse("[silence]\nthreshhold_db = -40")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("threshhold_db"), "{msg}");
        let msg = parse("[source]\nformat = \"s20\"").unwrap_err().to_string();
        assert!(msg.contains("`source.format`"), "{msg}");
        let msg = parse("[encoder]\nmp3_kbps = 56").unwrap_err().to_string();
        assert!(
            msg.contains("`encoder.mp3_kbps`: must be 0 (off) or 32,"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    /// `key = value` as a one-key configuration.
    fn one(key: &str, value: &str) -> Result<Config, ConfigError> {
        let (section, name) = key.split_once('.').unwrap();
        parse(&format!("[{section}]\n{name} = {value}"))
    }

    #[test]
    fn every_numeric_key_is_bounded_with_a_one_line_error() {
        // key, lowest and highest accepted, rejected values, the range as printed.
        let table: &[(&str, &str, &str, &[&str], &str)] = &[
            (
                "source.rate",
                "44100",
                "48000",
                &["0", "22050", "96000"],
                "44100 or 48000",
            ),
            ("source.channels", "1", "2", &["0", "3"], "1 or 2"),
            (
                "source.tone_hz",
                "1.0",
                "20000.0",
                &["0.5", "20001.0", "nan", "inf", "-inf"],
                "1 to 20000",
            ),
            (
                "source.tone_dbfs",
                "-120.0",
                "0.0",
                &["0.1", "-121.0", "nan", "-inf"],
                "-120 to 0",
            ),
            ("source.period_ms", "1", "50", &["0", "51"], "1 to 50"),
            (
                "source.buffer_ms",
                "20",
                "2000",
                &["19", "2001", "0"],
                "20 to 2000",
            ),
            (
                "source.retry_ms",
                "100",
                "600000",
                &["0", "99", "600001"],
                "100 to 600000",
            ),
            (
                "encoder.bitrate_kbps",
                "6",
                "510",
                &["5", "511"],
                "6 to 510",
            ),
            ("encoder.complexity", "0", "10", &["11"], "0 to 10"),
            (
                "encoder.packets_per_page",
                "1",
                "50",
                &["0", "51"],
                "1 to 50",
            ),
            (
                "http.max_connections",
                "1",
                "100000",
                &["0", "100001"],
                "1 to 100000",
            ),
            (
                "http.max_per_address",
                "1",
                "100000",
                &["0", "100001"],
                "1 to 100000",
            ),
            (
                "http.burst_ms",
                "0",
                "10000",
                &["10001", "99999999999"],
                "0 to 10000",
            ),
            (
                "http.client_queue_ms",
                "100",
                "60000",
                &["99", "60001", "99999999999"],
                "100 to 60000",
            ),
            (
                "http.send_buffer_kib",
                "4",
                "4096",
                &["3", "4097"],
                "4 to 4096",
            ),
            (
                "silence.threshold_db",
                "-120.0",
                "0.0",
                &["1.0", "-121.0", "nan", "inf"],
                "-120 to 0",
            ),
            (
                "silence.hold_s",
                "0.0",
                "86400.0",
                &["-0.1", "86401.0", "1e30", "nan", "inf"],
                "0 to 86400",
            ),
            (
                "icecast.max_backoff_s",
                "1",
                "3600",
                &["0", "3601"],
                "1 to 3600",
            ),
            (
                "encoder.mp3_kbps",
                "0",
                "320",
                &["1", "56", "321", "100000"],
                "0 (off) or 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256 or 320",
            ),
        ];
        for &(key, lo, hi, bad, range) in table {
            for ok in [lo, hi] {
                one(key, ok).unwrap_or_else(|e| panic!("{key} = {ok} rejected: {e}"));
            }
            for &value in bad {
                let msg = one(key, value)
                    .expect_err(&format!("{key} = {value} accepted"))
                    .to_string();
                assert!(
                    msg.starts_with(&format!("bad config key `{key}`: must be {range}")),
                    "{msg}"
                );
                assert!(!msg.contains('\n'), "{msg}");
                if range.contains(" to ") && value.parse::<f64>().is_ok_and(f64::is_finite) {
                    assert!(msg.ends_with(&format!("(got {value})")), "{msg}");
                }
            }
        }
        let msg = one("silence.hold_s", "1e30").unwrap_err().to_string();
        assert_eq!(
            msg,
            "bad config key `silence.hold_s`: must be 0 to 86400 (got 1e30)"
        );
        let msg = one("silence.threshold_db", "nan").unwrap_err().to_string();
        assert!(msg.ends_with("(got NaN)"), "{msg}");
        // Every numeric default key is in the table.
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for (section, keys) in defaults {
            for (key, value) in keys.as_table().unwrap() {
                let k = format!("{section}.{key}");
                if value.is_integer() || value.is_float() {
                    assert!(table.iter().any(|t| t.0 == k), "{k} has no bound test");
                }
            }
        }
    }

    #[test]
    fn listen_ports_out_of_range_are_named() {
        let msg = one("http.listen", r#"["[::]:99999"]"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            r#"bad config key `http.listen`: port must be 0 to 65535 (got 99999 in "[::]:99999")"#
        );
        let msg = one("http.listen", r#"["localhost"]"#)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("must be an IP address and port"), "{msg}");
        let c = one("http.listen", r#"["127.0.0.1:65535", "[::1]:0"]"#).unwrap();
        assert_eq!(c.http.listen.len(), 2);
    }

    #[test]
    fn syntax_errors_are_one_line_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[encoder]\ncomplexity = 5\nbitrate_kbps = 16 0\n").unwrap();
        let msg = read_file(&path).unwrap_err().to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("bitrate_kbps"), "{msg}");
    }

    #[test]
    fn later_layers_override_earlier_ones() {
        let mut base: toml::Table = "[http]\nname = \"a\"\ndescription = \"d\"".parse().unwrap();
        merge(&mut base, "[http]\nname = \"b\"".parse().unwrap());
        set(&mut base, "encoder.bitrate_kbps", 96.into());
        let c = Config::from_table(base).unwrap();
        assert_eq!(c.http.name, "b");
        assert_eq!(c.http.description, "d");
        assert_eq!(c.encoder.bitrate_kbps, 96);
    }
}
