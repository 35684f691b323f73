//! The `.img.xz`, compressed incrementally: one ordinary xz stream whose
//! blocks are compressed independently, one per chunk of the image (see
//! [`plan`]: [`CHUNK`]s, and [`SMALL_CHUNK`]s where edits land), and kept
//! in the cache under the digest of the bytes they hold. A rebuild after
//! one file changed compresses only the few chunks whose bytes changed and
//! copies the rest from the cache; identical chunks (the gigabytes of zeros
//! in the empty slot and free space) are compressed once.
//!
//! A block's bytes depend only on its input and the preset, so the stream is
//! the same whether a block came from the cache or was compressed afresh;
//! for equal chunks it is byte for byte what liblzma's multi-threaded
//! encoder writes for the whole input with that block size (a unit test
//! checks that).
//! Every xz reader (xz, xzcat, bmaptool, libarchive in Raspberry Pi Imager)
//! reads multi-block streams; xz ≥ 5.4 also decompresses them in parallel,
//! as each block header carries its sizes.
//!
//! liblzma has no API that writes a lone block with the sizes in its
//! header, so each chunk is compressed as a stream of one block by the
//! multi-threaded encoder (one thread) and the block is cut out of it; this
//! module then writes the stream header, the blocks, the index and the
//! footer itself (xz file format 1.2.1, sections 2 and 4–6).

use crate::store::Store;
use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The image bytes per block: the block size the image was always
/// compressed with, so caching changed no byte of the `.img.xz`. Smaller
/// chunks would make an edit recompress less, but the dictionary restarts
/// at each block: with 8 MiB, one edited file recompressed 2 × 8 MiB
/// instead of 2 × 24 MiB, and rpi4's `.img.xz` grew from 62.6 to 65.3 MB.
pub const CHUNK: usize = 24 << 20;

/// The image bytes per block over ranges that an edit of an overlay file
/// or a binary may touch (filesystem metadata, directories, the local
/// layers' data): an edit then recompresses a few MiB.
pub const SMALL_CHUNK: usize = 1 << 20;

/// The image's chunks `(offset, len)` in order: [`SMALL_CHUNK`]s over the
/// `volatile` byte ranges (widened to whole small chunks), [`CHUNK`]s
/// elsewhere; both on a grid of multiples of their size from the image's
/// start, so that a volatile range that grows or shrinks moves no other
/// chunk's boundaries.
pub fn plan(size: u64, volatile: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let (small, big) = (SMALL_CHUNK as u64, CHUNK as u64);
    let mut hot: Vec<(u64, u64)> = volatile
        .iter()
        .filter(|(_, len)| *len > 0)
        .map(|&(start, len)| {
            let end = (start + len).div_ceil(small) * small;
            (start / small * small, end.min(size))
        })
        .filter(|(start, end)| start < end)
        .collect();
    hot.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in hot {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut chunks = Vec::new();
    let mut cut = |from: u64, to: u64, step: u64| {
        let mut at = from;
        while at < to {
            let next = ((at / step + 1) * step).min(to);
            chunks.push((at, next - at));
            at = next;
        }
    };
    let mut at = 0;
    for (start, end) in merged {
        cut(at, start, big);
        cut(start, end, small);
        at = end;
    }
    cut(at, size, big);
    chunks
}

/// Bump when the bytes written for a chunk change (it names the cache
/// directory, so old entries are simply not found).
const FORMAT: u32 = 1;

/// The stream's integrity check: CRC64, as `xz` writes by default.
const CHECK_FLAGS: [u8; 2] = [0x00, 0x04];
const HEADER_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];
const FOOTER_MAGIC: [u8; 2] = [b'Y', b'Z'];

/// One compressed block: its bytes as they sit in a stream (header,
/// compressed data, padding, check) and the sizes the index records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub bytes: Vec<u8>,
    /// The block's size without its padding (what the index stores).
    pub unpadded: u64,
    /// How many image bytes it holds.
    pub uncompressed: u64,
}

/// Compresses `data` as one xz block at `level`.
pub fn compress_block(data: &[u8], level: u32) -> Result<Block> {
    let encoder = xz2::stream::MtStreamBuilder::new()
        .preset(level)
        .threads(1)
        .block_size(CHUNK.max(data.len()) as u64)
        .check(xz2::stream::Check::Crc64)
        .encoder()?;
    let mut writer = xz2::write::XzEncoder::new_stream(Vec::new(), encoder);
    writer.write_all(data)?;
    let stream = writer.finish()?;
    block_of_stream(&stream)
}

