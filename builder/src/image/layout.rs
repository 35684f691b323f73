//! The SD card layout: where each partition goes and the identifiers it
//! carries, all derived from the board and the lock — never random.

use crate::store::sha256_hex;
use serde::Serialize;

/// Partitions start on 4 MiB boundaries (SD erase blocks).
pub const ALIGN: u64 = 4 << 20;
const MIB: u64 = 1 << 20;

/// What a partition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Boot,
    RootA,
    RootB,
    Data,
}

impl Role {
    /// MBR partition type: FAT32 (LBA) for the firmware, Linux for the rest.
    pub fn mbr_type(self) -> u8 {
        match self {
            Role::Boot => 0x0c,
            _ => 0x83,
        }
    }

    /// Filesystem label.
    pub fn label(self) -> &'static str {
        match self {
            Role::Boot => "BOOT",
            Role::RootA => "root-a",
            Role::RootB => "root-b",
            Role::Data => "data",
        }
    }
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// 1-based MBR index.
    pub number: u8,
    pub role: Role,
    pub offset: u64,
    pub size: u64,
    /// `PARTUUID` as the kernel knows MBR partitions: `<disk id>-<number>`.
    pub partuuid: String,
    /// Filesystem UUID (ext4) or volume ID (FAT), as blkid prints it.
    pub fs_uuid: String,
}

/// The whole disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub disk_id: u32,
    pub size: u64,
    pub partitions: Vec<Partition>,
}

/// Partition sizes in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub boot_mib: u64,
    pub root_mib: u64,
    pub data_mib: u64,
}

/// Deterministic identifiers for one image, derived from a seed (board name
/// and lock digest).
#[derive(Debug, Clone)]
pub struct Ids {
    seed: String,
}

impl Ids {
    pub fn new(board: &str, lock_digest: &str) -> Self {
        Ids {
            seed: format!("{board}\n{lock_digest}\n"),
        }
    }

    fn bytes(&self, purpose: &str) -> [u8; 32] {
        let hex = sha256_hex(format!("{}{purpose}", self.seed).as_bytes());
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).expect("64 hex digits");
        out
    }

    /// The MBR disk signature.
    pub fn disk_id(&self) -> u32 {
        let b = self.bytes("disk-id");
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// A UUID for `purpose`, marked as RFC 9562 version 8 (custom, derived).
    pub fn uuid(&self, purpose: &str) -> [u8; 16] {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&self.bytes(purpose)[..16]);
        uuid[6] = (uuid[6] & 0x0f) | 0x80;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        uuid
    }

    /// A FAT volume ID.
    pub fn volume_id(&self, purpose: &str) -> u32 {
        let b = self.bytes(purpose);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let h = hex::encode(uuid);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Plans boot, root A, root B and data partitions, each aligned.
pub fn plan(sizes: Sizes, ids: &Ids) -> Layout {
    let disk_id = ids.disk_id();
    let mut offset = ALIGN;
    let mut partitions = Vec::new();
    for (number, (role, mib)) in [
        (Role::Boot, sizes.boot_mib),
        (Role::RootA, sizes.root_mib),
        (Role::RootB, sizes.root_mib),
        (Role::Data, sizes.data_mib),
    ]
    .into_iter()
    .enumerate()
    {
        let size = (mib * MIB).div_ceil(ALIGN) * ALIGN;
        let fs_uuid = match role {
            Role::Boot => {
                let id = ids.volume_id("boot");
                format!("{:04X}-{:04X}", id >> 16, id & 0xffff)
            }
            other => format_uuid(&ids.uuid(other.label())),
        };
        partitions.push(Partition {
            number: number as u8 + 1,
            role,
            offset,
            size,
            partuuid: format!("{disk_id:08x}-{:02x}", number + 1),
            fs_uuid,
        });
        offset += size;
    }
    Layout {
        disk_id,
        size: offset,
        partitions,
    }
}

impl Layout {
    pub fn partition(&self, role: Role) -> &Partition {
        self.partitions
            .iter()
            .find(|p| p.role == role)
            .expect("every role is planned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_aligned_contiguous_and_identified() {
        let ids = Ids::new("rpi4", "sha256:abc");
        let layout = plan(
            Sizes {
                boot_mib: 256,
                root_mib: 1000,
                data_mib: 64,
            },
            &ids,
        );
        assert_eq!(layout.partitions.len(), 4);
        let mut end = ALIGN;
        for p in &layout.partitions {
            assert_eq!(p.offset % ALIGN, 0);
            assert_eq!(p.size % ALIGN, 0);
            assert_eq!(p.offset, end);
            end = p.offset + p.size;
        }
        assert_eq!(layout.size, end);
        assert_eq!(
            layout.partition(Role::RootA).size,
            layout.partition(Role::RootB).size
        );
        assert_eq!(layout.partition(Role::RootA).size, 1000 * MIB); // 1000 MiB is a multiple of 4 MiB
        assert_eq!(
            layout.partitions[1].partuuid,
            format!("{:08x}-02", layout.disk_id)
        );
        assert_ne!(layout.partitions[1].fs_uuid, layout.partitions[2].fs_uuid);
        assert_eq!(&layout.partitions[1].fs_uuid[14..15], "8", "UUID version 8");
    }

    #[test]
    fn ids_depend_only_on_board_and_lock() {
        let a = Ids::new("rpi4", "sha256:abc");
        assert_eq!(a.disk_id(), Ids::new("rpi4", "sha256:abc").disk_id());
        assert_ne!(a.disk_id(), Ids::new("rpi3", "sha256:abc").disk_id());
        assert_ne!(
            a.uuid("root-a"),
            Ids::new("rpi4", "sha256:abd").uuid("root-a")
        );
    }
}
