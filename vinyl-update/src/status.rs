//! `vinyl-update status`: what booted and what the boot state says, for
//! people and (`--json`) for programs.

use crate::booted::Booted;
use crate::installed::Installed;
use crate::state_dir::BootState;
use ab_state::Slot;
use serde_json::{Value, json};
use std::fmt::Write;
use std::path::PathBuf;

/// Everything the status shows.
#[derive(Debug)]
pub struct Report {
    /// The running slot, or why it is not known.
    pub booted: Result<Booted, String>,
    /// The boot state's copies and the state in force.
    pub state: BootState,
    /// Where the copies are.
    pub boot_dir: PathBuf,
    /// What RAUC installed into each slot (none: as flashed).
    pub installed: std::collections::BTreeMap<Slot, Installed>,
    pub updates: Updates,
}

/// The self-updater's side.
#[derive(Debug)]
pub struct Updates {
    /// The running image's release, or why it is not known.
    pub running: Result<crate::policy::Running, String>,
    /// The settings in force, or what is wrong with them.
    pub config: Result<crate::config::Config, String>,
    /// The last check's record (`update_state`), if any.
    pub last_check: Option<Value>,
    /// An installed update waiting for a reboot: its slot and version.
    pub pending: Option<(Slot, Option<String>)>,
}

impl Updates {
    fn lines(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![(
            "version",
            match &self.running {
                Ok(r) => format!("{} ({})", r.version, r.compatible),
                Err(e) => format!("unknown ({e})"),
            },
        )];
        lines.push((
            "updates",
            match &self.config {
                Ok(c) => match (&c.url, c.enabled) {
                    (None, _) => "never checked: no channel URL".into(),
                    (Some(url), true) => format!(
                        "from {url}, every {}, reboot {}{}",
                        duration(c.check_every),
                        reboot(c.reboot),
                        match c.install {
                            crate::config::Install::Stream => "",
                            crate::config::Install::Download =>
                                ", bundles downloaded to /data first",
                        }
                    ),
                    (Some(url), false) => format!("switched off (channel {url})"),
                },
                Err(e) => format!("settings broken: {e}"),
            },
        ));
        lines.push((
            "last check",
            match &self.last_check {
                None => "never".into(),
                Some(v) => format!(
                    "{} {}: {}",
                    v["last-check"].as_str().unwrap_or("?"),
                    v["result"].as_str().unwrap_or("?"),
                    v["message"].as_str().unwrap_or("")
                ),
            },
        ));
        lines.push((
            "pending",
            match &self.pending {
                None => "no reboot pending".into(),
                Some((slot, version)) => format!(
                    "reboot into slot {slot} ({})",
                    version.as_deref().unwrap_or("version unknown")
                ),
            },
        ));
        lines
    }

    fn json(&self) -> Value {
        json!({
            "version": self.running.as_ref().ok().map(|r| r.version.clone()),
            "compatible": self.running.as_ref().ok().map(|r| r.compatible.clone()),
            "url": self.config.as_ref().ok().and_then(|c| c.url.as_ref().map(|u| u.to_string())),
            "enabled": self.config.as_ref().ok().map(|c| c.enabled),
            "settings_error": self.config.as_ref().err(),
            "last_check": self.last_check,
            "pending_reboot": self.pending.as_ref().map(|(slot, version)| json!({"slot": slot.name(), "version": version})),
        })
    }
}

fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s => format!("{}m", s / 60),
    }
}

fn reboot(policy: crate::config::Reboot) -> String {
    match policy {
        crate::config::Reboot::Idle => "when idle".into(),
        crate::config::Reboot::At(m) => format!(
            "at {:02}:{:02} UTC, unless somebody hears a record",
            m / 60,
            m % 60
        ),
    }
}

/// A slot's release, for people.
fn release(installed: Option<&Installed>) -> String {
    match installed {
        None => "as flashed (never written by an update)".into(),
        Some(i) => format!(
            "version {}, build {}, installed {} ({})",
            i.version.as_deref().unwrap_or("?"),
            i.build.as_deref().unwrap_or("?"),
            i.installed.as_deref().unwrap_or("?"),
            i.status.as_deref().unwrap_or("?")
        ),
    }
}

