//! The SD card image: MBR, FAT boot partition, two ext4 root slots (A holds
//! the tree, B starts empty) and a small ext4 data partition that the device
//! grows at first boot. Then the files users download: compressed image,
//! checksums, bmap, manifest and SBOM.

pub mod data;
pub mod edit;
pub mod ext4;
pub mod fat;
pub mod inspect;
pub mod io;
pub mod layout;
pub mod outputs;
pub mod xz;

use crate::config::{BootConfig, ImageConfig};
use crate::lock::Lock;
use crate::output_dir::OutputDir;
use crate::progress::Progress;
use crate::rootfs::tree::{Kind, Tree};
use crate::store::Store;
use anyhow::{Context as _, Result, bail};
use globset::GlobBuilder;
use layout::{Ids, Layout, Role, Sizes};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

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

/// What the image stage writes, apart from the tree: everything it needs
/// from the board and the boot chain, and the output options.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The board: identifiers derive from it, errors name its file.
    pub board: String,
    /// Base name of the output files.
    pub name: String,
    /// Partition sizes (the board's `[image]`).
    pub image: ImageConfig,
    /// Files copied from the tree onto the boot partition (`[boot]`).
    pub boot: BootConfig,
    /// What the boot chain puts on the boot partition: `boot.scr`, the A/B
    /// state, `config.txt`.
    pub boot_chain: BTreeMap<String, Vec<u8>>,
    /// SHA-256 of the boot script's text, for the build key.
    pub script_sha256: String,
    pub outputs: OutputOptions,
    /// Where the files go (swapped in as one set).
    pub out_dir: PathBuf,
}

impl ImageSpec {
    /// The path of the raw image.
    pub fn image_path(&self) -> PathBuf {
        self.out_dir.join(format!("{}.img", self.name))
    }
}

/// What the image is made from, besides its spec.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub lock: &'a Lock,
    pub tree: &'a Tree,
    pub store: &'a Store,
    pub progress: &'a Progress,
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

/// The image's base name for a board: `[image] name`, else `vinyl-<board>`.
pub fn image_name(board: &crate::config::Board) -> String {
    board
        .image
        .name
        .clone()
        .unwrap_or_else(|| format!("vinyl-{}", board.name))
}

