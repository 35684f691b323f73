//! The dm-verity hash tree of a verity bundle: format 1, SHA-256, 4096-byte
//! data and hash blocks, a 32-byte salt hashed before each block — what
//! RAUC's `verity_hash.c` (from cryptsetup) writes and what the kernel's
//! dm-verity checks on the device. The tree goes right after the data, the
//! top level first and the level that hashes the data last.

use sha2::{Digest, Sha256};
use std::io::{self, Read};

/// Data and hash block size.
pub const BLOCK: usize = 4096;

/// A hash tree and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTree {
    /// The root hash: the manifest's `verity-hash`.
    pub root: [u8; 32],
    /// The levels, top first, each padded to whole blocks (`verity-size`
    /// bytes long).
    pub bytes: Vec<u8>,
}

/// The hash tree over `blocks` blocks read from `data`. RAUC refuses data
/// of a single block (it would have no tree), so `blocks` must be at least 2.
pub fn hash_tree(mut data: impl Read, blocks: u64, salt: &[u8; 32]) -> io::Result<HashTree> {
    if blocks < 2 {
        return Err(io::Error::other(
            "a verity payload needs more than one 4096-byte block",
        ));
    }
    let hash = |block: &[u8]| -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(salt);
        hasher.update(block);
        hasher.finalize().into()
    };
    let pad = |level: &mut Vec<u8>| level.resize(level.len().div_ceil(BLOCK) * BLOCK, 0);
    let mut block = vec![0; BLOCK];
    let mut level = Vec::with_capacity(blocks as usize * 32);
    for _ in 0..blocks {
        data.read_exact(&mut block)?;
        level.extend_from_slice(&hash(&block));
    }
    pad(&mut level);
    let mut levels = vec![level];
    while let Some(last) = levels.last().filter(|level| level.len() > BLOCK) {
        let mut next: Vec<u8> = last.chunks(BLOCK).flat_map(hash).collect();
        pad(&mut next);
        levels.push(next);
    }
    let root = hash(&levels[levels.len() - 1]);
    Ok(HashTree {
        root,
        bytes: levels.into_iter().rev().flatten().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    #[test]
    fn one_level_hashes_each_data_block() {
        let salt = [7; 32];
        let data: Vec<u8> = (0..2 * BLOCK).map(|i| (i / BLOCK) as u8 + 1).collect();
        let tree = hash_tree(&data[..], 2, &salt).unwrap();
        assert_eq!(tree.bytes.len(), BLOCK);
        let first = h(&[&salt, &data[..BLOCK]]);
        let second = h(&[&salt, &data[BLOCK..]]);
        assert_eq!(&tree.bytes[..32], &first);
        assert_eq!(&tree.bytes[32..64], &second);
        assert!(tree.bytes[64..].iter().all(|b| *b == 0));
        assert_eq!(tree.root, h(&[&salt, &tree.bytes]));
    }

    #[test]
    fn levels_are_laid_out_top_first() {
        // 129 data blocks: two blocks of leaf hashes, one block above them.
        let salt = [1; 32];
        let data = vec![0u8; 129 * BLOCK];
        let tree = hash_tree(&data[..], 129, &salt).unwrap();
        assert_eq!(tree.bytes.len(), 3 * BLOCK);
        let (top, leaves) = tree.bytes.split_at(BLOCK);
        assert_eq!(&top[..32], &h(&[&salt, &leaves[..BLOCK]]));
        assert_eq!(&top[32..64], &h(&[&salt, &leaves[BLOCK..]]));
        assert_eq!(tree.root, h(&[&salt, top]));
        // 128 blocks fill exactly one block of hashes: a single level.
        let tree = hash_tree(&data[..128 * BLOCK], 128, &salt).unwrap();
        assert_eq!(tree.bytes.len(), BLOCK);
    }

    #[test]
    fn a_single_block_is_refused() {
        assert!(hash_tree(&[0u8; BLOCK][..], 1, &[0; 32]).is_err());
    }
}
