//! Checked value types for settings a user gives, in a board file or on the
//! command line alike: each is parsed once, with an error that says what a
//! valid value looks like, and is valid from then on. Names of recipes,
//! overlays and boards are plain names, so they can't reach outside their
//! folders (`overlay = ["../../somewhere"]`). Board files
//! deserialise straight into them (TOML errors then carry the line); the
//! CLI parses flags into the same types.

use serde::Deserialize;
use std::fmt;

/// A hostname the device can announce by mDNS: one DNS label.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Hostname(String);

impl Hostname {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Hostname {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if valid {
            Ok(Hostname(name))
        } else {
            Err("use 1 to 63 letters, digits and inner hyphens (it becomes <name>.local)".into())
        }
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One OpenSSH public key line, as in `authorized_keys` (options allowed:
/// `from="…" ssh-ed25519 AAAA… comment`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SshPublicKey(String);

/// Key types OpenSSH accepts in `authorized_keys`.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

impl SshPublicKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The keys of an `authorized_keys` text (comments and blank lines
    /// dropped); an error names the line that is not a public key.
    pub fn parse_file(text: &str) -> Result<Vec<SshPublicKey>, String> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = SshPublicKey::try_from(line.to_string())
                .map_err(|e| format!("line {}: {e}", number + 1))?;
            keys.push(key);
        }
        Ok(keys)
    }
}

impl TryFrom<String> for SshPublicKey {
    type Error = String;
    fn try_from(line: String) -> Result<Self, String> {
        let line = line.trim().to_string();
        if line.contains("PRIVATE KEY") {
            return Err("this is a private key; give the public key (the .pub file)".into());
        }
        // A line may start with options (`from="…" ssh-ed25519 AAAA…`).
        let words: Vec<&str> = line.split_whitespace().collect();
        let typed = words
            .windows(2)
            .any(|w| SSH_KEY_TYPES.contains(&w[0]) && w[1].starts_with("AAAA"));
        if typed && !line.contains('\n') {
            Ok(SshPublicKey(line))
        } else {
            Err("not an OpenSSH public key (expected `ssh-ed25519 AAAA… comment`)".into())
        }
    }
}

/// A WPA2/WPA3 personal passphrase: 8 to 63 printable ASCII characters,
/// or a 64-digit hex key.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WifiPassphrase(String);

impl WifiPassphrase {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WifiPassphrase {
    type Error = String;
    fn try_from(psk: String) -> Result<Self, String> {
        let hex_key = psk.len() == 64 && psk.chars().all(|c| c.is_ascii_hexdigit());
        let passphrase =
            (8..=63).contains(&psk.len()) && psk.chars().all(|c| (' '..='~').contains(&c));
        if hex_key || passphrase {
            Ok(WifiPassphrase(psk))
        } else {
            Err("a WPA passphrase is 8 to 63 printable ASCII characters on one line (or a 64-digit hex key)".into())
        }
    }
}

/// Never printed: a passphrase in a log or an error would leak it.
impl fmt::Debug for WifiPassphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WifiPassphrase(…)")
    }
}

/// Whether `name` is a plain name: `[A-Za-z0-9][A-Za-z0-9._-]*`. It names
/// one file or directory in its folder: never `.`, `..` or a path.
pub fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// What a plain name looks like, for errors.
pub const PLAIN_NAME: &str =
    "a plain name (letters, digits, `.`, `_` and `-`, starting with a letter or digit; no `/`)";

/// Deserialises a checked string type while the value's own deserializer
/// is still on it, so a TOML error points at the value itself (in an
/// array, at the element rather than at the whole array, as `try_from`
/// would).
fn deserialize_checked<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<String, Error = String>,
{
    struct Checked<T>(std::marker::PhantomData<T>);
    impl<T: TryFrom<String, Error = String>> serde::de::Visitor<'_> for Checked<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
            T::try_from(text.to_string()).map_err(E::custom)
        }
    }
    deserializer.deserialize_string(Checked(std::marker::PhantomData))
}

/// The name of a recipe: the file `recipes/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeName(String);

impl<'de> Deserialize<'de> for RecipeName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked(deserializer)
    }
}

impl RecipeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RecipeName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        if is_plain_name(&name) {
            Ok(RecipeName(name))
        } else {
            Err(format!(
                "recipe {name:?} is not {PLAIN_NAME}: write the name of a file recipes/<name>.toml (without `.toml`), not a path"
            ))
        }
    }
}

