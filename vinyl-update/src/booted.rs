//! What booted, from `/run/vinyl/boot.env`: the initramfs writes it
//! (`SLOT=a`, `TRIAL=0`, `ROOT=…`), one `KEY=value` a line.

use ab_state::Slot;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// The running system's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booted {
    /// The slot the initramfs mounted.
    pub slot: Slot,
    /// Whether the boot script booted it as a trial (`vinyl.trial=1`).
    pub trial: bool,
}

/// Reads and parses the boot environment file.
pub fn read(path: &Path) -> Result<Booted> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {} (the initramfs writes it at boot; VINYL_BOOT_ENV names another file)",
            path.display()
        )
    })?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

/// The value of `key` in a `KEY=value` file (boot.env, the image's release
/// file); the last assignment wins, as in a shell.
pub fn env_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .next_back()
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<Booted> {
    let value = |key: &str| env_value(text, key);
    let slot = match value("SLOT") {
        Some("a") => Slot::A,
        Some("b") => Slot::B,
        Some(other) => bail!("SLOT={other:?}: expected a or b"),
        None => bail!("no SLOT= line"),
    };
    let trial = match value("TRIAL") {
        Some("1") => true,
        Some("0") | Some("") | None => false,
        Some(other) => bail!("TRIAL={other:?}: expected 0 or 1"),
    };
    Ok(Booted { slot, trial })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_initramfs_writes() {
        let text = "SLOT=b\nTRIAL=1\nROOT=PARTUUID=1234-03\nROOT_DEVICE=/dev/vda3\nBOOT_DEVICE=\n";
        assert_eq!(
            parse(text).unwrap(),
            Booted {
                slot: Slot::B,
                trial: true
            }
        );
        assert!(!parse("SLOT=a\n").unwrap().trial);
    }

    #[test]
    fn bad_files_are_named() {
        assert_eq!(parse("TRIAL=0\n").unwrap_err().to_string(), "no SLOT= line");
        assert_eq!(
            parse("SLOT=c\n").unwrap_err().to_string(),
            "SLOT=\"c\": expected a or b"
        );
        assert!(parse("SLOT=a\nTRIAL=yes\n").is_err());
    }
}
