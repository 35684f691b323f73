//! `Packages` indexes: one paragraph per binary package.

use crate::deb822;
use crate::relation::{self, Alternatives, Relation};
use crate::version::Version;

/// A binary package as described by the archive index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: Version,
    pub architecture: String,
    /// `Pre-Depends` followed by `Depends`.
    pub depends: Vec<Alternatives>,
    pub provides: Vec<Relation>,
    /// `Conflicts` and `Breaks`: neither may be co-installed in an image
    /// that is assembled in one step.
    pub conflicts: Vec<Relation>,
    /// Path relative to the mirror root.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub priority: String,
    /// Source package name (for the SBOM); defaults to the binary name.
    pub source: String,
    /// Archive component (`main`, `non-free-firmware`, ...).
    pub component: String,
}

/// An index that could not be read, naming the file and the package.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct IndexError {
    pub file: String,
    pub reason: String,
}

/// Parses a `Packages` file. `file` names it in errors.
pub fn parse_packages(file: &str, text: &str, component: &str) -> Result<Vec<Package>, IndexError> {
    let error = |reason: String| IndexError {
        file: file.to_string(),
        reason,
    };
    let paragraphs = deb822::parse(text).map_err(|e| error(e.to_string()))?;
    paragraphs
        .iter()
        .map(|paragraph| {
            let context =
                |reason: String| error(format!("package at line {}: {reason}", paragraph.line));
            let field = |name: &str| {
                paragraph
                    .get(name)
                    .ok_or_else(|| context(format!("missing field {name}")))
            };
            let relations = |name: &str| -> Result<Vec<Alternatives>, IndexError> {
                paragraph
                    .get(name)
                    .map(relation::parse_field)
                    .transpose()
                    .map_err(|e| context(format!("{name}: {e}")))
                    .map(Option::unwrap_or_default)
            };
            let flat = |name: &str| -> Result<Vec<Relation>, IndexError> {
                Ok(relations(name)?.into_iter().flatten().collect())
            };
            let name = field("Package")?.to_string();
            let mut depends = relations("Pre-Depends")?;
            depends.extend(relations("Depends")?);
            let mut conflicts = flat("Conflicts")?;
            conflicts.extend(flat("Breaks")?);
            Ok(Package {
                version: Version::parse(field("Version")?).map_err(context)?,
                architecture: field("Architecture")?.to_string(),
                depends,
                provides: flat("Provides")?,
                conflicts,
                filename: field("Filename")?.to_string(),
                size: field("Size")?
                    .parse()
                    .map_err(|_| context("invalid Size".into()))?,
                sha256: field("SHA256")?.to_ascii_lowercase(),
                priority: paragraph.get("Priority").unwrap_or("optional").to_string(),
                source: paragraph
                    .get("Source")
                    .and_then(|s| s.split_whitespace().next())
                    .unwrap_or(&name)
                    .to_string(),
                component: component.to_string(),
                name,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_package() {
        let text = "Package: libfoo1\nSource: foo (1.2-1)\nVersion: 1.2-1+b1\nArchitecture: arm64\nPre-Depends: libc6 (>= 2.38)\nDepends: libbar | libbaz, zlib1g\nProvides: libfoo (= 1.2)\nBreaks: libold (<< 2)\nFilename: pool/main/f/foo/libfoo1_1.2-1+b1_arm64.deb\nSize: 1234\nSHA256: ABCDEF\n\n";
        let packages = parse_packages("Packages", text, "main").unwrap();
        let package = &packages[0];
        assert_eq!(package.name, "libfoo1");
        assert_eq!(package.source, "foo");
        assert_eq!(package.depends.len(), 3);
        assert_eq!(package.depends[0][0].name, "libc6");
        assert_eq!(package.depends[1].len(), 2);
        assert_eq!(package.provides[0].name, "libfoo");
        assert_eq!(package.conflicts[0].name, "libold");
        assert_eq!(package.sha256, "abcdef");
        assert_eq!(package.priority, "optional");
    }

    #[test]
    fn names_the_broken_package_line() {
        let text = "Package: a\nVersion: 1\nArchitecture: all\nFilename: a.deb\nSize: 1\nSHA256: 00\n\nPackage: b\nVersion: 1\n";
        let error = parse_packages("main/Packages", text, "main").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("main/Packages: package at line 8"),
            "{error}"
        );
        assert!(error.to_string().contains("Architecture"));
    }
}
