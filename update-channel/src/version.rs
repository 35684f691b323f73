//! Release versions compared the way people write them: `2026.12.04`,
//! `2026.1.5`, `1.4.0`, `1.4.0-rc1`. Semantic Versioning's order, read
//! leniently (RAUC's `min-bundle-version` follows the same rules): the
//! dot-separated core compares number by number (leading zeros allowed, a
//! missing number is 0); a pre-release (`-rc1`) comes before its release;
//! build metadata (`+b1`) is ignored.

use std::cmp::Ordering;

/// Compares two versions; text that is not a number compares as text.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_core, a_pre) = split(a);
    let (b_core, b_pre) = split(b);
    let a_parts: Vec<&str> = a_core.split('.').collect();
    let b_parts: Vec<&str> = b_core.split('.').collect();
    for i in 0..a_parts.len().max(b_parts.len()) {
        let x = a_parts.get(i).copied().unwrap_or("0");
        let y = b_parts.get(i).copied().unwrap_or("0");
        let order = identifier(x, y);
        if order != Ordering::Equal {
            return order;
        }
    }
    match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let xs: Vec<&str> = x.split('.').collect();
            let ys: Vec<&str> = y.split('.').collect();
            for (x, y) in xs.iter().zip(&ys) {
                let order = identifier(x, y);
                if order != Ordering::Equal {
                    return order;
                }
            }
            xs.len().cmp(&ys.len())
        }
    }
}

/// The core and the pre-release of a version, build metadata dropped.
fn split(version: &str) -> (&str, Option<&str>) {
    let version = version.split('+').next().unwrap_or(version);
    match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version, None),
    }
}

/// Numbers numerically (and before words, as in SemVer), words as text.
fn identifier(x: &str, y: &str) -> Ordering {
    let number = |s: &str| -> Option<u128> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.trim_start_matches('0').parse().ok().or(Some(0))
        } else {
            None
        }
    };
    match (number(x), number(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => x.cmp(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_versions_as_people_mean_them() {
        let ascending = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-beta",
            "1.0.0-rc1",
            "1.0.0",
            "1.0.1",
            "1.4.0",
            "1.10.0",
            "2026.01.05",
            "2026.1.10",
            "2026.11.20",
            "2026.12.04",
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(compare(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn equal_spellings_are_equal() {
        for (a, b) in [
            ("2026.01.05", "2026.1.5"),
            ("1.0", "1.0.0"),
            ("1.0.0+b7", "1.0.0"),
            ("007", "7"),
        ] {
            assert_eq!(compare(a, b), Ordering::Equal, "{a} vs {b}");
        }
    }
}
