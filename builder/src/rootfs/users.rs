//! Accounts: `/etc/passwd`, `group`, `shadow` and `gshadow`, made the way
//! base-passwd's and systemd-sysusers' scripts would, but at build time and
//! deterministically. No account gets a password.

use crate::config::UserSpec;
use std::collections::BTreeMap;

/// Highest UID/GID that sysusers allocates for system accounts (Debian's
/// `SYS_UID_MAX`); allocation counts down from here.
const SYSTEM_ID_MAX: u32 = 999;
const SYSTEM_ID_MIN: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The account database being built, in creation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
}

/// A line that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("{file}, line {line}: {reason}")]
pub struct AccountError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl Accounts {
    /// Starts from base-passwd's `passwd.master` and `group.master`.
    pub fn from_master(passwd: &str, group: &str) -> Result<Self, AccountError> {
        let mut accounts = Accounts::default();
        for (index, line) in group
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let fields: Vec<&str> = line.split(':').collect();
            let bad = |reason: &str| AccountError {
                file: "group.master".into(),
                line: index + 1,
                reason: reason.into(),
            };
            let [name, _, gid, members] = fields[..] else {
                return Err(bad("expected 4 fields"));
            };
            accounts.groups.push(Group {
                name: name.into(),
                gid: gid.parse().map_err(|_| bad("bad GID"))?,
                members: members
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect(),
            });
        }
        for (index, line) in passwd
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let fields: Vec<&str> = line.split(':').collect();
            let bad = |reason: &str| AccountError {
                file: "passwd.master".into(),
                line: index + 1,
                reason: reason.into(),
            };
            let [name, _, uid, gid, gecos, home, shell] = fields[..] else {
                return Err(bad("expected 7 fields"));
            };
            accounts.users.push(User {
                name: name.into(),
                uid: uid.parse().map_err(|_| bad("bad UID"))?,
                gid: gid.parse().map_err(|_| bad("bad GID"))?,
                gecos: gecos.into(),
                home: home.into(),
                shell: shell.into(),
            });
        }
        Ok(accounts)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    fn uid_free(&self, id: u32) -> bool {
        self.users.iter().all(|u| u.uid != id)
    }

    fn gid_free(&self, id: u32) -> bool {
        self.groups.iter().all(|g| g.gid != id)
    }

    /// The highest free system ID, like systemd-sysusers.
    fn allocate(&self, free: impl Fn(u32) -> bool) -> Option<u32> {
        (SYSTEM_ID_MIN..=SYSTEM_ID_MAX).rev().find(|&id| free(id))
    }

    /// Adds a group unless it exists; returns its GID.
    pub fn add_group(&mut self, name: &str, gid: Option<u32>) -> Option<u32> {
        if let Some(group) = self.group(name) {
            return Some(group.gid);
        }
        let gid = match gid.filter(|&g| self.gid_free(g)) {
            Some(gid) => gid,
            None => self.allocate(|id| self.gid_free(id))?,
        };
        self.groups.push(Group {
            name: name.into(),
            gid,
            members: Vec::new(),
        });
        Some(gid)
    }

    /// Adds a user (and a group of the same name unless `gid` names another)
    /// unless it exists.
    pub fn add_user(
        &mut self,
        name: &str,
        uid: Option<u32>,
        group: Option<GroupRef>,
        gecos: &str,
        home: &str,
        shell: &str,
    ) -> Option<()> {
        if self.user(name).is_some() {
            return Some(());
        }
        let uid = match uid.filter(|&u| self.uid_free(u)) {
            Some(uid) => uid,
            // Prefer the GID of an existing same-named group, as sysusers does.
            None => match self
                .group(name)
                .map(|g| g.gid)
                .filter(|&g| self.uid_free(g))
            {
                Some(gid) => gid,
                None => self
                    .allocate(|id| self.uid_free(id) && self.gid_free(id))
                    .or_else(|| self.allocate(|id| self.uid_free(id)))?,
            },
        };
        let gid = match group {
            Some(GroupRef::Id(gid)) => gid,
            Some(GroupRef::Name(group)) => self.add_group(&group, None)?,
            None => self.add_group(name, Some(uid))?,
        };
        self.users.push(User {
            name: name.into(),
            uid,
            gid,
            gecos: gecos.into(),
            home: home.into(),
            shell: shell.into(),
        });
        Some(())
    }

    /// Adds `user` to the supplementary group `group` (created if missing).
    pub fn add_member(&mut self, user: &str, group: &str) -> Option<()> {
        self.add_group(group, None)?;
        let group = self.groups.iter_mut().find(|g| g.name == group)?;
        if !group.members.iter().any(|m| m == user) {
            group.members.push(user.into());
        }
        Some(())
    }

    /// Applies one sysusers.d file (`u`, `g`, `m` lines; ranges and
    /// specifiers are not needed for system packages and are skipped).
    pub fn apply_sysusers(&mut self, file: &str, text: &str) -> Result<(), AccountError> {
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| AccountError {
                file: file.into(),
                line: index + 1,
                reason,
            };
            let fields = split_quoted(line);
            let field = |i: usize| fields.get(i).map(String::as_str).filter(|f| *f != "-");
            let kind = field(0).unwrap_or_default();
            let name = field(1).ok_or_else(|| bad("missing name".into()))?;
            if line.contains('%') {
                tracing::debug!("{file}:{}: skipping line with specifiers", index + 1);
                continue;
            }
            let exhausted = || bad(format!("no free system ID left for {name}"));
            match kind.trim_end_matches('!') {
                "u" => {
                    let (uid, group) = match field(2) {
                        None => (None, None),
                        Some(id) if id.starts_with('/') => (None, None),
                        Some(id) => match id.split_once(':') {
                            Some((uid, group)) => (
                                uid.parse().ok(),
                                Some(match group.parse() {
                                    Ok(gid) => GroupRef::Id(gid),
                                    Err(_) => GroupRef::Name(group.into()),
                                }),
                            ),
                            None => (
                                Some(id.parse().map_err(|_| bad(format!("bad ID {id:?}")))?),
                                None,
                            ),
                        },
                    };
                    self.add_user(
                        name,
                        uid,
                        group,
                        field(3).unwrap_or_default(),
                        field(4).unwrap_or("/"),
                        field(5).unwrap_or("/usr/sbin/nologin"),
                    )
                    .ok_or_else(exhausted)?;
                }
                "g" => {
                    let gid = field(2).and_then(|id| id.parse().ok());
                    self.add_group(name, gid).ok_or_else(exhausted)?;
                }
                "m" => {
                    let group = field(2).ok_or_else(|| bad("m line without a group".into()))?;
                    self.add_member(name, group).ok_or_else(exhausted)?;
                }
                "r" => {}
                other => return Err(bad(format!("unknown line type {other:?}"))),
            }
        }
        Ok(())
    }

    /// Adds a recipe's user: a system user with its own group.
    pub fn add_spec(&mut self, spec: &UserSpec) -> Option<()> {
        self.add_user(
            &spec.name,
            None,
            None,
            &spec.description,
            &spec.home,
            &spec.shell,
        )?;
        for group in &spec.groups {
            self.add_member(&spec.name, group)?;
        }
        Some(())
    }

    /// The four account files, keyed by path. `epoch` dates the shadow entries.
    pub fn render(&self, epoch: i64) -> BTreeMap<&'static str, String> {
        let days = epoch.div_euclid(86_400);
        let mut passwd = String::new();
        let mut shadow = String::new();
        for u in &self.users {
            passwd.push_str(&format!(
                "{}:x:{}:{}:{}:{}:{}\n",
                u.name, u.uid, u.gid, u.gecos, u.home, u.shell
            ));
            // `*` can never match a password; `!` marks the account locked.
            let hash = if u.uid == 0 { "*" } else { "!*" };
            shadow.push_str(&format!("{}:{hash}:{days}::::::\n", u.name));
        }
        let mut group = String::new();
        let mut gshadow = String::new();
        for g in &self.groups {
            let members = g.members.join(",");
            group.push_str(&format!("{}:x:{}:{members}\n", g.name, g.gid));
            gshadow.push_str(&format!("{}:*::{members}\n", g.name));
        }
        BTreeMap::from([
            ("etc/passwd", passwd),
            ("etc/shadow", shadow),
            ("etc/group", group),
            ("etc/gshadow", gshadow),
        ])
    }
}

