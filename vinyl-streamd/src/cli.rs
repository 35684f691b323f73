//! Command-line flags. Every configuration key has a flag; flags override
//! the files.

use crate::config::{self, SourceKind};
use crate::pcm::SampleFormat;
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;

/// Streams a turntable (ALSA capture) as Ogg Opus over HTTP.
///
/// Configuration comes from /etc/vinyl-streamd/config.toml, overridden by
/// /data/vinyl-streamd/config.toml (or only from --config), then by flags.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Configuration file to use instead of the /etc and /data files.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Log filter, e.g. "info" or "vinyl_streamd=debug" (RUST_LOG also works).
    #[arg(long, default_value = "info")]
    pub log: String,

    /// [source.kind] Audio source: alsa, file, stdin or tone.
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
    /// [source.device] ALSA device: "auto" (first USB Audio Class capture card), a card id or name, an ALSA device string like "hw:1,0", or a PCM name from the ALSA configuration.
    #[arg(long)]
    pub device: Option<String>,
    /// [source.rate] Sample rate, 44100 or 48000: preferred ALSA rate, rate of raw/stdin input, tone rate.
    #[arg(long)]
    pub rate: Option<u32>,
    /// [source.format] Sample format: preferred ALSA format, layout of raw/stdin input (default s16).
    #[arg(long, value_enum)]
    pub format: Option<SampleFormat>,
    /// [source.channels] Channels of raw/stdin input, 1 or 2.
    #[arg(long)]
    pub channels: Option<u16>,
    /// [source.path] File source: WAV or raw PCM file, or a FIFO (reopened when its writer leaves).
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// [source.loop] File source: start over at the end of a regular file (true/false).
    #[arg(long = "loop")]
    pub looping: Option<bool>,
    /// [source.tone_hz] Tone source: frequency in Hz.
    #[arg(long)]
    pub tone_hz: Option<f32>,
    /// [source.tone_dbfs] Tone source: peak level in dBFS.
    #[arg(long, allow_negative_numbers = true)]
    pub tone_dbfs: Option<f32>,
    /// [source.period_ms] ALSA period in milliseconds.
    #[arg(long)]
    pub period_ms: Option<u32>,
    /// [source.buffer_ms] ALSA buffer in milliseconds.
    #[arg(long)]
    pub buffer_ms: Option<u32>,
    /// [source.retry_ms] Pause between attempts to reopen a missing source, milliseconds.
    #[arg(long)]
    pub retry_ms: Option<u64>,

    /// [encoder.bitrate_kbps] Opus bitrate in kbit/s (6-510).
    #[arg(long)]
    pub bitrate_kbps: Option<u32>,
    /// [encoder.complexity] Opus complexity (0-10).
    #[arg(long)]
    pub complexity: Option<u8>,
    /// [encoder.packets_per_page] 20 ms packets per Ogg page; 1 = lowest latency.
    #[arg(long)]
    pub packets_per_page: Option<usize>,

    /// [encoder.flac] Also serve lossless FLAC at /stream.flac (true/false; ~1.5 Mbit/s per listener).
    #[arg(long)]
    pub flac: Option<bool>,
    /// [encoder.mp3_kbps] MP3 stream at /stream.mp3: constant bitrate in kbit/s (32-320, e.g. 128, 192, 320), 0 = off.
    #[arg(long)]
    pub mp3_kbps: Option<u32>,

    /// [http.listen] Address to listen on; repeat for several (default [::]:8000).
    #[arg(long)]
    pub listen: Vec<String>,
    /// [http.name] Station name (icy-name, page title).
    #[arg(long)]
    pub name: Option<String>,
    /// [http.description] Station description (icy-description).
    #[arg(long)]
    pub description: Option<String>,
    /// [http.max_connections] Most simultaneous stream listeners (the page, /status and /metrics have slots of their own).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// [http.max_per_address] Most open connections from one address, idle ones included.
    #[arg(long)]
    pub max_per_address: Option<usize>,
    /// [http.client_queue_ms] Audio a listener may fall behind before it is dropped, milliseconds.
    #[arg(long)]
    pub client_queue_ms: Option<u64>,
    /// [http.send_buffer_kib] Kernel send buffer per connection, KiB.
    #[arg(long)]
    pub send_buffer_kib: Option<usize>,
    /// [http.burst_ms] Recent audio sent to a new listener at once, milliseconds (0 to 10000, default 1000): players start sooner, and that listener hears everything this much later.
    #[arg(long)]
    pub burst_ms: Option<u64>,
    /// [http.update_state] The device's self-updater record (vinyl-update writes it), shown in /status and on the page ("" for none).
    #[arg(long, value_name = "FILE")]
    pub update_state: Option<std::path::PathBuf>,

    /// [silence.threshold_db] RMS level (dBFS) below which input counts as silence.
    #[arg(long, allow_negative_numbers = true)]
    pub silence_threshold_db: Option<f32>,
    /// [silence.hold_s] Seconds below the threshold before the state becomes "silent".
    #[arg(long)]
    pub silence_hold_s: Option<f32>,
    /// [silence.on_silence] Shell command run when silence starts.
    #[arg(long)]
    pub on_silence: Option<String>,
    /// [silence.on_sound] Shell command run when sound returns.
    #[arg(long)]
    pub on_sound: Option<String>,

    /// [icecast.format] What the Icecast push sends: mp3 (plays in every player) or opus.
    #[arg(long)]
    pub icecast_format: Option<config::IcecastFormat>,
    /// [icecast.url] Push to this Icecast mount, e.g. http://host:8000/vinyl.mp3.
    #[arg(long)]
    pub icecast_url: Option<String>,
    /// [icecast.user] Icecast source user.
    #[arg(long)]
    pub icecast_user: Option<String>,
    /// [icecast.password] Icecast source password.
    #[arg(long)]
    pub icecast_password: Option<String>,
    /// [icecast.max_backoff_s] Longest pause between Icecast reconnection attempts, seconds.
    #[arg(long)]
    pub icecast_max_backoff_s: Option<u64>,
}

