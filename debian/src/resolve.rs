//! Dependency resolution: from requested package names to the full,
//! deterministic set of packages an image needs.
//!
//! The resolver is greedy like apt's first pass: it walks dependencies in
//! order, keeps whatever already satisfies a relation, and otherwise takes the
//! first alternative that is installable without a conflict (highest version
//! first; real packages before providers of a virtual name). There is no
//! backtracking: when the greedy choice is wrong, naming the wanted package in
//! a recipe settles it, and the error says so.

use crate::index::Package;
use crate::relation::{Alternatives, Relation};
use crate::version::Version;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// All packages available for one architecture, indexed for lookups.
pub struct Universe {
    packages: Vec<Package>,
    /// Real package name → indices, highest version first.
    by_name: HashMap<String, Vec<usize>>,
    /// Provided name → (provider index, provided version).
    providers: HashMap<String, Vec<(usize, Option<Version>)>>,
}

/// Why a set of requests can't be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error(
        "unknown package {name:?} requested by {requested_by}{}",
        suggest(suggestions)
    )]
    Unknown {
        name: String,
        requested_by: String,
        suggestions: Vec<String>,
    },
    #[error(
        "{package} depends on `{dependency}`, which no available package satisfies{}",
        reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    Unsatisfiable {
        package: String,
        dependency: String,
        reason: Option<String>,
    },
}

