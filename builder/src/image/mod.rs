//! The SD card image: MBR, FAT boot partition, two ext4 root slots (A holds
//! the tree, B starts empty) and a small ext4 data partition that the device
//! grows at first boot. Then the files users download: compressed image,
//! checksums, bmap, manifest and SBOM.

pub mod edit;
pub mod ext4;
pub mod fat;
pub mod inspect;
pub mod io;
pub mod layout;
pub mod outputs;

use crate::lock::Lock;
use crate::pipeline::Context;
use crate::rootfs::tree::{Kind, Tree, content_bytes};
use anyhow::{Context as _, Result, bail};
use globset::GlobBuilder;
use layout::{Ids, Layout, Role, Sizes};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// Options for the files written next to the image.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    /// Also write `<name>.img.gz`.
    pub gzip: bool,
    /// xz preset, 0 (fastest) to 9 (smallest).
    pub xz_level: u32,
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions {
            gzip: false,
            xz_level: 6,
        }
    }
}

/// What was built, for printing and tests.
#[derive(Debug, Clone)]
pub struct Built {
    pub layout: Layout,
    pub files: Vec<PathBuf>,
    pub image: PathBuf,
    /// True when the outputs already matched and nothing was written.
    pub up_to_date: bool,
}

/// The image's base name.
pub fn image_name(context: &Context) -> String {
    context
        .board
        .image
        .name
        .clone()
        .unwrap_or_else(|| format!("vinyl-{}", context.board.name))
}

/// Files for the boot partition: the board's `[boot] files` globs over the tree.
pub fn boot_files(context: &Context, tree: &Tree) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for spec in &context.board.boot.files {
        let glob = GlobBuilder::new(spec.from.trim_start_matches('/'))
            .literal_separator(true)
            .build()
            .with_context(|| {
                format!(
                    "boards/{}.toml: bad boot file pattern {:?}",
                    context.board.name, spec.from
                )
            })?
            .compile_matcher();
        let mut matched = 0;
        for (path, node) in tree.iter() {
            if !glob.is_match(path)
                || !matches!(node.kind, Kind::File { .. } | Kind::Symlink { .. })
            {
                continue;
            }
            let Some(bytes) = tree.read(path, &context.store)? else {
                continue;
            };
            let name = path.rsplit('/').next().unwrap_or(path);
            let dest = format!("{}/{name}", spec.to.trim_matches('/'));
            files.insert(dest.trim_start_matches('/').to_string(), bytes);
            matched += 1;
        }
        if matched == 0 {
            bail!(
                "boards/{}.toml: boot file pattern {:?} matches nothing in the root tree",
                context.board.name,
                spec.from
            );
        }
    }
    Ok(files)
}

/// Writes the image and its companion files into `out_dir`. Everything is
/// written under temporary names and renamed only when all of it succeeded.
pub fn build(
    context: &Context,
    lock: &Lock,
    tree: &Tree,
    out_dir: &Path,
    options: &OutputOptions,
) -> Result<Built> {
    let name = image_name(context);
    let key = build_key(context, lock, tree, options);
    if outputs::up_to_date(out_dir, &name, &key, options) {
        let ids = Ids::new(&context.board.name, &lock.digest());
        return Ok(Built {
            layout: layout::plan(sizes(context), &ids),
            files: outputs::output_names(&name, options)
                .iter()
                .map(|n| out_dir.join(n))
                .collect(),
            image: out_dir.join(format!("{name}.img")),
            up_to_date: true,
        });
    }
    let (image, layout) = write_disk(context, lock, tree, out_dir)?;
    let files = outputs::write_all(
        context, lock, tree, &layout, image, out_dir, &name, options, &key,
    )?;
    Ok(Built {
        layout,
        image: out_dir.join(format!("{name}.img")),
        files,
        up_to_date: false,
    })
}

/// Everything the outputs depend on, hashed: the same key means the same
/// bytes, so an existing set of outputs with this key need not be rewritten.
pub fn build_key(context: &Context, lock: &Lock, tree: &Tree, options: &OutputOptions) -> String {
    let inputs = format!(
        "builder {}\nboard {}\nname {}\nlock {}\ntree {}\nimage {:?}\nboot {:?}\nscript {}\ngzip {}\nxz {}\n",
        env!("CARGO_PKG_VERSION"),
        context.board.name,
        image_name(context),
        lock.digest(),
        tree.digest(),
        context.board.image,
        context.board.boot,
        crate::store::sha256_hex(crate::boot::boot_script(&context.board).as_bytes()),
        options.gzip,
        options.xz_level,
    );
    format!("sha256:{}", crate::store::sha256_hex(inputs.as_bytes()))
}

fn sizes(context: &Context) -> Sizes {
    Sizes {
        boot_mib: context.board.image.boot_mib,
        root_mib: context.board.image.root_mib,
        data_mib: context.board.image.data_mib,
    }
}

