//! The signed `InRelease` file: OpenPGP verification against the Debian
//! archive keys we ship, and parsing of the checksums it vouches for.

use crate::deb822;
use crate::openpgp::{self, SigningKey};
use std::collections::BTreeMap;

/// Debian's trixie archive signing keys, as exported from the
/// `debian-archive-keyring` package: the two automatic RSA keys, whose
/// subkeys sign every `InRelease` of trixie and trixie-security. (The
/// EdDSA stable release key, which adds a third signature, is not used:
/// [`openpgp`] checks RSA signatures only.)
pub const TRIXIE_KEYS: &[(&str, &str)] = &[
    (
        "debian-archive-trixie-automatic.asc",
        include_str!("../keys/debian-archive-trixie-automatic.asc"),
    ),
    (
        "debian-archive-trixie-security-automatic.asc",
        include_str!("../keys/debian-archive-trixie-security-automatic.asc"),
    ),
];

/// Errors from verifying or reading a Release file.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("signing key {name} could not be read: {reason}")]
    BadKey { name: String, reason: String },
    #[error("{file} is not a valid OpenPGP cleartext-signed file: {reason}")]
    NotSigned { file: String, reason: String },
    #[error(
        "{file}: no signature verifies against Debian's archive keys ({keys}; the file carries {signatures}); the file was tampered with or comes from another archive"
    )]
    BadSignature {
        file: String,
        keys: String,
        signatures: String,
    },
    #[error("{file}: {reason}")]
    Malformed { file: String, reason: String },
    #[error("{file} describes suite {found:?}, but {wanted:?} was requested; check the mirror URL")]
    WrongSuite {
        file: String,
        wanted: String,
        found: String,
    },
}

/// A set of trusted public keys: primary keys and their bound subkeys
/// that can sign ([`openpgp`] says which kinds).
pub struct Keyring {
    keys: Vec<(String, Vec<SigningKey>)>,
}

impl Keyring {
    /// Loads ASCII-armored keys, keeping only subkeys with a valid binding.
    pub fn from_armored(keys: &[(&str, &str)]) -> Result<Self, ReleaseError> {
        let keys = keys
            .iter()
            .map(|(name, armored)| {
                let keys = openpgp::dearmor_public_key(armored)
                    .and_then(|binary| openpgp::signing_keys(&binary))
                    .map_err(|e| ReleaseError::BadKey {
                        name: name.to_string(),
                        reason: e.to_string(),
                    })?;
                Ok((name.to_string(), keys))
            })
            .collect::<Result<_, _>>()?;
        Ok(Keyring { keys })
    }

    /// The keys Debian uses to sign trixie.
    pub fn debian_trixie() -> Self {
        Self::from_armored(TRIXIE_KEYS).expect("shipped keys are valid")
    }

    /// Verifies a cleartext-signed document and returns the signed text
    /// (LF line endings). At least one signature must verify against a
    /// primary key or subkey in this keyring.
    pub fn verify_cleartext(&self, file: &str, signed: &str) -> Result<String, ReleaseError> {
        let message = openpgp::cleartext(signed).map_err(|e| ReleaseError::NotSigned {
            file: file.to_string(),
            reason: e.to_string(),
        })?;
        let verified = message.signatures.iter().any(|signature| {
            self.keys
                .iter()
                .flat_map(|(_, keys)| keys)
                .any(|key| key.verifies(signature, &message.canonical))
        });
        if !verified {
            let rsa = message.signatures.iter().filter(|s| s.is_rsa()).count();
            return Err(ReleaseError::BadSignature {
                file: file.to_string(),
                keys: self
                    .keys
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                signatures: format!(
                    "{} signature(s), {rsa} of them RSA (the only kind checked)",
                    message.signatures.len()
                ),
            });
        }
        Ok(message.text)
    }
}

/// The fields of a Release file the builder uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub codename: String,
    pub suite: String,
    /// The `Date` field as written.
    pub date: String,
    /// `Date` as seconds since the epoch: the images' SOURCE_DATE_EPOCH.
    pub timestamp: i64,
    /// `Valid-Until` as seconds since the epoch, if the archive sets one:
    /// after it, the file is stale and must not be trusted.
    pub valid_until: Option<i64>,
    pub components: Vec<String>,
    /// `SHA256` entries: path relative to `dists/<suite>/` → (size, hex digest).
    pub sha256: BTreeMap<String, (u64, String)>,
}

impl Release {
    /// Parses verified Release text and checks it is the suite we asked for.
    pub fn parse(file: &str, text: &str, wanted_suite: &str) -> Result<Self, ReleaseError> {
        let malformed = |reason: String| ReleaseError::Malformed {
            file: file.to_string(),
            reason,
        };
        let paragraphs = deb822::parse(text).map_err(|e| malformed(e.to_string()))?;
        let paragraph = paragraphs
            .first()
            .ok_or_else(|| malformed("empty Release file".into()))?;
        let field = |name: &str| {
            paragraph
                .get(name)
                .ok_or_else(|| malformed(format!("missing field {name}")))
        };
        let codename = field("Codename")?.to_string();
        let suite = field("Suite")?.to_string();
        if codename != wanted_suite && suite != wanted_suite {
            return Err(ReleaseError::WrongSuite {
                file: file.to_string(),
                wanted: wanted_suite.to_string(),
                found: codename,
            });
        }
        let date = field("Date")?.to_string();
        let timestamp = parse_rfc2822_utc(&date)
            .ok_or_else(|| malformed(format!("unreadable Date {date:?}")))?;
        let valid_until = paragraph
            .get("Valid-Until")
            .map(|text| {
                parse_rfc2822_utc(text).ok_or_else(|| {
                    malformed(format!(
                        "unreadable Valid-Until {text:?} (expected a date like `Sat, 12 Sep 2026 07:55:41 UTC`)"
                    ))
                })
            })
            .transpose()?;
        let mut sha256 = BTreeMap::new();
        for line in field("SHA256")?.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [digest, size, path] = parts[..] else {
                return Err(malformed(format!("bad SHA256 line {line:?}")));
            };
            let size = size
                .parse()
                .map_err(|_| malformed(format!("bad size in SHA256 line {line:?}")))?;
            sha256.insert(path.to_string(), (size, digest.to_ascii_lowercase()));
        }
        Ok(Release {
            codename,
            suite,
            date,
            timestamp,
            valid_until,
            components: field("Components")?
                .split_whitespace()
                .map(String::from)
                .collect(),
            sha256,
        })
    }
}

