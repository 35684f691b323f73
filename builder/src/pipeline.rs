//! The table of contents: the stages of a build, in order. Only this file
//! knows the order; each stage is a function in its own module that takes
//! its inputs explicitly and returns its product, and none imports this
//! module.
//!
//! 1. **configuration** (`config`, `device`): the board, its recipes and the
//!    device settings become a [`Plan`];
//! 2. **lock** (`lock`, `archive`): `boards/<board>.lock`, resolved against
//!    the signed archive only when missing, stale or `--update`d;
//! 3. **fetch** (`fetch`, `store`): the locked `.deb`s, verified into the store;
//! 4. **cross** (`cross`): a sysroot from the lock, and the recipes' crates
//!    cross-compiled against it;
//! 5. **rootfs** (`rootfs`): packages, overlays, binaries, accounts,
//!    tmpfiles, units, device files, exclusions → a [`Tree`];
//! 6. **kernel** (`rootfs::modules`, `boot`): modules pruned to the board's
//!    closure with kmod's indexes, then kernel and initramfs into `/boot`;
//! 7. **output**, by the board's [`OutputKind`]: the SD image (`boot` for the
//!    boot partition's files, `image` for the disk and the files beside it)
//!    or the root filesystem as a tar (`export`).

use crate::archive::Archive;
use crate::config::{Board, OutputKind, Plan, Project};
use crate::fetch::Fetcher;
use crate::image::{Built, ImageSpec, OutputOptions, Sources};
use crate::lock::{self, Lock, LockedPackage};
use crate::mirror::{self, Mirror};
use crate::progress::Progress;
use crate::rootfs::tree::Tree;
use crate::store::Store;
use crate::{boot, bundle, cross, doctor, export, image, output_dir, rootfs};
use anyhow::{Context as _, Result};
use debian::release::Keyring;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Settings shared by every command.
#[derive(Debug, Clone)]
pub struct Options {
    pub board: String,
    pub mirror: Option<String>,
    pub cache_dir: PathBuf,
    /// Cargo target directory for cross-compiled crates.
    pub target_dir: PathBuf,
    pub quiet: bool,
    /// Recipes added to the board's own for this build (test layers).
    pub extra_recipes: Vec<String>,
    /// Device settings from the command line (hostname, NTP, SSH keys, WiFi).
    pub device: crate::device::Overrides,
    /// `--keyring`: replaces the board's `[update] keyring`.
    pub keyring: Option<PathBuf>,
    /// `--image-version`: replaces the board's `[update] version`.
    pub version: Option<crate::values::Version>,
    /// `--update-url`: replaces the board's `[update] url`.
    pub update_url: Option<String>,
}

impl Options {
    /// Defaults for a board: cache from the environment or XDG, cargo's
    /// target directory from `CARGO_TARGET_DIR` or the workspace.
    pub fn for_board(project: &Project, board: &str) -> Self {
        Options {
            board: board.to_string(),
            mirror: None,
            cache_dir: crate::store::Store::default_root(),
            target_dir: std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| project.root.join("target")),
            quiet: false,
            extra_recipes: Vec::new(),
            device: Default::default(),
            keyring: None,
            version: None,
            update_url: None,
        }
    }
}

/// A board loaded with its recipes (stage 1), with the store and progress
/// display the later stages are handed.
pub struct Pipeline {
    pub project: Project,
    pub board: Board,
    pub plan: Plan,
    pub store: Store,
    pub progress: Progress,
    pub target_dir: PathBuf,
    mirror_flag: Option<String>,
}

/// The root filesystem of a build, described for people.
#[derive(Debug, Clone)]
pub struct RootfsSummary {
    pub packages: usize,
    pub files: usize,
    pub bytes: u64,
    pub digest: String,
}

impl RootfsSummary {
    fn of(lock: &Lock, tree: &Tree) -> Self {
        RootfsSummary {
            packages: lock.image_packages().count(),
            files: tree.len(),
            bytes: tree.content_size(),
            digest: tree.digest(),
        }
    }
}

/// The CA certificates an image trusts update bundles from.
pub struct UpdateKeyring {
    pub path: PathBuf,
    pub certificates: Vec<x509_cert::Certificate>,
}

/// `builder publish`'s settings.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// The release directory.
    pub out: PathBuf,
    /// Where it will be served (`--base-url`).
    pub base_url: Option<String>,
    /// The oldest version allowed to update to this release.
    pub min_version: Option<crate::values::Version>,
}