fn suggest(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        "; check the spelling, and that the package exists for arm64 in trixie".into()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

fn priority_rank(priority: &str) -> u8 {
    match priority {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        _ => 4,
    }
}

impl Universe {
    /// Indexes packages of the wanted architecture (and `all`).
    pub fn new(packages: Vec<Package>, architecture: &str) -> Self {
        let packages: Vec<Package> = packages
            .into_iter()
            .filter(|p| p.architecture == architecture || p.architecture == "all")
            .collect();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<String, Vec<(usize, Option<Version>)>> = HashMap::new();
        for (index, package) in packages.iter().enumerate() {
            by_name.entry(package.name.clone()).or_default().push(index);
            for provided in &package.provides {
                let version = provided.constraint.as_ref().map(|(_, v)| v.clone());
                providers
                    .entry(provided.name.clone())
                    .or_default()
                    .push((index, version));
            }
        }
        for indices in by_name.values_mut() {
            indices.sort_by(|a, b| {
                packages[*b]
                    .version
                    .cmp(&packages[*a].version)
                    .then_with(|| packages[*a].filename.cmp(&packages[*b].filename))
            });
        }
        for list in providers.values_mut() {
            list.sort_by(|(a, _), (b, _)| {
                let (pa, pb) = (&packages[*a], &packages[*b]);
                priority_rank(&pa.priority)
                    .cmp(&priority_rank(&pb.priority))
                    .then_with(|| pa.name.cmp(&pb.name))
                    .then_with(|| pb.version.cmp(&pa.version))
            });
        }
        Universe {
            packages,
            by_name,
            providers,
        }
    }

    /// The package at an index returned by [`resolve`].
    pub fn package(&self, index: usize) -> &Package {
        &self.packages[index]
    }

    /// Candidates for a relation, in preference order.
    fn candidates(&self, relation: &Relation) -> Vec<usize> {
        let real = self
            .by_name
            .get(&relation.name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| relation.accepts(Some(&self.packages[i].version)));
        let provided = self
            .providers
            .get(&relation.name)
            .into_iter()
            .flatten()
            .filter(|(_, version)| relation.accepts(version.as_ref()))
            .map(|(i, _)| *i);
        let mut seen = Vec::new();
        for index in real.chain(provided) {
            if !seen.contains(&index) {
                seen.push(index);
            }
        }
        seen
    }

    fn is_known(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.providers.contains_key(name)
    }

    /// Up to three known names close to `name`, for error messages.
    fn similar_names(&self, name: &str) -> Vec<String> {
        let mut scored: Vec<(usize, &String)> = self
            .by_name
            .keys()
            .map(|candidate| (edit_distance(name, candidate), candidate))
            .filter(|(distance, _)| *distance <= 2.max(name.len() / 4))
            .collect();
        scored.sort();
        scored.into_iter().take(3).map(|(_, n)| n.clone()).collect()
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// Resolution state: the packages chosen so far.
struct Selection<'u> {
    universe: &'u Universe,
    /// Names the image provides without a package (see [`resolve`]).
    assumed: &'u BTreeSet<String>,
    chosen: BTreeMap<String, usize>,
    /// Provided name → (provider, provided version) among chosen packages.
    provided: HashMap<String, Vec<(usize, Option<Version>)>>,
}

impl Selection<'_> {
    fn satisfies(&self, relation: &Relation) -> bool {
        if self.assumed.contains(&relation.name) {
            return true;
        }
        let real = self
            .chosen
            .get(&relation.name)
            .is_some_and(|&i| relation.accepts(Some(&self.universe.packages[i].version)));
        real || self
            .provided
            .get(&relation.name)
            .into_iter()
            .flatten()
            .any(|(_, version)| relation.accepts(version.as_ref()))
    }

    /// Whether `relation` (from a Conflicts/Breaks field of `owner`) hits a
    /// chosen package other than `owner` itself.
    fn conflicts_with(&self, owner: usize, relation: &Relation) -> Option<String> {
        let universe = self.universe;
        if let Some(&i) = self.chosen.get(&relation.name)
            && i != owner
            && relation.accepts(Some(&universe.packages[i].version))
        {
            return Some(universe.packages[i].name.clone());
        }
        self.provided
            .get(&relation.name)
            .into_iter()
            .flatten()
            .find(|(i, version)| *i != owner && relation.accepts(version.as_ref()))
            .map(|(i, _)| universe.packages[*i].name.clone())
    }

    /// The chosen package a candidate would conflict with, if any.
    fn conflict(&self, candidate: usize) -> Option<String> {
        let universe = self.universe;
        let package = &universe.packages[candidate];
        if let Some(found) = package
            .conflicts
            .iter()
            .find_map(|relation| self.conflicts_with(candidate, relation))
        {
            return Some(found);
        }
        self.chosen.values().find_map(|&other| {
            let chosen = &universe.packages[other];
            let hits = chosen.conflicts.iter().any(|relation| {
                other != candidate
                    && ((relation.name == package.name && relation.accepts(Some(&package.version)))
                        || package.provides.iter().any(|p| {
                            p.name == relation.name
                                && relation.accepts(p.constraint.as_ref().map(|(_, v)| v))
                        }))
            });
            hits.then(|| chosen.name.clone())
        })
    }

    fn choose(&mut self, index: usize, queue: &mut VecDeque<(usize, Alternatives)>) {
        let package = &self.universe.packages[index];
        self.chosen.insert(package.name.clone(), index);
        for provided in &package.provides {
            self.provided
                .entry(provided.name.clone())
                .or_default()
                .push((index, provided.constraint.as_ref().map(|(_, v)| v.clone())));
        }
        for group in &package.depends {
            queue.push_back((index, group.clone()));
        }
    }

    /// Picks the first candidate of any alternative that doesn't conflict.
    fn pick(&self, group: &[Relation]) -> Result<usize, Option<String>> {
        let mut last_conflict = None;
        for relation in group {
            for candidate in self.universe.candidates(relation) {
                match self.conflict(candidate) {
                    None => return Ok(candidate),
                    Some(other) => {
                        last_conflict = Some(format!(
                            "{} conflicts with {other}",
                            self.universe.packages[candidate].name
                        ))
                    }
                }
            }
        }
        Err(last_conflict)
    }
}

/// Resolves requested relations (usually plain names) into the indices of
/// every package needed, sorted by package name.
///
/// Each request carries where it came from (a recipe), for errors.
/// `assumed` names are treated as installed without a package: things the
/// builder itself provides, such as the initramfs generator.
pub fn resolve(
    universe: &Universe,
    requests: &[(Relation, String)],
    assumed: &BTreeSet<String>,
) -> Result<Vec<usize>, ResolveError> {
    let mut selection = Selection {
        universe,
        assumed,
        chosen: BTreeMap::new(),
        provided: HashMap::new(),
    };
    let mut queue = VecDeque::new();
    let mut requests: Vec<&(Relation, String)> = requests.iter().collect();
    requests.sort_by(|a, b| a.0.name.cmp(&b.0.name));

    for (relation, requested_by) in requests {
        if !universe.is_known(&relation.name) {
            return Err(ResolveError::Unknown {
                name: relation.name.clone(),
                requested_by: requested_by.clone(),
                suggestions: universe.similar_names(&relation.name),
            });
        }
        if selection.satisfies(relation) {
            continue;
        }
        let index = selection
            .pick(std::slice::from_ref(relation))
            .map_err(|reason| ResolveError::Unsatisfiable {
                package: requested_by.clone(),
                dependency: relation.to_string(),
                reason,
            })?;
        selection.choose(index, &mut queue);
    }

    while let Some((owner, group)) = queue.pop_front() {
        if group.iter().any(|relation| selection.satisfies(relation)) {
            continue;
        }
        let index = selection.pick(&group).map_err(|reason| {
            let package = &universe.packages[owner];
            ResolveError::Unsatisfiable {
                package: format!("{} {}", package.name, package.version),
                dependency: group
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" | "),
                reason: reason
                    .or_else(|| Some("add the package that should provide it to a recipe".into())),
            }
        })?;
        selection.choose(index, &mut queue);
    }
    Ok(selection.chosen.into_values().collect())
}