/// The one block of a single-block xz `stream`.
fn block_of_stream(stream: &[u8]) -> Result<Block> {
    let corrupt = || anyhow::anyhow!("liblzma wrote an xz stream this module cannot take apart");
    if stream.len() < 24
        || stream[..6] != HEADER_MAGIC
        || stream[stream.len() - 2..] != FOOTER_MAGIC
    {
        return Err(corrupt());
    }
    let footer = &stream[stream.len() - 12..];
    let backward = u32::from_le_bytes(footer[4..8].try_into().unwrap()) as usize;
    let index_size = (backward + 1) * 4;
    let index_start = (stream.len() - 12)
        .checked_sub(index_size)
        .ok_or_else(corrupt)?;
    let index = &stream[index_start..stream.len() - 12];
    let mut at = 1;
    let mut next = || read_varint(index, &mut at).ok_or_else(corrupt);
    if index[0] != 0 || next()? != 1 {
        return Err(corrupt());
    }
    let (unpadded, uncompressed) = (next()?, next()?);
    let bytes = stream[12..index_start].to_vec();
    if bytes.len() as u64 != unpadded.div_ceil(4) * 4 {
        return Err(corrupt());
    }
    Ok(Block {
        bytes,
        unpadded,
        uncompressed,
    })
}

/// Writes an xz stream block by block: the header at once, each block as it
/// comes, the index and footer at [`StreamWriter::finish`].
pub struct StreamWriter<W: Write> {
    out: W,
    records: Vec<(u64, u64)>,
}

impl<W: Write> StreamWriter<W> {
    pub fn new(mut out: W) -> Result<Self> {
        out.write_all(&HEADER_MAGIC)?;
        out.write_all(&CHECK_FLAGS)?;
        out.write_all(&crc32fast::hash(&CHECK_FLAGS).to_le_bytes())?;
        Ok(StreamWriter {
            out,
            records: Vec::new(),
        })
    }

    pub fn push(&mut self, block: &Block) -> Result<()> {
        self.out.write_all(&block.bytes)?;
        self.records.push((block.unpadded, block.uncompressed));
        Ok(())
    }

    /// Writes the index and the footer; returns the writer.
    pub fn finish(mut self) -> Result<W> {
        let mut index = vec![0u8];
        write_varint(&mut index, self.records.len() as u64);
        for &(unpadded, uncompressed) in &self.records {
            write_varint(&mut index, unpadded);
            write_varint(&mut index, uncompressed);
        }
        index.resize(index.len().div_ceil(4) * 4, 0);
        let crc = crc32fast::hash(&index);
        index.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&index)?;
        let mut tail = ((index.len() / 4 - 1) as u32).to_le_bytes().to_vec();
        tail.extend_from_slice(&CHECK_FLAGS);
        self.out.write_all(&crc32fast::hash(&tail).to_le_bytes())?;
        self.out.write_all(&tail)?;
        self.out.write_all(&FOOTER_MAGIC)?;
        Ok(self.out)
    }
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..63).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Compressed blocks in the cache (`xz-blocks-v1/<key>` beside the store),
/// named by the digest of their input and the preset, and checked when
/// read: a file holds the SHA-256 of the rest, the two sizes, then the
/// block. A damaged entry is removed with a warning and compressed again.
/// Within one build, identical chunks are looked up once.
pub struct BlockCache<'a> {
    store: &'a Store,
    dir: PathBuf,
    level: u32,
    seen: Mutex<HashMap<String, Arc<Block>>>,
}

/// What a compression pass did, for the progress line and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Chunks compressed in this pass.
    pub compressed: usize,
    /// Chunks taken from the cache (or from an identical chunk before).
    pub reused: usize,
}

