//! Files written next to the image: `.img.xz` (and optionally `.img.gz`),
//! `sha256sum -c` files, a bmaptool `.bmap`, `manifest.json` and an SPDX 2.3
//! SBOM. They are written into the build's staging directory, which
//! [`crate::output_dir`] swaps in as one set.

use super::layout::Layout;
use super::{ImageSpec, OutputOptions, Sources, xz};
use crate::lock::Lock;
use crate::progress::Progress;
use crate::rootfs::tree::{Kind, Tree, content_sha256};
use crate::store::Store;
use anyhow::{Context as _, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const BMAP_BLOCK: u64 = 4096;

/// A writer that hashes what passes through.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Byte ranges of the file that hold data (not holes), block-aligned.
pub fn mapped_ranges(file: &File, size: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{SeekFrom, seek};
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut offset = 0u64;
    while offset < size {
        let Ok(start) = seek(file, SeekFrom::Data(offset)) else {
            break; // no data after `offset`
        };
        let end = seek(file, SeekFrom::Hole(start)).unwrap_or(size).min(size);
        let (start, end) = (
            start / BMAP_BLOCK * BMAP_BLOCK,
            end.div_ceil(BMAP_BLOCK) * BMAP_BLOCK,
        );
        match ranges.last_mut() {
            Some(last) if last.1 >= start => last.1 = last.1.max(end),
            _ => ranges.push((start, end)),
        }
        offset = end;
    }
    ranges
}

/// The bmap XML (bmaptool format 2.0) for the given mapped ranges and the
/// SHA-256 of each.
pub fn bmap_xml(size: u64, ranges: &[(u64, u64)], digests: &[String]) -> String {
    let blocks = size.div_ceil(BMAP_BLOCK);
    let mapped: u64 = ranges.iter().map(|(s, e)| (e - s) / BMAP_BLOCK).sum();
    let mut body = String::new();
    for ((start, end), digest) in ranges.iter().zip(digests) {
        let end = (*end).min(size);
        let (first, last) = (start / BMAP_BLOCK, end.div_ceil(BMAP_BLOCK) - 1);
        let range = if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        };
        body.push_str(&format!(
            "        <Range chksum=\"{digest}\"> {range} </Range>\n"
        ));
    }
    let render = |checksum: &str| {
        format!(
            "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n    <ImageSize> {size} </ImageSize>\n    <BlockSize> {BMAP_BLOCK} </BlockSize>\n    <BlocksCount> {blocks} </BlocksCount>\n    <MappedBlocksCount> {mapped} </MappedBlocksCount>\n    <ChecksumType> sha256 </ChecksumType>\n    <BmapFileChecksum> {checksum} </BmapFileChecksum>\n    <BlockMap>\n{body}    </BlockMap>\n</bmap>\n"
        )
    };
    // The file's own checksum is computed with that field all zeros.
    let checksum = hex::encode(Sha256::digest(render(&"0".repeat(64)).as_bytes()));
    render(&checksum)
}

/// The image read chunk by chunk: mapped ranges are read, holes (most of
/// an image that is mostly free space) are zero-filled without a read.
struct ImageReader<'a> {
    file: &'a File,
    /// Sorted, disjoint `(start, end)` byte ranges holding data.
    mapped: &'a [(u64, u64)],
}

/// The parts of the sorted, disjoint `mapped` ranges inside the window of
/// `len` bytes at `offset`: (index of the range, start, end), in order.
fn mapped_within(
    mapped: &[(u64, u64)],
    offset: u64,
    len: u64,
) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
    let end = offset + len;
    let first = mapped.partition_point(|&(_, stop)| stop <= offset);
    mapped[first..]
        .iter()
        .take_while(move |&&(start, _)| start < end)
        .enumerate()
        .map(move |(i, &(start, stop))| (first + i, start.max(offset), stop.min(end)))
}

impl ImageReader<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        buf.fill(0);
        for (_, from, to) in mapped_within(self.mapped, offset, buf.len() as u64) {
            let piece = &mut buf[(from - offset) as usize..(to - offset) as usize];
            self.file.read_exact_at(piece, from)?;
        }
        Ok(())
    }
}

/// SHA-256 of the whole image and of each mapped range (for the bmap),
/// fed chunk by chunk in order.
struct ImageDigests<'a> {
    image: Sha256,
    mapped: &'a [(u64, u64)],
    ranges: Vec<Sha256>,
}

impl<'a> ImageDigests<'a> {
    fn new(mapped: &'a [(u64, u64)]) -> Self {
        ImageDigests {
            image: Sha256::new(),
            mapped,
            ranges: vec![Sha256::new(); mapped.len()],
        }
    }

    fn update(&mut self, offset: u64, chunk: &[u8]) {
        self.image.update(chunk);
        for (i, from, to) in mapped_within(self.mapped, offset, chunk.len() as u64) {
            self.ranges[i].update(&chunk[(from - offset) as usize..(to - offset) as usize]);
        }
    }
}

