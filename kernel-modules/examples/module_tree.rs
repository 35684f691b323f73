//! Parses a real module tree, computes a closure and writes the kept
//! modules plus generated indexes, timing each step.
//!
//! ```text
//! cargo run --release -p kernel-modules --example module_tree -- \
//!     /path/to/usr/lib/modules/<ver> [--out DIR] [--all] [--post-order] MODULE...
//! ```
//!
//! `--all` keeps every module (to time index generation for a full tree);
//! `--post-order` writes `.bin` files like kmod ≤ 33's depmod.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use std::{env, fs};

use kernel_modules::{
    Compression, IndexLayout, PackageFiles, closure, generate_indexes, parse_module,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = env::args().skip(1);
    let root = PathBuf::from(
        args.next()
            .ok_or("usage: module_tree MODDIR [--out DIR] [--all] MODULE...")?,
    );
    let (mut out, mut all, mut layout, mut wanted) =
        (None, false, IndexLayout::PreOrder, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a directory")?)),
            "--all" => all = true,
            "--post-order" => layout = IndexLayout::PostOrder,
            _ => wanted.push(arg),
        }
    }

    let start = Instant::now();
    let mut files = Vec::new();
    collect(&root, &root, &mut files)?;
    let read = start.elapsed();

    // Parsing is independent per file: spread it over the available cores.
    let start = Instant::now();
    let jobs = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = files.len().div_ceil(jobs).max(1);
    let parsed_chunks: Vec<Result<Vec<_>, _>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(relpath, bytes)| {
                            Ok((relpath.clone(), parse_module(relpath, bytes)?))
                        })
                        .collect::<Result<Vec<_>, kernel_modules::Error>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("parser thread"))
            .collect()
    });
    let mut modules = BTreeMap::new();
    for part in parsed_chunks {
        modules.extend(part?);
    }
    let parsed = start.elapsed();

    let text = |name: &str| fs::read_to_string(root.join(name)).unwrap_or_default();
    let (order, builtin) = (text("modules.order"), text("modules.builtin"));
    let builtin_modinfo = fs::read(root.join("modules.builtin.modinfo")).unwrap_or_default();

    let start = Instant::now();
    let keep = if all {
        modules.keys().cloned().collect()
    } else {
        closure(&modules, &builtin, &wanted)?
    };
    let closed = start.elapsed();
    let kept: BTreeMap<_, _> = modules
        .into_iter()
        .filter(|(p, _)| keep.contains(p))
        .collect();

    let start = Instant::now();
    let package = PackageFiles {
        modules_order: &order,
        modules_builtin: &builtin,
        modules_builtin_modinfo: &builtin_modinfo,
    };
    let indexes = generate_indexes(&kept, &package, layout)?;
    let indexed = start.elapsed();

    eprintln!(
        "{} module files read in {read:.2?}, parsed in {parsed:.2?} ({jobs} threads); closure of {} kept in {closed:.2?}; \
         {} index files ({} bytes) in {indexed:.2?}",
        files.len(),
        kept.len(),
        indexes.len(),
        indexes.values().map(Vec::len).sum::<usize>(),
    );

    if let Some(out) = out {
        let by_path: BTreeMap<_, _> = files.into_iter().collect();
        for path in kept.keys() {
            let dest = out.join(path);
            fs::create_dir_all(dest.parent().expect("module path has a directory"))?;
            fs::write(dest, &by_path[path])?;
        }
        for name in [
            "modules.order",
            "modules.builtin",
            "modules.builtin.modinfo",
        ] {
            if root.join(name).exists() {
                fs::copy(root.join(name), out.join(name))?;
            }
        }
        for (name, bytes) in &indexes {
            fs::write(out.join(name), bytes)?;
        }
    } else {
        for path in kept.keys() {
            println!("{path}");
        }
    }
    Ok(())
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
        } else {
            let relpath = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if relpath.contains('/') && Compression::from_path(&relpath).is_some() {
                files.push((relpath, fs::read(&path)?));
            }
        }
    }
    Ok(())
}
