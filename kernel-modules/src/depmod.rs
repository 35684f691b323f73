//! Generating the files `depmod` would write, for a set of kept modules.
//!
//! Mirrors kmod's `tools/depmod.c`: modules are ordered by `modules.order`;
//! a module's position is its priority in the `.bin` indexes; a module's
//! dependencies are listed in a global topological order (modules nobody
//! depends on first) computed exactly like depmod's, so `modprobe` loads them
//! in reverse. Dependencies come from `depends=` (which modpost derives from
//! the same symbol resolution depmod performs); their order, which decides
//! ties in the topological order, from the symbols each module imports.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::closure::names_to_paths;
use crate::index::{Index, IndexLayout};
use crate::{Compression, Error, ModuleInfo, module_name_from_path, normalize_alias};

/// Files shipped by the kernel package that the indexes are built from.
#[derive(Debug, Clone, Copy, Default)]
pub struct PackageFiles<'a> {
    /// Text of `modules.order`: sets module order and index priorities
    /// (modules it does not list come last, sorted by path). May be empty.
    pub modules_order: &'a str,
    /// Text of `modules.builtin`, for `modules.builtin.bin`.
    pub modules_builtin: &'a str,
    /// Contents of `modules.builtin.modinfo`, for `modules.builtin.alias.bin`.
    pub modules_builtin_modinfo: &'a [u8],
}

/// Generates every index file `modprobe`, `modinfo` and udev's kmod builtin
/// read, for the `kept` modules (path relative to `/usr/lib/modules/<ver>/`
/// → info): file name → contents, byte-deterministic.
///
/// Produces `modules.dep`, `modules.dep.bin`, `modules.alias`,
/// `modules.alias.bin`, `modules.softdep`, `modules.weakdep`,
/// `modules.symbols`, `modules.symbols.bin`, `modules.builtin.bin`,
/// `modules.builtin.alias.bin` and `modules.devname`. The text files match
/// depmod's byte for byte except `modules.symbols`, whose lines depmod writes
/// in hash order and this writes sorted by symbol.
///
/// Fails if a kept module depends on a module that is neither kept nor
/// built in (pass the output of [`closure`](crate::closure)), on dependency
/// cycles, duplicate module names and non-ASCII names.
pub fn generate_indexes(
    kept: &BTreeMap<String, ModuleInfo>,
    package: &PackageFiles,
    layout: IndexLayout,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let modules = Modules::new(kept, package)?;
    let mut files = BTreeMap::new();
    let mut add = |name: &str, bytes: Vec<u8>| files.insert(name.to_owned(), bytes);

    let (dep, dep_bin) = modules.deps()?;
    add("modules.dep", dep.into_bytes());
    add("modules.dep.bin", dep_bin.to_bytes(layout));
    let (alias, alias_bin) = modules.aliases()?;
    add("modules.alias", alias.into_bytes());
    add("modules.alias.bin", alias_bin.to_bytes(layout));
    add("modules.softdep", modules.softdeps().into_bytes());
    add("modules.weakdep", modules.weakdeps().into_bytes());
    let (symbols, symbols_bin) = modules.symbols()?;
    add("modules.symbols", symbols.into_bytes());
    add("modules.symbols.bin", symbols_bin.to_bytes(layout));
    add(
        "modules.builtin.bin",
        builtin(package.modules_builtin)?.to_bytes(layout),
    );
    let builtin_alias = builtin_aliases(package.modules_builtin_modinfo)?;
    add("modules.builtin.alias.bin", builtin_alias.to_bytes(layout));
    add("modules.devname", modules.devnames().into_bytes());
    Ok(files)
}

/// One kept module, in depmod's order.
struct Module<'a> {
    path: &'a str,
    info: &'a ModuleInfo,
    /// Direct dependencies (indexes into `Modules::list`), in the order the
    /// module first uses one of their symbols.
    deps: Vec<usize>,
}

/// The kept modules in depmod's order, with their topological ranks.
struct Modules<'a> {
    list: Vec<Module<'a>>,
    /// Per module: its position in depmod's topological order.
    rank: Vec<usize>,
}

