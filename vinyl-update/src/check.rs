//! `vinyl-update check`: one tick of the self-updater (run by
//! `vinyl-update-check.timer`, or by hand). In order:
//!
//! 1. switched off (`enabled = false`) and started by the timer: nothing
//!    (recorded once);
//! 2. an update installed and waiting (the boot state's next boot is not
//!    the running slot): reboot into it when the policy allows — never
//!    while somebody hears a record; nothing else this tick; on a trial
//!    boot not yet marked good, nothing at all (the other slot is the
//!    fallback);
//! 3. no channel URL: recorded once;
//! 4. not due yet (`check-every` since the last check): nothing;
//! 5. the channel file, fetched and parsed; its offer decided
//!    ([`policy::offer`]);
//!    — and not a release whose trial already failed here;
//! 6. the bundle it names checked without downloading it: the server's
//!    size, and `rauc info` (streamed, signature verified) for the signed
//!    manifest's compatible, version and hash;
//! 7. `rauc install URL`, streamed (delta where the bundle has an index);
//! 8. the reboot of step 2, if the policy allows it now.
//!
//! Each check's result goes to the journal (stderr) and to the record on
//! /data ([`update_state`]); a failure exits non-zero.

use crate::config::{Config, Install};
use crate::download;
use crate::installed::Installed;
use crate::paths::Paths;
use crate::policy::{self, Listening, Offer, Running};
use crate::update_state::{self, Outcome, Record};
use anyhow::{Context as _, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};
use update_channel::Channel;

/// How `check` was started.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// By the timer: honours `enabled` and `check-every`.
    pub timer: bool,
    /// Install an older release, or one whose `min-version` the device is below.
    pub force: bool,
}

/// The settings in force: the image's file, then the one on /data.
pub fn config(paths: &Paths) -> Result<Config> {
    let mut config = Config::default();
    for path in [&paths.update_conf, &paths.update_override] {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                config = config
                    .apply(&path.display().to_string(), &text)
                    .map_err(|e| anyhow!(e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("reading {}: {e}", path.display()),
        }
    }
    Ok(config)
}

/// The running image's release, from its release file.
pub fn running(paths: &Paths) -> Result<Running> {
    let path = &paths.release;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} (the image builder writes it)", path.display()))?;
    let value = |key: &str| {
        crate::booted::env_value(&text, key)
            .map(String::from)
            .with_context(|| format!("{}: no {key}=", path.display()))
    };
    Ok(Running {
        version: value("VERSION")?,
        compatible: value("COMPATIBLE")?,
    })
}

/// The device's slots, read once: what booted, the boot state, what RAUC
/// installed; `None` when what booted or the boot state cannot be read.
struct Slots {
    booted: ab_state::Slot,
    state: ab_state::State,
    installed: BTreeMap<ab_state::Slot, Installed>,
}

impl Slots {
    fn read(paths: &Paths) -> Option<Slots> {
        Some(Slots {
            booted: crate::booted::read(&paths.boot_env).ok()?.slot,
            state: crate::state_dir::read(&paths.boot_dir).ok()?.state,
            installed: crate::installed::read(&paths.rauc_status),
        })
    }

