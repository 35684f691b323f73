//! The update channel file, `channel.json`: what a release directory
//! offers devices. `builder publish` writes it; the device's
//! `vinyl-update` reads it to decide whether to install. One model for
//! both, so they never disagree on a field.
//!
//! ```json
//! {
//!   "format": 1,
//!   "compatible": "vinyl-rpi4",
//!   "version": "2026.12.04",
//!   "build": "lock sha256:… tree sha256:…",
//!   "released": "2026-12-04",
//!   "min-version": "2026.06.01",
//!   "bundle": { "url": "vinyl-rpi4-2026.12.04.raucb", "size": 87000000, "sha256": "…",
//!               "manifest-sha256": "…" }
//! }
//! ```
//!
//! The bundle's URL is relative to the channel file, so a release
//! directory works wherever it is hosted. The file is not signed: the
//! bundle is, and RAUC checks that signature before it installs. A device
//! streaming the bundle never reads all of it, so it cannot check `sha256`
//! (that is for downloads: people, mirrors); it checks `size` against the
//! server's and `manifest-sha256`, the SHA-256 of the signed manifest that
//! `rauc info` reports as the bundle's hash: the manifest holds the payload's
//! dm-verity root hash, so it names every byte RAUC will read.
//! Devices ignore fields they do not know; a change old devices would
//! misread raises `format`.

pub mod version;

use serde::{Deserialize, Serialize};
use std::fmt;

/// The channel file's name in a release directory.
pub const FILE_NAME: &str = "channel.json";

/// The format this crate reads and writes.
pub const FORMAT: u32 = 1;

/// The channel file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Channel {
    /// [`FORMAT`].
    pub format: u32,
    /// RAUC's `compatible` (`vinyl-<board>`): devices of other boards
    /// ignore the release.
    pub compatible: String,
    /// The release's version, as in the bundle's manifest.
    pub version: String,
    /// The exact build (lock and tree digests), as in the manifest.
    pub build: String,
    /// The release date, `YYYY-MM-DD` (from the locked archive).
    pub released: String,
    /// Devices running an older version must not install this release
    /// (they need an intermediate one first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// The signed RAUC bundle.
    pub bundle: BundleRef,
}

/// Where the bundle is and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BundleRef {
    /// Relative to the channel file's URL (or absolute).
    pub url: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    /// SHA-256 of the signed manifest (RAUC's bundle hash), lowercase hex.
    pub manifest_sha256: String,
}

/// Why a channel file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelError(String);

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "channel file: {}", self.0)
    }
}

impl std::error::Error for ChannelError {}

impl Channel {
    /// Reads and checks a channel file: JSON of this shape, [`FORMAT`],
    /// a 64-digit lowercase hex digest, a non-empty version and URL.
    pub fn parse(bytes: &[u8]) -> Result<Channel, ChannelError> {
        // `format` first, so a newer file is named as such rather than as
        // a missing field.
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ChannelError(format!("not JSON: {e}")))?;
        match value.get("format").and_then(serde_json::Value::as_u64) {
            Some(n) if n == u64::from(FORMAT) => {}
            Some(n) => {
                return Err(ChannelError(format!(
                    "format {n}; this device reads format {FORMAT}: update it through a release that reads both"
                )));
            }
            None => return Err(ChannelError("no \"format\" number".into())),
        }
        let channel: Channel =
            serde_json::from_value(value).map_err(|e| ChannelError(format!("{e}")))?;
        for (key, digest) in [
            ("bundle.sha256", &channel.bundle.sha256),
            ("bundle.manifest-sha256", &channel.bundle.manifest_sha256),
        ] {
            if digest.len() != 64
                || !digest
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(ChannelError(format!(
                    "{key} {digest:?} is not 64 lowercase hex digits"
                )));
            }
        }
        for (key, value) in [
            ("compatible", &channel.compatible),
            ("version", &channel.version),
            ("bundle.url", &channel.bundle.url),
        ] {
            if value.trim().is_empty() {
                return Err(ChannelError(format!("{key} is empty")));
            }
        }
        Ok(channel)
    }

    /// The file's text: pretty JSON, fields in a fixed order, a newline last.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a channel serializes") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> Channel {
        Channel {
            format: FORMAT,
            compatible: "vinyl-rpi4".into(),
            version: "2026.12.04".into(),
            build: "lock sha256:aa tree sha256:bb".into(),
            released: "2026-12-04".into(),
            min_version: Some("2026.06.01".into()),
            bundle: BundleRef {
                url: "vinyl-rpi4-2026.12.04.raucb".into(),
                size: 87_000_000,
                sha256: "ab".repeat(32),
                manifest_sha256: "cd".repeat(32),
            },
        }
    }

    #[test]
    fn round_trips_with_kebab_case_keys() {
        let text = channel().to_json();
        assert!(text.contains("\"min-version\": \"2026.06.01\""), "{text}");
        assert!(text.ends_with("}\n"));
        assert_eq!(Channel::parse(text.as_bytes()).unwrap(), channel());
        let mut without = channel();
        without.min_version = None;
        assert!(!without.to_json().contains("min-version"));
        assert_eq!(
            Channel::parse(without.to_json().as_bytes()).unwrap(),
            without
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut value: serde_json::Value = serde_json::from_str(&channel().to_json()).unwrap();
        value["notes"] = "later".into();
        assert_eq!(
            Channel::parse(value.to_string().as_bytes()).unwrap(),
            channel()
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let good = channel().to_json();
        let cases: Vec<(String, &str)> = vec![
            (good[..good.len() / 2].to_string(), "not JSON"),
            (good.replace("\"format\": 1", "\"format\": 2"), "format 2"),
            (good.replace("\"format\": 1,", ""), "no \"format\""),
            (
                good.replace(&"ab".repeat(32), &"AB".repeat(32)),
                "64 lowercase hex",
            ),
            (good.replace(&"ab".repeat(32), "abc"), "64 lowercase hex"),
            (
                good.replace(&"cd".repeat(32), "cd"),
                "bundle.manifest-sha256 \"cd\" is not 64",
            ),
            (
                good.replace("\"manifest-sha256\"", "\"manifest\""),
                "missing field `manifest-sha256`",
            ),
            (good.replace("\"2026.12.04\"", "\"\""), "version is empty"),
            (
                good.replace("\"size\": 87000000", "\"size\": -1"),
                "expected u64",
            ),
        ];
        for (text, expected) in cases {
            let error = Channel::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
            assert!(error.starts_with("channel file: "), "{error}");
        }
    }
}