/// Refuses a `--min-version` above the release's own `version`: no device
/// could ever install such a release.
pub fn check_min_version(version: &str, options: &PublishOptions) -> Result<()> {
    if let Some(min) = &options.min_version
        && update_channel::version::compare(min.as_str(), version).is_gt()
    {
        anyhow::bail!(
            "--min-version {min} is newer than the release's version {version}: no device \
             could install it; give a version at most {version}, or raise --image-version"
        );
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name (`x.img` → `x.img.xz`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// What a build produced.
#[derive(Debug, Clone)]
pub enum Product {
    /// The SD card image and the files beside it.
    SdImage(Built),
    /// The root filesystem archive.
    RootfsTar(PathBuf),
}

impl Pipeline {
    /// Stage 1: loads the board, applies the device settings and merges
    /// its recipes; opens the store.
    pub fn new(project: Project, options: &Options) -> Result<Self> {
        let mut board = project.board(&options.board)?;
        for name in &options.extra_recipes {
            let name = crate::values::RecipeName::try_from(name.clone())
                .map_err(|e| anyhow::anyhow!("--recipe: {e}"))?;
            if !board.recipes.contains(&name) {
                board.recipes.push(name);
            }
        }
        options
            .device
            .apply(&mut board)
            .map_err(|e| anyhow::anyhow!(e))?;
        if let Some(keyring) = &options.keyring {
            board.update.keyring = Some(
                std::path::absolute(keyring)
                    .with_context(|| format!("--keyring {}", keyring.display()))?,
            );
        }
        if let Some(version) = &options.version {
            board.update.version = Some(version.clone());
        }
        if let Some(url) = &options.update_url {
            board.update.url = Some(url.clone());
        }
        crate::device::channel_url(&board, options.update_url.is_some())?;
        let recipes = project.recipes(&board)?;
        let plan = Plan::new(&board, &recipes);
        if board.device.wifi.is_some() && !plan.packages.contains_key("wpasupplicant") {
            anyhow::bail!(
                "board {} has no WiFi (none of its recipes installs wpasupplicant); drop --wifi-ssid/--wifi-psk-file",
                board.name
            );
        }
        let store = Store::open(&options.cache_dir)?;
        Ok(Pipeline {
            project,
            board,
            plan,
            store,
            progress: Progress::new(options.quiet),
            target_dir: options.target_dir.clone(),
            mirror_flag: options.mirror.clone(),
        })
    }

    /// The mirror; looked up only when something must be downloaded.
    pub fn mirror(&self) -> Result<Mirror> {
        let env = std::env::var(mirror::MIRROR_ENV).ok();
        let mirror = mirror::find(self.mirror_flag.as_deref(), env.as_deref(), Path::new("/"))?;
        tracing::info!("Debian mirror {} (from {})", mirror.url, mirror.origin);
        Ok(mirror)
    }

    pub fn lock_path(&self) -> PathBuf {
        self.project.lock_path(&self.board.name)
    }

    /// Resolves against the mirror's current archive, which must be no
    /// older than the one the existing lock (`old`) was made from.
    fn resolve(&self, old: Option<&Lock>) -> Result<Lock> {
        let fetcher = Fetcher::new(self.mirror()?);
        let stage = self.progress.stage("index", 0, false);
        let architecture = self.board.architecture.debian_name();
        let archive = Archive::load(
            &fetcher,
            &self.store,
            &Keyring::debian_trixie(),
            &self.board.suite,
            &self.board.components,
            architecture,
            old.map(|lock| lock.pinned(&self.lock_path())).as_ref(),
        )?;
        stage.finish(&format!(
            "{} {} ({architecture})",
            archive.release.codename, archive.release.date
        ));
        Ok(Lock::resolve(
            &self.board,
            &self.plan,
            &archive.release,
            &archive.universe,
        )?)
    }

    /// Stage 2 as `builder lock`: writes the lock if it is missing or stale
    /// (or always, with `update`), and returns the lines describing what
    /// changed.
    pub fn lock(&self, update: bool) -> Result<(Lock, Vec<String>)> {
        let path = self.lock_path();
        let old = Lock::read(&path, &self.board.name)?;
        if let Some(old) = &old
            && !update
            && old.check_fresh(&path, &self.board, &self.plan).is_ok()
        {
            return Ok((old.clone(), Vec::new()));
        }
        let new = self.resolve(old.as_ref())?;
        let changes = lock::diff(old.as_ref(), &new);
        new.write(&path)?;
        Ok((new, changes))
    }

    /// Stage 2 as a build uses it: the lock, read and checked; created when
    /// missing.
    pub fn locked(&self) -> Result<Lock> {
        let path = self.lock_path();
        match Lock::read(&path, &self.board.name)? {
            Some(lock) => {
                lock.check_fresh(&path, &self.board, &self.plan)?;
                Ok(lock)
            }
            None => {
                tracing::info!("{} does not exist yet; resolving", path.display());
                let (lock, _) = self.lock(false)?;
                Ok(lock)
            }
        }
    }

    /// Stage 3: downloads every locked package missing from the store.
    pub fn fetch(&self, lock: &Lock) -> Result<()> {
        let missing: Vec<&LockedPackage> = lock
            .packages
            .iter()
            .filter(|p| !self.store.contains(&p.sha256))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let fetcher = Fetcher::new(self.mirror()?);
        let total = missing.iter().map(|p| p.size).sum();
        let stage = self.progress.stage("download", total, true);
        // Downloads wait on the network, not the CPU: use more threads than cores.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(6).build()?;
        pool.install(|| {
            missing.par_iter().try_for_each(|package| {
                stage.message(&package.name);
                fetcher
                    .ensure(
                        &self.store,
                        &package.filename,
                        package.size,
                        &package.sha256,
                        |n| stage.inc(n),
                    )
                    .with_context(|| format!("package {} {}", package.name, package.version))
            })
        })?;
        stage.finish(&format!("{} packages", missing.len()));
        Ok(())
    }

    /// Stage 4: cross-compiles the recipes' crates against a sysroot made
    /// from the lock; returns (crate, binary).
    pub fn cross(&self, lock: &Lock) -> Result<Vec<(String, PathBuf)>> {
        let crates = &self.plan.crates;
        if crates.is_empty() {
            return Ok(Vec::new());
        }
        let sysroot = cross::sysroot(&self.store, &self.progress, lock)?;
        cross::build_crates(&cross::CrossBuild {
            workspace: &self.project.root,
            target_dir: &self.target_dir,
            architecture: self.board.architecture,
            sysroot: &sysroot,
            crates,
            quiet: self.progress.is_quiet(),
        })
    }

    /// Stages 2 to 6: lock, fetch, cross, rootfs and (for boards with a
    /// kernel) kernel. Returns the lock and the finished root tree.
    pub fn rootfs(&self) -> Result<(Lock, Tree)> {
        if !self.plan.crates.is_empty() {
            // Fail before any download if the host can't cross-compile.
            let triple = self.board.architecture.rust_triple();
            doctor::require(&doctor::cross_checks(triple))?;
        }
        let lock = self.locked()?;
        self.fetch(&lock)?;
        let binaries = self.cross(&lock)?;
        let mut tree = rootfs::assemble(&rootfs::Inputs {
            lock: &lock,
            plan: &self.plan,
            overlays: self
                .plan
                .overlays
                .iter()
                .map(|name| self.project.overlay_dir(name))
                .collect(),
            binaries: &binaries,
            system_files: self.system_files()?,
            store: &self.store,
            progress: &self.progress,
        })?;
        if self.board.kernel.is_some() {
            self.kernel(&lock, &mut tree)?;
        }
        Ok((lock, tree))
    }

    /// Stage 6: prunes the kernel's modules to the board's closure and puts
    /// kernel and initramfs into the slot's `/boot`.
    fn kernel(&self, lock: &Lock, tree: &mut Tree) -> Result<()> {
        let epoch = lock.source_date_epoch;
        tree.set_layer(rootfs::tree::Layer::Built);
        let modules = rootfs::modules::prune(tree, &self.store, &self.plan.modules, epoch)?;
        tracing::info!(
            "kernel {}: kept {} of {} modules",
            modules.kernel_version,
            modules.kept,
            modules.available
        );
        let slot = boot::install_in_slot(
            tree,
            &boot::SlotInputs {
                lock,
                modules: &modules,
                initramfs_modules: &self.plan.initramfs_modules,
                board: &self.board.name,
                store: &self.store,
            },
        )?;
        tracing::info!(
            "initramfs: {} KiB, modules {}",
            slot.initramfs_size / 1024,
            slot.initramfs_modules.join(" ")
        );
        Ok(())
    }

    /// What stage 7 writes for an SD image: the board's image and boot
    /// settings, the boot chain's files, the output options.
    pub fn image_spec(
        &self,
        lock: &Lock,
        out_dir: &Path,
        outputs: &OutputOptions,
    ) -> Result<ImageSpec> {
        Ok(ImageSpec {
            board: self.board.name.clone(),
            name: image::image_name(&self.board),
            image: self.board.image.clone(),
            boot: self.board.boot.clone(),
            boot_chain: boot::partition_files(&self.board, lock)?,
            script_sha256: crate::store::sha256_hex(boot::boot_script(&self.board).as_bytes()),
            outputs: outputs.clone(),
            out_dir: out_dir.to_path_buf(),
        })
    }

    /// Stage 7 for an SD image: the disk and the files beside it, swapped
    /// into `out_dir` as one set (nothing rewritten when they are up to date).
    pub fn image(
        &self,
        lock: &Lock,
        tree: &Tree,
        out_dir: &Path,
        outputs: &OutputOptions,
    ) -> Result<Built> {
        let spec = self.image_spec(lock, out_dir, outputs)?;
        image::build(
            &spec,
            Sources {
                lock,
                tree,
                store: &self.store,
                progress: &self.progress,
            },
        )
    }

    /// The whole build: stages 2 to 7 for the board's output kind. A
    /// `rootfs_tar` path also writes the root filesystem there (for a
    /// `rootfs-tar` board it is the product).
    ///
    /// A damaged cache entry found on the way is removed by the store (see
    /// [`Store::evictions`]); the build then runs again, which fetches or
    /// unpacks what was removed. Each retry needs a new removal, so this
    /// ends.
    pub fn build(
        &self,
        out_dir: &Path,
        outputs: &OutputOptions,
        rootfs_tar: Option<&Path>,
    ) -> Result<(RootfsSummary, Product)> {
        if self.board.output == OutputKind::SdImage {
            // Before the long stages: a directory of other files is refused.
            output_dir::check(out_dir)?;
        }
        // A damaged blob, then the damaged package it is unpacked from.
        const RETRIES: usize = 3;
        let mut evictions = self.store.evictions();
        let mut attempt = 0;
        loop {
            let error = match self.build_stages(out_dir, outputs, rootfs_tar) {
                Ok(product) => return Ok(product),
                Err(error) => error,
            };
            let removed = self.store.evicted();
            if removed.len() > evictions && attempt < RETRIES {
                tracing::warn!("{error:#}");
                tracing::warn!("building again, to replace the damaged cache entries");
                evictions = removed.len();
                attempt += 1;
                continue;
            }
            if removed.is_empty() {
                return Err(error);
            }
            let removed: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
            return Err(error.context(format!(
                "damaged cache entries were found and removed ({}), and could not be replaced",
                removed.join(", ")
            )));
        }
    }

    /// The root's files made from the board's settings: the device's, and
    /// RAUC's configuration and keyring when the image carries RAUC.
    fn system_files(&self) -> Result<Vec<crate::device::DeviceFile>> {
        let mut files = crate::device::files(&self.board);
        if self.plan.packages.contains_key("rauc") {
            let keyring = match self.board.update.keyring {
                Some(_) => {
                    let keyring = self.keyring()?;
                    Some(std::fs::read_to_string(&keyring.path).with_context(|| {
                        format!("keyring {}: cannot read the file", keyring.path.display())
                    })?)
                }
                None => {
                    tracing::warn!(
                        "board {} has no update keyring ([update] keyring or --keyring): \
                         its image refuses every update bundle",
                        self.board.name
                    );
                    None
                }
            };
            let release = crate::device::Release {
                version: self.version(&self.locked()?),
                channel_url: crate::device::channel_url(&self.board, false)?,
            };
            files.extend(crate::device::update_files(
                &self.board,
                keyring.as_deref(),
                &release,
            ));
        }
        Ok(files)
    }

    /// The CA certificates the image trusts bundles from (`--keyring` or
    /// the board's `[update] keyring`).
    pub fn keyring(&self) -> Result<UpdateKeyring> {
        let Some(path) = &self.board.update.keyring else {
            anyhow::bail!(
                "board {} has no keyring: its image refuses every update bundle. Add \
                 `keyring = \"FILE\"` to [update] in boards/{}.toml or pass --keyring FILE \
                 (`builder keygen DIR` makes a development CA)",
                self.board.name,
                self.board.name
            );
        };
        let path = self.project.root.join(path);
        let certificates = bundle::signing::read_certificates(&path, "keyring")?;
        Ok(UpdateKeyring { path, certificates })
    }

    /// Stage 8, on request: a signed RAUC bundle of the image's root slot
    /// (slot A of the `.img` just built, byte for byte) in `out_dir`.
    ///
    /// `adaptive` adds RAUC's block hash index (delta downloads); every
    /// bundle the CLI writes has it. Without, a device reads the whole
    /// image (and installs without first hashing its slots).
    pub fn bundle(
        &self,
        built: &Built,
        tree_digest: &str,
        signer: &bundle::signing::Signer,
        out_dir: &Path,
        adaptive: bool,
    ) -> Result<bundle::Bundle> {
        let lock = self.locked()?;
        let slot = built.layout.partition(image::layout::Role::RootA);
        let version = self.version(&lock);
        let name = format!("{}-{version}.raucb", image::image_name(&self.board));
        let written = bundle::write(&bundle::BundleSpec {
            compatible: crate::device::compatible(&self.board.name),
            version,
            build: format!("lock {} tree {tree_digest}", lock.digest()),
            description: self.board.description.clone(),
            root: bundle::Region {
                path: built.image.clone(),
                offset: slot.offset,
                size: slot.size,
            },
            epoch: u32::try_from(lock.source_date_epoch).unwrap_or(0),
            adaptive,
            signer,
            out: out_dir.join(name),
        })?;
        Ok(written)
    }

    /// The release version: `--image-version`, the board's `[update]
    /// version`, else the locked archive's date (`YYYY.MM.DD`).
    pub fn version(&self, lock: &Lock) -> String {
        match &self.board.update.version {
            Some(version) => version.to_string(),
            None => {
                let (year, month, day) = image::civil_date(lock.source_date_epoch);
                format!("{year}.{month:02}.{day:02}")
            }
        }
    }

    /// Stage 9, on request: the release directory `out` — the image for
    /// people, the bundle and channel file for devices, Imager's list when
    /// a base URL is known (`base_url`, else the board's `[update] url`).
    pub fn publish(
        &self,
        built: &Built,
        tree_digest: &str,
        signer: &bundle::signing::Signer,
        options: &PublishOptions,
    ) -> Result<crate::release::Release> {
        let lock = self.locked()?;
        check_min_version(&self.version(&lock), options)?;
        let (year, month, day) = image::civil_date(lock.source_date_epoch);
        let xz = sibling(&built.image, ".xz");
        let name = image::image_name(&self.board);
        let spec = crate::release::ReleaseSpec {
            name: name.clone(),
            description: self.board.description.clone(),
            version: self.version(&lock),
            released: format!("{year}-{month:02}-{day:02}"),
            compatible: crate::device::compatible(&self.board.name),
            build: format!("lock {} tree {tree_digest}", lock.digest()),
            imager_devices: self.board.image.imager_devices.clone(),
            image: built.image.clone(),
            image_xz: xz,
            bmap: built.image.with_file_name(format!("{name}.bmap")),
            base_url: crate::release::base_url(
                options.base_url.as_deref(),
                self.board.update.url.as_deref(),
            )?,
            min_version: options.min_version.as_ref().map(|v| v.to_string()),
            out: options.out.clone(),
        };
        crate::release::write(&spec, |dir| {
            self.bundle(built, tree_digest, signer, dir, true)
        })
    }

    fn build_stages(
        &self,
        out_dir: &Path,
        outputs: &OutputOptions,
        rootfs_tar: Option<&Path>,
    ) -> Result<(RootfsSummary, Product)> {
        let (lock, tree) = self.rootfs()?;
        let summary = RootfsSummary::of(&lock, &tree);
        if let Some(path) = rootfs_tar {
            export::write_tar(&tree, &self.store, path)?;
        }
        let product = match self.board.output {
            OutputKind::SdImage => Product::SdImage(self.image(&lock, &tree, out_dir, outputs)?),
            OutputKind::RootfsTar => Product::RootfsTar(match rootfs_tar {
                Some(path) => path.to_path_buf(),
                None => {
                    let path = out_dir.join(format!("{}.tar", image::image_name(&self.board)));
                    export::write_tar(&tree, &self.store, &path)?;
                    path
                }
            }),
        };
        Ok((summary, product))
    }
}