    fn pending(&self) -> Option<(ab_state::Slot, Option<String>)> {
        policy::pending(self.booted, &self.state, &self.installed)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_global(Some(timeout))
        .user_agent(concat!("vinyl-update/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// For bundles: no limit on the whole (tens of MB on a slow link), but a
/// server that sends nothing for a minute has stalled.
fn download_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("vinyl-update/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// One tick. Returns what it printed last (also in the journal).
pub fn run(paths: &Paths, options: Options) -> Result<String> {
    let config = match config(paths) {
        Ok(config) => config,
        Err(e) => {
            let message = format!("{e:#}");
            quiet_record(paths, Outcome::Failed, &message)?;
            bail!("{message}");
        }
    };
    if options.timer && !config.enabled {
        return quiet_record(
            paths,
            Outcome::Off,
            "automatic updates are switched off (enabled = false)",
        );
    }
    let slots = Slots::read(paths);
    if let Some((slot, version)) = slots.as_ref().and_then(Slots::pending) {
        return reboot_if_allowed(paths, &config, slot, version.as_deref());
    }
    if slots
        .as_ref()
        .is_some_and(|s| policy::on_trial(s.booted, &s.state))
    {
        // RAUC would write the other slot: the one this trial falls back to.
        return Ok("a trial boot: waiting for its health check to mark this slot good".into());
    }
    let Some(url) = &config.url else {
        return quiet_record(
            paths,
            Outcome::NotConfigured,
            &format!(
                "no update URL: set `url = …/channel.json` in {} (or build the image with --update-url)",
                paths.update_override.display()
            ),
        );
    };
    if options.timer
        && !policy::check_due(
            now(),
            update_state::last_check(&paths.update_state),
            config.check_every,
        )
    {
        return Ok("not due yet".into());
    }
    let running = running(paths)?;
    let (outcome, message, offered) =
        match check_and_install(slots.as_ref(), url, &running, &config, paths, options) {
            Ok((outcome, message, offered)) => (outcome, message, offered),
            Err((outcome, message, offered)) => {
                record(paths, outcome, &message, offered.clone())?;
                bail!("{message}");
            }
        };
    record(paths, outcome, &message, offered)?;
    // RAUC has just changed the boot state: read it again.
    if outcome == Outcome::Installed
        && let Some((slot, version)) = Slots::read(paths).as_ref().and_then(Slots::pending)
    {
        let reboot = reboot_if_allowed(paths, &config, slot, version.as_deref())?;
        return Ok(format!("{message}\n{reboot}"));
    }
    Ok(message)
}

type Checked = (Outcome, String, Option<String>);

/// Steps 5 to 7: the channel, its offer, the bundle, the install.
fn check_and_install(
    slots: Option<&Slots>,
    url: &url::Url,
    running: &Running,
    config: &Config,
    paths: &Paths,
    options: Options,
) -> Result<Checked, Checked> {
    let failed = |message: String| (Outcome::Failed, message, None);
    let http = agent(Duration::from_secs(60));
    let bytes = http
        .get(url.as_str())
        .call()
        .and_then(|mut r| r.body_mut().with_config().limit(1 << 20).read_to_vec())
        .map_err(|e| failed(format!("fetching the channel file {url}: {e}")))?;
    let channel =
        Channel::parse(&bytes).map_err(|e| (Outcome::Refused, format!("{url}: {e}"), None))?;
    let offered = Some(channel.version.clone());
    let refused = |message: String| (Outcome::Refused, message, offered.clone());
    match policy::offer(running, &channel, options.force) {
        Offer::Install => {}
        Offer::UpToDate(message) => return Ok((Outcome::UpToDate, message, offered)),
        Offer::Refuse(message) => return Err(refused(format!("{url}: {message}"))),
    }
    if !options.force
        && let Some(reason) = slots
            .and_then(|s| policy::failed_trial(s.booted, &s.state, &s.installed, &channel.version))
    {
        return Err(refused(format!("{url}: {reason}")));
    }
    let bundle = url
        .join(&channel.bundle.url)
        .map_err(|e| refused(format!("{url}: bundle.url {:?}: {e}", channel.bundle.url)))?;

    // The server's file is the size the channel says (a truncated upload,
    // a stale file), without reading it.
    let head = http
        .head(bundle.as_str())
        .call()
        .map_err(|e| (Outcome::Failed, format!("{bundle}: {e}"), offered.clone()))?;
    let size = head
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if size != Some(channel.bundle.size) {
        return Err(refused(format!(
            "{bundle} is {} bytes on the server; the channel file says {}: a truncated or swapped bundle, not installed",
            size.map_or("an unknown number of".into(), |s| s.to_string()),
            channel.bundle.size
        )));
    }

    // Where RAUC reads the bundle: the server, or /data once downloaded.
    let downloaded = match config.install {
        Install::Stream => None,
        Install::Download => {
            eprintln!(
                "vinyl-update: downloading {bundle} ({} bytes) into {}",
                channel.bundle.size,
                paths.update_downloads.display()
            );
            let file = download::fetch(
                &download_agent(),
                &bundle,
                &paths.update_downloads,
                channel.bundle.size,
                &channel.bundle.sha256,
            )
            .map_err(|e| match e {
                download::Error::NotTheBundle(message) => refused(message),
                download::Error::Failed(message) => (
                    Outcome::Failed,
                    format!("{message}; the next check resumes the download"),
                    offered.clone(),
                ),
            })?;
            Some(file)
        }
    };
    let source = downloaded
        .as_ref()
        .map_or_else(|| bundle.to_string(), |f| f.display().to_string());
    // A downloaded bundle RAUC turns down will never install: its space goes
    // back to /data.
    let refused = |message: String| {
        if let Some(file) = &downloaded {
            download::discard(file);
        }
        refused(message)
    };

    // What the bundle's signed manifest says, verified by RAUC.
    let info = Command::new("rauc")
        .args(["info", "--output-format=json", source.as_str()])
        .output()
        .map_err(|e| {
            (
                Outcome::Failed,
                format!("running rauc info: {e}"),
                offered.clone(),
            )
        })?;
    if !info.status.success() {
        return Err(refused(format!(
            "rauc info {source} refused the bundle: {}",
            failure(&info)
        )));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&info.stdout).map_err(|e| {
        (
            Outcome::Failed,
            format!("rauc info {source}: unreadable output: {e}"),
            offered.clone(),
        )
    })?;
    let field = |key: &str| manifest[key].as_str().unwrap_or_default().to_string();
    for (what, signed, channel_says) in [
        ("compatible", field("compatible"), &channel.compatible),
        ("version", field("version"), &channel.version),
        (
            "manifest hash",
            field("hash"),
            &channel.bundle.manifest_sha256,
        ),
    ] {
        if &signed != channel_says {
            return Err(refused(format!(
                "{source}: its signed {what} is {signed:?} but the channel file says {channel_says:?}: not the bundle the channel names, not installed"
            )));
        }
    }

    eprintln!("vinyl-update: installing {} from {source}", channel.version);
    let install = Command::new("rauc")
        .args(["install", source.as_str()])
        .output()
        .map_err(|e| {
            (
                Outcome::Failed,
                format!("running rauc install: {e}"),
                offered.clone(),
            )
        })?;
    if !install.status.success() {
        return Err((
            Outcome::Failed,
            format!(
                "rauc install {source} failed: {}; the running slot is untouched, the next check tries again",
                failure(&install)
            ),
            offered.clone(),
        ));
    }
    // In the slot now: the download's space goes back to /data.
    if let Some(file) = &downloaded {
        download::discard(file);
    }
    Ok((
        Outcome::Installed,
        format!(
            "installed {} (was {}); it starts at the next reboot",
            channel.version, running.version
        ),
        offered,
    ))
}

/// The last non-empty line of a command's output.
fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Why a command failed: its last line on stderr, else on stdout (RAUC
/// prints some failures there).
fn failure(output: &std::process::Output) -> String {
    let line = last_line(&output.stderr);
    if line.is_empty() {
        last_line(&output.stdout)
    } else {
        line
    }
}

/// What vinyl-streamd says about listeners and the turntable; `None` when
/// it does not answer.
fn listening(paths: &Paths) -> Option<Listening> {
    let status: serde_json::Value = agent(Duration::from_secs(5))
        .get(&paths.streamd_status)
        .call()
        .ok()?
        .body_mut()
        .read_json()
        .ok()?;
    Some(Listening {
        listeners: status["listeners"].as_u64().unwrap_or(0),
        playing: status["state"] == "playing",
    })
}

/// Steps 2 and 8: reboots into `slot` now if the policy allows.
fn reboot_if_allowed(
    paths: &Paths,
    config: &Config,
    slot: ab_state::Slot,
    version: Option<&str>,
) -> Result<String> {
    let what = format!("slot {slot} ({})", version.unwrap_or("version unknown"));
    match policy::may_reboot(config.reboot, now(), listening(paths)) {
        Err(reason) => {
            let message = format!("the update in {what} waits for a reboot: {reason}");
            eprintln!("vinyl-update: {message}");
            Ok(message)
        }
        Ok(()) => {
            eprintln!("vinyl-update: rebooting into {what}");
            let status = Command::new("systemctl")
                .arg("reboot")
                .status()
                .context("running systemctl reboot")?;
            if !status.success() {
                bail!("systemctl reboot failed ({status})");
            }
            Ok(format!("rebooting into {what}"))
        }
    }
}

/// Records a check's result and prints it for the journal.
fn record(paths: &Paths, outcome: Outcome, message: &str, offered: Option<String>) -> Result<()> {
    eprintln!("vinyl-update: {}: {message}", outcome.name());
    update_state::write(
        &paths.update_state,
        &Record {
            checked_at: now(),
            outcome,
            message: message.to_string(),
            offered,
        },
    )
    .with_context(|| format!("writing {}", paths.update_state.display()))
}

/// Records a steady state (off, not configured, broken settings) only when
/// it is news, so a timer ticking every few minutes does not write to the
/// card each time.
fn quiet_record(paths: &Paths, outcome: Outcome, message: &str) -> Result<String> {
    let previous = update_state::read(&paths.update_state);
    let same = previous.as_ref().is_some_and(|v| {
        v["result"].as_str() == Some(outcome.name()) && v["message"].as_str() == Some(message)
    });
    if same {
        eprintln!("vinyl-update: {}: {message}", outcome.name());
    } else {
        record(paths, outcome, message, None)?;
    }
    Ok(message.to_string())
}
