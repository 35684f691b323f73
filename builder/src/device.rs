//! Per-device settings (hostname, time servers, SSH keys, WiFi): checked
//! once, then turned into the files of the root that carry them. Pure: the
//! CLI reads files and passes their text in.

use crate::config::{Board, DeviceConfig, WifiConfig};
use crate::values::{Hostname, SshPublicKey, WifiPassphrase};

/// Settings given on the command line; each replaces the board's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub hostname: Option<String>,
    /// Replaces the board's NTP servers when not empty.
    pub ntp: Vec<String>,
    /// `authorized_keys` files: (path as the user wrote it, text).
    pub ssh_key_files: Vec<(String, String)>,
    pub wifi_ssid: Option<String>,
    /// The passphrase file: (path, text).
    pub wifi_psk_file: Option<(String, String)>,
    pub wifi_country: Option<String>,
}

impl Overrides {
    /// Applies the overrides to `board` and checks the result; errors name
    /// the flag or board key and say how to fix it.
    pub fn apply(&self, board: &mut Board) -> Result<(), String> {
        if let Some(hostname) = &self.hostname {
            board.hostname = Hostname::try_from(hostname.clone())
                .map_err(|e| format!("--hostname {hostname:?}: {e}"))?;
        }
        if !self.ntp.is_empty() {
            board.device.ntp = self.ntp.clone();
        }
        for (path, text) in &self.ssh_key_files {
            let keys =
                SshPublicKey::parse_file(text).map_err(|e| format!("--ssh-key {path}: {e}"))?;
            if keys.is_empty() {
                return Err(format!(
                    "--ssh-key {path}: the file holds no public key; give the .pub file (e.g. ~/.ssh/id_ed25519.pub)"
                ));
            }
            board.device.ssh_authorized_keys.extend(keys);
        }
        match (&self.wifi_ssid, &self.wifi_psk_file) {
            (Some(ssid), Some((path, text))) => {
                let psk = text.trim_end_matches(['\n', '\r']).to_string();
                let psk = WifiPassphrase::try_from(psk)
                    .map_err(|e| format!("--wifi-psk-file {path}: {e}"))?;
                board.device.wifi = Some(WifiConfig {
                    ssid: ssid.clone(),
                    psk,
                    country: self.wifi_country.clone().unwrap_or_default(),
                });
            }
            (Some(_), None) => {
                return Err("--wifi-ssid needs --wifi-psk-file FILE (a file holding the passphrase, so it stays out of the shell history)".into());
            }
            (None, Some(_)) => return Err("--wifi-psk-file needs --wifi-ssid NAME".into()),
            (None, None) => {}
        }
        if let (Some(country), Some(wifi)) = (&self.wifi_country, &mut board.device.wifi) {
            wifi.country = country.clone();
        }
        check(board)
    }
}

/// Checks what the value types cannot check alone (hostname, keys and
/// passphrase are valid by construction): NTP servers, SSID and country.
pub fn check(board: &Board) -> Result<(), String> {
    let file = format!("boards/{}.toml", board.name);
    let device = &board.device;
    if device.ntp.is_empty() {
        return Err(format!(
            "{file}: [device] ntp is empty; name at least one NTP server reachable over IPv6"
        ));
    }
    for server in &device.ntp {
        if server.is_empty() || server.contains(char::is_whitespace) {
            return Err(format!(
                "{file}: [device] ntp: {server:?} is not a host name or address"
            ));
        }
    }
    if let Some(wifi) = &device.wifi {
        check_ssid(&wifi.ssid).map_err(|e| format!("WiFi SSID {:?}: {e}", wifi.ssid))?;
        let two_letters =
            wifi.country.len() == 2 && wifi.country.chars().all(|c| c.is_ascii_uppercase());
        if !wifi.country.is_empty() && !two_letters {
            return Err(format!(
                "WiFi country {:?}: use a two-letter upper-case code such as DE or US",
                wifi.country
            ));
        }
    }
    Ok(())
}

fn check_ssid(ssid: &str) -> Result<(), String> {
    if ssid.is_empty() || ssid.len() > 32 {
        return Err("must be 1 to 32 bytes".into());
    }
    if ssid.contains(['\n', '\r']) {
        return Err("must be one line".into());
    }
    Ok(())
}

/// A file of the root made from the device settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFile {
    pub path: String,
    pub content: String,
    pub mode: u32,
}

fn file(path: &str, content: String, mode: u32) -> DeviceFile {
    DeviceFile {
        path: path.into(),
        content,
        mode,
    }
}

