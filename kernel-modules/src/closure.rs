//! Which module files to keep for a list of wanted modules.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Error, ModuleInfo, module_name_from_path, normalize_alias, normalize_name};

/// The normalised names of the modules listed in `modules.builtin`.
pub fn builtin_names(modules_builtin: &str) -> BTreeSet<String> {
    modules_builtin
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(module_name_from_path)
        .collect()
}

/// Maps each module name to its path; two paths with one name are an error.
pub(crate) fn names_to_paths(
    modules: &BTreeMap<String, ModuleInfo>,
) -> Result<BTreeMap<&str, &str>, Error> {
    let mut by_name = BTreeMap::new();
    for (path, info) in modules {
        if let Some(first) = by_name.insert(info.name.as_str(), path.as_str()) {
            return Err(Error::DuplicateModule {
                name: info.name.clone(),
                first: first.to_owned(),
                second: path.clone(),
            });
        }
    }
    Ok(by_name)
}

/// The module files (paths, as keys of `modules`) to keep so that every
/// `wanted` module can be loaded by `modprobe`.
///
/// `modules` maps every module's path relative to `/usr/lib/modules/<ver>/`
/// to its parsed info; `modules_builtin` is the text of `modules.builtin`.
/// The result holds the wanted modules, everything they `depends=` on,
/// transitively, and the `softdep` `pre:`/`post:` modules (with their own
/// closures) that exist as files. Names are matched with `-` and `_`
/// equivalent. Built-in wanted modules need no file and add nothing.
///
/// Fails on a wanted name that is neither a module nor built in (suggesting
/// close names), on a `depends=` that cannot be satisfied, and on two files
/// with the same module name.
pub fn closure<S: AsRef<str>>(
    modules: &BTreeMap<String, ModuleInfo>,
    modules_builtin: &str,
    wanted: &[S],
) -> Result<BTreeSet<String>, Error> {
    let by_name = names_to_paths(modules)?;
    let builtin = builtin_names(modules_builtin);

    let mut stack = Vec::new();
    for name in wanted {
        let name = name.as_ref();
        let normal = normalize_name(name);
        match by_name.get(normal.as_str()) {
            Some(path) => stack.push(*path),
            None if builtin.contains(&normal) => {}
            None => {
                let known = by_name
                    .keys()
                    .copied()
                    .chain(builtin.iter().map(String::as_str));
                return Err(Error::UnknownModule {
                    name: name.to_owned(),
                    suggestions: suggestions(&normal, known),
                });
            }
        }
    }

    let mut keep = BTreeSet::new();
    while let Some(path) = stack.pop() {
        if !keep.insert(path.to_owned()) {
            continue;
        }
        let info = &modules[path];
        for dep in &info.depends {
            match by_name.get(dep.as_str()) {
                Some(dep_path) => stack.push(dep_path),
                // modpost never lists built-in code, but tolerate it.
                None if builtin.contains(dep) => {}
                None => {
                    return Err(Error::MissingDependency {
                        path: path.to_owned(),
                        dependency: dep.clone(),
                    });
                }
            }
        }
        // Soft dependencies are optional: keep those that exist as files.
        // Like modprobe, a name that is no module is looked up as an alias
        // (ext4 has `softdep=pre: crypto-crc32c`).
        for soft in info.softdep_pre.iter().chain(&info.softdep_post) {
            match by_name.get(soft.as_str()) {
                Some(soft_path) => stack.push(soft_path),
                None => stack.extend(providers(modules, soft)),
            }
        }
    }
    Ok(keep)
}

/// Paths of the modules with an `alias=` pattern matching `name`.
fn providers<'a>(
    modules: &'a BTreeMap<String, ModuleInfo>,
    name: &str,
) -> impl Iterator<Item = &'a str> {
    let Some(name) = normalize_alias(name) else {
        return Vec::new().into_iter();
    };
    let matches: Vec<&str> = modules
        .iter()
        .filter(|(_, info)| {
            info.aliases
                .iter()
                .filter_map(|alias| normalize_alias(alias))
                .any(|pattern| fnmatch(pattern.as_bytes(), name.as_bytes()))
        })
        .map(|(path, _)| path.as_str())
        .collect();
    matches.into_iter()
}