/// Parses dates like `Sat, 12 Sep 2026 07:55:41 UTC` (the only form Debian's
/// archive uses) into seconds since the Unix epoch.
pub fn parse_rfc2822_utc(date: &str) -> Option<i64> {
    let rest = date.split_once(',').map_or(date, |(_, rest)| rest);
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let [day, month, year, time, zone] = parts[..] else {
        return None;
    };
    if !matches!(zone, "UTC" | "GMT" | "+0000") {
        return None;
    }
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Formats seconds since the Unix epoch the way the archive writes dates:
/// `Sat, 12 Sep 2026 07:55:41 UTC` (the inverse of [`parse_rfc2822_utc`]).
pub fn format_rfc2822_utc(timestamp: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, seconds) = (timestamp.div_euclid(86_400), timestamp.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} UTC",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// The proleptic Gregorian date (year, month, day) of a day number since
/// 1970-01-01 (Howard Hinnant's algorithm, the inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const INRELEASE: &str = include_str!("../tests/fixtures/trixie-InRelease");

    #[test]
    fn real_inrelease_verifies_and_parses() {
        let keyring = Keyring::debian_trixie();
        let text = keyring.verify_cleartext("InRelease", INRELEASE).unwrap();
        let release = Release::parse("InRelease", &text, "trixie").unwrap();
        assert_eq!(release.codename, "trixie");
        assert!(
            release
                .components
                .contains(&"non-free-firmware".to_string())
        );
        let (size, digest) = &release.sha256["main/binary-arm64/Packages.xz"];
        assert!(*size > 1_000_000);
        assert_eq!(digest.len(), 64);
        assert_eq!(release.timestamp, parse_rfc2822_utc(&release.date).unwrap());
    }

    #[test]
    fn a_tampered_byte_is_rejected() {
        let keyring = Keyring::debian_trixie();
        // Change one digit of the first SHA256 entry's size field.
        let target = INRELEASE.find("main/binary-arm64/Packages.xz").unwrap();
        let mut bytes = INRELEASE.as_bytes().to_vec();
        let digit = bytes[..target]
            .iter()
            .rposition(|b| b.is_ascii_digit())
            .unwrap();
        bytes[digit] = if bytes[digit] == b'1' { b'2' } else { b'1' };
        let tampered = String::from_utf8(bytes).unwrap();
        let error = keyring
            .verify_cleartext("InRelease", &tampered)
            .unwrap_err();
        assert!(
            matches!(error, ReleaseError::BadSignature { .. }),
            "{error}"
        );
    }

    #[test]
    fn an_unsigned_file_is_rejected() {
        let keyring = Keyring::debian_trixie();
        let error = keyring
            .verify_cleartext("InRelease", "Origin: Debian\nCodename: trixie\n")
            .unwrap_err();
        assert!(matches!(error, ReleaseError::NotSigned { .. }), "{error}");
    }

    #[test]
    fn wrong_suite_is_an_error() {
        let text = "Suite: stable\nCodename: bookworm\nDate: Sat, 10 Jun 2023 08:56:46 UTC\nComponents: main\nSHA256:\n";
        let error = Release::parse("InRelease", text, "trixie").unwrap_err();
        assert!(matches!(error, ReleaseError::WrongSuite { .. }));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_rfc2822_utc("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_rfc2822_utc("Sat, 12 Sep 2026 07:55:41 UTC"),
            Some(1_789_199_741)
        );
        assert_eq!(parse_rfc2822_utc("Sat, 12 Sep 2026 07:55:41 CEST"), None);
        for date in [
            "Thu, 01 Jan 1970 00:00:00 UTC",
            "Sat, 12 Sep 2026 07:55:41 UTC",
            "Tue, 29 Feb 2000 23:59:59 UTC",
            "Wed, 31 Dec 1969 23:59:59 UTC",
            "Mon, 01 Mar 2100 12:00:00 UTC",
        ] {
            let timestamp = parse_rfc2822_utc(date).unwrap();
            assert_eq!(format_rfc2822_utc(timestamp), date);
        }
    }

    #[test]
    fn valid_until_is_read_when_present() {
        let text = "Suite: stable\nCodename: trixie\nDate: Sat, 12 Sep 2026 07:55:41 UTC\nValid-Until: Sat, 19 Sep 2026 07:55:41 UTC\nComponents: main\nSHA256:\n";
        let release = Release::parse("InRelease", text, "trixie").unwrap();
        assert_eq!(release.valid_until, Some(1_789_199_741 + 7 * 86_400));
        let without = text.replace("Valid-Until: Sat, 19 Sep 2026 07:55:41 UTC\n", "");
        let release = Release::parse("InRelease", &without, "trixie").unwrap();
        assert_eq!(release.valid_until, None);
        let garbled = text.replace("Sat, 19 Sep", "next week");
        let error = Release::parse("InRelease", &garbled, "trixie")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("InRelease: unreadable Valid-Until"),
            "{error}"
        );
    }
}