/// Checks that a set of packages is complete: every request and every
/// `Pre-Depends`/`Depends` group of every package is satisfied by a package
/// of the set (or an `assumed` name). Returns what is missing, as
/// (who wants it, the relation), sorted; empty when the set is complete.
///
/// `installed` holds exactly the set (one version per name), e.g. the
/// packages of a lock as their control files describe them.
pub fn unmet(
    installed: &Universe,
    requests: &[Relation],
    assumed: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut selection = Selection {
        universe: installed,
        assumed,
        chosen: BTreeMap::new(),
        provided: HashMap::new(),
    };
    let mut ignored = VecDeque::new();
    for index in 0..installed.packages.len() {
        selection.choose(index, &mut ignored);
    }
    let mut missing: Vec<(String, String)> = requests
        .iter()
        .filter(|relation| !selection.satisfies(relation))
        .map(|relation| ("the recipes".to_string(), relation.to_string()))
        .collect();
    for package in &installed.packages {
        for group in &package.depends {
            if !group.iter().any(|relation| selection.satisfies(relation)) {
                let wanted: Vec<String> = group.iter().map(ToString::to_string).collect();
                missing.push((
                    format!("{} {}", package.name, package.version),
                    wanted.join(" | "),
                ));
            }
        }
    }
    missing.sort();
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::parse_packages;
    use crate::relation::parse_relation;

    fn universe(stanzas: &str) -> Universe {
        let mut text = String::new();
        for (n, stanza) in stanzas.trim().split("\n\n").enumerate() {
            text.push_str(stanza.trim());
            text.push_str(&format!(
                "\nArchitecture: arm64\nFilename: pool/{n}.deb\nSize: 1\nSHA256: 00\n\n"
            ));
        }
        Universe::new(parse_packages("test", &text, "main").unwrap(), "arm64")
    }

    fn names(universe: &Universe, requests: &[&str]) -> Result<Vec<String>, ResolveError> {
        let requests: Vec<(Relation, String)> = requests
            .iter()
            .map(|r| (parse_relation(r).unwrap(), "recipe test".to_string()))
            .collect();
        resolve(
            universe,
            &requests,
            &BTreeSet::from(["assumed".to_string()]),
        )
        .map(|indices| {
            indices
                .into_iter()
                .map(|i| {
                    format!(
                        "{} {}",
                        universe.package(i).name,
                        universe.package(i).version
                    )
                })
                .collect()
        })
    }

    #[test]
    fn unmet_names_what_a_set_lacks() {
        let complete = universe(
            "Package: app\nVersion: 1\nDepends: lib (>= 2), mail | assumed\n\nPackage: lib\nVersion: 2.0\nProvides: libx (= 2.0)\n\nPackage: tool\nVersion: 1\nDepends: libx (>= 1)",
        );
        let requests = [parse_relation("app").unwrap()];
        let assumed = BTreeSet::from(["assumed".to_string()]);
        assert!(unmet(&complete, &requests, &assumed).is_empty());

        let broken = universe(
            "Package: app\nVersion: 1\nDepends: lib (>= 3)\n\nPackage: lib\nVersion: 2.0\n\nPackage: tool\nVersion: 1\nPre-Depends: gone | also-gone",
        );
        let requests = [
            parse_relation("app").unwrap(),
            parse_relation("deleted").unwrap(),
        ];
        assert_eq!(
            unmet(&broken, &requests, &assumed),
            [
                ("app 1".to_string(), "lib (>= 3)".to_string()),
                ("the recipes".to_string(), "deleted".to_string()),
                ("tool 1".to_string(), "gone | also-gone".to_string()),
            ]
        );
    }

    #[test]
    fn follows_depends_and_picks_highest_version() {
        let u = universe(
            "Package: app\nVersion: 1\nDepends: lib (>= 2)\n\nPackage: lib\nVersion: 2.0\n\nPackage: lib\nVersion: 3.0\nPre-Depends: base\n\nPackage: base\nVersion: 1\n\nPackage: unrelated\nVersion: 1",
        );
        assert_eq!(names(&u, &["app"]).unwrap(), ["app 1", "base 1", "lib 3.0"]);
    }

    #[test]
    fn first_alternative_unless_another_is_already_chosen() {
        let u = universe(
            "Package: app\nVersion: 1\nDepends: a | b\n\nPackage: a\nVersion: 1\n\nPackage: b\nVersion: 1",
        );
        assert_eq!(names(&u, &["app"]).unwrap(), ["a 1", "app 1"]);
        assert_eq!(names(&u, &["app", "b"]).unwrap(), ["app 1", "b 1"]);
    }

    #[test]
    fn virtual_packages_resolve_to_providers_by_priority() {
        let u = universe(
            "Package: app\nVersion: 1\nDepends: mta\n\nPackage: zmail\nVersion: 1\nPriority: standard\nProvides: mta\n\nPackage: amail\nVersion: 1\nProvides: mta\n\nPackage: versioned\nVersion: 1\nProvides: libv (= 5)\n\nPackage: user\nVersion: 1\nDepends: libv (>= 4)",
        );
        assert_eq!(names(&u, &["app"]).unwrap(), ["app 1", "zmail 1"]);
        assert_eq!(names(&u, &["app", "amail"]).unwrap(), ["amail 1", "app 1"]);
        assert_eq!(names(&u, &["user"]).unwrap(), ["user 1", "versioned 1"]);
    }

    #[test]
    fn conflicts_steer_to_the_next_alternative_or_fail() {
        let u = universe(
            "Package: app\nVersion: 1\nDepends: a | b\n\nPackage: a\nVersion: 1\nConflicts: c\n\nPackage: b\nVersion: 1\n\nPackage: c\nVersion: 1\n\nPackage: d\nVersion: 1\nBreaks: c (<< 2)",
        );
        assert_eq!(names(&u, &["app", "c"]).unwrap(), ["app 1", "b 1", "c 1"]);
        let error = names(&u, &["c", "d"]).unwrap_err();
        assert!(error.to_string().contains("d conflicts with c"), "{error}");
    }

    #[test]
    fn assumed_names_satisfy_dependencies_without_packages() {
        let u = universe(
            "Package: kernel\nVersion: 1\nDepends: initramfs-tool | assumed\n\nPackage: initramfs-tool\nVersion: 1",
        );
        assert_eq!(names(&u, &["kernel"]).unwrap(), ["kernel 1"]);
        assert_eq!(
            names(&u, &["kernel", "initramfs-tool"]).unwrap(),
            ["initramfs-tool 1", "kernel 1"]
        );
        let u = universe("Package: kernel\nVersion: 1\nDepends: assumed (>= 2)");
        assert_eq!(names(&u, &["kernel"]).unwrap(), ["kernel 1"]);
    }

    #[test]
    fn self_conflict_through_provides_is_allowed() {
        let u = universe(
            "Package: mta\nVersion: 1\nProvides: mail-transport-agent\nConflicts: mail-transport-agent",
        );
        assert_eq!(names(&u, &["mta"]).unwrap(), ["mta 1"]);
    }

    #[test]
    fn errors_name_the_culprit() {
        let u = universe(
            "Package: app\nVersion: 1\nDepends: missing (>= 1)\n\nPackage: systemd\nVersion: 1",
        );
        let error = names(&u, &["app"]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("app 1 depends on `missing (>= 1)`"),
            "{error}"
        );
        let error = names(&u, &["systemdd"]).unwrap_err();
        assert!(
            error.to_string().contains("did you mean systemd?"),
            "{error}"
        );
        assert!(error.to_string().contains("recipe test"), "{error}");
    }

    #[test]
    fn resolution_is_deterministic_regardless_of_request_order() {
        let u = universe(
            "Package: app\nVersion: 1\nDepends: x | y\n\nPackage: other\nVersion: 1\nDepends: y | x\n\nPackage: x\nVersion: 1\n\nPackage: y\nVersion: 1",
        );
        assert_eq!(names(&u, &["app", "other"]), names(&u, &["other", "app"]));
    }
}
