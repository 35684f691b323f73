//! The updater's settings: `/usr/lib/vinyl/update.conf` as the image was
//! built, then `/data/vinyl-update/update.conf`, whose keys win one by one.
//! `key = value` lines, `#` comments. Pure: texts in, settings out.

use std::time::Duration;

/// When an installed update may start (reboot into the new slot). Never
/// while somebody hears a record, whichever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    /// As soon as nobody is listening and the turntable is silent.
    Idle,
    /// In the three hours after this time of day (UTC), minutes since 00:00.
    At(u32),
}

/// How the device gets a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// RAUC reads the bundle from the server as it installs (HTTP range
    /// requests), fetching only the chunks the device lacks; nothing is
    /// stored first.
    Stream,
    /// The whole bundle to /data first, resumed where a dropped download
    /// stopped and checked against the channel's SHA-256, then installed
    /// from there: for servers without range requests and flaky links.
    Download,
}

/// How long after [`Reboot::At`] a reboot may still start.
pub const REBOOT_WINDOW: Duration = Duration::from_secs(3 * 3600);

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The release's `channel.json`; `None`: never check.
    pub url: Option<url::Url>,
    /// `false`: the timer's checks do nothing (a check by hand still runs).
    pub enabled: bool,
    /// Time between two checks of the channel.
    pub check_every: Duration,
    pub reboot: Reboot,
    pub install: Install,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: None,
            enabled: true,
            check_every: Duration::from_secs(6 * 3600),
            reboot: Reboot::Idle,
            install: Install::Stream,
        }
    }
}

const KEYS: &str = "url, enabled, check-every, reboot, install";

impl Config {
    /// Applies one file's settings over `self`; `name` names the file in
    /// errors, which also give the line, the key and what is valid.
    pub fn apply(mut self, name: &str, text: &str) -> Result<Config, String> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{name} line {}", n + 1);
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "{at}: {line:?} is not `key = value` (keys: {KEYS})"
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "url" => self.url = Some(parse_url(value).map_err(|e| format!("{at}: url {value:?}: {e}"))?),
                "enabled" => {
                    self.enabled = match value {
                        "true" | "yes" => true,
                        "false" | "no" => false,
                        _ => return Err(format!("{at}: enabled {value:?}: give true or false")),
                    }
                }
                "check-every" => {
                    self.check_every = parse_interval(value)
                        .ok_or_else(|| format!("{at}: check-every {value:?}: give 1m to 30d, such as 30m, 6h or 1d"))?
                }
                "reboot" => {
                    self.reboot = parse_reboot(value).ok_or_else(|| {
                        format!("{at}: reboot {value:?}: give idle, or a time of day HH:MM (UTC) such as 03:30")
                    })?
                }
                "install" => {
                    self.install = match value {
                        "stream" => Install::Stream,
                        "download" => Install::Download,
                        _ => return Err(format!(
                            "{at}: install {value:?}: give stream (RAUC reads the bundle from the server, only the chunks it lacks) or download (the whole bundle to /data first)"
                        )),
                    }
                }
                other => return Err(format!("{at}: unknown key {other:?} (keys: {KEYS})")),
            }
        }
        Ok(self)
    }
}

/// An absolute http(s) URL with a host.
pub fn parse_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text)
        .map_err(|e| format!("{e}; give an absolute http:// or https:// URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("give an http:// or https:// URL with a host".into());
    }
    Ok(url)
}

/// `30m`, `6h`, `1d`: between a minute and 30 days.
fn parse_interval(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    let secs = n.checked_mul(match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    })?;
    (60..=30 * 86400)
        .contains(&secs)
        .then(|| Duration::from_secs(secs))
}

fn parse_reboot(text: &str) -> Option<Reboot> {
    if text == "idle" {
        return Some(Reboot::Idle);
    }
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && text.len() == 5).then_some(Reboot::At(h * 60 + m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_file_wins_key_by_key() {
        let image = "# built\nurl = http://[2001:db8::1]/v/channel.json\nenabled = true\ncheck-every = 6h\nreboot = idle\n";
        let data = "check-every = 30m\nreboot = 03:30\n";
        let config = Config::default()
            .apply("image", image)
            .unwrap()
            .apply("data", data)
            .unwrap();
        assert_eq!(
            config.url.as_ref().unwrap().as_str(),
            "http://[2001:db8::1]/v/channel.json"
        );
        assert!(config.enabled);
        assert_eq!(config.check_every, Duration::from_secs(1800));
        assert_eq!(config.reboot, Reboot::At(3 * 60 + 30));
        assert_eq!(config.install, Install::Stream);
        let download = config.apply("data", "install = download").unwrap();
        assert_eq!(download.install, Install::Download);
        let off = Config::default().apply("data", "enabled = false").unwrap();
        assert!(!off.enabled);
    }

    #[test]
    fn bad_settings_name_file_line_key_and_what_is_valid() {
        for (text, says) in [
            (
                "\n\nspeed = 3",
                "f line 3: unknown key \"speed\" (keys: url, enabled",
            ),
            (
                "enabled = maybe",
                "f line 1: enabled \"maybe\": give true or false",
            ),
            ("check-every = 10s", "check-every \"10s\": give 1m to 30d"),
            ("check-every = 31d", "give 1m to 30d"),
            ("check-every = 6", "give 1m to 30d"),
            (
                "reboot = 25:00",
                "reboot \"25:00\": give idle, or a time of day HH:MM",
            ),
            ("reboot = 3:30", "give idle"),
            (
                "install = http",
                "f line 1: install \"http\": give stream (RAUC reads",
            ),
            (
                "url = ftp://x/c.json",
                "url \"ftp://x/c.json\": give an http:// or https://",
            ),
            ("url = channel.json", "absolute"),
            ("just words", "is not `key = value`"),
        ] {
            let error = Config::default().apply("f", text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
