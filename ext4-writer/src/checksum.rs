//! Checksums used by ext4: crc32c (metadata_csum) and the xattr hashes.

/// crc32c as the kernel's `ext4_chksum` computes it: no final inversion, so
/// results can be chained by passing one call's result as the next `seed`.
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    // The crate implements the standard (pre- and post-inverted) CRC; undo both.
    !crc32c::crc32c_append(!seed, data)
}

/// Seed for all metadata checksums: crc32c over the filesystem UUID.
pub fn fs_seed(uuid: &[u8; 16]) -> u32 {
    crc32c_raw(!0, uuid)
}

/// Per-inode seed used by inode, extent-block and directory-block checksums.
pub fn inode_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    let s = crc32c_raw(fs_seed, &ino.to_le_bytes());
    crc32c_raw(s, &generation.to_le_bytes())
}

/// Hash of one xattr entry (name and, for values stored in place, the value).
pub fn xattr_entry_hash(name: &[u8], value: &[u8]) -> u32 {
    let mut hash: u32 = 0;
    for &c in name {
        // The kernel hashes `char`s; names are ASCII in practice, where signed
        // and unsigned agree (e2fsck accepts either variant).
        hash = (hash << 5) ^ (hash >> 27) ^ u32::from(c);
    }
    for word in value.chunks(4) {
        let mut w = [0u8; 4];
        w[..word.len()].copy_from_slice(word);
        hash = (hash << 16) ^ (hash >> 16) ^ u32::from_le_bytes(w);
    }
    hash
}

/// Hash of an xattr block, combining the entry hashes.
pub fn xattr_block_hash(entry_hashes: impl IntoIterator<Item = u32>) -> u32 {
    let mut hash: u32 = 0;
    for h in entry_hashes {
        if h == 0 {
            return 0;
        }
        hash = (hash << 16) ^ (hash >> 16) ^ h;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_crc_chains() {
        let whole = crc32c_raw(!0, b"hello world");
        let parts = crc32c_raw(crc32c_raw(!0, b"hello "), b"world");
        assert_eq!(whole, parts);
        // Standard CRC-32C check value for "123456789" is 0xE3069283.
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
    }
}
