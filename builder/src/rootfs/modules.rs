//! Kernel modules: keep only the closure of what the board needs and write
//! the index files kmod's `modprobe` reads, without running depmod.

use super::tree::{Content, Kind, Node, Tree};
use crate::store::{Store, sha256_hex};
use anyhow::{Context as _, Result, bail};
use kernel_modules::{IndexLayout, ModuleInfo, PackageFiles};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Bump when the cached module metadata format changes.
const MODINFO_FORMAT: u32 = 1;

/// What the module step kept.
#[derive(Debug, Clone)]
pub struct ModuleSummary {
    pub kernel_version: String,
    pub kept: usize,
    pub available: usize,
    /// Metadata of the kept modules by path below `usr/lib/modules/<version>`.
    pub infos: BTreeMap<String, ModuleInfo>,
    /// The kernel's `modules.builtin`.
    pub builtin: String,
}

/// The kernel versions with a module tree (`usr/lib/modules/<version>`).
pub fn kernel_versions(tree: &Tree) -> Vec<String> {
    tree.iter()
        .filter_map(|(path, _)| {
            let rest = path.strip_prefix("usr/lib/modules/")?;
            let (version, file) = rest.split_once('/')?;
            (file == "modules.order").then(|| version.to_string())
        })
        .collect()
}

fn is_module(path: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|suffix| path.ends_with(suffix))
}

/// Reduces the tree's module directory to the closure of `wanted` and adds
/// modules.dep, modules.alias and the other indexes.
pub fn prune(
    tree: &mut Tree,
    store: &Store,
    wanted: &[String],
    epoch: i64,
) -> Result<ModuleSummary> {
    let versions = kernel_versions(tree);
    let [version] = &versions[..] else {
        bail!(
            "expected exactly one kernel in the image, found {}: {:?}; keep one kernel package in the board",
            versions.len(),
            versions
        );
    };
    let dir = format!("usr/lib/modules/{version}");
    let files: BTreeMap<String, Content> = tree
        .descendants(&dir)
        .filter_map(|(path, node)| match &node.kind {
            Kind::File { content, .. } if is_module(path) => {
                Some((path[dir.len() + 1..].to_string(), content.clone()))
            }
            _ => None,
        })
        .collect();
    let infos = module_infos(store, &files)?;
    let text = |name: &str| -> Result<Vec<u8>> {
        tree.read(&format!("{dir}/{name}"), store)?
            .with_context(|| format!("/{dir}/{name} is missing from the kernel package"))
    };
    let builtin = String::from_utf8(text("modules.builtin")?)?;
    let order = String::from_utf8(text("modules.order")?)?;
    let builtin_modinfo = text("modules.builtin.modinfo")?;
    let keep = kernel_modules::closure(&infos, &builtin, wanted).with_context(|| {
        format!("kernel modules of {version} (the `modules` lists of the board and its recipes)")
    })?;

    for path in files.keys().filter(|path| !keep.contains(*path)) {
        tree.remove(&format!("{dir}/{path}"));
    }
    remove_empty_dirs(tree, &format!("{dir}/kernel"));

    let kept: BTreeMap<String, ModuleInfo> = infos
        .iter()
        .filter(|(path, _)| keep.contains(*path))
        .map(|(path, info)| (path.clone(), info.clone()))
        .collect();
    let package = PackageFiles {
        modules_order: &order,
        modules_builtin: &builtin,
        modules_builtin_modinfo: &builtin_modinfo,
    };
    // Trixie's kmod (34) writes the pre-order layout; every kmod reads both.
    let indexes = kernel_modules::generate_indexes(&kept, &package, IndexLayout::PreOrder)?;
    for (name, bytes) in indexes {
        tree.insert(&format!("{dir}/{name}"), Node::file(bytes, 0o644, epoch));
    }
    Ok(ModuleSummary {
        kernel_version: version.clone(),
        kept: kept.len(),
        available: infos.len(),
        infos: kept,
        builtin,
    })
}