impl fmt::Display for RecipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A release version (`[update] version`, `--image-version`): what
/// bundles, the channel file and file names carry. A digit first, then
/// letters, digits and `.+~_-` (so it is safe in a file name, a URL and
/// RAUC's manifest), at most 64 characters: `2026.12.04`, `1.4.0-rc1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(String);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked(deserializer)
    }
}

impl Version {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Version {
    type Error = String;
    fn try_from(version: String) -> Result<Self, String> {
        let good = version.len() <= 64
            && version.starts_with(|c: char| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~_-".contains(c));
        if good {
            Ok(Version(version))
        } else {
            Err(format!(
                "version {version:?} must start with a digit and hold only letters, digits and . + ~ _ - (at most 64), e.g. 2026.12.04 or 1.4.0"
            ))
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of an overlay: the directory `overlay/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayName(String);

impl<'de> Deserialize<'de> for OverlayName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked(deserializer)
    }
}

impl OverlayName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OverlayName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        if is_plain_name(&name) {
            Ok(OverlayName(name))
        } else {
            Err(format!(
                "overlay {name:?} is not {PLAIN_NAME}: write the name of a directory overlay/<name>/, not a path"
            ))
        }
    }
}

impl fmt::Display for OverlayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute `http://` or `https://` URL with a host, from `what` (the
/// flag or board key it came from, named in the error with `example`).
pub fn http_url(what: &str, text: &str, example: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(text).map_err(|e| {
        anyhow::anyhow!("{what} {text:?}: {e}; give an absolute URL such as {example}")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        anyhow::bail!(
            "{what} {text:?}: give an http:// or https:// URL with a host, such as {example}"
        );
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGv5 user@host";

    #[test]
    fn plain_names_stay_in_their_folder() {
        for good in ["base", "test-shell", "vinyl_streamd", "a.b", "0", "X"] {
            assert!(is_plain_name(good), "{good:?}");
            assert_eq!(
                RecipeName::try_from(good.to_string()).unwrap().as_str(),
                good
            );
            assert_eq!(
                OverlayName::try_from(good.to_string()).unwrap().as_str(),
                good
            );
        }
        for good in ["2026.12.04", "1.4.0-rc1", "3", "1.0+b1~x_y"] {
            assert_eq!(Version::try_from(good.to_string()).unwrap().as_str(), good);
        }
        for bad in ["", "v1", "1/2", "1 2", "1.0\n", "ä1", &"1".repeat(65)] {
            let error = Version::try_from(bad.to_string()).unwrap_err();
            assert!(error.contains("must start with a digit"), "{error}");
        }
        for bad in [
            "", ".", "..", "../x", "a/b", "/etc", ".hidden", "-x", "a b", "ä",
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
            let error = OverlayName::try_from(bad.to_string()).unwrap_err();
            assert!(error.contains("overlay/<name>/"), "{error}");
            let error = RecipeName::try_from(bad.to_string()).unwrap_err();
            assert!(error.contains("recipes/<name>.toml"), "{error}");
        }
    }

    #[test]
    fn hostnames_are_one_dns_label() {
        for good in ["turntable", "deck-2", "a"] {
            assert_eq!(Hostname::try_from(good.to_string()).unwrap().as_str(), good);
        }
        for bad in ["", "my_pi", "-x", "x-", "a.b", &"x".repeat(64)] {
            assert!(Hostname::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_files_name_the_bad_line() {
        let keys = SshPublicKey::parse_file(&format!("# mine\n{KEY}\n\n")).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].as_str(), KEY);
        let error = SshPublicKey::parse_file(&format!("{KEY}\nhello\n")).unwrap_err();
        assert!(
            error.starts_with("line 2: not an OpenSSH public key"),
            "{error}"
        );
        let error = SshPublicKey::parse_file("-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap_err();
        assert!(
            error.starts_with("line 1: this is a private key"),
            "{error}"
        );
        let with_options = format!("from=\"fd00::/8\" {KEY}");
        assert_eq!(
            SshPublicKey::try_from(with_options.clone())
                .unwrap()
                .as_str(),
            with_options
        );
    }

    #[test]
    fn passphrases_follow_wpa_rules_and_stay_secret() {
        assert!(WifiPassphrase::try_from("short".to_string()).is_err());
        assert!(WifiPassphrase::try_from("tab\tinside!".to_string()).is_err());
        assert!(WifiPassphrase::try_from("a".repeat(64)).is_ok());
        assert!(WifiPassphrase::try_from("g".repeat(64)).is_err());
        let psk = WifiPassphrase::try_from("correct horse".to_string()).unwrap();
        assert_eq!(psk.as_str(), "correct horse");
        assert!(!format!("{psk:?}").contains("horse"));
    }
}