/// The root's files that carry `board`'s device settings.
pub fn files(board: &Board) -> Vec<DeviceFile> {
    let hostname = &board.hostname;
    let device: &DeviceConfig = &board.device;
    let mut files = vec![
        file("etc/hostname", format!("{hostname}\n"), 0o644),
        file(
            "etc/hosts",
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
            ),
            0o644,
        ),
        file(
            "etc/systemd/timesyncd.conf.d/50-device.conf",
            format!(
                "# Written by the image builder from the board's [device] ntp (or --ntp).\n[Time]\nNTP={}\n",
                device.ntp.join(" ")
            ),
            0o644,
        ),
    ];
    if !device.ssh_authorized_keys.is_empty() {
        let mut keys = String::new();
        for key in &device.ssh_authorized_keys {
            keys.push_str(key.as_str());
            keys.push('\n');
        }
        files.push(file("root/.ssh/authorized_keys", keys, 0o600));
    }
    if let Some(wifi) = &device.wifi {
        // The same format as the boot partition's wifi.txt (see wifi-config).
        files.push(file(
            "etc/vinyl/wifi.conf",
            format!(
                "# Written by the image builder (--wifi-ssid); a wifi.txt on the boot partition wins.\nssid={}\npsk={}\ncountry={}\n",
                wifi.ssid,
                wifi.psk.as_str(),
                wifi.country
            ),
            0o600,
        ));
    }
    files
}

/// The `compatible` of a board's images (RAUC's `system.conf`) and of its
/// bundles: a device installs only bundles for its own board.
pub fn compatible(board: &str) -> String {
    format!("vinyl-{board}")
}

/// RAUC's data directory on the device (slot status, block hash indexes):
/// on the data partition, which every update keeps.
pub const RAUC_DATA_DIR: &str = "/data/rauc";

/// The root slots' names in RAUC's `system.conf`: A, then B.
pub const ROOT_SLOTS: [&str; 2] = ["rootfs.0", "rootfs.1"];

/// What an image says about its own release, for the device's updater.
#[derive(Debug, Clone)]
pub struct Release {
    /// The release version (`--image-version`, `[update] version`, or the
    /// locked archive's date).
    pub version: String,
    /// Where the device checks for updates (`--update-url`, `[update] url`).
    pub channel_url: Option<url::Url>,
}

/// The device's release identity (read by `vinyl-update`).
pub const RELEASE_FILE: &str = "usr/lib/vinyl/release";
/// The updater's settings as built; `/data/vinyl-update/update.conf`
/// overrides them key by key.
pub const UPDATE_CONF: &str = "usr/lib/vinyl/update.conf";

/// The board's update channel URL, checked: an absolute http(s) URL with a
/// host. `from_flag` names `--update-url` rather than the board file in
/// the error.
pub fn channel_url(board: &Board, from_flag: bool) -> anyhow::Result<Option<url::Url>> {
    let Some(text) = &board.update.url else {
        return Ok(None);
    };
    let what = if from_flag {
        "--update-url".to_string()
    } else {
        format!("boards/{}.toml: [update] url", board.name)
    };
    let example = "http://[2001:db8::1]/vinyl/channel.json";
    let url = crate::values::http_url(&what, text, example)?;
    if url.fragment().is_some() || url.path().ends_with('/') {
        anyhow::bail!("{what} {text:?}: name the channel file itself, such as {example}");
    }
    Ok(Some(url))
}