/// Shell-style matching of `*`, `?` and `[...]` (with `!`/`^` negation and
/// ranges), as kmod uses `fnmatch(3)` for alias patterns.
fn fnmatch(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| fnmatch(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && fnmatch(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some((&c, text_rest)) = text.split_first() else {
                return false;
            };
            let negate = matches!(rest.first(), Some(b'!' | b'^'));
            let set = if negate { &rest[1..] } else { rest };
            // A ']' right after '[' (or '[!') is a member, not the end.
            let Some(end) = set.iter().skip(1).position(|&b| b == b']').map(|i| i + 1) else {
                return c == b'[' && fnmatch(rest, text_rest);
            };
            let (members, after) = (&set[..end], &set[end + 1..]);
            let mut found = false;
            let mut i = 0;
            while i < members.len() {
                if i + 2 < members.len() && members[i + 1] == b'-' {
                    found |= (members[i]..=members[i + 2]).contains(&c);
                    i += 3;
                } else {
                    found |= members[i] == c;
                    i += 1;
                }
            }
            found != negate && fnmatch(after, text_rest)
        }
        Some((&p, rest)) => text.first() == Some(&p) && fnmatch(rest, &text[1..]),
    }
}

/// Up to three known names close to `name`: edit distance at most a third
/// of its length (at least 2), or containing it; closest first.
fn suggestions<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Vec<String> {
    let limit = (name.len() / 3).max(2);
    let mut close: Vec<(usize, &str)> = known
        .filter_map(|candidate| {
            let distance = edit_distance(name, candidate);
            let contains = candidate.contains(name) || name.contains(candidate);
            (distance <= limit || contains).then_some((distance, candidate))
        })
        .collect();
    close.sort();
    close.dedup();
    close
        .into_iter()
        .take(3)
        .map(|(_, n)| n.to_owned())
        .collect()
}

