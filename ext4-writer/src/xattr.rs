//! Extended attributes: name prefixes, POSIX ACL conversion and the in-inode
//! and xattr-block encodings. Pure.

use crate::checksum::{crc32c_raw, xattr_block_hash, xattr_entry_hash};
use crate::geometry::{EXTRA_ISIZE, INODE_SIZE};

const MAGIC: u32 = 0xEA02_0000;
/// Bytes of xattr space in a 256-byte inode with 32 extra bytes, after the magic.
pub const IN_INODE_SPACE: usize = INODE_SIZE as usize - 128 - EXTRA_ISIZE as usize - 4;
const BLOCK_HEADER: usize = 32;
const ENTRY_HEADER: usize = 16;

/// One attribute as stored: name index, name without prefix, on-disk value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Xattr {
    pub index: u8,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// Name prefixes ext4 stores as an index (exact names first).
const PREFIXES: &[(&[u8], u8, bool)] = &[
    (b"system.posix_acl_access", 2, true),
    (b"system.posix_acl_default", 3, true),
    (b"system.richacl", 8, true),
    (b"user.", 1, false),
    (b"trusted.", 4, false),
    (b"security.", 6, false),
    (b"system.", 7, false),
];

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Validates full xattr names, converts ACLs and sorts as ext4 wants
/// (by index, name length, name).
pub fn normalize(attrs: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Xattr>, String> {
    let mut out = Vec::with_capacity(attrs.len());
    for (full, value) in attrs {
        let (prefix, index, exact) = PREFIXES
            .iter()
            .find(|(p, _, exact)| {
                if *exact {
                    full == p
                } else {
                    full.starts_with(p)
                }
            })
            .ok_or_else(|| {
                format!(
                    "xattr {:?} has no namespace ext4 stores",
                    crate::lossy(full)
                )
            })?;
        let name = full[prefix.len()..].to_vec();
        if !exact && name.is_empty() {
            return Err(format!("xattr {:?} has an empty name", crate::lossy(full)));
        }
        if name.len() > 255 {
            return Err("xattr name longer than 255 bytes".into());
        }
        let value = if matches!(index, 2 | 3) {
            acl_to_disk(value)?
        } else {
            value.clone()
        };
        out.push(Xattr {
            index: *index,
            name,
            value,
        });
    }
    out.sort_by(|a, b| (a.index, a.name.len(), &a.name).cmp(&(b.index, b.name.len(), &b.name)));
    if out
        .windows(2)
        .any(|w| w[0].index == w[1].index && w[0].name == w[1].name)
    {
        return Err("xattr listed twice".into());
    }
    Ok(out)
}

/// Converts a POSIX ACL from the VFS xattr format (version 2, 8-byte entries)
/// to ext4's (version 1, 4-byte entries where no id is needed). Values
/// already in ext4's format pass through.
fn acl_to_disk(v: &[u8]) -> Result<Vec<u8>, String> {
    let version = v
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    match version {
        Some(1) => return Ok(v.to_vec()),
        Some(2) if (v.len() - 4).is_multiple_of(8) => {}
        _ => return Err("POSIX ACL xattr is neither version 1 nor 2".into()),
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in v[4..].chunks(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[..4]);
        match tag {
            1 | 4 | 0x10 | 0x20 => {}
            2 | 8 => out.extend_from_slice(&e[4..8]),
            _ => return Err(format!("POSIX ACL has unknown tag {tag:#x}")),
        }
    }
    Ok(out)
}

fn entries_size(attrs: &[Xattr]) -> usize {
    attrs
        .iter()
        .map(|a| ENTRY_HEADER + pad4(a.name.len()) + pad4(a.value.len()))
        .sum::<usize>()
        + 4 // terminating zero word
}

/// Whether all attributes fit inside the inode.
pub fn fits_in_inode(attrs: &[Xattr]) -> bool {
    entries_size(attrs) <= IN_INODE_SPACE
}

/// Whether all attributes fit in one block of `block_size` bytes.
pub fn fits_in_block(attrs: &[Xattr], block_size: usize) -> bool {
    BLOCK_HEADER + entries_size(attrs) <= block_size
}

/// Writes entries at `buf[first..]` and values down from the end of `buf`;
/// value offsets count from `base`. Returns the entry hashes.
fn encode_entries(attrs: &[Xattr], buf: &mut [u8], first: usize, base: usize) -> Vec<u32> {
    let mut pos = first;
    let mut vend = buf.len();
    let mut hashes = Vec::with_capacity(attrs.len());
    for a in attrs {
        let offs = if a.value.is_empty() {
            0
        } else {
            vend -= pad4(a.value.len());
            buf[vend..vend + a.value.len()].copy_from_slice(&a.value);
            vend - base
        };
        let hash = xattr_entry_hash(&a.name, &a.value);
        let e = &mut buf[pos..];
        e[0] = a.name.len() as u8;
        e[1] = a.index;
        e[2..4].copy_from_slice(&(offs as u16).to_le_bytes());
        e[4..8].copy_from_slice(&0u32.to_le_bytes());
        e[8..12].copy_from_slice(&(a.value.len() as u32).to_le_bytes());
        e[12..16].copy_from_slice(&hash.to_le_bytes());
        e[16..16 + a.name.len()].copy_from_slice(&a.name);
        pos += ENTRY_HEADER + pad4(a.name.len());
        hashes.push(hash);
    }
    hashes
}

/// Encodes the in-inode xattr area (everything after `i_extra_isize`).
pub fn encode_in_inode(attrs: &[Xattr], area: &mut [u8]) {
    debug_assert!(fits_in_inode(attrs) && area.len() == IN_INODE_SPACE + 4);
    area[..4].copy_from_slice(&MAGIC.to_le_bytes());
    // Value offsets in the inode are relative to the first entry.
    encode_entries(attrs, area, 4, 4);
}

/// Most inodes that may share one xattr block (the kernel's limit).
pub const MAX_REFCOUNT: u32 = 1024;

/// Encodes an xattr block stored at block number `block`, shared by
/// `refcount` inodes.
pub fn encode_block(attrs: &[Xattr], block: u64, refcount: u32, fs_seed: u32, buf: &mut [u8]) {
    buf[..4].copy_from_slice(&MAGIC.to_le_bytes());
    buf[4..8].copy_from_slice(&refcount.to_le_bytes());
    buf[8..12].copy_from_slice(&1u32.to_le_bytes()); // blocks
    let hashes = encode_entries(attrs, buf, BLOCK_HEADER, 0);
    buf[12..16].copy_from_slice(&xattr_block_hash(hashes).to_le_bytes());
    let csum = crc32c_raw(crc32c_raw(fs_seed, &block.to_le_bytes()), buf);
    buf[16..20].copy_from_slice(&csum.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_sorting() {
        let attrs = vec![
            (b"user.zz".to_vec(), b"1".to_vec()),
            (b"security.capability".to_vec(), vec![0; 20]),
            (b"user.a".to_vec(), b"2".to_vec()),
        ];
        let n = normalize(&attrs).unwrap();
        let keys: Vec<(u8, &[u8])> = n.iter().map(|x| (x.index, &x.name[..])).collect();
        assert_eq!(keys, vec![(1, &b"a"[..]), (1, b"zz"), (6, b"capability")]);
        assert!(normalize(&[(b"bogus.x".to_vec(), vec![])]).is_err());
        assert!(fits_in_inode(&n[2..])); // security.capability alone: 52 bytes
        assert!(!fits_in_inode(&n)); // all three: 100 > 92
    }

    #[test]
    fn acl_conversion() {
        // user::rwx, user:1000:r-x, group::r-x, mask::r-x, other::r-x
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 7u16, u32::MAX),
            (2, 5, 1000),
            (4, 5, u32::MAX),
            (0x10, 5, u32::MAX),
            (0x20, 5, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let d = acl_to_disk(&v).unwrap();
        assert_eq!(d.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(&d[..4], &1u32.to_le_bytes());
        assert_eq!(&d[12..16], &1000u32.to_le_bytes());
    }
}
