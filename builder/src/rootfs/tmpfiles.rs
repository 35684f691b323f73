//! The part of tmpfiles.d that must happen at build time on a read-only
//! root: directories and symlinks on the root filesystem itself. Everything
//! under API filesystems (/run, /tmp, /dev, ...) is left to
//! systemd-tmpfiles at boot, where those are writable.

/// A build-time action from a tmpfiles.d line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Dir {
        path: String,
        mode: Option<u32>,
        user: Option<String>,
        group: Option<String>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// Filesystems that are not on the root image.
const RUNTIME_PREFIXES: &[&str] = &[
    "/run",
    "/tmp",
    "/var/tmp",
    "/dev",
    "/proc",
    "/sys",
    "/var/run",
    "/var/lock",
];

fn is_runtime(path: &str) -> bool {
    RUNTIME_PREFIXES
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")))
}

/// Parses tmpfiles.d text into build-time actions. Lines with specifiers
/// (`%`), runtime paths, or types that act on existing files are skipped.
pub fn parse(text: &str) -> Vec<Action> {
    let mut actions = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.contains('%') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(kind), Some(path)) = (fields.first(), fields.get(1)) else {
            continue;
        };
        if is_runtime(path) {
            continue;
        }
        let field = |i: usize| fields.get(i).copied().filter(|f| *f != "-");
        let kind = kind.trim_end_matches(['!', '-', '=', '~', '^', '$']);
        match kind {
            "d" | "D" | "v" | "q" | "Q" => actions.push(Action::Dir {
                path: path.to_string(),
                mode: field(2)
                    .and_then(|m| u32::from_str_radix(m.trim_start_matches(['~', ':']), 8).ok()),
                user: field(3).map(String::from),
                group: field(4).map(String::from),
            }),
            "L" | "L+" => {
                let target = match field(6) {
                    Some(target) => target.to_string(),
                    // Without an argument, L links to the same path under /usr/share/factory.
                    None => format!("/usr/share/factory{path}"),
                };
                actions.push(Action::Symlink {
                    path: path.to_string(),
                    target,
                });
            }
            _ => {}
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_root_directories_and_links_only() {
        let text = "# comment\nd /var/log/journal 2755 root systemd-journal - -\nd /run/systemd 0755 - - -\nL /etc/os-release - - - - ../usr/lib/os-release\nd /home/%u - - - -\nz /var/log 0755\nq /var/lib/machines 0700 - - -\nL+ /etc/mtab - - - - ../proc/self/mounts\n";
        assert_eq!(
            parse(text),
            [
                Action::Dir {
                    path: "/var/log/journal".into(),
                    mode: Some(0o2755),
                    user: Some("root".into()),
                    group: Some("systemd-journal".into())
                },
                Action::Symlink {
                    path: "/etc/os-release".into(),
                    target: "../usr/lib/os-release".into()
                },
                Action::Dir {
                    path: "/var/lib/machines".into(),
                    mode: Some(0o700),
                    user: None,
                    group: None
                },
                Action::Symlink {
                    path: "/etc/mtab".into(),
                    target: "../proc/self/mounts".into()
                },
            ]
        );
    }
}
