//! Keep only the kernel modules a board needs and generate the index files
//! kmod's `modprobe`, `modinfo` and udev's kmod builtin read on the device —
//! without running `depmod`, on any host.
//!
//! Everything here is pure: bytes in, bytes out, no filesystem access.
//!
//! 1. [`parse_module`] decompresses a `.ko[.xz|.zst|.gz]` file and reads its
//!    `.modinfo` section and exported symbols into a [`ModuleInfo`].
//! 2. [`closure`] turns a list of wanted module names into the set of module
//!    files to keep (`depends=` closure plus existing `softdep` modules).
//! 3. [`generate_indexes`] writes `modules.dep`, `modules.alias`, … and their
//!    `.bin` tries for the kept modules, byte-compatible with kmod's `depmod`.
//!
//! ```no_run
//! # use std::collections::BTreeMap;
//! # use kernel_modules::*;
//! # fn files() -> Vec<(String, Vec<u8>)> { vec![] }
//! # fn main() -> Result<(), Error> {
//! let mut all = BTreeMap::new();
//! for (relpath, bytes) in files() {
//!     all.insert(relpath.clone(), parse_module(&relpath, &bytes)?);
//! }
//! let builtin = "kernel/fs/ext4/ext4.ko\n";
//! let keep = closure(&all, builtin, &["snd-aloop"])?;
//! let kept: BTreeMap<_, _> = all.into_iter().filter(|(p, _)| keep.contains(p)).collect();
//! let pkg = PackageFiles { modules_order: "", modules_builtin: builtin, modules_builtin_modinfo: b"" };
//! let indexes = generate_indexes(&kept, &pkg, IndexLayout::default())?;
//! # let _ = indexes; Ok(()) }
//! ```

#![warn(missing_docs)]

mod closure;
mod depmod;
mod error;
pub mod index;
mod parse;

pub use closure::{builtin_names, closure};
pub use depmod::{PackageFiles, generate_indexes};
pub use error::Error;
pub use index::IndexLayout;
pub use parse::{Compression, ModuleInfo, decompress, parse_module, parse_module_elf};

/// Normalises a module name the way kmod does: `-` becomes `_`.
///
/// `snd-aloop` and `snd_aloop` name the same module.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name kmod derives from a module's path: the file name up to
/// its first `.`, normalised (`kernel/sound/drivers/snd-aloop.ko.xz` →
/// `snd_aloop`).
pub fn module_name_from_path(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split('.').next().unwrap_or(file);
    normalize_name(stem)
}

/// kmod's `alias_normalize`: `-` → `_` outside `[...]`; `None` (skipped,
/// as depmod does) on unbalanced brackets.
pub(crate) fn normalize_alias(alias: &str) -> Option<String> {
    let mut out = String::with_capacity(alias.len());
    let mut in_brackets = false;
    for c in alias.chars() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            ']' => return None,
            '-' if !in_brackets => {
                out.push('_');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    (!in_brackets).then_some(out)
}
