//! The updater's record on /data (`/data/vinyl-update/state.json`): when it
//! last checked, what came of it, what the channel offered. Written whole
//! (temporary file, then rename), so a power cut leaves the old record or
//! the new one. `vinyl-update status` and vinyl-streamd's `/status` show it.

use serde_json::{Value, json};
use std::path::Path;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing newer on offer.
    UpToDate,
    /// Installed into the other slot; it starts at the next reboot.
    Installed,
    /// An offer not installed: broken channel file, another board, a bundle
    /// that is not the one the channel names, below `min-version`.
    Refused,
    /// The check or the install failed (network, server, RAUC).
    Failed,
    /// Automatic checks are switched off (`enabled = false`).
    Off,
    /// No channel URL: the device never checks.
    NotConfigured,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::UpToDate => "up-to-date",
            Outcome::Installed => "installed",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Off => "off",
            Outcome::NotConfigured => "not-configured",
        }
    }
}

/// One check's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Seconds since the epoch (UTC).
    pub checked_at: u64,
    pub outcome: Outcome,
    /// For people: what happened and, when something is wrong, what to do.
    pub message: String,
    /// The version the channel offered, if it was read.
    pub offered: Option<String>,
}

impl Record {
    pub fn to_json(&self) -> Value {
        json!({
            "last-check": utc(self.checked_at),
            "last-check-epoch": self.checked_at,
            "result": self.outcome.name(),
            "message": self.message,
            "offered": self.offered,
        })
    }
}

/// The last record's time, if there is a readable one.
pub fn last_check(path: &Path) -> Option<u64> {
    read(path)?.get("last-check-epoch")?.as_u64()
}

/// The last record as JSON, if there is a readable one.
pub fn read(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Replaces the record.
pub fn write(path: &Path, record: &Record) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = path.with_extension("json.tmp");
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(format!("{:#}\n", record.to_json()).as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)?;
    // The rename itself reaches the card.
    std::fs::File::open(dir)?.sync_all()
}

/// `2026-12-04T19:40:00Z` for seconds since the epoch.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rest = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_410_631), "2026-12-04T18:57:11Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_record_is_replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(last_check(&path), None);
        let record = Record {
            checked_at: 1_796_410_631,
            outcome: Outcome::Refused,
            message: "the channel offers a release for vinyl-rpi3".into(),
            offered: Some("2.0.0".into()),
        };
        write(&path, &record).unwrap();
        assert_eq!(last_check(&path), Some(1_796_410_631));
        let value = read(&path).unwrap();
        assert_eq!(value["result"], "refused");
        assert_eq!(value["offered"], "2.0.0");
        assert_eq!(value["last-check"], "2026-12-04T18:57:11Z");
        assert!(!path.with_extension("json.tmp").exists());
        std::fs::write(&path, "{broken").unwrap();
        assert_eq!(last_check(&path), None);
    }
}
