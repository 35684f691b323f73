//! What RAUC installed into each slot: its status file
//! (`/data/rauc/central.raucs`, a key file with one `[slot.rootfs.N]` group
//! per slot it wrote), read for `vinyl-update status`. A slot RAUC never
//! wrote (slot a of a freshly flashed card) has no entry: the image seeds
//! slot a's group with its checksum only (for RAUC's block hash index), and
//! a group without `installed.timestamp` is not an install.

use ab_state::Slot;
use std::collections::BTreeMap;

impl Installed {
    /// Whether RAUC made the slot the next boot after it last wrote it
    /// (an install a power cut interrupted in between never was).
    pub fn was_activated(&self) -> bool {
        match (&self.installed, &self.activated) {
            // RAUC's timestamps share one format: text order is time order.
            (Some(installed), Some(activated)) => activated >= installed,
            _ => false,
        }
    }
}

/// One slot's entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    pub version: Option<String>,
    pub build: Option<String>,
    /// When RAUC wrote the slot (ISO 8601, as RAUC records it).
    pub installed: Option<String>,
    /// When RAUC last made it the next boot (after writing it).
    pub activated: Option<String>,
    /// RAUC's result of the write (`ok` or an error).
    pub status: Option<String>,
}

/// The entries of RAUC's status file at `path`; none when it is absent
/// (until RAUC's first install) or unreadable.
pub fn read(path: &std::path::Path) -> BTreeMap<Slot, Installed> {
    std::fs::read_to_string(path)
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// The entries by slot: `slot.rootfs.0` is slot a and `slot.rootfs.1` slot
/// b, as the builder's `system.conf` numbers them. Unknown groups and keys
/// are ignored.
pub fn parse(text: &str) -> BTreeMap<Slot, Installed> {
    let mut slots = BTreeMap::new();
    let mut current: Option<Slot> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(group) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = match group {
                "slot.rootfs.0" => Some(Slot::A),
                "slot.rootfs.1" => Some(Slot::B),
                _ => None,
            };
            continue;
        }
        let (Some(slot), Some((key, value))) = (current, line.split_once('=')) else {
            continue;
        };
        let entry: &mut Installed = slots.entry(slot).or_default();
        let value = Some(value.trim().to_string());
        match key.trim() {
            "bundle.version" => entry.version = value,
            "bundle.build" => entry.build = value,
            "installed.timestamp" => entry.installed = value,
            "activated.timestamp" => entry.activated = value,
            "status" => entry.status = value,
            _ => {}
        }
    }
    slots.retain(|_, entry| entry.installed.is_some());
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rauc_status_groups_by_slot() {
        let text = "[system]\nboot-id=x\n\n[slot.rootfs.1]\nbundle.compatible=vinyl-qemu-virt\n\
                    bundle.version=2026.11.21\nbundle.build=lock sha256:aa tree sha256:bb\n\
                    status=ok\nsha256=00\ninstalled.timestamp=2026-12-02T17:30:00Z\ninstalled.count=1\n";
        let slots = parse(text);
        assert_eq!(slots.len(), 1);
        let b = &slots[&Slot::B];
        assert_eq!(b.version.as_deref(), Some("2026.11.21"));
        assert_eq!(b.build.as_deref(), Some("lock sha256:aa tree sha256:bb"));
        assert_eq!(b.status.as_deref(), Some("ok"));
        assert_eq!(b.installed.as_deref(), Some("2026-12-02T17:30:00Z"));
        assert!(parse("").is_empty());
    }

    #[test]
    fn the_images_seeded_slot_a_status_is_not_an_install() {
        let text = "[slot.rootfs.0]\nstatus=ok\nsha256=ab\nsize=4096\n";
        assert!(parse(text).is_empty());
    }
}