impl<'a> Modules<'a> {
    fn new(kept: &'a BTreeMap<String, ModuleInfo>, package: &PackageFiles) -> Result<Self, Error> {
        names_to_paths(kept)?;
        let mut order: HashMap<&str, usize> = HashMap::new();
        for (line, path) in package.modules_order.lines().enumerate() {
            order.entry(path).or_insert(line);
        }
        let mut list: Vec<Module> = kept
            .iter()
            .map(|(path, info)| Module {
                path,
                info,
                deps: Vec::new(),
            })
            .collect();
        // BTreeMap iteration is by path already; the sort is stable.
        list.sort_by_key(|m| {
            let uncompressed = Compression::uncompressed_path(m.path).unwrap_or(m.path);
            order.get(uncompressed).copied().unwrap_or(usize::MAX)
        });

        let builtin = crate::builtin_names(package.modules_builtin);
        let position: HashMap<&str, usize> = list
            .iter()
            .enumerate()
            .map(|(i, m)| (m.info.name.as_str(), i))
            .collect();
        // Like depmod's symbol hash: a symbol exported twice belongs to the
        // later module.
        let mut exporter: HashMap<&str, usize> = HashMap::new();
        for (i, module) in list.iter().enumerate() {
            exporter.extend(module.info.exports.iter().map(|s| (s.as_str(), i)));
        }
        for module in &mut list {
            let info = module.info;
            let mut deps = Vec::new();
            for dep in &info.depends {
                match position.get(dep.as_str()) {
                    Some(&d) if !deps.contains(&d) => deps.push(d),
                    Some(_) => {}
                    None if builtin.contains(dep) => {}
                    None => {
                        return Err(Error::MissingDependency {
                            path: module.path.to_owned(),
                            dependency: dep.clone(),
                        });
                    }
                }
            }
            // depmod lists dependencies in the order the module first uses
            // one of their symbols; that order decides topological ties.
            let first_use = |d: &usize| {
                info.imports
                    .iter()
                    .position(|s| exporter.get(s.as_str()) == Some(d))
                    .unwrap_or(usize::MAX)
            };
            deps.sort_by_cached_key(first_use);
            module.deps = deps;
        }
        let rank = topological_rank(&list)?;
        Ok(Modules { list, rank })
    }

    /// All transitive dependencies of module `i`, in topological order.
    fn all_deps(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.list.len()];
        let mut all = Vec::new();
        let mut stack = self.list[i].deps.clone();
        while let Some(d) = stack.pop() {
            if !std::mem::replace(&mut seen[d], true) {
                all.push(d);
                stack.extend(&self.list[d].deps);
            }
        }
        all.sort_by_key(|&d| self.rank[d]);
        all
    }

    fn deps(&self) -> Result<(String, Index), Error> {
        let (mut text, mut index) = (String::new(), Index::new());
        for (i, module) in self.list.iter().enumerate() {
            let mut line = format!("{}:", module.path);
            for d in self.all_deps(i) {
                line.push(' ');
                line.push_str(self.list[d].path);
            }
            index.insert(&module.info.name, &line, priority(i))?;
            text.push_str(&line);
            text.push('\n');
        }
        Ok((text, index))
    }

    fn aliases(&self) -> Result<(String, Index), Error> {
        let mut text = String::from("# Aliases extracted from modules themselves.\n");
        let mut index = Index::new();
        for (i, module) in self.list.iter().enumerate() {
            for alias in &module.info.aliases {
                let _ = writeln!(text, "alias {alias} {}", module.info.name);
                if let Some(key) = normalize_alias(alias) {
                    index.insert(&key, &module.info.name, priority(i))?;
                }
            }
        }
        Ok((text, index))
    }

    fn softdeps(&self) -> String {
        let mut text = String::from("# Soft dependencies extracted from modules themselves.\n");
        for module in &self.list {
            for value in &module.info.softdeps {
                let _ = writeln!(text, "softdep {} {value}", module.info.name);
            }
        }
        text
    }

    fn weakdeps(&self) -> String {
        let mut text = String::from("# Weak dependencies extracted from modules themselves.\n");
        for module in &self.list {
            for value in &module.info.weakdeps {
                let _ = writeln!(text, "weakdep {} {value}", module.info.name);
            }
        }
        text
    }

    fn symbols(&self) -> Result<(String, Index), Error> {
        // Like depmod's hash: a symbol exported twice belongs to the later module.
        let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, module) in self.list.iter().enumerate() {
            for symbol in &module.info.exports {
                owner.insert(symbol, i);
            }
        }
        let mut text = String::from("# Aliases for symbols, used by symbol_request().\n");
        let mut index = Index::new();
        for (symbol, &i) in &owner {
            let name = &self.list[i].info.name;
            let _ = writeln!(text, "alias symbol:{symbol} {name}");
            index.insert(&format!("symbol:{symbol}"), name, priority(i))?;
        }
        Ok((text, index))
    }

    fn devnames(&self) -> String {
        let mut text = String::new();
        for module in &self.list {
            let mut devname = None;
            let mut node = None;
            for alias in &module.info.aliases {
                if let Some(name) = alias.strip_prefix("devname:") {
                    devname = Some(name);
                } else if let Some(numbers) = alias.strip_prefix("char-major-") {
                    node = major_minor(numbers).map(|n| ('c', n)).or(node);
                } else if let Some(numbers) = alias.strip_prefix("block-major-") {
                    node = major_minor(numbers).map(|n| ('b', n)).or(node);
                }
                if devname.is_some() && node.is_some() {
                    break;
                }
            }
            if let (Some(devname), Some((kind, (major, minor)))) = (devname, node) {
                if text.is_empty() {
                    text.push_str("# Device nodes to trigger on-demand module loading.\n");
                }
                let _ = writeln!(text, "{} {devname} {kind}{major}:{minor}", module.info.name);
            }
        }
        text
    }
}