fn put<T: Serialize>(t: &mut toml::Table, key: &str, v: &Option<T>) {
    if let Some(v) = v {
        config::set(
            t,
            key,
            toml::Value::try_from(v).expect("flag value is TOML"),
        );
    }
}

impl Cli {
    /// The flags that were given, as a TOML table to merge over the files.
    pub fn overrides(&self) -> toml::Table {
        let mut t = toml::Table::new();
        put(&mut t, "source.kind", &self.source);
        put(&mut t, "source.device", &self.device);
        put(&mut t, "source.rate", &self.rate);
        put(&mut t, "source.format", &self.format);
        put(&mut t, "source.channels", &self.channels);
        put(&mut t, "source.path", &self.path);
        put(&mut t, "source.loop", &self.looping);
        put(&mut t, "source.tone_hz", &self.tone_hz);
        put(&mut t, "source.tone_dbfs", &self.tone_dbfs);
        put(&mut t, "source.period_ms", &self.period_ms);
        put(&mut t, "source.buffer_ms", &self.buffer_ms);
        put(&mut t, "source.retry_ms", &self.retry_ms);
        put(&mut t, "encoder.bitrate_kbps", &self.bitrate_kbps);
        put(&mut t, "encoder.complexity", &self.complexity);
        put(&mut t, "encoder.packets_per_page", &self.packets_per_page);
        put(&mut t, "encoder.flac", &self.flac);
        put(&mut t, "encoder.mp3_kbps", &self.mp3_kbps);
        put(
            &mut t,
            "http.listen",
            &(!self.listen.is_empty()).then_some(&self.listen),
        );
        put(&mut t, "http.name", &self.name);
        put(&mut t, "http.description", &self.description);
        put(&mut t, "http.max_connections", &self.max_connections);
        put(&mut t, "http.max_per_address", &self.max_per_address);
        put(&mut t, "http.client_queue_ms", &self.client_queue_ms);
        put(&mut t, "http.send_buffer_kib", &self.send_buffer_kib);
        put(&mut t, "http.burst_ms", &self.burst_ms);
        put(&mut t, "http.update_state", &self.update_state);
        put(&mut t, "silence.threshold_db", &self.silence_threshold_db);
        put(&mut t, "silence.hold_s", &self.silence_hold_s);
        put(&mut t, "silence.on_silence", &self.on_silence);
        put(&mut t, "silence.on_sound", &self.on_sound);
        put(&mut t, "icecast.url", &self.icecast_url);
        put(
            &mut t,
            "icecast.format",
            &self.icecast_format.map(|f| match f {
                config::IcecastFormat::Mp3 => "mp3",
                config::IcecastFormat::Opus => "opus",
            }),
        );
        put(&mut t, "icecast.user", &self.icecast_user);
        put(&mut t, "icecast.password", &self.icecast_password);
        put(&mut t, "icecast.max_backoff_s", &self.icecast_max_backoff_s);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn flags_override_and_are_checked_like_the_file() {
        let cli = Cli::parse_from([
            "vinyl-streamd",
            "--source=tone",
            "--tone-dbfs=-12",
            "--listen=[::1]:0",
            "--listen=127.0.0.1:0",
            "--loop=false",
            "--format=s24_3",
        ]);
        let c = Config::from_table(cli.overrides()).unwrap();
        assert_eq!(c.source.kind, SourceKind::Tone);
        assert_eq!(c.source.tone_dbfs, -12.0);
        assert_eq!(c.http.listen.len(), 2);
        assert!(!c.source.looping);
        assert_eq!(c.source.format, Some(SampleFormat::S24_3));
        let cli = Cli::parse_from(["vinyl-streamd", "--bitrate-kbps=1000"]);
        let err = Config::from_table(cli.overrides()).unwrap_err().to_string();
        assert!(err.contains("encoder.bitrate_kbps"), "{err}");
    }

    #[test]
    fn every_key_has_a_flag() {
        // Each flag's help starts with its [key]; compare with the config keys.
        let cmd = <Cli as clap::CommandFactory>::command();
        let flagged: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| {
                a.get_help()?
                    .to_string()
                    .strip_prefix('[')?
                    .split(']')
                    .next()
                    .map(String::from)
            })
            .collect();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for (section, keys) in defaults {
            for key in keys.as_table().unwrap().keys() {
                let k = format!("{section}.{key}");
                assert!(flagged.contains(&k), "no flag for {k}");
            }
        }
    }
}