/// Writes the partition table and filesystems into a temporary file in
/// `out_dir` (not yet under its final name).
pub fn write_disk(
    context: &Context,
    lock: &Lock,
    tree: &Tree,
    out_dir: &Path,
) -> Result<(NamedTempFile, Layout)> {
    let board = &context.board;
    let epoch = lock.source_date_epoch;
    let ids = Ids::new(&board.name, &lock.digest());
    let layout = layout::plan(sizes(context), &ids);
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let image = tempfile::NamedTempFile::new_in(out_dir)?;
    let file = image.as_file();
    file.set_len(layout.size)?;
    write_mbr(file, &layout)?;

    let stage = context.progress.stage("image", 3, false);
    let boot = layout.partition(Role::Boot);
    let mut files = boot_files(context, tree)?;
    files.extend(crate::boot::partition_files(board, lock)?);
    fat::write(
        file,
        boot.offset,
        boot.size,
        ids.volume_id("boot"),
        &files,
        epoch,
    )
    .context("writing the FAT boot partition")?;
    stage.inc(1);

    let root = layout.partition(Role::RootA);
    let mut options_a = ext4_writer::Options::new(root.size, ids.uuid(Role::RootA.label()));
    options_a.hash_seed = ids.uuid("root-a hash seed");
    options_a.label = Role::RootA.label().into();
    options_a.timestamp = ext4_writer::Timestamp::from_secs(epoch);
    // Write every block that must read as zero, so `bmaptool copy` (which
    // skips unmapped blocks) can never leave stale bytes where they matter.
    options_a.assume_zeroed = false;
    ext4_writer::write(file, root.offset, &ext4::entries(tree), &ext4::StoreSource(&context.store), &options_a)
        .map_err(|e| match e {
            ext4_writer::Error::TooSmall { needed, available } => anyhow::anyhow!(
                "the root filesystem needs {} MiB but a root slot has {} MiB; raise `root-mib` in [image] of boards/{}.toml",
                needed.div_ceil(1 << 20),
                available >> 20,
                board.name
            ),
            other => anyhow::Error::new(other).context("writing root slot A"),
        })?;
    stage.inc(1);

    let data = layout.partition(Role::Data);
    let mut options_data = ext4_writer::Options::new(data.size, ids.uuid(Role::Data.label()));
    options_data.hash_seed = ids.uuid("data hash seed");
    options_data.label = Role::Data.label().into();
    options_data.timestamp = ext4_writer::Timestamp::from_secs(epoch);
    options_data.journal_blocks = Some(ext4_writer::Options::default_journal_blocks(data.size));
    // Grown to fill the card at first boot: room for 1 TiB, an inode per 16 KiB.
    options_data.grow_to = Some(1 << 40);
    options_data.inodes = ext4_writer::InodeCount::BytesPerInode(16384);
    options_data.assume_zeroed = false;
    let root_dir = ext4_writer::Entry::dir("", 0o755, ext4_writer::Timestamp::from_secs(epoch));
    ext4_writer::write(
        file,
        data.offset,
        &[root_dir],
        &ext4_writer::NoSource,
        &options_data,
    )
    .context("writing the data partition")?;
    stage.inc(1);
    file.sync_all()?;
    stage.finish(&format!(
        "{} MiB, {} partitions",
        layout.size >> 20,
        layout.partitions.len()
    ));

    Ok((image, layout))
}

/// The MBR: FAT32-LBA boot partition and three Linux partitions.
fn write_mbr(file: &File, layout: &Layout) -> Result<()> {
    let mut disk = io::PartitionIo::new(file, 0, layout.size);
    let mut mbr = mbrman::MBR::new_from(&mut disk, 512, layout.disk_id.to_le_bytes())
        .context("creating the partition table")?;
    for partition in &layout.partitions {
        mbr[partition.number as usize] = mbrman::MBRPartitionEntry {
            boot: if partition.role == Role::Boot {
                mbrman::BOOT_ACTIVE
            } else {
                mbrman::BOOT_INACTIVE
            },
            first_chs: mbrman::CHS::empty(),
            sys: partition.role.mbr_type(),
            last_chs: mbrman::CHS::empty(),
            starting_lba: (partition.offset / 512) as u32,
            sectors: (partition.size / 512) as u32,
        };
    }
    mbr.write_into(&mut disk)
        .context("writing the partition table")?;
    Ok(())
}

/// (year, month, day) of seconds since the epoch, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_date(epoch: i64) -> (i64, u32, u32) {
    let days = epoch.div_euclid(86_400) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        yoe + era * 400 + i64::from(month <= 2),
        month as u32,
        day as u32,
    )
}

/// Reads a file's bytes from the tree (used by manifests and tests).
pub fn file_bytes(tree: &Tree, context: &Context, path: &str) -> Result<Option<Vec<u8>>> {
    Ok(match tree.get(path).map(|n| &n.kind) {
        Some(Kind::File { content, .. }) => Some(content_bytes(content, &context.store)?),
        _ => None,
    })
}
