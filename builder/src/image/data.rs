//! What the data partition holds when the card is first written: RAUC's
//! status of root slot A and A's block hash index, so a device's first
//! adaptive update reads the index instead of hashing the whole active slot
//! (RAUC stores the index of every slot it writes; only the factory slot
//! would otherwise have none). Slot B, never written, gets a status and an
//! index of one empty chunk: RAUC reads the target slot's index to reuse
//! what the slot already holds, and without one hashes all of it (1 GiB of
//! nothing on a new card) before the first update; an index shorter than
//! the slot is one RAUC accepts ("does not cover complete data range"),
//! and an empty chunk is one it never reads back. Pure: slot A's digest in,
//! entries out.
//!
//! RAUC finds the index under `<data-directory>/slot.<slot>/hash-<sha256>/`,
//! `<sha256>` being the slot's checksum from its status file; a status
//! without one makes it delete the directory, so both are written. A stale
//! index costs nothing but downloads: RAUC re-hashes every chunk it reuses.

use crate::device::{RAUC_DATA_DIR, ROOT_SLOTS};
use crate::slot_digest::{CHUNK, SlotDigest, digest};
use ext4_writer::{Entry, FileData, Timestamp};

/// Where the data partition is mounted on the device.
pub const MOUNT_POINT: &str = "/data";

/// The data partition's entries (root directory first), seeded from root
/// slot A's digest. Modes as RAUC would create them.
pub fn entries(slot_a: &SlotDigest, epoch: i64) -> Vec<Entry> {
    let time = Timestamp::from_secs(epoch);
    let rauc = RAUC_DATA_DIR
        .strip_prefix(MOUNT_POINT)
        .and_then(|p| p.strip_prefix('/'))
        .expect("RAUC's data directory is on the data partition");
    let mut entries = vec![
        Entry::dir("", 0o755, time),
        Entry::dir(rauc, 0o700, time),
        Entry::file(
            format!("{rauc}/central.raucs"),
            0o644,
            time,
            FileData::Bytes(status_file(slot_a, &empty_slot()).into_bytes()),
        ),
    ];
    for (slot, digest) in ROOT_SLOTS.iter().zip([slot_a, &empty_slot()]) {
        let slot_dir = format!("{rauc}/slot.{slot}");
        let hash_dir = format!("{slot_dir}/hash-{}", digest.sha256);
        entries.extend([
            Entry::dir(&slot_dir, 0o700, time),
            Entry::dir(&hash_dir, 0o700, time),
            Entry::file(
                format!("{hash_dir}/block-hash-index"),
                0o644,
                time,
                FileData::Bytes(digest.index.clone()),
            ),
        ]);
    }
    entries
}

/// What slot B is said to hold: one empty chunk.
fn empty_slot() -> SlotDigest {
    digest(&[0u8; CHUNK][..]).expect("hashing memory")
}

/// RAUC's central status file (`central.raucs`) as RAUC writes it after an
/// install: slot A good, with the checksum of what it holds; slot B only
/// its checksum (no install, no status).
fn status_file(slot_a: &SlotDigest, slot_b: &SlotDigest) -> String {
    format!(
        "[slot.{}]\nstatus=ok\nsha256={}\nsize={}\n\n[slot.{}]\nsha256={}\nsize={}\n",
        ROOT_SLOTS[0], slot_a.sha256, slot_a.size, ROOT_SLOTS[1], slot_b.sha256, slot_b.size
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_a_status_and_index_where_rauc_looks_for_them() {
        let slot = vec![5u8; 3 * CHUNK];
        let slot_a = digest(&slot[..]).unwrap();
        let entries = entries(&slot_a, 1_700_000_000);
        let paths: Vec<String> = entries
            .iter()
            .map(|e| String::from_utf8(e.path.clone()).unwrap())
            .collect();
        let hash_dir = format!("rauc/slot.rootfs.0/hash-{}", slot_a.sha256);
        let empty = empty_slot();
        let hash_dir_b = format!("rauc/slot.rootfs.1/hash-{}", empty.sha256);
        assert_eq!(
            paths,
            [
                "".to_string(),
                "rauc".into(),
                "rauc/central.raucs".into(),
                "rauc/slot.rootfs.0".into(),
                hash_dir.clone(),
                format!("{hash_dir}/block-hash-index"),
                "rauc/slot.rootfs.1".into(),
                hash_dir_b.clone(),
                format!("{hash_dir_b}/block-hash-index"),
            ]
        );
        let bytes = |i: usize| match &entries[i].kind {
            ext4_writer::Kind::File {
                data: FileData::Bytes(b),
                ..
            } => b.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(bytes(5), slot_a.index);
        assert_eq!(bytes(5).len(), 3 * 32);
        // Slot B: one chunk, the empty one RAUC writes without reading.
        assert_eq!(bytes(8), empty.index);
        assert_eq!(bytes(8).len(), 32);
        assert_eq!(
            empty.sha256,
            "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7"
        );
        let status = String::from_utf8(bytes(2)).unwrap();
        assert_eq!(
            status,
            format!(
                "[slot.rootfs.0]\nstatus=ok\nsha256={}\nsize={}\n\n[slot.rootfs.1]\nsha256={}\nsize=4096\n",
                slot_a.sha256,
                3 * CHUNK,
                empty.sha256
            )
        );
    }
}
