//! The build stages wired together: configuration → lock → fetched packages →
//! rootfs tree. Each stage reads only what the previous one produced.

use crate::archive::Archive;
use crate::config::{Board, Plan, Project};
use crate::fetch::Fetcher;
use crate::lock::{self, Lock, LockedPackage};
use crate::mirror::{self, Mirror};
use crate::progress::Progress;
use crate::rootfs::{self, tree::Tree};
use crate::store::Store;
use crate::{cross, doctor};
use anyhow::{Context as _, Result};
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
        }
    }
}

/// A board loaded with its recipes, ready to build.
pub struct Context {
    pub project: Project,
    pub board: Board,
    pub plan: Plan,
    pub store: Store,
    pub progress: Progress,
    pub target_dir: PathBuf,
    mirror_flag: Option<String>,
}

impl Context {
    /// Loads the board and its recipes and opens the store.
    pub fn new(project: Project, options: &Options) -> Result<Self> {
        let mut board = project.board(&options.board)?;
        for name in &options.extra_recipes {
            if !board.recipes.contains(name) {
                board.recipes.push(name.clone());
            }
        }
        options
            .device
            .apply(&mut board)
            .map_err(|e| anyhow::anyhow!(e))?;
        let recipes = project.recipes(&board)?;
        let plan = Plan::new(&board, &recipes);
        if board.device.wifi.is_some() && !plan.packages.contains_key("wpasupplicant") {
            anyhow::bail!(
                "board {} has no WiFi (none of its recipes installs wpasupplicant); drop --wifi-ssid/--wifi-psk-file",
                board.name
            );
        }
        let store = Store::open(&options.cache_dir)?;
        Ok(Context {
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

    /// Resolves against the mirror's current archive.
    fn resolve(&self) -> Result<Lock> {
        let fetcher = Fetcher::new(self.mirror()?);
        let stage = self.progress.stage("index", 0, false);
        let archive = Archive::load(
            &fetcher,
            &self.store,
            &self.board.suite,
            &self.board.components,
            &self.board.architecture,
        )?;
        stage.finish(&format!(
            "{} {} ({})",
            archive.release.codename, archive.release.date, self.board.architecture
        ));
        Ok(Lock::resolve(
            &self.board,
            &self.plan,
            &archive.release,
            &archive.universe,
        )?)
    }

    /// `builder lock`: writes the lock if it is missing or stale (or always,
    /// with `update`), and returns the lines describing what changed.
    pub fn lock(&self, update: bool) -> Result<(Lock, Vec<String>)> {
        let path = self.lock_path();
        let old = Lock::read(&path, &self.board.name)?;
        if let Some(old) = &old
            && !update
            && old.check_fresh(&path, &self.board, &self.plan).is_ok()
        {
            return Ok((old.clone(), Vec::new()));
        }
        let new = self.resolve()?;
        let changes = lock::diff(old.as_ref(), &new);
        new.write(&path)?;
        Ok((new, changes))
    }

    /// The lock a build uses: read and checked; created when missing.
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

    /// Downloads every locked package missing from the store.
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

    /// Locks, fetches, cross-compiles the recipes' crates and assembles the
    /// root filesystem tree.
    pub fn rootfs(&self) -> Result<(Lock, Tree)> {
        let crates = &self.plan.crates;
        if !crates.is_empty() {
            // Fail before any download if the host can't cross-compile.
            let (triple, _) = cross::triples(&self.board.architecture)?;
            doctor::require(&doctor::cross_checks(triple))?;
        }
        let lock = self.locked()?;
        self.fetch(&lock)?;
        let binaries = if crates.is_empty() {
            Vec::new()
        } else {
            let sysroot = cross::sysroot(self, &lock)?;
            cross::build_crates(self, &sysroot, crates)?
        };
        let tree = rootfs::assemble(self, &lock, &binaries)?;
        Ok((lock, tree))
    }
}
