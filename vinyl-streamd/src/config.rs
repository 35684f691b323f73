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
    pub listen: Vec<SocketAddr>,
    /// Station name (`icy-name` header, page title).
    pub name: String,
    /// Station description (`icy-description` header).
    pub description: String,
    /// Most simultaneous HTTP connections; more get 503.
    pub max_connections: usize,
    /// Audio a listener may fall behind before it is dropped, in milliseconds.
    pub client_queue_ms: u64,
    /// Kernel send buffer per connection in KiB (small = slow clients are noticed quickly).
    pub send_buffer_kib: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: vec!["[::]:8000".parse().unwrap()],
            name: "Vinyl".into(),
            description: "Live from the turntable".into(),
            max_connections: 2000,
            client_queue_ms: 4000,
            send_buffer_kib: 64,
        }
    }
}

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

/// `[icecast]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IcecastConfig {
    /// Mount URL, e.g. `http://icecast.example:8000/vinyl.opus`; empty disables the push.
    pub url: String,
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
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
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
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.into(),
            message: e.message().to_string(),
        })
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
                key_error(&key, e.into_inner().to_string())
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
            return Err(key_error("source.rate", "must be 44100 or 48000"));
        }
        if !(1..=2).contains(&s.channels) {
            return Err(key_error("source.channels", "must be 1 or 2"));
        }
        if s.kind == SourceKind::File && s.path.as_os_str().is_empty() {
            return Err(key_error(
                "source.path",
                "required when source.kind = \"file\"",
            ));
        }
        if !(1.0..20_000.0).contains(&s.tone_hz) {
            return Err(key_error("source.tone_hz", "must be between 1 and 20000"));
        }
        if s.tone_dbfs > 0.0 {
            return Err(key_error("source.tone_dbfs", "must be at most 0"));
        }
        // Longer periods would look like source gaps to the encoder (see encode::GAP).
        if !(1..=50).contains(&s.period_ms) {
            return Err(key_error("source.period_ms", "must be 1 to 50"));
        }
        if s.buffer_ms < 2 * s.period_ms || s.buffer_ms > 2000 {
            return Err(key_error(
                "source.buffer_ms",
                "must be at least 2 periods and at most 2000",
            ));
        }
        let e = &self.encoder;
        if !(6..=510).contains(&e.bitrate_kbps) {
            return Err(key_error("encoder.bitrate_kbps", "must be 6 to 510"));
        }
        if e.complexity > 10 {
            return Err(key_error("encoder.complexity", "must be 0 to 10"));
        }
        if !(1..=50).contains(&e.packets_per_page) {
            return Err(key_error("encoder.packets_per_page", "must be 1 to 50"));
        }
        if e.mp3_kbps != 0 && !crate::mp3::BITRATES.contains(&e.mp3_kbps) {
            return Err(key_error(
                "encoder.mp3_kbps",
                "must be 0 (off) or 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256 or 320",
            ));
        }
        let h = &self.http;
        if h.listen.is_empty() {
            return Err(key_error("http.listen", "needs at least one address"));
        }
        if h.max_connections == 0 {
            return Err(key_error("http.max_connections", "must be at least 1"));
        }
        if h.client_queue_ms < 100 {
            return Err(key_error("http.client_queue_ms", "must be at least 100"));
        }
        if !self.silence.hold_s.is_finite() || self.silence.hold_s < 0.0 {
            return Err(key_error(
                "silence.hold_s",
                "must be a positive number of seconds",
            ));
        }
        let url = &self.icecast.url;
        if !url.is_empty() && crate::icecast::Target::parse(url).is_none() {
            return Err(key_error(
                "icecast.url",
                "must look like http://host:port/mount",
            ));
        }
        Ok(())
    }
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