/// The module files (paths below `usr/lib/modules/<version>`) that `wanted`
/// needs, in an order `insmod` can load them: dependencies first, and the
/// wanted modules in the order given (a board lists first what must load
/// first, such as a Pi's watchdog); what only a dependency needs follows.
pub fn load_order(
    infos: &BTreeMap<String, ModuleInfo>,
    builtin: &str,
    wanted: &[String],
) -> Result<Vec<String>> {
    let keep = kernel_modules::closure(infos, builtin, wanted)?;
    let by_name: BTreeMap<&str, &String> = keep
        .iter()
        .map(|path| (infos[path].name.as_str(), path))
        .collect();
    // Depth first, dependencies before dependants; `seen` also breaks
    // softdep cycles.
    fn visit<'a>(
        path: &'a String,
        infos: &'a BTreeMap<String, ModuleInfo>,
        by_name: &BTreeMap<&str, &'a String>,
        seen: &mut std::collections::BTreeSet<&'a String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(path) {
            return;
        }
        let info = &infos[path];
        for dependency in info.softdep_pre.iter().chain(&info.depends) {
            if let Some(dependency) = by_name.get(dependency.as_str()) {
                visit(dependency, infos, by_name, seen, order);
            }
        }
        order.push(path.clone());
    }
    let mut order = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let named = wanted
        .iter()
        .filter_map(|name| by_name.get(kernel_modules::normalize_name(name).as_str()));
    for path in named.copied().chain(&keep) {
        visit(path, infos, &by_name, &mut seen, &mut order);
    }
    Ok(order)
}

/// Parsed metadata of every module, cached by the digest of the module set:
/// parsing means decompressing ~4000 files (seconds), reading the cache does not.
fn module_infos(
    store: &Store,
    files: &BTreeMap<String, Content>,
) -> Result<BTreeMap<String, ModuleInfo>> {
    let listing: String = files
        .iter()
        .map(|(path, content)| format!("{path} {}\n", super::tree::content_sha256(content)))
        .collect();
    let cache = store
        .subdir(&format!("modinfo-v{MODINFO_FORMAT}"))?
        .join(format!("{}.json", sha256_hex(listing.as_bytes())));
    if let Ok(bytes) = std::fs::read(&cache)
        && let Ok(infos) = serde_json::from_slice(&bytes)
    {
        return Ok(infos);
    }
    let infos = files
        .par_iter()
        .map(|(path, content)| {
            let bytes = super::tree::content_bytes(content, store)?;
            Ok((path.clone(), kernel_modules::parse_module(path, &bytes)?))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    store.write_atomic(&cache, &serde_json::to_vec(&infos)?)?;
    Ok(infos)
}

/// Removes directories below `root` that hold nothing but empty directories.
fn remove_empty_dirs(tree: &mut Tree, root: &str) {
    let dirs: Vec<String> = tree
        .descendants(root)
        .filter(|(_, node)| node.is_dir())
        .map(|(path, _)| path.clone())
        .collect();
    // Deepest first, so emptied parents are seen empty.
    for dir in dirs.iter().rev() {
        if tree.descendants(dir).next().is_none() {
            tree.remove(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, depends: &[&str]) -> ModuleInfo {
        ModuleInfo {
            name: name.into(),
            depends: depends.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn load_order_follows_the_board_list_with_dependencies_first() {
        let infos: BTreeMap<String, ModuleInfo> = [
            (
                "kernel/drivers/mmc/core/mmc_block.ko.xz",
                module("mmc_block", &["mmc_core"]),
            ),
            (
                "kernel/drivers/mmc/core/mmc_core.ko.xz",
                module("mmc_core", &[]),
            ),
            (
                "kernel/drivers/watchdog/bcm2835_wdt.ko.xz",
                module("bcm2835_wdt", &["watchdog"]),
            ),
            (
                "kernel/drivers/watchdog/watchdog.ko.xz",
                module("watchdog", &[]),
            ),
            ("kernel/fs/ext4/ext4.ko.xz", module("ext4", &[])),
        ]
        .into_iter()
        .map(|(path, info)| (path.to_string(), info))
        .collect();
        let wanted = ["bcm2835-wdt", "mmc_block", "ext4"].map(String::from);
        let order = load_order(&infos, "", &wanted).unwrap();
        let names: Vec<&str> = order.iter().map(|p| infos[p].name.as_str()).collect();
        assert_eq!(
            names,
            ["watchdog", "bcm2835_wdt", "mmc_core", "mmc_block", "ext4"]
        );
    }
}
