//! Package relationship fields (`Depends`, `Pre-Depends`, `Provides`,
//! `Conflicts`, `Breaks`): comma-separated groups of `|`-separated alternatives,
//! each a name with an optional architecture qualifier and version constraint.

use crate::version::Version;
use std::fmt;

/// A version comparison operator as written in control files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Less,
    LessEq,
    Eq,
    GreaterEq,
    Greater,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "<<" => Op::Less,
            "<=" | "<" => Op::LessEq, // `<` is the obsolete spelling of `<=`
            "=" => Op::Eq,
            ">=" | ">" => Op::GreaterEq, // likewise `>` means `>=`
            ">>" => Op::Greater,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Less => "<<",
            Op::LessEq => "<=",
            Op::Eq => "=",
            Op::GreaterEq => ">=",
            Op::Greater => ">>",
        }
    }
}

/// One alternative: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    /// `any`, `native` or an architecture, if the name was qualified.
    pub arch: Option<String>,
    pub constraint: Option<(Op, Version)>,
}

impl Relation {
    /// Whether a package (or provided name) at `version` satisfies the
    /// constraint. An unversioned `Provides` (None) satisfies only
    /// unversioned relations, as in dpkg.
    pub fn accepts(&self, version: Option<&Version>) -> bool {
        match (&self.constraint, version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((op, wanted)), Some(have)) => {
                let order = have.cmp(wanted);
                match op {
                    Op::Less => order.is_lt(),
                    Op::LessEq => order.is_le(),
                    Op::Eq => order.is_eq(),
                    Op::GreaterEq => order.is_ge(),
                    Op::Greater => order.is_gt(),
                }
            }
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(arch) = &self.arch {
            write!(f, ":{arch}")?;
        }
        if let Some((op, version)) = &self.constraint {
            write!(f, " ({} {version})", op.as_str())?;
        }
        Ok(())
    }
}

/// A comma-separated group: any one alternative satisfies it.
pub type Alternatives = Vec<Relation>;

/// Parses a whole relationship field into groups of alternatives.
pub fn parse_field(text: &str) -> Result<Vec<Alternatives>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|group| !group.is_empty())
        .map(|group| group.split('|').map(parse_relation).collect())
        .collect()
}

/// Parses one alternative such as `libc6 (>= 2.38)` or `python3:any`.
pub fn parse_relation(text: &str) -> Result<Relation, String> {
    let text = text.trim();
    // Architecture restrictions `[...]` and build profiles `<...>` appear only
    // in source packages; drop them if present (a `<` inside the version
    // constraint's parentheses is an operator, not a profile).
    let mut depth = 0;
    let end = text
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            depth == 0 && (c == '[' || c == '<')
        })
        .map_or(text.len(), |(i, _)| i);
    let text = text[..end].trim();
    let (head, constraint) = match text.split_once('(') {
        Some((head, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("unclosed parenthesis in relation {text:?}"))?
                .trim();
            let split = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .ok_or_else(|| format!("missing version in relation {text:?}"))?;
            let op = Op::parse(inner[..split].trim())
                .ok_or_else(|| format!("unknown operator in relation {text:?}"))?;
            let version = Version::parse(inner[split..].trim())?;
            (head.trim(), Some((op, version)))
        }
        None => (text, None),
    };
    let (name, arch) = match head.split_once(':') {
        Some((name, arch)) => (name, Some(arch.to_string())),
        None => (head, None),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("invalid package name in relation {text:?}"));
    }
    Ok(Relation {
        name: name.to_string(),
        arch,
        constraint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_groups_alternatives_and_constraints() {
        let groups =
            parse_field("libc6 (>= 2.38), default-dbus | dbus-system-bus,\n python3:any (<< 3.14)")
                .unwrap();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0][0].name, "libc6");
        assert_eq!(
            groups[0][0].constraint,
            Some((Op::GreaterEq, Version::parse("2.38").unwrap()))
        );
        assert_eq!(groups[1].len(), 2);
        assert_eq!(groups[1][1].name, "dbus-system-bus");
        assert_eq!(groups[2][0].arch.as_deref(), Some("any"));
        assert_eq!(groups[2][0].to_string(), "python3:any (<< 3.14)");
    }

    #[test]
    fn constraint_semantics() {
        let relation = parse_relation("foo (>> 1.0)").unwrap();
        assert!(relation.accepts(Some(&Version::parse("1.0.1").unwrap())));
        assert!(!relation.accepts(Some(&Version::parse("1.0").unwrap())));
        assert!(!relation.accepts(None), "unversioned provides");
        assert!(parse_relation("foo").unwrap().accepts(None));
        assert!(
            parse_relation("foo (=1.0)")
                .unwrap()
                .accepts(Some(&Version::parse("1.0").unwrap()))
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_relation("foo (>= 1.0").is_err());
        assert!(parse_relation("foo (~~ 1.0)").is_err());
        assert!(parse_field("a, , b").unwrap().len() == 2);
        let stripped = parse_relation("foo (<< 2) [arm64] <!nocheck>").unwrap();
        assert_eq!(stripped.to_string(), "foo (<< 2)");
    }
}
