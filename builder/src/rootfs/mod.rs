//! Assembling the root filesystem tree: unpacked packages, then what their
//! maintainer scripts would have done (declaratively), then the recipes.
//!
//! Steps run in a fixed order, each a function of the tree so far:
//! packages → dpkg status → overlays → cross-compiled binaries → accounts →
//! tmpfiles → systemd units → system files → exclusions. The kernel's
//! modules and `/boot` come after, in their own stages (see `pipeline`).
//! What each step sets belongs to a [`tree::Layer`]: packages (and their
//! status), built (binaries, kernel, initramfs, module index) or local
//! (the rest); the image lays the layers out in that order.

pub mod modules;
pub mod overlay;
pub mod systemd;
pub mod tmpfiles;
pub mod tree;
pub mod users;

use crate::config::Plan;
use crate::deb::{self, DebContents};
use crate::device::DeviceFile;
use crate::lock::{Lock, LockedPackage};
use crate::progress::Progress;
use crate::store::Store;
use anyhow::{Context as _, Result, bail};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tree::{Kind, Layer, Node, Tree};

/// What the root filesystem is made of.
pub struct Inputs<'a> {
    /// The packages to install (`used-by = image`) and the build time.
    pub lock: &'a Lock,
    /// The board's merged recipes: users, services, exclusions.
    pub plan: &'a Plan,
    /// Overlay directories, applied in this order.
    pub overlays: Vec<PathBuf>,
    /// Cross-compiled workspace crates (name, host path), for /usr/bin.
    pub binaries: &'a [(String, PathBuf)],
    /// Files that carry the device settings (hostname, NTP, keys, WiFi).
    pub system_files: Vec<DeviceFile>,
    pub store: &'a Store,
    pub progress: &'a Progress,
}

/// Builds the root filesystem tree (without kernel modules and `/boot`).
pub fn assemble(inputs: &Inputs) -> Result<Tree> {
    let Inputs {
        lock, plan, store, ..
    } = inputs;
    let epoch = lock.source_date_epoch;
    let packages: Vec<&LockedPackage> = lock.image_packages().collect();
    let unpacked = unpack_all(store, inputs.progress, &packages)?;
    let controls = unpacked
        .iter()
        .map(|(package, contents)| (*package, contents.control_text()));
    let requests: Vec<String> = plan.packages.keys().cloned().collect();
    lock.check_packages(controls, &requests, &plan.provides)?;
    let mut tree = install_packages(&unpacked, epoch);
    write_dpkg_status(&mut tree, &unpacked, epoch);
    tree.set_layer(Layer::Local);
    for dir in &inputs.overlays {
        overlay::apply(&mut tree, dir, epoch)?;
    }
    tree.set_layer(Layer::Built);
    for (name, path) in inputs.binaries {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut node = Node::file(Vec::new(), 0o755, epoch);
        node.kind = Kind::File {
            size: bytes.len() as u64,
            content: tree::Content::Blob(store.insert(&bytes)?),
        };
        tree.insert(&format!("usr/bin/{name}"), node);
    }
    tree.set_layer(Layer::Local);
    let accounts = create_accounts(&mut tree, plan, store, epoch)?;
    apply_tmpfiles(&mut tree, store, &accounts, epoch)?;
    enable_units(&mut tree, plan, store, epoch)?;
    write_system_files(&mut tree, &inputs.system_files, epoch);
    exclude_paths(&mut tree, &plan.exclude, &plan.keep)?;
    Ok(tree)
}

/// Unpacks packages in parallel (cached per package digest).
pub fn unpack_all<'a>(
    store: &Store,
    progress: &Progress,
    packages: &[&'a LockedPackage],
) -> Result<Vec<(&'a LockedPackage, DebContents)>> {
    let stage = progress.stage("unpack", packages.len() as u64, false);
    let unpacked = packages
        .par_iter()
        .map(|package| {
            stage.message(&package.name);
            let contents = deb::unpack_cached(store, &package.filename, &package.sha256)
                .with_context(|| format!("unpacking {} {}", package.name, package.version))?;
            stage.inc(1);
            Ok((*package, contents))
        })
        .collect::<Result<Vec<_>>>()?;
    stage.finish(&format!("{} packages", unpacked.len()));
    Ok(unpacked)
}

