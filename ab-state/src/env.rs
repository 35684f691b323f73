//! U-Boot environment files as `env export -c -s SIZE` writes them and
//! `env import -c` reads them: a little-endian CRC32 of the rest, then
//! NUL-terminated `key=value` entries (sorted), zero-padded to SIZE. The A/B
//! boot state lives in such files on the FAT partition; U-Boot rejects a torn
//! or corrupted one ("bad CRC"), so the boot script can fall back to the
//! other copy.

use std::collections::BTreeMap;

/// The size the state files are created with and rewritten at (U-Boot only
/// overwrites them, never allocates: FAT allocation has failed on Pis).
pub const STATE_FILE_SIZE: usize = 0x1000;

/// A set of environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(pub BTreeMap<String, String>);

impl Env {
    /// The binary form, exactly `size` bytes.
    pub fn to_bytes(&self, size: usize) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        for (key, value) in &self.0 {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(format!("invalid environment entry {key:?}"));
            }
            body.extend_from_slice(key.as_bytes());
            body.push(b'=');
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        // An empty entry ends the list.
        body.push(0);
        if body.len() + 4 > size {
            return Err(format!(
                "environment needs {} bytes, file holds {size}",
                body.len() + 4
            ));
        }
        body.resize(size - 4, 0);
        let mut bytes = crc32fast::hash(&body).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        Ok(bytes)
    }

    /// Parses a file written by U-Boot or [`Env::to_bytes`], checking the CRC.
    pub fn from_bytes(bytes: &[u8]) -> Result<Env, String> {
        if bytes.len() < 5 {
            return Err("environment file too short".into());
        }
        let (crc, body) = bytes.split_at(4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err("bad CRC: torn or corrupted environment file".into());
        }
        let mut env = BTreeMap::new();
        for entry in body.split(|b| *b == 0).take_while(|e| !e.is_empty()) {
            let text = std::str::from_utf8(entry).map_err(|e| e.to_string())?;
            let (key, value) = text
                .split_once('=')
                .ok_or_else(|| format!("entry without '=': {text:?}"))?;
            env.insert(key.to_string(), value.to_string());
        }
        Ok(Env(env))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Env {
        Env(BTreeMap::from([
            ("slot".to_string(), "a".to_string()),
            ("seq".to_string(), "7".to_string()),
            ("tries".to_string(), "0".to_string()),
        ]))
    }

    #[test]
    fn layout_is_crc_then_sorted_entries_then_zeros() {
        let bytes = state().to_bytes(STATE_FILE_SIZE).unwrap();
        assert_eq!(bytes.len(), STATE_FILE_SIZE);
        assert_eq!(&bytes[4..30], b"seq=7\0slot=a\0tries=0\0\0\0\0\0\0");
        assert_eq!(
            u32::from_le_bytes(bytes[..4].try_into().unwrap()),
            crc32fast::hash(&bytes[4..])
        );
        assert_eq!(Env::from_bytes(&bytes).unwrap(), state());
    }

    #[test]
    fn torn_writes_and_overflows_are_rejected() {
        let mut bytes = state().to_bytes(STATE_FILE_SIZE).unwrap();
        bytes[9] = b'b'; // slot=b without a new CRC: a torn write
        assert!(Env::from_bytes(&bytes).unwrap_err().starts_with("bad CRC"));
        let big = Env(BTreeMap::from([("k".to_string(), "v".repeat(5000))]));
        assert!(
            big.to_bytes(STATE_FILE_SIZE)
                .unwrap_err()
                .contains("file holds 4096")
        );
        let bad = Env(BTreeMap::from([("a=b".to_string(), "c".to_string())]));
        assert!(bad.to_bytes(STATE_FILE_SIZE).is_err());
    }
}