impl<'a> BlockCache<'a> {
    pub fn open(store: &'a Store, level: u32) -> Result<Self> {
        let dir = store.subdir(&format!("xz-blocks-v{FORMAT}"))?;
        Ok(BlockCache {
            store,
            dir,
            level,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// The block for `chunk`, named `key`: from the cache, or compressed
    /// now (and cached). The flag says whether it was compressed.
    fn load_or_compress(&self, key: &str, chunk: &[u8]) -> Result<(Block, bool)> {
        let path = self.dir.join(key);
        let cached = match std::fs::read(&path) {
            Ok(entry) => Some(entry),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        match cached.map(|entry| decode_entry(&entry)) {
            Some(Some(block)) if block.uncompressed == chunk.len() as u64 => Ok((block, false)),
            None => Ok((self.compress(chunk, &path)?, true)),
            Some(_) => {
                tracing::warn!(
                    "removing {}: a damaged compressed block in the cache; compressing it again",
                    path.display()
                );
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                Ok((self.compress(chunk, &path)?, true))
            }
        }
    }

    fn compress(&self, chunk: &[u8], path: &std::path::Path) -> Result<Block> {
        let block = compress_block(chunk, self.level)?;
        self.store
            .write_atomic(path, &encode_entry(&block))
            .with_context(|| format!("caching a compressed block in {}", path.display()))?;
        Ok(block)
    }

    /// The cache name of `chunk`'s block. All-zero chunks, the most common
    /// kind, are recognised without hashing.
    fn key(&self, chunk: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("xz-block {FORMAT} preset {} ", self.level));
        if is_zeros(chunk) {
            hasher.update(format!("zeros {}", chunk.len()));
        } else {
            hasher.update(format!("bytes {} ", chunk.len()));
            hasher.update(chunk);
        }
        hex::encode(hasher.finalize())
    }
}

/// Whether `bytes` are all zero (compared a page-sized piece at a time,
/// which compiles to `memcmp`, many times faster than a byte loop).
fn is_zeros(bytes: &[u8]) -> bool {
    const ZEROS: [u8; 4096] = [0; 4096];
    bytes
        .chunks(ZEROS.len())
        .all(|piece| piece == &ZEROS[..piece.len()])
}

fn encode_entry(block: &Block) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + block.bytes.len());
    body.extend_from_slice(&block.unpadded.to_le_bytes());
    body.extend_from_slice(&block.uncompressed.to_le_bytes());
    body.extend_from_slice(&block.bytes);
    let mut entry = Sha256::digest(&body).to_vec();
    entry.extend_from_slice(&body);
    entry
}

/// The block in a cache entry, if the entry is intact.
fn decode_entry(entry: &[u8]) -> Option<Block> {
    let (digest, body) = entry.split_at_checked(32)?;
    if body.len() < 16 || Sha256::digest(body).as_slice() != digest {
        return None;
    }
    let unpadded = u64::from_le_bytes(body[..8].try_into().ok()?);
    let uncompressed = u64::from_le_bytes(body[8..16].try_into().ok()?);
    let bytes = body[16..].to_vec();
    (bytes.len() as u64 == unpadded.div_ceil(4) * 4).then_some(Block {
        bytes,
        unpadded,
        uncompressed,
    })
}

/// The blocks of `chunks`, in order: each distinct chunk is looked up (or
/// compressed) once, in parallel.
pub fn blocks(
    cache: &BlockCache,
    chunks: &[Vec<u8>],
    counts: &mut Counts,
) -> Result<Vec<Arc<Block>>> {
    use rayon::prelude::*;
    let keys: Vec<String> = chunks.par_iter().map(|chunk| cache.key(chunk)).collect();
    let mut seen = cache.seen.lock().unwrap();
    let mut missing: HashMap<&str, usize> = HashMap::new();
    for (index, key) in keys.iter().enumerate() {
        if !seen.contains_key(key) {
            missing.entry(key).or_insert(index);
        }
    }
    let found: Vec<(&str, Block, bool)> = missing
        .into_par_iter()
        .map(|(key, index)| {
            let (block, compressed) = cache.load_or_compress(key, &chunks[index])?;
            Ok((key, block, compressed))
        })
        .collect::<Result<_>>()?;
    let mut compressed_now = 0;
    for (key, block, compressed) in found {
        compressed_now += usize::from(compressed);
        seen.insert(key.to_string(), Arc::new(block));
    }
    counts.compressed += compressed_now;
    counts.reused += chunks.len() - compressed_now;
    Ok(keys.iter().map(|key| Arc::clone(&seen[key])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_plan_cuts_small_chunks_where_edits_land() {
        const MIB: u64 = 1 << 20;
        let size = 200 * MIB + 5;
        let volatile = [(30 * MIB + 7, 3 * MIB), (31 * MIB, MIB), (150 * MIB, 4096)];
        let chunks = plan(size, &volatile);
        // Contiguous, complete, nothing empty.
        let mut at = 0;
        for &(offset, len) in &chunks {
            assert_eq!(offset, at);
            assert!(len > 0);
            at += len;
        }
        assert_eq!(at, size);
        let small: Vec<u64> = chunks
            .iter()
            .filter(|c| c.1 == MIB)
            .map(|c| c.0 / MIB)
            .collect();
        assert_eq!(small, [30, 31, 32, 33, 150]);
        // Elsewhere the 24 MiB grid: 0-24, 24-30 | 34-48, 48-72, ...
        assert_eq!(chunks[..2], [(0, 24 * MIB), (24 * MIB, 6 * MIB)]);
        assert_eq!(chunks[6], (34 * MIB, 14 * MIB));
        assert_eq!(chunks.last(), Some(&(192 * MIB, 8 * MIB + 5)));

        // A volatile range that grows moves no boundary outside it.
        let grown = plan(size, &[(30 * MIB + 7, 5 * MIB), (150 * MIB, 4096)]);
        let beyond = |c: &Vec<(u64, u64)>| -> Vec<(u64, u64)> {
            c.iter().copied().filter(|ch| ch.0 >= 48 * MIB).collect()
        };
        assert_eq!(beyond(&chunks), beyond(&grown));
        assert_eq!(plan(size, &[]).len(), 9);
    }

    /// Pseudo-random but compressible bytes.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if i % 7 == 0 {
                    (state >> 56) as u8
                } else {
                    b"turntable"[i % 9]
                }
            })
            .collect()
    }

    fn image() -> Vec<u8> {
        let mut image = sample(CHUNK, 1);
        image.extend(vec![0u8; 2 * CHUNK]);
        image.extend(sample(CHUNK / 3, 3));
        image
    }

    fn stream(cache: &BlockCache, image: &[u8]) -> (Vec<u8>, Counts) {
        let chunks: Vec<Vec<u8>> = image.chunks(CHUNK).map(<[u8]>::to_vec).collect();
        let mut counts = Counts::default();
        let mut writer = StreamWriter::new(Vec::new()).unwrap();
        for block in blocks(cache, &chunks, &mut counts).unwrap() {
            writer.push(&block).unwrap();
        }
        (writer.finish().unwrap(), counts)
    }

    /// Byte for byte what liblzma writes for the whole input with the same
    /// block size, and it decompresses to the input.
    #[test]
    fn the_stream_is_liblzmas_multi_block_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = BlockCache::open(&store, 1).unwrap();
        let image = image();
        let (ours, counts) = stream(&cache, &image);
        assert_eq!(
            counts,
            Counts {
                compressed: 3,
                reused: 1
            }
        );

        let encoder = xz2::stream::MtStreamBuilder::new()
            .preset(1)
            .threads(2)
            .block_size(CHUNK as u64)
            .check(xz2::stream::Check::Crc64)
            .encoder()
            .unwrap();
        let mut writer = xz2::write::XzEncoder::new_stream(Vec::new(), encoder);
        writer.write_all(&image).unwrap();
        assert!(ours == writer.finish().unwrap(), "not liblzma's bytes");

        let mut back = Vec::new();
        xz2::read::XzDecoder::new(&ours[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == image);
    }

    /// A second pass takes every block from the cache and writes the same
    /// bytes; a damaged entry is compressed again, never used.
    #[test]
    fn cached_blocks_give_the_same_stream_and_damage_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let image = image();
        let (first, _) = stream(&BlockCache::open(&store, 1).unwrap(), &image);
        let (second, counts) = stream(&BlockCache::open(&store, 1).unwrap(), &image);
        assert_eq!(
            counts,
            Counts {
                compressed: 0,
                reused: 4
            }
        );
        assert!(first == second);

        let entries: Vec<PathBuf> = std::fs::read_dir(dir.path().join("xz-blocks-v1"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 3);
        for path in &entries {
            let mut bytes = std::fs::read(path).unwrap();
            assert!(decode_entry(&bytes).is_some());
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(path, &bytes).unwrap();
        }
        let (third, counts) = stream(&BlockCache::open(&store, 1).unwrap(), &image);
        assert_eq!(
            counts,
            Counts {
                compressed: 3,
                reused: 1
            }
        );
        assert!(third == first);
        for path in &entries {
            assert!(
                decode_entry(&std::fs::read(path).unwrap()).is_some(),
                "repaired"
            );
        }
    }

    /// The preset is part of a block's name: another preset never reuses it.
    #[test]
    fn another_preset_compresses_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let image = sample(CHUNK / 2, 9);
        stream(&BlockCache::open(&store, 1).unwrap(), &image);
        let (_, counts) = stream(&BlockCache::open(&store, 2).unwrap(), &image);
        assert_eq!(counts.compressed, 1);
    }

    #[test]
    fn zeros_are_recognised_to_the_last_byte() {
        let mut bytes = vec![0u8; 5000];
        assert!(is_zeros(&bytes) && is_zeros(&[]));
        bytes[4999] = 1;
        assert!(!is_zeros(&bytes));
    }

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 127, 128, 300, 1 << 35, u64::MAX >> 1] {
            let mut bytes = Vec::new();
            write_varint(&mut bytes, value);
            let mut at = 0;
            assert_eq!(read_varint(&bytes, &mut at), Some(value));
            assert_eq!(at, bytes.len());
        }
    }
}
