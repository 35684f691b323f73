//! The layering ARCHITECTURE.md promises, checked on the source itself:
//! no crate of the workspace has an import cycle between its files (a child
//! module may use what its parent declares), and no builder stage imports
//! the pipeline that calls it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace root (this crate's parent).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file under `src`, by module path (`image::outputs`), with
/// its code before any `#[cfg(test)]`, comments removed. The crate root
/// (`lib.rs`, `main.rs`) only declares and wires modules and is left out.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut name = relative.to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_string();
            }
            if name == "lib" || name == "main" {
                continue; // the crate root only declares and wires modules
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            // Comments may link to any module (`[Vm](crate::Vm)`): not an import.
            let code: String = code
                .lines()
                .map(|line| line.split("//").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            found.insert(name, code);
        }
    }
    found
}

/// Which modules each module uses (`crate::x`, `super::x`, `use crate::{x, y}`).
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (name, text) in modules {
        let parent = name.rsplit_once("::").map_or("", |(p, _)| p);
        let mut uses = BTreeSet::new();
        let mut add = |full: String| {
            let parts: Vec<&str> = full.split("::").filter(|p| !p.is_empty()).collect();
            let target = (1..=parts.len())
                .rev()
                .map(|k| parts[..k].join("::"))
                .find(|candidate| modules.contains_key(candidate));
            // A child may use what its parent declares (the parent is the
            // interface its children implement, as `source/` in
            // vinyl-streamd); every other import must point one way.
            let is_ancestor = |t: &String| name.starts_with(&format!("{t}::"));
            if let Some(target) = target.filter(|t| t != name && !is_ancestor(t)) {
                uses.insert(target);
            }
        };
        for (base, rest) in module_paths(text) {
            let full = if base == "super" {
                format!("{parent}{rest}")
            } else {
                rest
            };
            add(full);
        }
        // A parent reaches its children by relative paths (`local::start`).
        let children = modules.keys().filter_map(|other| {
            let child = other.strip_prefix(name.as_str())?.strip_prefix("::")?;
            (!child.contains("::")).then_some((other, child))
        });
        for (full, child) in children {
            if names_path(text, child) {
                add(full.clone());
            }
        }
        for (base, prefix) in [("crate", String::new()), ("super", format!("{parent}::"))] {
            for group in text.split(&format!("{base}::{{")).skip(1) {
                let group = group.split('}').next().unwrap_or_default();
                for word in group.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if !word.is_empty() {
                        add(format!("{prefix}{word}"));
                    }
                }
            }
        }
        graph.insert(name.clone(), uses);
    }
    graph
}

/// Whether `text` has a path starting `base::` (not `x_base::`, `y::base::`).
fn names_path(text: &str, base: &str) -> bool {
    text.match_indices(&format!("{base}::")).any(|(at, _)| {
        let before = text[..at].chars().last();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    })
}

/// Every `crate::a::b` / `super::a` path in `text`: (base, "::a::b").
fn module_paths(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for base in ["crate", "super"] {
        let mut rest = text;
        while let Some(at) = rest.find(base) {
            let before = rest[..at].chars().last();
            rest = &rest[at + base.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // part of a longer word
            }
            let mut path = String::new();
            let mut tail = rest;
            while let Some(next) = tail.strip_prefix("::") {
                let word: String = next
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if word.is_empty() {
                    break;
                }
                path.push_str("::");
                path.push_str(&word);
                tail = &next[word.len()..];
            }
            // `super::Thing`, `super::{a, B}`: the parent itself (groups are
            // read by the caller); `crate::Thing`: the root, not a module.
            found.push((base.to_string(), path));
        }
    }
    found
}

