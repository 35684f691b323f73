//! One pass over a root slot's bytes: its size, SHA-256, and RAUC's block
//! hash index (the SHA-256 of every 4 KiB chunk, in order). Bundles carry
//! the index of the slot they install (adaptive updates); the image seeds
//! the index of the slot it ships on the data partition, so a device's
//! first update need not hash its active slot before streaming.

use sha2::{Digest, Sha256};
use std::io::Read;

/// The chunk a block hash index hashes.
pub const CHUNK: usize = 4096;

/// What one pass over the slot image gives.
pub struct SlotDigest {
    pub size: u64,
    /// SHA-256 of the whole image, hex.
    pub sha256: String,
    /// RAUC's block hash index: the SHA-256 of each 4 KiB chunk, in order.
    pub index: Vec<u8>,
}

/// Size, SHA-256 and block hash index of everything `reader` gives.
pub fn digest(mut reader: impl Read) -> std::io::Result<SlotDigest> {
    let zero_chunk: [u8; 32] = Sha256::digest([0u8; CHUNK]).into();
    let mut whole = Sha256::new();
    let mut index = Vec::new();
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        let n = fill(&mut reader, &mut buffer)?;
        if n == 0 {
            break;
        }
        let data = &buffer[..n];
        let ((), chunks) = rayon::join(
            || whole.update(data),
            || {
                use rayon::prelude::*;
                data.par_chunks(CHUNK)
                    .map(|chunk| -> [u8; 32] {
                        // Most of a slot is free space: skip hashing zeros.
                        if chunk.len() == CHUNK && chunk.iter().all(|&b| b == 0) {
                            zero_chunk
                        } else {
                            Sha256::digest(chunk).into()
                        }
                    })
                    .collect::<Vec<_>>()
            },
        );
        index.extend(chunks.iter().flatten());
        size += n as u64;
        if n < buffer.len() {
            break;
        }
    }
    Ok(SlotDigest {
        size,
        sha256: hex::encode(whole.finalize()),
        index,
    })
}

/// Reads until `buffer` is full or the reader ends; returns the bytes read.
fn fill(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_holds_one_sha256_per_chunk_in_order() {
        let mut image = vec![0u8; 5 * CHUNK];
        image[CHUNK..2 * CHUNK].fill(7);
        image[4 * CHUNK + 10] = 1;
        // Read in odd pieces, as a file or pipe may give them.
        let reader = std::io::Read::chain(&image[..3000], &image[3000..]);
        let slot = digest(reader).unwrap();
        assert_eq!(slot.size, image.len() as u64);
        assert_eq!(slot.sha256, hex::encode(Sha256::digest(&image)));
        assert_eq!(slot.index.len(), 5 * 32);
        for (i, hash) in slot.index.chunks(32).enumerate() {
            let chunk = &image[i * CHUNK..(i + 1) * CHUNK];
            assert_eq!(hash, Sha256::digest(chunk).as_slice(), "chunk {i}");
        }
        assert_eq!(slot.index[..32], slot.index[64..96], "zero chunks alike");
        assert_ne!(slot.index[..32], slot.index[32..64]);
    }
}