/// Files for the boot partition: the board's `[boot] files` globs over the tree.
pub fn boot_files(
    spec: &ImageSpec,
    tree: &Tree,
    store: &Store,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for file in &spec.boot.files {
        let glob = GlobBuilder::new(file.from.trim_start_matches('/'))
            .literal_separator(true)
            .build()
            .with_context(|| {
                format!(
                    "boards/{}.toml: bad boot file pattern {:?}",
                    spec.board, file.from
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
            let Some(bytes) = tree.read(path, store)? else {
                continue;
            };
            let name = path.rsplit('/').next().unwrap_or(path);
            let dest = format!("{}/{name}", file.to.trim_matches('/'));
            files.insert(dest.trim_start_matches('/').to_string(), bytes);
            matched += 1;
        }
        if matched == 0 {
            bail!(
                "boards/{}.toml: boot file pattern {:?} matches nothing in the root tree",
                spec.board,
                file.from
            );
        }
    }
    Ok(files)
}

/// Writes the image and its companion files into the spec's `out_dir`, as
/// one set: everything goes into a staging directory beside it that is
/// swapped in when all of it succeeded ([`crate::output_dir`]). Nothing is
/// written when the directory already holds this build, unchanged.
pub fn build(spec: &ImageSpec, sources: Sources) -> Result<Built> {
    let key = build_key(spec, sources.lock, sources.tree);
    let ids = Ids::new(&spec.board, &sources.lock.digest());
    let names = outputs::output_names(&spec.name, &spec.outputs);
    let files = names.iter().map(|n| spec.out_dir.join(n)).collect();
    let out = OutputDir::lock(&spec.out_dir)?;
    if out.is_current(&key, &names) {
        return Ok(Built {
            layout: layout::plan(sizes(spec), &ids),
            files,
            image: spec.image_path(),
            up_to_date: true,
        });
    }
    let staging = out.stage()?;
    let Disk {
        file: image,
        layout,
        volatile,
    } = write_disk(spec, sources, staging.path())?;
    let chunks = xz::plan(layout.size, &volatile);
    outputs::write_all(
        spec,
        sources,
        &layout,
        &image,
        &chunks,
        &key,
        staging.path(),
    )?;
    drop(image);
    // Whatever an earlier set held besides these (`--gzip` dropped) is ours too.
    let every = outputs::output_names(
        &spec.name,
        &OutputOptions {
            gzip: true,
            ..spec.outputs.clone()
        },
    );
    staging.publish(&key, &names, &every)?;
    Ok(Built {
        layout,
        image: spec.image_path(),
        files,
        up_to_date: false,
    })
}

/// Bumped whenever [`write_disk`] writes other bytes for the same inputs
/// (2: RAUC's slot A status and index seeded on the data partition; 3:
/// slot B's too), so outputs written by an older builder are not taken as
/// current.
const DISK_FORMAT: u32 = 3;

/// Everything the outputs depend on, hashed: the same key means the same
/// bytes, so an existing set of outputs with this key need not be rewritten.
pub fn build_key(spec: &ImageSpec, lock: &Lock, tree: &Tree) -> String {
    let inputs = format!(
        "builder {}\ndisk format {DISK_FORMAT}\nboard {}\nname {}\nlock {}\ntree {}\nimage {:?}\nboot {:?}\nscript {}\ngzip {}\nxz {}\n",
        env!("CARGO_PKG_VERSION"),
        spec.board,
        spec.name,
        lock.digest(),
        tree.digest(),
        spec.image,
        spec.boot,
        spec.script_sha256,
        spec.outputs.gzip,
        spec.outputs.xz_level,
    );
    format!("sha256:{}", crate::store::sha256_hex(inputs.as_bytes()))
}

fn sizes(spec: &ImageSpec) -> Sizes {
    Sizes {
        boot_mib: spec.image.boot_mib,
        root_mib: spec.image.root_mib,
        data_mib: spec.image.data_mib,
    }
}

/// A disk image just written.
pub struct Disk {
    pub file: File,
    pub layout: Layout,
    /// Byte ranges that an edit of the tree's upper layers may touch (root
    /// slot A's `ext4_writer::Summary::volatile`); the rest of the image
    /// stays as it is, which is where [`xz::plan`] cuts its big chunks.
    pub volatile: Vec<(u64, u64)>,
}

/// Writes the partition table and filesystems into `<name>.img` in `dir`
/// (a staging directory: the caller publishes it).
pub fn write_disk(spec: &ImageSpec, sources: Sources, dir: &Path) -> Result<Disk> {
    let Sources {
        lock, tree, store, ..
    } = sources;
    let epoch = lock.source_date_epoch;
    let ids = Ids::new(&spec.board, &lock.digest());
    let layout = layout::plan(sizes(spec), &ids);

    let path = dir.join(format!("{}.img", spec.name));
    let image = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let file = &image;
    file.set_len(layout.size)?;
    write_mbr(file, &layout)?;

    let stage = sources.progress.stage("image", 3, false);
    let boot = layout.partition(Role::Boot);
    let mut files = boot_files(spec, tree, store)?;
    files.extend(spec.boot_chain.clone());
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
    // A fixed inode count (not "what the tree needs"), so adding a file
    // does not move every inode table: 32768 for a 1 GiB slot, six times
    // what the appliance needs.
    options_a.inodes = ext4_writer::InodeCount::BytesPerInode(32768);
    // Write every block that must read as zero, so `bmaptool copy` (which
    // skips unmapped blocks) can never leave stale bytes where they matter.
    options_a.assume_zeroed = false;
    let summary = ext4_writer::write(file, root.offset, &ext4::entries(tree), &ext4::StoreSource(store), &options_a)
        .map_err(|e| match e {
            ext4_writer::Error::TooSmall { needed, available } => anyhow::anyhow!(
                "the root filesystem needs {} MiB but a root slot has {} MiB; raise `root-mib` in [image] of boards/{}.toml",
                needed.div_ceil(1 << 20),
                available >> 20,
                spec.board
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
    // Slot A as written, digested for RAUC's status and block hash index.
    let slot_a = {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let mut reader = file.try_clone()?;
        reader.seek(SeekFrom::Start(root.offset))?;
        crate::slot_digest::digest(reader.take(root.size)).context("reading back root slot A")?
    };
    ext4_writer::write(
        file,
        data.offset,
        &data::entries(&slot_a, epoch),
        &ext4_writer::NoSource,
        &options_data,
    )
    .context("writing the data partition")?;
    stage.inc(1);
    stage.finish(&format!(
        "{} MiB, {} partitions",
        layout.size >> 20,
        layout.partitions.len()
    ));

    let block = u64::from(summary.block_size);
    let volatile = summary
        .volatile
        .iter()
        .map(|&(start, len)| (root.offset + start * block, len * block))
        .collect();
    Ok(Disk {
        file: image,
        layout,
        volatile,
    })
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