/// Levenshtein distance over bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.as_bytes().iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, depends: &[&str], pre: &[&str], post: &[&str]) -> ModuleInfo {
        ModuleInfo {
            name: normalize_name(name),
            depends: depends.iter().map(|d| normalize_name(d)).collect(),
            softdep_pre: pre.iter().map(|d| normalize_name(d)).collect(),
            softdep_post: post.iter().map(|d| normalize_name(d)).collect(),
            ..ModuleInfo::default()
        }
    }

    fn tree() -> BTreeMap<String, ModuleInfo> {
        [
            (
                "kernel/sound/drivers/snd-aloop.ko.xz",
                module("snd-aloop", &["snd-pcm", "snd"], &[], &[]),
            ),
            (
                "kernel/sound/core/snd-pcm.ko.xz",
                module("snd-pcm", &["snd-timer", "snd"], &[], &[]),
            ),
            (
                "kernel/sound/core/snd-timer.ko.xz",
                module("snd-timer", &["snd"], &[], &[]),
            ),
            (
                "kernel/sound/core/snd.ko.xz",
                module("snd", &["soundcore"], &[], &[]),
            ),
            (
                "kernel/sound/soundcore.ko.xz",
                module("soundcore", &[], &[], &[]),
            ),
            (
                "kernel/fs/ext4/ext4.ko.xz",
                module(
                    "ext4",
                    &["jbd2"],
                    &["crc32c"],
                    &["unicode-ish", "unrelated"],
                ),
            ),
            ("kernel/fs/jbd2/jbd2.ko.xz", module("jbd2", &[], &[], &[])),
            (
                "kernel/lib/crc32c.ko.xz",
                module("crc32c", &["libcrc"], &[], &[]),
            ),
            ("kernel/lib/libcrc.ko.xz", module("libcrc", &[], &[], &[])),
            (
                "kernel/fs/unrelated.ko.xz",
                module("unrelated", &[], &[], &[]),
            ),
            ("kernel/fs/lonely.ko.xz", module("lonely", &[], &[], &[])),
        ]
        .into_iter()
        .map(|(p, m)| (p.to_owned(), m))
        .collect()
    }

    const BUILTIN: &str = "kernel/drivers/block/virtio_blk.ko\nkernel/mm/zsmalloc.ko\n";

    fn paths(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    #[test]
    fn depends_closure_with_dash_underscore_equivalence() {
        let keep = closure(&tree(), BUILTIN, &["snd_aloop"]).unwrap();
        assert_eq!(
            paths(&keep),
            [
                "kernel/sound/core/snd-pcm.ko.xz",
                "kernel/sound/core/snd-timer.ko.xz",
                "kernel/sound/core/snd.ko.xz",
                "kernel/sound/drivers/snd-aloop.ko.xz",
                "kernel/sound/soundcore.ko.xz",
            ]
        );
    }

    #[test]
    fn softdeps_that_exist_are_kept_with_their_closure() {
        let keep = closure(&tree(), BUILTIN, &["ext4"]).unwrap();
        assert_eq!(
            paths(&keep),
            [
                "kernel/fs/ext4/ext4.ko.xz",
                "kernel/fs/jbd2/jbd2.ko.xz",
                "kernel/fs/unrelated.ko.xz",
                "kernel/lib/crc32c.ko.xz",
                "kernel/lib/libcrc.ko.xz",
            ]
        );
    }

    #[test]
    fn builtin_wanted_needs_no_file() {
        let keep = closure(&tree(), BUILTIN, &["virtio-blk", "lonely"]).unwrap();
        assert_eq!(paths(&keep), ["kernel/fs/lonely.ko.xz"]);
    }

    #[test]
    fn unknown_name_is_an_error_with_suggestions() {
        let err = closure(&tree(), BUILTIN, &["snd-alop"]).unwrap_err();
        let Error::UnknownModule { name, suggestions } = &err else {
            panic!("unexpected {err}");
        };
        assert_eq!(name, "snd-alop");
        assert_eq!(suggestions.first().map(String::as_str), Some("snd_aloop"));
        assert!(err.to_string().contains("did you mean snd_aloop"), "{err}");
    }

    #[test]
    fn missing_dependency_names_the_module() {
        let mut modules = tree();
        modules.remove("kernel/sound/soundcore.ko.xz");
        let err = closure(&modules, BUILTIN, &["snd-aloop"]).unwrap_err();
        assert!(
            matches!(&err, Error::MissingDependency { path, dependency }
                if path == "kernel/sound/core/snd.ko.xz" && dependency == "soundcore"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_module_names_are_rejected() {
        let mut modules = tree();
        modules.insert("updates/snd.ko".into(), module("snd", &[], &[], &[]));
        assert!(matches!(
            closure(&modules, BUILTIN, &["lonely"]),
            Err(Error::DuplicateModule { name, .. }) if name == "snd"
        ));
    }

    #[test]
    fn softdep_names_resolve_through_aliases() {
        let mut modules = tree();
        let ext4 = modules.get_mut("kernel/fs/ext4/ext4.ko.xz").unwrap();
        ext4.softdep_pre = vec!["crypto_crc32c".into()];
        ext4.softdep_post.clear();
        modules.get_mut("kernel/lib/crc32c.ko.xz").unwrap().aliases = vec!["crypto-crc32c".into()];
        modules.get_mut("kernel/fs/lonely.ko.xz").unwrap().aliases = vec!["crypto-crc32?".into()];
        let keep = closure(&modules, BUILTIN, &["ext4"]).unwrap();
        assert_eq!(
            paths(&keep),
            [
                "kernel/fs/ext4/ext4.ko.xz",
                "kernel/fs/jbd2/jbd2.ko.xz",
                "kernel/fs/lonely.ko.xz",
                "kernel/lib/crc32c.ko.xz",
                "kernel/lib/libcrc.ko.xz",
            ]
        );
    }

    #[test]
    fn fnmatch_like_libc() {
        let m = |p: &str, t: &str| fnmatch(p.as_bytes(), t.as_bytes());
        assert!(m("pci:v00008086d*sv*", "pci:v00008086d00001234sv0000"));
        assert!(!m("pci:v00008086d*sv*", "pci:v00008087d00001234sv0000"));
        assert!(m("usb:v1234p*d*dc*", "usb:v1234p0001d0100dc00"));
        assert!(m("a?c", "abc") && !m("a?c", "ac"));
        assert!(m("x[0-9]y", "x5y") && !m("x[0-9]y", "xay"));
        assert!(m("x[!0-9]y", "xay") && !m("x[!0-9]y", "x5y"));
        assert!(m("x[]]y", "x]y"));
        assert!(m("*", "") && !m("", "a"));
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("snd_aloop", "snd_aloop"), 0);
    }
}