/// depmod's Kahn sort: a LIFO of modules without remaining users, seeded in
/// module order, walking each module's dependencies in their listed order.
fn topological_rank(list: &[Module]) -> Result<Vec<usize>, Error> {
    let mut users = vec![0usize; list.len()];
    for module in list {
        for &d in &module.deps {
            users[d] += 1;
        }
    }
    let mut roots: Vec<usize> = (0..list.len()).filter(|&i| users[i] == 0).collect();
    let mut rank = vec![usize::MAX; list.len()];
    let mut next = 0;
    while let Some(i) = roots.pop() {
        rank[i] = next;
        next += 1;
        for &d in &list[i].deps {
            users[d] -= 1;
            if users[d] == 0 {
                roots.push(d);
            }
        }
    }
    if next < list.len() {
        let cycle = (0..list.len())
            .filter(|&i| rank[i] == usize::MAX)
            .map(|i| list[i].info.name.clone())
            .collect();
        return Err(Error::DependencyCycle(cycle));
    }
    Ok(rank)
}

fn priority(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 4 G modules")
}

/// `sscanf(s, "%u-%u")` for `char-major-M-N` / `block-major-M-N` aliases.
fn major_minor(s: &str) -> Option<(u32, u32)> {
    fn number(s: &str) -> Option<(u32, &str)> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        Some((s[..end].parse().ok()?, &s[end..]))
    }
    let (major, rest) = number(s)?;
    let (minor, _) = number(rest.strip_prefix('-')?)?;
    Some((major, minor))
}

/// `modules.builtin.bin`: every built-in module name, with an empty value.
fn builtin(modules_builtin: &str) -> Result<Index, Error> {
    let mut index = Index::new();
    for line in modules_builtin.lines() {
        if line.starts_with(|c: char| c.is_ascii_alphabetic()) {
            index.insert(&module_name_from_path(line), "", 0)?;
        }
    }
    Ok(index)
}