/// A user's primary group, by ID or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Id(u32),
    Name(String),
}

/// Splits on whitespace, keeping double-quoted fields whole.
fn split_quoted(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut in_field = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_field = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_field {
                    fields.push(std::mem::take(&mut current));
                    in_field = false;
                }
            }
            c => {
                current.push(c);
                in_field = true;
            }
        }
    }
    if in_field {
        fields.push(current);
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:*:0:0:root:/root:/bin/bash\ndaemon:*:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
    const GROUP: &str = "root:*:0:\ndaemon:*:1:\naudio:*:29:\n";

    #[test]
    fn sysusers_lines_allocate_deterministically() {
        let mut accounts = Accounts::from_master(PASSWD, GROUP).unwrap();
        accounts
            .apply_sysusers(
                "systemd-network.conf",
                "# comment\nu! systemd-network - \"systemd Network Management\"\ng systemd-journal 999 -\nu messagebus - \"System bus\" /nonexistent\nm messagebus audio\nu root 0 - /root /bin/bash\n",
            )
            .unwrap();
        let network = accounts.user("systemd-network").unwrap();
        assert_eq!(
            (network.uid, network.gid),
            (999, 999),
            "highest free ID first"
        );
        assert_eq!(network.gecos, "systemd Network Management");
        // A requested ID that is already taken falls back to allocation, as in sysusers.
        assert_eq!(accounts.group("systemd-journal").unwrap().gid, 998);
        assert_eq!(accounts.user("messagebus").unwrap().uid, 997);
        assert_eq!(accounts.group("messagebus").unwrap().gid, 997);
        assert_eq!(accounts.group("audio").unwrap().members, ["messagebus"]);
        assert_eq!(
            accounts.users.iter().filter(|u| u.name == "root").count(),
            1
        );
    }

    #[test]
    fn recipe_users_and_rendering() {
        let mut accounts = Accounts::from_master(PASSWD, GROUP).unwrap();
        accounts.add_spec(&UserSpec {
            name: "vinyl".into(),
            groups: vec!["audio".into()],
            home: "/nonexistent".into(),
            shell: "/usr/sbin/nologin".into(),
            description: "Streamer".into(),
        });
        let files = accounts.render(86_400 * 20_000);
        assert!(
            files["etc/passwd"]
                .ends_with("vinyl:x:999:999:Streamer:/nonexistent:/usr/sbin/nologin\n")
        );
        assert!(files["etc/group"].contains("audio:x:29:vinyl\n"));
        assert!(files["etc/shadow"].starts_with("root:*:20000::::::\n"));
        assert!(files["etc/shadow"].contains("vinyl:!*:20000::::::\n"));
        assert!(
            !files["etc/shadow"].contains("$"),
            "no password hashes anywhere"
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let mut accounts = Accounts::default();
        let error = accounts
            .apply_sysusers("x.conf", "u a -\nz b -\n")
            .unwrap_err();
        assert_eq!(error.to_string(), "x.conf, line 2: unknown line type \"z\"");
        assert!(Accounts::from_master("root:x:0\n", "").is_err());
    }
}