/// What [`compress`] computed besides the files it wrote.
struct Digests {
    image: String,
    xz: String,
    gz: Option<String>,
    /// One per mapped range, for the bmap.
    mapped: Vec<String>,
}

/// One pass over the image: its SHA-256 and its mapped ranges', the `.xz`
/// (one block per chunk of `chunks`, from the cache where a chunk is
/// unchanged, see [`super::xz`]) and optionally the `.gz`. Hashing (and
/// gzip) run beside the xz blocks' lookup and compression.
#[allow(clippy::too_many_arguments)]
fn compress(
    image: &File,
    chunks: &[(u64, u64)],
    mapped: &[(u64, u64)],
    xz: &File,
    gz: Option<&File>,
    level: u32,
    store: &Store,
    progress: &Progress,
) -> Result<Digests> {
    let cache = xz::BlockCache::open(store, level)?;
    let mut xz_writer = xz::StreamWriter::new(HashingWriter {
        inner: BufWriter::new(xz),
        hasher: Sha256::new(),
    })?;
    let mut gz_writer = gz.map(|gz| {
        flate2::write::GzEncoder::new(
            HashingWriter {
                inner: BufWriter::new(gz),
                hasher: Sha256::new(),
            },
            flate2::Compression::new(6),
        )
    });
    let reader = ImageReader {
        file: image,
        mapped,
    };
    let mut digests = ImageDigests::new(mapped);
    // Chunks in flight: enough for every thread, few enough to stay small.
    let batch = 2 * rayon::current_num_threads().max(1);
    let mut counts = xz::Counts::default();
    let size = chunks.iter().map(|c| c.1).sum();
    let stage = progress.stage("compress", size, true);
    // Buffers reused from batch to batch (the image is gigabytes).
    let mut buffers = vec![Vec::with_capacity(xz::CHUNK); batch];
    for group in chunks.chunks(batch) {
        for (buffer, &(offset, len)) in buffers.iter_mut().zip(group) {
            buffer.resize(len as usize, 0);
            reader
                .read_at(buffer, offset)
                .context("reading the image back")?;
        }
        let filled = &buffers[..group.len()];
        let (hashed, blocks) = rayon::join(
            || -> Result<()> {
                for (buffer, &(offset, _)) in filled.iter().zip(group) {
                    digests.update(offset, buffer);
                    if let Some(gz) = gz_writer.as_mut() {
                        gz.write_all(buffer)?;
                    }
                }
                Ok(())
            },
            || xz::blocks(&cache, filled, &mut counts),
        );
        hashed?;
        for block in blocks? {
            xz_writer.push(&block)?;
        }
        stage.inc(group.iter().map(|c| c.1).sum());
    }
    let mut xz_out = xz_writer.finish()?;
    xz_out.flush()?;
    let gz = match gz_writer {
        Some(gz) => {
            let mut out = gz.finish()?;
            out.flush()?;
            Some(hex::encode(out.hasher.finalize()))
        }
        None => None,
    };
    stage.finish(&format!(
        "xz: {} chunks compressed, {} from the cache",
        counts.compressed, counts.reused
    ));
    Ok(Digests {
        image: hex::encode(digests.image.finalize()),
        xz: hex::encode(xz_out.hasher.finalize()),
        gz,
        mapped: digests
            .ranges
            .into_iter()
            .map(|h| hex::encode(h.finalize()))
            .collect(),
    })
}

/// The manifest: board, lock, packages, partitions and every file's digest.
pub fn manifest(
    board: &str,
    lock: &Lock,
    tree: &Tree,
    layout: &Layout,
    image_sha256: &str,
    build_key: &str,
) -> serde_json::Value {
    let files: serde_json::Map<String, serde_json::Value> = tree
        .iter()
        .filter_map(|(path, node)| {
            let value = match &node.kind {
                Kind::File { content, .. } => format!("sha256:{}", content_sha256(content)),
                Kind::Symlink { target } => format!("symlink:{target}"),
                Kind::Hardlink { target } => format!("hardlink:{target}"),
                _ => return None,
            };
            Some((format!("/{path}"), json!(value)))
        })
        .collect();
    json!({
        "board": board,
        "build-key": build_key,
        "image": { "sha256": image_sha256, "size": layout.size },
        "lock": { "digest": lock.digest(), "suite": lock.suite, "release-date": lock.release_date,
                  "source-date-epoch": lock.source_date_epoch },
        "tree": tree.digest(),
        "packages": lock.image_packages().map(|p| json!({
            "name": p.name, "version": p.version, "architecture": p.architecture, "sha256": p.sha256,
        })).collect::<Vec<_>>(),
        "disk-id": format!("{:08x}", layout.disk_id),
        "partitions": layout.partitions,
        "files": files,
    })
}

