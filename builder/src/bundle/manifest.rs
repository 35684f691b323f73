//! RAUC's bundle manifest (`manifest.raucm`, a key file): what the bundle
//! is for, its image, and for a verity bundle the hash tree's parameters.

use std::fmt::Write as _;

/// RAUC's adaptive method for block devices: a hash per 4 KiB chunk.
pub const ADAPTIVE_METHOD: &str = "block-hash-index";

/// The image a bundle carries for the root slot class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// File name inside the bundle; the `.ext4` suffix makes RAUC copy it
    /// raw onto an `ext4` slot.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    /// Whether the bundle carries `<filename>.block-hash-index` (SHA-256
    /// of every 4 KiB chunk), so a streaming install fetches only the
    /// chunks the device's slots do not already hold.
    pub adaptive: bool,
}

/// The dm-verity parameters, known once the payload is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verity {
    /// Root hash, hex.
    pub hash: String,
    /// Salt, hex.
    pub salt: String,
    /// Bytes of hash tree after the payload.
    pub size: u64,
}

/// A bundle's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Must equal the device's `compatible` (`vinyl-<board>`).
    pub compatible: String,
    pub version: String,
    /// Identifies the exact build: lock and tree digests.
    pub build: String,
    pub description: String,
    /// The slot class the image goes to (`rootfs`).
    pub slot_class: String,
    pub image: Image,
    /// Absent in the copy inside the payload, present in the signed one.
    pub verity: Option<Verity>,
}

impl Manifest {
    /// The key-file text, in a fixed order.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "[update]");
        let _ = writeln!(text, "compatible={}", self.compatible);
        let _ = writeln!(text, "version={}", self.version);
        let _ = writeln!(text, "build={}", self.build);
        let _ = writeln!(text, "description={}", self.description);
        let _ = writeln!(text, "\n[bundle]\nformat=verity");
        if let Some(verity) = &self.verity {
            let _ = writeln!(text, "verity-hash={}", verity.hash);
            let _ = writeln!(text, "verity-salt={}", verity.salt);
            let _ = writeln!(text, "verity-size={}", verity.size);
        }
        let _ = writeln!(text, "\n[image.{}]", self.slot_class);
        let _ = writeln!(text, "filename={}", self.image.filename);
        let _ = writeln!(text, "size={}", self.image.size);
        let _ = writeln!(text, "sha256={}", self.image.sha256);
        if self.image.adaptive {
            // A string list, written as GLib's key files write one.
            let _ = writeln!(text, "adaptive={};", ADAPTIVE_METHOD);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_a_rauc_key_file() {
        let mut manifest = Manifest {
            compatible: "vinyl-rpi4".into(),
            version: "1.2.0".into(),
            build: "lock-abc tree-def".into(),
            description: "vinyl rpi4".into(),
            slot_class: "rootfs".into(),
            image: Image {
                filename: "rootfs.ext4".into(),
                size: 4096,
                sha256: "00".repeat(32),
                adaptive: true,
            },
            verity: None,
        };
        let inner = manifest.to_text();
        assert!(inner.starts_with("[update]\ncompatible=vinyl-rpi4\nversion=1.2.0\n"));
        assert!(inner.contains(
            "\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.ext4\nsize=4096\n"
        ));
        assert!(inner.ends_with("\nadaptive=block-hash-index;\n"));
        manifest.verity = Some(Verity {
            hash: "11".repeat(32),
            salt: "22".repeat(32),
            size: 8192,
        });
        let signed = manifest.to_text();
        assert!(signed.contains(&format!(
            "format=verity\nverity-hash={}\nverity-salt={}\nverity-size=8192\n",
            "11".repeat(32),
            "22".repeat(32)
        )));
    }
}