/// Lays packages' files into a tree with merged /usr, in package-name order.
/// Times are clamped to `epoch`; shared directories keep their first owner.
pub fn install_packages(unpacked: &[(&LockedPackage, DebContents)], epoch: i64) -> Tree {
    let mut tree = Tree::new(epoch);
    for dir in ["bin", "sbin", "lib"] {
        tree.ensure_dir(&format!("usr/{dir}"), epoch);
        tree.insert(dir, Node::symlink(format!("usr/{dir}"), epoch));
    }
    for (_, contents) in unpacked {
        for (path, node) in &contents.entries {
            let path = tree::canonical(path);
            // The merged-/usr symlinks stay; packages only add to their targets.
            if path.is_empty() || tree::MERGED_USR_DIRS.contains(&path.as_str()) {
                continue;
            }
            if node.is_dir() && tree.get(&path).is_some_and(Node::is_dir) {
                continue;
            }
            let mut node = node.clone();
            node.mtime = node.mtime.min(epoch);
            tree.insert(&path, node);
        }
    }
    // Architecture-specific library directories (amd64's /lib64 holds the
    // dynamic loader every binary names) get their merged-/usr link too.
    for dir in ["lib32", "lib64", "libx32"] {
        if tree.get(&format!("usr/{dir}")).is_some_and(Node::is_dir) {
            tree.insert(dir, Node::symlink(format!("usr/{dir}"), epoch));
        }
    }
    tree
}

/// `/var/lib/dpkg/status`, so `dpkg -l` and SBOM scanners see what is installed.
fn write_dpkg_status(tree: &mut Tree, unpacked: &[(&LockedPackage, DebContents)], epoch: i64) {
    let mut status = String::new();
    for (_, contents) in unpacked {
        let Some(control) = contents.control.get("control") else {
            continue;
        };
        for line in control.trim_end().lines() {
            status.push_str(line);
            status.push('\n');
            if line.starts_with("Package:") {
                status.push_str("Status: install ok installed\n");
            }
        }
        status.push('\n');
    }
    tree.insert("var/lib/dpkg/status", Node::file(status, 0o644, epoch));
}