/// An SPDX 2.3 JSON document describing the image and its Debian packages.
pub fn spdx(name: &str, lock: &Lock, image_sha256: &str) -> serde_json::Value {
    let created = {
        let t = lock.source_date_epoch;
        let (year, month, day) = super::civil_date(t);
        let (h, m, s) = (
            t.rem_euclid(86_400) / 3600,
            t.rem_euclid(3600) / 60,
            t.rem_euclid(60),
        );
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    };
    let spdx_id = |name: &str| {
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("SPDXRef-Package-deb-{clean}")
    };
    let mut packages = vec![json!({
        "name": name, "SPDXID": "SPDXRef-Image", "versionInfo": lock.digest(),
        "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
        "checksums": [{ "algorithm": "SHA256", "checksumValue": image_sha256 }],
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image",
    })];
    for p in lock.image_packages() {
        packages.push(json!({
            "name": p.name, "SPDXID": spdx_id(&p.name), "versionInfo": p.version,
            "supplier": "Organization: Debian", "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
            "sourceInfo": format!("built from Debian source package {}", p.source),
            "checksums": [{ "algorithm": "SHA256", "checksumValue": p.sha256 }],
            "externalRefs": [{ "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                "referenceLocator": format!("pkg:deb/debian/{}@{}?arch={}&distro=debian-13", p.name, p.version.replace(':', "%3A"), p.architecture) }],
            "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": spdx_id(&p.name),
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!("urn:vinyl-builder:{name}:{}", lock.digest().trim_start_matches("sha256:")),
        "creationInfo": { "created": created, "creators": [concat!("Tool: vinyl-builder-", env!("CARGO_PKG_VERSION"))] },
        "packages": packages,
        "relationships": relationships,
    })
}

/// The names of every output file (not the stamp beside them, which is not
/// reproducible).
pub fn output_names(name: &str, options: &OutputOptions) -> Vec<String> {
    let mut names = vec![
        format!("{name}.bmap"),
        format!("{name}.img.sha256"),
        format!("{name}.img.xz.sha256"),
        format!("{name}.spdx.json"),
        format!("{name}.img.xz"),
    ];
    if options.gzip {
        names.push(format!("{name}.img.gz.sha256"));
        names.push(format!("{name}.img.gz"));
    }
    names.push(format!("{name}.img"));
    names.push("manifest.json".to_string());
    names
}

/// Writes every companion file of `image` (already `<name>.img` in `dir`)
/// into `dir`, under its final name; returns their paths.
pub fn write_all(
    spec: &ImageSpec,
    sources: Sources,
    layout: &Layout,
    image: &File,
    chunks: &[(u64, u64)],
    build_key: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let Sources { lock, tree, .. } = sources;
    let (name, options) = (spec.name.as_str(), &spec.outputs);
    let img_name = format!("{name}.img");
    let create = |file_name: &str| -> Result<(PathBuf, File)> {
        let path = dir.join(file_name);
        let file =
            File::create_new(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok((path, file))
    };
    let mut written = vec![dir.join(&img_name)];
    let (xz_path, xz) = create(&format!("{img_name}.xz"))?;
    let gz = if options.gzip {
        Some(create(&format!("{img_name}.gz"))?)
    } else {
        None
    };
    let mapped = mapped_ranges(image, layout.size);
    let digests = compress(
        image,
        chunks,
        &mapped,
        &xz,
        gz.as_ref().map(|(_, file)| file),
        options.xz_level,
        sources.store,
        sources.progress,
    )?;
    let (image_sha, xz_sha) = (digests.image, digests.xz);
    written.push(xz_path);
    let text = |file_name: String, content: String| -> Result<PathBuf> {
        let (path, mut file) = create(&file_name)?;
        file.write_all(content.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    if let (Some((gz_path, _)), Some(gz_sha)) = (gz, digests.gz) {
        written.push(gz_path);
        written.push(text(
            format!("{img_name}.gz.sha256"),
            format!("{gz_sha}  {img_name}.gz\n"),
        )?);
    }
    written.push(text(
        format!("{name}.bmap"),
        bmap_xml(layout.size, &mapped, &digests.mapped),
    )?);
    written.push(text(
        format!("{img_name}.sha256"),
        format!("{image_sha}  {img_name}\n"),
    )?);
    written.push(text(
        format!("{img_name}.xz.sha256"),
        format!("{xz_sha}  {img_name}.xz\n"),
    )?);
    written.push(text(
        format!("{name}.spdx.json"),
        serde_json::to_string_pretty(&spdx(name, lock, &image_sha))? + "\n",
    )?);
    let manifest = manifest(&spec.board, lock, tree, layout, &image_sha, build_key);
    written.push(text(
        "manifest.json".into(),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_within_clips_ranges_to_the_window() {
        let mapped = [(0, 10), (20, 30), (40, 50), (60, 70)];
        let parts: Vec<_> = mapped_within(&mapped, 25, 20).collect();
        assert_eq!(parts, [(1, 25, 30), (2, 40, 45)]);
        assert_eq!(mapped_within(&mapped, 10, 10).count(), 0);
        assert_eq!(mapped_within(&mapped, 70, 5).count(), 0);
        assert_eq!(mapped_within(&mapped, 0, 100).count(), 4);
    }
}
