//! systemd unit enablement at build time: what `systemctl preset-all` and
//! `systemctl enable` do, as symlinks in the tree. Pure: unit and preset texts
//! in, symlinks out.

use globset::Glob;
use std::collections::{BTreeMap, BTreeSet};

/// The `[Install]` section of a unit file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Install {
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub upheld_by: Vec<String>,
    pub alias: Vec<String>,
    pub also: Vec<String>,
    pub default_instance: Option<String>,
}

impl Install {
    /// Whether enabling does anything (units without it are "static").
    pub fn is_empty(&self) -> bool {
        self.wanted_by.is_empty()
            && self.required_by.is_empty()
            && self.upheld_by.is_empty()
            && self.alias.is_empty()
            && self.also.is_empty()
    }
}

/// Reads the `[Install]` section of a unit file.
pub fn parse_install(unit_text: &str) -> Install {
    let mut install = Install::default();
    let mut in_install = false;
    for line in unit_text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install || line.starts_with(['#', ';']) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let values = value.split_whitespace().map(String::from);
        match key.trim() {
            "WantedBy" => install.wanted_by.extend(values),
            "RequiredBy" => install.required_by.extend(values),
            "UpheldBy" => install.upheld_by.extend(values),
            "Alias" => install.alias.extend(values),
            "Also" => install.also.extend(values),
            "DefaultInstance" => install.default_instance = Some(value.trim().to_string()),
            _ => {}
        }
    }
    install
}

/// A preset rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Enable {
        pattern: String,
        instances: Vec<String>,
    },
    Disable(String),
    Ignore(String),
}

/// The preset policy: rules from all preset files, first match wins.
#[derive(Debug, Clone, Default)]
pub struct Presets {
    rules: Vec<Rule>,
}

/// What the presets say about one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Enable, with these template instances (empty: the default instance).
    Enable(Vec<String>),
    Disable,
}

impl Presets {
    /// Reads preset files given as (file name, text); they are applied in
    /// file-name order, as systemd does.
    pub fn parse(files: &BTreeMap<String, String>) -> Presets {
        let mut rules = Vec::new();
        for text in files.values() {
            for line in text.lines() {
                let mut words = line.split_whitespace();
                let (Some(verb), Some(pattern)) = (words.next(), words.next()) else {
                    continue;
                };
                let pattern = pattern.to_string();
                rules.push(match verb {
                    "enable" => Rule::Enable {
                        pattern,
                        instances: words.map(String::from).collect(),
                    },
                    "disable" => Rule::Disable(pattern),
                    "ignore" => Rule::Ignore(pattern),
                    _ => continue,
                });
            }
        }
        Presets { rules }
    }

    /// The first matching rule decides; no match means enable (systemd's
    /// default). `ignore` counts as disable: nothing is created.
    pub fn decide(&self, unit: &str) -> Decision {
        let matches = |pattern: &str| {
            Glob::new(pattern)
                .map(|g| g.compile_matcher().is_match(unit))
                .unwrap_or(false)
        };
        for rule in &self.rules {
            match rule {
                Rule::Enable { pattern, instances } if matches(pattern) => {
                    return Decision::Enable(instances.clone());
                }
                Rule::Disable(pattern) | Rule::Ignore(pattern) if matches(pattern) => {
                    return Decision::Disable;
                }
                _ => {}
            }
        }
        Decision::Enable(Vec::new())
    }
}

/// The symlinks (path under `etc/systemd/system/` → target) that enable
/// `unit` (a file name like `getty@.service`) and its `Also=` units.
/// `units` maps unit file names to (absolute path, text). Unknown units in
/// `Also=` are skipped; an unknown `unit` is an error.
pub fn enable(
    unit: &str,
    instances: &[String],
    units: &BTreeMap<String, (String, String)>,
    links: &mut BTreeMap<String, String>,
    visited: &mut BTreeSet<String>,
) -> Result<(), String> {
    let (template, instance) = split_instance(unit);
    let file_name = match instance {
        Some(_) => template.clone(),
        None => unit.to_string(),
    };
    let (path, text) = units
        .get(&file_name)
        .ok_or_else(|| format!("unit {unit} is not in the image"))?;
    if !visited.insert(unit.to_string()) {
        return Ok(());
    }
    let install = parse_install(text);
    // Which concrete names to link: instances of a template, or the unit.
    let names: Vec<String> = if file_name.contains("@.") {
        let mut wanted: Vec<String> = instances.to_vec();
        if let Some(instance) = instance {
            wanted.push(instance);
        }
        if wanted.is_empty() {
            wanted.extend(install.default_instance.clone());
        }
        wanted
            .iter()
            .map(|i| file_name.replacen("@.", &format!("@{i}."), 1))
            .collect()
    } else {
        vec![file_name.clone()]
    };
    for name in &names {
        for (targets, suffix) in [
            (&install.wanted_by, "wants"),
            (&install.required_by, "requires"),
            (&install.upheld_by, "upholds"),
        ] {
            for target in targets {
                links.insert(format!("{target}.{suffix}/{name}"), path.clone());
            }
        }
    }
    for alias in &install.alias {
        links.insert(alias.clone(), path.clone());
    }
    for also in &install.also {
        if units.contains_key(&split_instance(also).0) {
            enable(also, &[], units, links, visited)?;
        }
    }
    Ok(())
}