/// Config files of one kind from `usr/lib/<dir>` and `etc/<dir>`, by file
/// name (a file in /etc replaces the one of the same name in /usr/lib),
/// sorted by name.
fn config_files(
    tree: &Tree,
    store: &Store,
    dir: &str,
    suffix: &str,
) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for base in [format!("usr/lib/{dir}"), format!("etc/{dir}")] {
        let paths: Vec<String> = tree
            .descendants(&base)
            .filter(|(path, _)| path.ends_with(suffix) && tree::parent(path) == base)
            .map(|(path, _)| path.clone())
            .collect();
        for path in paths {
            if let Some(bytes) = tree.read(&path, store)? {
                let name = path.rsplit('/').next().unwrap_or_default().to_string();
                files.insert(name, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    Ok(files)
}

fn create_accounts(
    tree: &mut Tree,
    plan: &Plan,
    store: &Store,
    epoch: i64,
) -> Result<users::Accounts> {
    let read = |path: &str| -> Result<String> {
        let bytes = tree.read(path, store)?.with_context(|| {
            format!("/{path} is missing; the base-passwd package must be installed")
        })?;
        Ok(String::from_utf8(bytes)?)
    };
    let mut accounts = users::Accounts::from_master(
        &read("usr/share/base-passwd/passwd.master")?,
        &read("usr/share/base-passwd/group.master")?,
    )?;
    for (name, text) in config_files(tree, store, "sysusers.d", ".conf")? {
        accounts.apply_sysusers(&name, &text)?;
    }
    for spec in &plan.users {
        if accounts.add_spec(spec).is_none() {
            bail!("no free system user ID for {}", spec.name);
        }
    }
    for (path, text) in accounts.render(epoch) {
        let secret = path.ends_with("shadow");
        let mut node = Node::file(text, if secret { 0o640 } else { 0o644 }, epoch);
        if secret {
            node.gid = accounts.group("shadow").map_or(0, |g| g.gid);
        }
        tree.insert(path, node);
    }
    Ok(accounts)
}

fn apply_tmpfiles(
    tree: &mut Tree,
    store: &Store,
    accounts: &users::Accounts,
    epoch: i64,
) -> Result<()> {
    for (name, text) in config_files(tree, store, "tmpfiles.d", ".conf")? {
        for action in tmpfiles::parse(&text) {
            match action {
                tmpfiles::Action::Dir {
                    path,
                    mode,
                    user,
                    group,
                } => {
                    if tree.get(&path).is_some() {
                        continue;
                    }
                    let uid = user.as_deref().map(|u| accounts.user(u).map(|u| u.uid));
                    let gid = group.as_deref().map(|g| accounts.group(g).map(|g| g.gid));
                    let (Some(uid), Some(gid)) = (uid.unwrap_or(Some(0)), gid.unwrap_or(Some(0)))
                    else {
                        tracing::debug!("{name}: skipping {path}: unknown owner");
                        continue;
                    };
                    let mut node = Node::dir(mode.unwrap_or(0o755), epoch);
                    (node.uid, node.gid) = (uid, gid);
                    tree.insert(&path, node);
                }
                tmpfiles::Action::Symlink { path, target } => {
                    if tree.get(&path).is_none() {
                        tree.insert(&path, Node::symlink(target, epoch));
                    }
                }
            }
        }
    }
    Ok(())
}

fn enable_units(tree: &mut Tree, plan: &Plan, store: &Store, epoch: i64) -> Result<()> {
    let mut units = BTreeMap::new();
    for base in ["usr/lib/systemd/system", "etc/systemd/system"] {
        let paths: Vec<String> = tree
            .descendants(base)
            .filter(|(path, node)| tree::parent(path) == base && !node.is_dir())
            .map(|(path, _)| path.clone())
            .collect();
        for path in paths {
            if let Some(bytes) = tree.read(&path, store)? {
                let name = path.rsplit('/').next().unwrap_or_default().to_string();
                units.insert(
                    name,
                    (
                        format!("/{path}"),
                        String::from_utf8_lossy(&bytes).into_owned(),
                    ),
                );
            }
        }
    }
    let presets = systemd::Presets::parse(&config_files(
        tree,
        store,
        "systemd/system-preset",
        ".preset",
    )?);
    let links = systemd::enablement(&units, &presets, &plan.services)
        .map_err(|e| anyhow::anyhow!("{e}; check the `services` of the board's recipes"))?;
    for (link, target) in links {
        tree.insert(
            &format!("etc/systemd/system/{link}"),
            Node::symlink(target, epoch),
        );
    }
    tree.insert(
        "etc/systemd/system/default.target",
        Node::symlink("/usr/lib/systemd/system/multi-user.target", epoch),
    );
    Ok(())
}

/// Files every image gets: the device settings' and those that stand in
/// for what first-boot tools would write.
fn write_system_files(tree: &mut Tree, files: &[DeviceFile], epoch: i64) {
    for file in files {
        if file.path.starts_with("root/.ssh/") {
            tree.insert("root/.ssh", Node::dir(0o700, epoch));
        }
        tree.insert(
            &file.path,
            Node::file(file.content.clone(), file.mode, epoch),
        );
    }
    // Empty: the initramfs binds the device's own ID from /data over it.
    tree.insert("etc/machine-id", Node::file("", 0o444, epoch));
    // The root is read-only and built complete: tell systemd's
    // ConditionNeedsUpdate= units (ldconfig, sysusers, hwdb) that /etc and
    // /var already match /usr, as systemd-update-done would.
    let updated = format!(
        "# This file was created by the image builder, in place of systemd-update-done.\nTIMESTAMP_NSEC={}\n",
        i128::from(epoch) * 1_000_000_000
    );
    for dir in ["etc", "var"] {
        tree.insert(
            &format!("{dir}/.updated"),
            Node::file(updated.clone(), 0o644, epoch),
        );
    }
}

/// Drops paths matching `exclude` unless they match `keep`; directories go
/// only when nothing is left in them.
fn exclude_paths(tree: &mut Tree, exclude: &[String], keep: &[String]) -> Result<()> {
    if exclude.is_empty() {
        return Ok(());
    }
    let build = |patterns: &[String]| -> Result<GlobSet> {
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern.trim_start_matches('/'))
                .literal_separator(true)
                .build()
                .with_context(|| format!("invalid path pattern {pattern:?} in a recipe"))?;
            set.add(glob);
        }
        Ok(set.build()?)
    };
    // `dir/**` also means `dir` itself, once nothing kept is left in it.
    let exclude: Vec<String> = exclude
        .iter()
        .flat_map(|p| [Some(p.clone()), p.strip_suffix("/**").map(String::from)])
        .flatten()
        .collect();
    let (exclude, keep) = (build(&exclude)?, build(keep)?);
    let doomed: Vec<(String, bool)> = tree
        .iter()
        .filter(|(path, _)| exclude.is_match(path.as_str()) && !keep.is_match(path.as_str()))
        .map(|(path, node)| (path.clone(), node.is_dir()))
        .collect();
    for (path, _) in doomed.iter().filter(|(_, dir)| !dir) {
        tree.remove(path);
    }
    for (path, _) in doomed.iter().rev().filter(|(_, dir)| *dir) {
        if tree.descendants(path).next().is_none() {
            tree.remove(path);
        }
    }
    // A hard link whose target was dropped would dangle.
    let dangling: Vec<String> = tree
        .iter()
        .filter(|(_, node)| matches!(&node.kind, Kind::Hardlink { target } if tree.get(target).is_none()))
        .map(|(path, _)| path.clone())
        .collect();
    for path in dangling {
        tree.remove(&path);
    }
    Ok(())
}
