//! Where Debian packages come from. The repository never names a mirror: it
//! comes from `--mirror`, else the environment, else the host's apt sources.

use debian::deb822;
use std::path::{Path, PathBuf};

/// Environment variable that names the Debian mirror.
pub const MIRROR_ENV: &str = "BUILDER_DEBIAN_MIRROR";

/// A mirror URL and where it was found (shown in logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Base URL without a trailing slash; `dists/` and `pool/` live under it.
    pub url: String,
    pub origin: String,
}

/// No mirror could be found.
#[derive(Debug, thiserror::Error)]
#[error(
    "no Debian mirror configured. Give one in any of these ways:\n  \
     1. cargo run -p builder -- --mirror http://<your-debian-mirror>/debian ...\n  \
     2. export {MIRROR_ENV}=http://<your-debian-mirror>/debian\n  \
     3. add a Debian source to the host's apt sources ({})",
    apt_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
)]
pub struct NoMirror {
    pub apt_files: Vec<PathBuf>,
}

/// Suites that identify a Debian archive (not its security archive).
fn is_debian_suite(suite: &str) -> bool {
    const NAMES: &[&str] = &[
        "buster",
        "bullseye",
        "bookworm",
        "trixie",
        "forky",
        "duke",
        "sid",
        "unstable",
        "testing",
        "stable",
        "oldstable",
        "experimental",
    ];
    let base = suite.split('-').next().unwrap_or(suite);
    NAMES.contains(&base) && !suite.ends_with("-security")
}

/// The first Debian URI in one apt sources file, in either format.
/// Comment lines are skipped; deb822 files are read field by field.
pub fn debian_uri_in(file_name: &str, content: &str) -> Option<String> {
    let uri = if file_name.ends_with(".sources") {
        deb822::parse(content).ok()?.iter().find_map(|stanza| {
            let types = stanza.get("Types")?;
            let enabled = stanza.get("Enabled").is_none_or(|e| e != "no");
            let debian = stanza
                .get("Suites")?
                .split_whitespace()
                .any(is_debian_suite);
            (enabled && debian && types.split_whitespace().any(|t| t == "deb")).then(|| {
                stanza
                    .get("URIs")?
                    .split_whitespace()
                    .next()
                    .map(String::from)
            })?
        })
    } else {
        content.lines().find_map(|line| {
            let line = line.split('#').next()?.trim();
            let mut words = line.split_whitespace();
            if words.next()? != "deb" {
                return None;
            }
            let mut uri = words.next()?;
            if uri.starts_with('[') {
                // Skip `[option=value ...]`, which may span several words.
                while !uri.ends_with(']') {
                    uri = words.next()?;
                }
                uri = words.next()?;
            }
            is_debian_suite(words.next()?).then(|| uri.to_string())
        })
    }?;
    Some(uri.trim_end_matches('/').to_string())
}

/// apt source files in the order apt reads them.
pub fn apt_source_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir(root.join("etc/apt/sources.list.d")) {
        let mut parts: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|ext| ext == "list" || ext == "sources")
            })
            .collect();
        parts.sort();
        files.extend(parts);
    }
    files
}

/// Finds the mirror: the flag, else [`MIRROR_ENV`], else the apt sources
/// under `apt_root` (normally `/`).
pub fn find(flag: Option<&str>, env: Option<&str>, apt_root: &Path) -> Result<Mirror, NoMirror> {
    let clean = |url: &str| url.trim().trim_end_matches('/').to_string();
    if let Some(url) = flag.filter(|u| !u.trim().is_empty()) {
        return Ok(Mirror {
            url: clean(url),
            origin: "--mirror".into(),
        });
    }
    if let Some(url) = env.filter(|u| !u.trim().is_empty()) {
        return Ok(Mirror {
            url: clean(url),
            origin: MIRROR_ENV.into(),
        });
    }
    let files = apt_source_files(apt_root);
    for file in &files {
        let Ok(content) = std::fs::read_to_string(file) else {
            continue;
        };
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        if let Some(url) = debian_uri_in(&name, &content) {
            return Ok(Mirror {
                url,
                origin: file.display().to_string(),
            });
        }
    }
    Err(NoMirror { apt_files: files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources_skip_comments_and_non_debian_repos() {
        let content = "Types: deb\nURIs: https://repo.example.invalid/node\nSuites: nodistro\nComponents: main\n\nTypes: deb\n# http://snapshot.example.invalid/archive/debian/20250520T000000Z\nURIs: http://mirror.example.invalid/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example.invalid/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            debian_uri_in("debian.sources", content).as_deref(),
            Some("http://mirror.example.invalid/debian")
        );
    }

    #[test]
    fn one_line_format_with_options() {
        let content = "# deb http://old.example.invalid/debian bookworm main\ndeb-src http://src.example.invalid/debian bookworm main\ndeb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://m.example.invalid/debian trixie main\n";
        assert_eq!(
            debian_uri_in("sources.list", content).as_deref(),
            Some("http://m.example.invalid/debian")
        );
        assert_eq!(
            debian_uri_in(
                "x.list",
                "deb http://m.example.invalid/debian-security bookworm-security main"
            ),
            None
        );
    }

    #[test]
    fn precedence_flag_then_env_then_apt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(
            dir.path().join("etc/apt/sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://apt.example.invalid/debian\nSuites: trixie\n",
        )
        .unwrap();
        let found = |flag, env| find(flag, env, dir.path()).unwrap();
        assert_eq!(
            found(
                Some("http://f.example.invalid/d/"),
                Some("http://e.example.invalid")
            )
            .url,
            "http://f.example.invalid/d"
        );
        assert_eq!(
            found(None, Some("http://e.example.invalid")).origin,
            MIRROR_ENV
        );
        assert_eq!(found(None, None).url, "http://apt.example.invalid/debian");
    }

    #[test]
    fn no_mirror_lists_all_three_ways() {
        let dir = tempfile::tempdir().unwrap();
        let error = find(None, None, dir.path()).unwrap_err().to_string();
        assert!(error.contains("--mirror"), "{error}");
        assert!(error.contains(MIRROR_ENV), "{error}");
        assert!(error.contains("sources.list"), "{error}");
    }
}