/// `getty@tty1.service` → (`getty@.service`, Some(`tty1`)).
fn split_instance(unit: &str) -> (String, Option<String>) {
    match (unit.split_once('@'), unit.rsplit_once('.')) {
        (Some((prefix, rest)), Some((_, suffix)))
            if rest != format!(".{suffix}") && !rest.starts_with('.') =>
        {
            let instance = rest.trim_end_matches(&format!(".{suffix}")).to_string();
            (format!("{prefix}@.{suffix}"), Some(instance))
        }
        _ => (unit.to_string(), None),
    }
}

/// Everything presets and explicit requests enable: symlinks relative to
/// `etc/systemd/system/`. `explicit` units are enabled whatever the presets say.
pub fn enablement(
    units: &BTreeMap<String, (String, String)>,
    presets: &Presets,
    explicit: &[String],
) -> Result<BTreeMap<String, String>, String> {
    let mut links = BTreeMap::new();
    let mut visited = BTreeSet::new();
    for (name, (_, text)) in units {
        if parse_install(text).is_empty() {
            continue;
        }
        if let Decision::Enable(instances) = presets.decide(name) {
            let is_template = name.contains("@.");
            if is_template && instances.is_empty() && parse_install(text).default_instance.is_none()
            {
                continue;
            }
            enable(name, &instances, units, &mut links, &mut visited)?;
        }
    }
    for unit in explicit {
        enable(unit, &[], units, &mut links, &mut visited)?;
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(list: &[(&str, &str)]) -> BTreeMap<String, (String, String)> {
        list.iter()
            .map(|(name, text)| {
                (
                    name.to_string(),
                    (format!("/usr/lib/systemd/system/{name}"), text.to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn presets_first_match_wins_default_enable() {
        let presets = Presets::parse(&BTreeMap::from([
            (
                "90-systemd.preset".to_string(),
                "enable getty@.service\ndisable debug-shell.service\n".to_string(),
            ),
            ("99-default.preset".to_string(), "disable *\n".to_string()),
        ]));
        assert_eq!(presets.decide("getty@.service"), Decision::Enable(vec![]));
        assert_eq!(presets.decide("ssh.service"), Decision::Disable);
        assert_eq!(
            Presets::default().decide("ssh.service"),
            Decision::Enable(vec![])
        );
    }

    #[test]
    fn enables_wanted_by_alias_also_and_templates() {
        let units = units(&[
            (
                "systemd-networkd.service",
                "[Unit]\nDescription=x\n[Install]\nWantedBy=multi-user.target\nAlias=dbus-org.freedesktop.network1.service\nAlso=systemd-networkd.socket\n",
            ),
            (
                "systemd-networkd.socket",
                "[Install]\nWantedBy=sockets.target\n",
            ),
            (
                "getty@.service",
                "[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n",
            ),
            ("static.service", "[Service]\nExecStart=/bin/true\n"),
            ("ssh.service", "[Install]\nWantedBy=multi-user.target\n"),
        ]);
        let presets = Presets::parse(&BTreeMap::from([(
            "99.preset".to_string(),
            "enable systemd-networkd.service\nenable getty@.service\ndisable *\n".to_string(),
        )]));
        let links = enablement(&units, &presets, &["ssh.service".to_string()]).unwrap();
        let expected: BTreeMap<String, String> = [
            (
                "dbus-org.freedesktop.network1.service",
                "systemd-networkd.service",
            ),
            ("getty.target.wants/getty@tty1.service", "getty@.service"),
            ("multi-user.target.wants/ssh.service", "ssh.service"),
            (
                "multi-user.target.wants/systemd-networkd.service",
                "systemd-networkd.service",
            ),
            (
                "sockets.target.wants/systemd-networkd.socket",
                "systemd-networkd.socket",
            ),
        ]
        .into_iter()
        .map(|(link, unit)| (link.to_string(), format!("/usr/lib/systemd/system/{unit}")))
        .collect();
        assert_eq!(links, expected);
        let error = enablement(&units, &presets, &["nope.service".to_string()]).unwrap_err();
        assert!(error.contains("nope.service"));
    }

    #[test]
    fn instances_from_presets_and_names() {
        let units = units(&[(
            "serial-getty@.service",
            "[Install]\nWantedBy=getty.target\n",
        )]);
        let presets = Presets::parse(&BTreeMap::from([(
            "p".to_string(),
            "enable serial-getty@.service ttyAMA0 ttyS0\n".to_string(),
        )]));
        let links =
            enablement(&units, &presets, &["serial-getty@hvc0.service".to_string()]).unwrap();
        assert_eq!(
            links.keys().collect::<Vec<_>>(),
            [
                "getty.target.wants/serial-getty@hvc0.service",
                "getty.target.wants/serial-getty@ttyAMA0.service",
                "getty.target.wants/serial-getty@ttyS0.service"
            ]
        );
    }
}