/// The cycles (strongly connected components of more than one module).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Kosaraju: order by finishing time, then walk the reversed graph.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        seen: &mut BTreeSet<&'a str>,
        order: &mut Vec<&'a str>,
    ) {
        if !seen.insert(node) {
            return;
        }
        for next in &graph[node] {
            visit(next, graph, seen, order);
        }
        order.push(node);
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for node in graph.keys() {
        visit(node, graph, &mut seen, &mut order);
    }
    let mut reversed: BTreeMap<String, BTreeSet<String>> =
        graph.keys().map(|k| (k.clone(), BTreeSet::new())).collect();
    for (from, tos) in graph {
        for to in tos {
            reversed.get_mut(to).unwrap().insert(from.clone());
        }
    }
    let mut assigned = BTreeSet::new();
    let mut found = Vec::new();
    for node in order.into_iter().rev() {
        let mut component = Vec::new();
        let mut stack = vec![node.to_string()];
        while let Some(current) = stack.pop() {
            if !assigned.insert(current.clone()) {
                continue;
            }
            stack.extend(reversed[&current].iter().cloned());
            component.push(current);
        }
        if component.len() > 1 {
            component.sort();
            found.push(component);
        }
    }
    found
}

#[test]
fn no_crate_has_an_import_cycle() {
    let root = workspace();
    let mut checked = 0;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() || !src.parent().unwrap().join("Cargo.toml").is_file() {
            continue;
        }
        for cycle in cycles(&imports(&modules(&src))) {
            found.push(format!("{}: {}", src.display(), cycle.join(" ↔ ")));
        }
        checked += 1;
    }
    assert!(
        checked >= 7,
        "only {checked} crates found under {}",
        root.display()
    );
    assert!(
        found.is_empty(),
        "modules that import each other (move what both need into a module below them):\n{}",
        found.join("\n")
    );
}

#[test]
fn no_stage_imports_the_pipeline() {
    let graph = imports(&modules(&workspace().join("builder/src")));
    let importers: Vec<&String> = graph
        .iter()
        .filter(|(name, uses)| *name != "pipeline" && uses.contains("pipeline"))
        .map(|(name, _)| name)
        .collect();
    assert!(
        importers.is_empty(),
        "stages import the pipeline: {importers:?}"
    );
    // The pipeline does use the stages: the check sees imports at all.
    assert!(
        graph["pipeline"].contains("rootfs"),
        "{:?}",
        graph["pipeline"]
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let sources = BTreeMap::from([
        ("a".to_string(), "use crate::b::Thing;".to_string()),
        ("b".to_string(), "use super::c::{self};".to_string()),
        ("c".to_string(), "fn f() { crate::a::g() }".to_string()),
        ("d".to_string(), "use crate::{a, c};".to_string()),
    ]);
    let graph = imports(&sources);
    assert_eq!(graph["d"], BTreeSet::from(["a".into(), "c".into()]));
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
    // A parent that calls into its child, which uses the parent's types.
    let sources = BTreeMap::from([
        ("p".to_string(), "fn f() { kid::run() }".to_string()),
        ("p::kid".to_string(), "use super::Thing;".to_string()),
        ("q".to_string(), "use crate::p::kid;".to_string()),
    ]);
    let graph = imports(&sources);
    assert_eq!(graph["p"], BTreeSet::from(["p::kid".into()]));
    assert!(
        graph["p::kid"].is_empty(),
        "the parent is the child's interface"
    );
    assert!(cycles(&graph).is_empty());
    // Two children that use each other are a cycle all the same.
    let sources = BTreeMap::from([
        ("p".to_string(), "pub mod kid; pub mod twin;".to_string()),
        ("p::kid".to_string(), "use super::twin::X;".to_string()),
        ("p::twin".to_string(), "use super::kid::Y;".to_string()),
    ]);
    assert_eq!(cycles(&imports(&sources)), vec![vec!["p::kid", "p::twin"]]);
    // A doc link is not an import: in real files comments are removed first.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x.rs"),
        "/// See [`crate::y`].\nfn f() {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("y.rs"), "use crate::x::f;\n").unwrap();
    let graph = imports(&modules(dir.path()));
    assert!(graph["x"].is_empty(), "{graph:?}");
    assert!(cycles(&graph).is_empty());
}