/// The report for people.
pub fn text(report: &Report) -> String {
    let state = &report.state.state;
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{:<11}{value}", format!("{label}:"));
    };
    line(
        "booted",
        match &report.booted {
            Ok(b) if b.trial => format!("slot {} (trial boot)", b.slot),
            Ok(b) => format!("slot {}", b.slot),
            Err(e) => format!("unknown ({e})"),
        },
    );
    line("active", format!("slot {} (known good)", state.active));
    line(
        "trial",
        match (state.trial, state.tries.unwrap_or(0)) {
            (None, _) => "none".to_string(),
            (Some(slot), 0) => format!(
                "slot {slot}, no tries left (the next boot returns to slot {})",
                state.active
            ),
            (Some(slot), 1) => format!("slot {slot}, 1 try left"),
            (Some(slot), tries) => format!("slot {slot}, {tries} tries left"),
        },
    );
    line("next boot", format!("slot {}", state.primary()));
    line(
        "state",
        match report.state.winner {
            Some(copy) => format!(
                "sequence {:#x}, copy {copy} won ({})",
                state.seq,
                report
                    .boot_dir
                    .join(report.state.copies[copy].file)
                    .display()
            ),
            None => format!(
                "no valid copy in {}: the boot script boots slot a",
                report.boot_dir.display()
            ),
        },
    );
    for (n, copy) in report.state.copies.iter().enumerate() {
        let value = match &copy.state {
            Ok(s) => format!("sequence {:#x}", s.seq),
            Err(e) => format!("invalid: {e}"),
        };
        line(&format!("copy {n}"), format!("{}, {value}", copy.file));
    }
    for slot in [Slot::A, Slot::B] {
        line(
            &format!("slot {slot}"),
            format!(
                "{}, {}",
                good_or_bad(state.is_good(slot)),
                release(report.installed.get(&slot))
            ),
        );
    }
    for (label, value) in report.updates.lines() {
        line(label, value);
    }
    out
}

/// The report as JSON.
pub fn json(report: &Report) -> Value {
    let state = &report.state.state;
    let copies: Vec<Value> = report
        .state
        .copies
        .iter()
        .enumerate()
        .map(|(n, copy)| match &copy.state {
            Ok(s) => json!({"copy": n, "file": copy.file, "valid": true, "seq": s.seq}),
            Err(e) => json!({"copy": n, "file": copy.file, "valid": false, "error": e}),
        })
        .collect();
    let mut value = json!({
        "booted": report.booted.as_ref().ok().map(|b| json!({"slot": b.slot.name(), "trial": b.trial})),
        "active": state.active.name(),
        "trial": state.trial.map(|slot| json!({"slot": slot.name(), "tries": state.tries.unwrap_or(0)})),
        "primary": state.primary().name(),
        "seq": state.seq,
        "copy": report.state.winner,
        "boot_dir": report.boot_dir.display().to_string(),
        "copies": copies,
        "slots": {
            "a": good_or_bad(state.is_good(Slot::A)),
            "b": good_or_bad(state.is_good(Slot::B)),
        },
        "installed": {
            "a": installed_json(report.installed.get(&Slot::A)),
            "b": installed_json(report.installed.get(&Slot::B)),
        },
    });
    if let Err(e) = &report.booted {
        value["booted_error"] = json!(e);
    }
    value["update"] = report.updates.json();
    value
}

/// A slot's release as JSON (null: as flashed).
fn installed_json(installed: Option<&Installed>) -> Value {
    installed.map_or(Value::Null, |i| {
        json!({"version": i.version, "build": i.build, "installed": i.installed, "status": i.status})
    })
}

/// RAUC's words for a slot's state.
pub fn good_or_bad(good: bool) -> &'static str {
    if good { "good" } else { "bad" }
}
