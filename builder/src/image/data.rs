//! What the data partition holds when the card is first written: RAUC's
//! status of root slot A and A's block hash index, so a device's first
//! adaptive update reads the index instead of hashing the whole active slot
//! (RAUC stores the index of every slot it writes; only the factory slot
//! would otherwise have none). Pure: slot A's digest in, entries out.
//!
//! RAUC finds the index under `<data-directory>/slot.<slot>/hash-<sha256>/`,
//! `<sha256>` being the slot's checksum from its status file; a status
//! without one makes it delete the directory, so both are written. A stale
//! index costs nothing but downloads: RAUC re-hashes every chunk it reuses.

use crate::device::{RAUC_DATA_DIR, ROOT_SLOTS};
use crate::slot_digest::SlotDigest;
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
    let slot_dir = format!("{rauc}/slot.{}", ROOT_SLOTS[0]);
    let hash_dir = format!("{slot_dir}/hash-{}", slot_a.sha256);
    vec![
        Entry::dir("", 0o755, time),
        Entry::dir(rauc, 0o700, time),
        Entry::file(
            format!("{rauc}/central.raucs"),
            0o644,
            time,
            FileData::Bytes(status_file(slot_a).into_bytes()),
        ),
        Entry::dir(&slot_dir, 0o700, time),
        Entry::dir(&hash_dir, 0o700, time),
        Entry::file(
            format!("{hash_dir}/block-hash-index"),
            0o644,
            time,
            FileData::Bytes(slot_a.index.clone()),
        ),
    ]
}

/// RAUC's central status file (`central.raucs`) as RAUC writes it after an
/// install: slot A good, with the checksum of what it holds.
fn status_file(slot_a: &SlotDigest) -> String {
    format!(
        "[slot.{}]\nstatus=ok\nsha256={}\nsize={}\n",
        ROOT_SLOTS[0], slot_a.sha256, slot_a.size
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot_digest::{CHUNK, digest};

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
        assert_eq!(
            paths,
            [
                "".to_string(),
                "rauc".into(),
                "rauc/central.raucs".into(),
                "rauc/slot.rootfs.0".into(),
                hash_dir.clone(),
                format!("{hash_dir}/block-hash-index"),
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
        let status = String::from_utf8(bytes(2)).unwrap();
        assert_eq!(
            status,
            format!(
                "[slot.rootfs.0]\nstatus=ok\nsha256={}\nsize={}\n",
                slot_a.sha256,
                3 * CHUNK
            )
        );
    }
}