/// RAUC's configuration for `board`'s images, the keyring (PEM) it trusts
/// bundles from (without one, RAUC refuses every bundle), the release's
/// identity and the updater's settings.
pub fn update_files(board: &Board, keyring: Option<&str>, release: &Release) -> Vec<DeviceFile> {
    let system_conf = format!(
        "# Written by the image builder for board {board}.
[system]
compatible={compatible}
# boot.scr's A/B state on the boot partition, through vinyl-update
bootloader=custom
# the root is read-only: slot status on /data, bundles mounted under /run
# (where Debian's rauc.service mounts them too)
data-directory={data_dir}
mountprefix=/run/rauc/mnt
bundle-formats=verity

[handlers]
bootloader-custom-backend=/usr/bin/vinyl-update-backend

[keyring]
path=/etc/rauc/keyring.pem

# /dev/vinyl/*: the booted disk's partitions, named by the initramfs
[slot.{slot_a}]
device=/dev/vinyl/root-a
type=ext4
bootname=a

[slot.{slot_b}]
device=/dev/vinyl/root-b
type=ext4
bootname=b
",
        board = board.name,
        compatible = compatible(&board.name),
        data_dir = RAUC_DATA_DIR,
        slot_a = ROOT_SLOTS[0],
        slot_b = ROOT_SLOTS[1],
    );
    let mut files = vec![file("etc/rauc/system.conf", system_conf, 0o644)];
    if let Some(pem) = keyring {
        files.push(file("etc/rauc/keyring.pem", pem.to_string(), 0o644));
    }
    files.push(file(
        RELEASE_FILE,
        format!(
            "# Written by the image builder: this image's release.\nVERSION={}\nCOMPATIBLE={}\n",
            release.version,
            compatible(&board.name)
        ),
        0o644,
    ));
    let url = match &release.channel_url {
        Some(url) => format!("url = {url}"),
        None => "# url = https://updates.example.org/vinyl/channel.json".to_string(),
    };
    files.push(file(
        UPDATE_CONF,
        format!(
            "# Written by the image builder for board {board}: how the device updates
# itself (`vinyl-update check`, run by vinyl-update-check.timer). Any key set
# in /data/vinyl-update/update.conf (same format) wins over this file.
#
# url: the release's channel.json (http:// or https://); without one the
# device never checks (`builder --update-url URL` or [update] url sets it).
{url}
# enabled: false switches automatic checks and installs off.
enabled = true
# check-every: time between two checks of the channel: 30m, 6h, 1d (1m..30d).
check-every = 6h
# reboot: when to start an installed update: \"idle\", as soon as nobody is
# listening and the turntable is silent; or \"HH:MM\", a time of day (UTC),
# within the three hours after it. Never while somebody hears a record.
reboot = idle
# install: \"stream\", RAUC reads the bundle from the server as it installs,
# only the chunks this device lacks (a delta); or \"download\", the whole
# bundle to /data first (resumed after a drop, checked against the channel's
# SHA-256), for servers without HTTP range requests or flaky links.
install = stream
",
            board = board.name
        ),
        0o644,
    ));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        toml::from_str::<Board>(
            "description = \"t\"\nhostname = \"turntable\"\nrecipes = []\n[kernel]\npackage = \"k\"\n",
        )
        .map(|mut b| {
            b.name = "t".into();
            b
        })
        .unwrap()
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGv5 user@host";

    #[test]
    fn defaults_give_hostname_hosts_and_ipv6_ntp() {
        let files = files(&board());
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc/hostname",
                "etc/hosts",
                "etc/systemd/timesyncd.conf.d/50-device.conf"
            ]
        );
        assert_eq!(files[0].content, "turntable\n");
        assert!(files[2].content.contains("NTP=2.debian.pool.ntp.org\n"));
    }

    #[test]
    fn overrides_replace_the_boards_values() {
        let mut board = board();
        let overrides = Overrides {
            hostname: Some("deck".into()),
            ntp: vec!["fd00::1".into(), "ntp.example".into()],
            ssh_key_files: vec![("k.pub".into(), format!("# mine\n{KEY}\n\n"))],
            wifi_ssid: Some("Home \"5G\"".into()),
            wifi_psk_file: Some(("psk".into(), "correct horse\n".into())),
            wifi_country: Some("DE".into()),
        };
        overrides.apply(&mut board).unwrap();
        let files = files(&board);
        let find = |p: &str| files.iter().find(|f| f.path == p).unwrap();
        assert_eq!(find("etc/hostname").content, "deck\n");
        assert!(
            find("etc/systemd/timesyncd.conf.d/50-device.conf")
                .content
                .contains("NTP=fd00::1 ntp.example\n")
        );
        let keys = find("root/.ssh/authorized_keys");
        assert_eq!(
            (keys.content.as_str(), keys.mode),
            (&*format!("{KEY}\n"), 0o600)
        );
        let wifi = find("etc/vinyl/wifi.conf");
        assert!(
            wifi.content
                .contains("ssid=Home \"5G\"\npsk=correct horse\ncountry=DE\n")
        );
        assert_eq!(wifi.mode, 0o600);
    }

    #[test]
    fn bad_values_name_the_flag_and_the_fix() {
        let cases = [
            (
                Overrides {
                    hostname: Some("my_pi".into()),
                    ..Default::default()
                },
                "--hostname \"my_pi\"",
            ),
            (
                Overrides {
                    ssh_key_files: vec![(
                        "id".into(),
                        "-----BEGIN OPENSSH PRIVATE KEY-----\n".into(),
                    )],
                    ..Default::default()
                },
                "--ssh-key id: line 1: this is a private key",
            ),
            (
                Overrides {
                    ssh_key_files: vec![("k".into(), format!("{KEY}\nhello\n"))],
                    ..Default::default()
                },
                "--ssh-key k: line 2: not an OpenSSH public key",
            ),
            (
                Overrides {
                    ssh_key_files: vec![("empty.pub".into(), "\n# nothing\n".into())],
                    ..Default::default()
                },
                "--ssh-key empty.pub: the file holds no public key",
            ),
            (
                Overrides {
                    wifi_ssid: Some("x".into()),
                    ..Default::default()
                },
                "--wifi-ssid needs --wifi-psk-file",
            ),
            (
                Overrides {
                    wifi_ssid: Some("x".into()),
                    wifi_psk_file: Some(("p".into(), "short\n".into())),
                    ..Default::default()
                },
                "--wifi-psk-file p: a WPA passphrase is 8 to 63",
            ),
            (
                Overrides {
                    wifi_ssid: Some("x".into()),
                    wifi_psk_file: Some(("p".into(), "long enough\n".into())),
                    wifi_country: Some("de".into()),
                    ..Default::default()
                },
                "WiFi country \"de\"",
            ),
        ];
        for (overrides, expected) in cases {
            let error = overrides.apply(&mut board()).unwrap_err();
            assert!(error.starts_with(expected), "{error:?} vs {expected:?}");
        }
    }

    #[test]
    fn keys_with_options_are_accepted() {
        let line = format!("from=\"fd00::/8\" {KEY}");
        let keys = SshPublicKey::parse_file(&line).unwrap();
        assert_eq!(
            keys.iter().map(SshPublicKey::as_str).collect::<Vec<_>>(),
            vec![line]
        );
    }

    #[test]
    fn rauc_is_configured_for_the_board_and_its_keyring() {
        let board = board();
        let release = Release {
            version: "1.2.3".into(),
            channel_url: None,
        };
        let files = update_files(&board, Some("PEM"), &release);
        let conf = &files
            .iter()
            .find(|f| f.path == "etc/rauc/system.conf")
            .unwrap()
            .content;
        assert!(
            conf.contains(&format!("compatible=vinyl-{}\n", board.name)),
            "{conf}"
        );
        for line in [
            "bootloader=custom\n",
            "bootloader-custom-backend=/usr/bin/vinyl-update-backend\n",
            "data-directory=/data/rauc\n",
            "path=/etc/rauc/keyring.pem\n",
            "[slot.rootfs.0]\ndevice=/dev/vinyl/root-a\ntype=ext4\nbootname=a\n",
            "[slot.rootfs.1]\ndevice=/dev/vinyl/root-b\ntype=ext4\nbootname=b\n",
        ] {
            assert!(conf.contains(line), "no {line:?} in {conf}");
        }
        let keyring = files
            .iter()
            .find(|f| f.path == "etc/rauc/keyring.pem")
            .unwrap();
        assert_eq!(keyring.content, "PEM");
        // Without a keyring RAUC has none to load: it refuses every bundle.
        let without = update_files(&board, None, &release);
        assert!(!without.iter().any(|f| f.path == "etc/rauc/keyring.pem"));
    }

    #[test]
    fn the_image_says_its_release_and_where_it_checks_for_updates() {
        let mut board = board();
        let url = "http://[2001:db8::1]:8080/vinyl/channel.json";
        board.update.url = Some(url.into());
        let release = Release {
            version: "2026.12.4".into(),
            channel_url: channel_url(&board, false).unwrap(),
        };
        let files = update_files(&board, None, &release);
        let content = |path: &str| {
            files
                .iter()
                .find(|f| f.path == path)
                .unwrap()
                .content
                .clone()
        };
        let identity = content(RELEASE_FILE);
        assert!(identity.contains("\nVERSION=2026.12.4\n"), "{identity}");
        assert!(identity.contains(&format!("\nCOMPATIBLE=vinyl-{}\n", board.name)));
        let conf = content(UPDATE_CONF);
        assert!(conf.contains(&format!("\nurl = {url}\n")), "{conf}");
        for line in [
            "\nenabled = true\n",
            "\ncheck-every = 6h\n",
            "\nreboot = idle\n",
            "\ninstall = stream\n",
        ] {
            assert!(conf.contains(line), "no {line:?} in {conf}");
        }
        // Without a URL the device never checks; the file says how to set one.
        board.update.url = None;
        let release = Release {
            channel_url: None,
            ..release
        };
        let conf = update_files(&board, None, &release)
            .into_iter()
            .find(|f| f.path == UPDATE_CONF)
            .unwrap()
            .content;
        assert!(!conf.lines().any(|l| l.starts_with("url")), "{conf}");
    }

    #[test]
    fn a_bad_update_url_names_where_it_came_from() {
        let mut board = board();
        for (bad, says) in [
            ("updates.example.org/channel.json", "absolute URL"),
            ("ftp://[2001:db8::1]/channel.json", "http:// or https://"),
            ("http://[2001:db8::1]/vinyl/", "channel file itself"),
        ] {
            board.update.url = Some(bad.into());
            let flag = channel_url(&board, true).unwrap_err().to_string();
            assert!(flag.starts_with("--update-url"), "{flag}");
            assert!(flag.contains(says), "{bad}: {flag}");
            let file = channel_url(&board, false).unwrap_err().to_string();
            assert!(file.contains("[update] url"), "{file}");
        }
    }
}