/// `modules.builtin.alias.bin`: the `alias=` entries of
/// `modules.builtin.modinfo` (`modname.key=value\0…`).
fn builtin_aliases(modinfo: &[u8]) -> Result<Index, Error> {
    let mut index = Index::new();
    for entry in modinfo.split(|&b| b == 0) {
        let entry = String::from_utf8_lossy(entry);
        let Some((module, rest)) = entry.split_once('.') else {
            continue;
        };
        let Some(("alias", value)) = rest.split_once('=') else {
            continue;
        };
        if module.is_empty() || value.is_empty() {
            continue;
        }
        if let Some(key) = normalize_alias(value) {
            index.insert(&key, module, 0)?;
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_normalisation_keeps_bracket_contents() {
        assert_eq!(
            normalize_alias("of:N*T*Cfoo-bar").as_deref(),
            Some("of:N*T*Cfoo_bar")
        );
        assert_eq!(normalize_alias("a-[x-z]-b").as_deref(), Some("a_[x-z]_b"));
        assert_eq!(normalize_alias("a]b"), None);
        assert_eq!(normalize_alias("a[b"), None);
    }

    fn module(name: &str, depends: &[&str], imports: &[&str], exports: &[&str]) -> ModuleInfo {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        ModuleInfo {
            name: name.into(),
            depends: strings(depends),
            imports: strings(imports),
            exports: strings(exports),
            ..ModuleInfo::default()
        }
    }

    fn text(files: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
        String::from_utf8(files[name].clone()).unwrap()
    }

    #[test]
    fn dependency_lines_follow_depmods_order() {
        // `fb` needs the independent `algo` and `ddc`; it lists `algo` first
        // in depends= but uses a `ddc` symbol first. depmod walks them in
        // symbol-use order, so its LIFO ranks `algo` before `ddc` (depends=
        // order would give `ddc algo`).
        let mut fb = module(
            "fb",
            &["algo", "ddc"],
            &["kfree", "ddc_read", "algo_add"],
            &[],
        );
        fb.aliases = vec![
            "pci:v0000121Ad*".into(),
            "devname:fb0".into(),
            "char-major-29-0".into(),
        ];
        fb.softdeps = vec!["pre: ddc".into()];
        let kept: BTreeMap<String, ModuleInfo> = [
            ("kernel/fb.ko.xz", fb),
            ("kernel/algo.ko.xz", module("algo", &[], &[], &["algo_add"])),
            ("kernel/ddc.ko.xz", module("ddc", &[], &[], &["ddc_read"])),
            (
                "extra/unlisted.ko",
                module("unlisted", &["builtin_one"], &[], &["algo_add"]),
            ),
        ]
        .into_iter()
        .map(|(p, m)| (p.to_owned(), m))
        .collect();
        let package = PackageFiles {
            modules_order: "kernel/ddc.ko\nkernel/fb.ko\nkernel/algo.ko\n",
            modules_builtin: "kernel/builtin-one.ko\n",
            modules_builtin_modinfo: b"builtin_one.alias=fs-one\0builtin_one.license=GPL\0",
        };
        let files = generate_indexes(&kept, &package, IndexLayout::PreOrder).unwrap();
        assert_eq!(
            text(&files, "modules.dep"),
            "kernel/ddc.ko.xz:\n\
             kernel/fb.ko.xz: kernel/algo.ko.xz kernel/ddc.ko.xz\n\
             kernel/algo.ko.xz:\n\
             extra/unlisted.ko:\n"
        );
        assert_eq!(
            text(&files, "modules.alias"),
            "# Aliases extracted from modules themselves.\n\
             alias pci:v0000121Ad* fb\nalias devname:fb0 fb\nalias char-major-29-0 fb\n"
        );
        assert_eq!(
            text(&files, "modules.devname"),
            "# Device nodes to trigger on-demand module loading.\nfb fb0 c29:0\n"
        );
        assert!(text(&files, "modules.softdep").ends_with("\nsoftdep fb pre: ddc\n"));
        // algo_add is exported twice: the later module (unlisted) wins.
        assert_eq!(
            text(&files, "modules.symbols"),
            "# Aliases for symbols, used by symbol_request().\n\
             alias symbol:algo_add unlisted\nalias symbol:ddc_read ddc\n"
        );
        use crate::index::tests::dump;
        let entry = |k: &str, p: u32, v: &str| (k.to_owned(), p, v.to_owned());
        assert_eq!(
            dump(&files["modules.dep.bin"]),
            [
                entry("algo", 2, "kernel/algo.ko.xz:"),
                entry("ddc", 0, "kernel/ddc.ko.xz:"),
                entry(
                    "fb",
                    1,
                    "kernel/fb.ko.xz: kernel/algo.ko.xz kernel/ddc.ko.xz"
                ),
                entry("unlisted", 3, "extra/unlisted.ko:"),
            ]
        );
        assert_eq!(
            dump(&files["modules.alias.bin"])[0],
            entry("char_major_29_0", 1, "fb")
        );
        assert_eq!(
            dump(&files["modules.builtin.bin"]),
            [entry("builtin_one", 0, "")]
        );
        assert_eq!(
            dump(&files["modules.builtin.alias.bin"]),
            [entry("fs_one", 0, "builtin_one")]
        );
        assert_eq!(
            generate_indexes(&kept, &package, IndexLayout::PreOrder).unwrap(),
            files,
            "deterministic"
        );
    }

    #[test]
    fn incomplete_or_cyclic_sets_are_errors() {
        let one = |deps: &[&str]| -> BTreeMap<String, ModuleInfo> {
            [
                ("a.ko".to_owned(), module("a", deps, &[], &[])),
                ("b.ko".to_owned(), module("b", &["a"], &[], &[])),
            ]
            .into_iter()
            .collect()
        };
        let package = PackageFiles::default();
        let err = generate_indexes(&one(&["c"]), &package, IndexLayout::PreOrder).unwrap_err();
        assert!(
            matches!(&err, Error::MissingDependency { path, dependency } if path == "a.ko" && dependency == "c")
        );
        let err = generate_indexes(&one(&["b"]), &package, IndexLayout::PreOrder).unwrap_err();
        assert!(
            matches!(&err, Error::DependencyCycle(names) if names == &["a", "b"]),
            "{err}"
        );
    }

    #[test]
    fn major_minor_like_sscanf() {
        assert_eq!(major_minor("10-237"), Some((10, 237)));
        assert_eq!(major_minor("10-237x"), Some((10, 237)));
        assert_eq!(major_minor("10-*"), None);
        assert_eq!(major_minor("10"), None);
    }
}
