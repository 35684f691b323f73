//! Boards (`boards/*.toml`) and recipes (`recipes/*.toml`): what goes into an
//! image. Loading is strict: unknown keys and missing files are errors that
//! name the file, line and fix.

use crate::values::{
    Hostname, OverlayName, PLAIN_NAME, RecipeName, SshPublicKey, WifiPassphrase, is_plain_name,
};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown board {name:?}; available boards: {}. Add boards/{name}.toml to create it", available.join(", "))]
    UnknownBoard {
        name: String,
        available: Vec<String>,
    },
    #[error(
        "board name {name:?} is not {PLAIN_NAME}: a board is named by its file, boards/<name>.toml; give --board one of: {}",
        available.join(", ")
    )]
    BadBoardName {
        name: String,
        available: Vec<String>,
    },
    #[error(
        "{file}: recipe {name:?} does not exist; create recipes/{name}.toml or remove it from `recipes`"
    )]
    UnknownRecipe { file: PathBuf, name: String },
    #[error("{file}: overlay directory overlay/{name} does not exist")]
    UnknownOverlay { file: PathBuf, name: String },
    #[error("{}: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// A board: the machine an image is for, and what goes on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Board {
    /// One line for `builder boards`.
    pub description: String,
    /// The device's hostname (also its mDNS name).
    pub hostname: Hostname,
    /// Debian suite (codename).
    #[serde(default = "default_suite")]
    pub suite: String,
    #[serde(default)]
    pub architecture: Architecture,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// Recipes (names under `recipes/`) in the order they apply.
    pub recipes: Vec<RecipeName>,
    /// What a build of this board produces.
    #[serde(default)]
    pub output: OutputKind,
    /// The kernel, with its modules; an `sd-image` board needs one.
    pub kernel: Option<KernelConfig>,
    #[serde(default)]
    pub image: ImageConfig,
    #[serde(default)]
    pub boot: BootConfig,
    /// What the device is set up with: time servers, SSH keys, WiFi
    /// (`builder --ntp/--ssh-key/--wifi-*` override it per build).
    #[serde(default)]
    pub device: DeviceConfig,
    /// Over-the-air updates: the keyring images trust and the version
    /// bundles carry.
    #[serde(default)]
    pub update: UpdateConfig,
    /// Board name; taken from the file name.
    #[serde(skip)]
    pub name: String,
}

/// A Debian architecture the builder can build for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// 64-bit Arm: every Raspberry Pi board and QEMU's virt machine.
    #[default]
    Arm64,
    /// x86-64: containers for the host (the QEMU test runner).
    Amd64,
}

impl Architecture {
    /// Debian's name, as in `binary-arm64/Packages` and `.deb` file names.
    pub fn debian_name(self) -> &'static str {
        match self {
            Architecture::Arm64 => "arm64",
            Architecture::Amd64 => "amd64",
        }
    }

    /// Rust's target triple, for cross-compiling the board's crates.
    pub fn rust_triple(self) -> &'static str {
        match self {
            Architecture::Arm64 => "aarch64-unknown-linux-gnu",
            Architecture::Amd64 => "x86_64-unknown-linux-gnu",
        }
    }

    /// Debian's multiarch triple: clang's target and the library directory.
    pub fn multiarch(self) -> &'static str {
        match self {
            Architecture::Arm64 => "aarch64-linux-gnu",
            Architecture::Amd64 => "x86_64-linux-gnu",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.debian_name())
    }
}

/// What a build of a board produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// A bootable SD card image (MBR, FAT boot partition, A/B root slots,
    /// data) with its compressed copy, checksums, bmap, manifest and SBOM.
    #[default]
    SdImage,
    /// The root filesystem as a tar archive (e.g. for `docker import`):
    /// no kernel, no boot chain.
    RootfsTar,
}

/// The kernel package and the modules a board needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelConfig {
    /// The kernel package (a metapackage such as `linux-image-arm64` is fine).
    pub package: String,
    /// Modules the board needs (their dependencies are added).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Modules the initramfs loads to reach the root filesystem (storage
    /// controller, block driver, ext4), in addition to being in the root.
    #[serde(default)]
    pub initramfs_modules: Vec<String>,
}

/// The SD card image: its file name and partition sizes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageConfig {
    /// Base name of the output files (default `vinyl-<board>`).
    pub name: Option<String>,
    /// FAT boot partition (firmware, U-Boot, boot script, A/B state).
    #[serde(default = "default_boot_mib")]
    pub boot_mib: u64,
    /// Each of the two root slots.
    #[serde(default = "default_root_mib")]
    pub root_mib: u64,
    /// The data partition as shipped; it grows to fill the card at first boot.
    #[serde(default = "default_data_mib")]
    pub data_mib: u64,
    /// Raspberry Pi Imager's device tags the image is for (`pi4-64bit`,
    /// `pi3-64bit`, `pi5-64bit`); none for a board Imager does not know.
    #[serde(default)]
    pub imager_devices: Vec<String>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            name: None,
            boot_mib: default_boot_mib(),
            root_mib: default_root_mib(),
            data_mib: default_data_mib(),
            imager_devices: Vec::new(),
        }
    }
}

fn default_boot_mib() -> u64 {
    256
}
fn default_root_mib() -> u64 {
    1024
}
fn default_data_mib() -> u64 {
    64
}

/// What the FAT boot partition holds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootConfig {
    /// Files copied from the root tree onto the boot partition.
    #[serde(default)]
    pub files: Vec<BootFile>,
    /// Kernel command line the boot script starts from (console settings);
    /// it adds the root, slot and data partition itself.
    #[serde(default)]
    pub cmdline: String,
    /// Lines of the Raspberry Pi firmware's `config.txt`; none means no
    /// config.txt (boards without the Pi's GPU firmware).
    #[serde(default)]
    pub config_txt: Vec<String>,
}

/// Over-the-air updates (`[update]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpdateConfig {
    /// PEM file of the CA certificates the device trusts bundles from
    /// (several: key rotation); relative to the project directory.
    /// `--keyring` overrides it. Without one, the image refuses every bundle.
    pub keyring: Option<PathBuf>,
    /// The version bundles and the image carry (default: the date of the
    /// locked Debian archive, `YYYY.MM.DD`); `--image-version` overrides it.
    pub version: Option<crate::values::Version>,
    /// Where devices look for updates: the URL of the release's
    /// `channel.json`. `builder publish` takes its directory as the
    /// default `--base-url` for the Raspberry Pi Imager list.
    pub url: Option<String>,
}

/// Per-device settings: the part of an image a user most often changes.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeviceConfig {
    /// NTP servers (names with IPv6 addresses, or IPv6 addresses) for
    /// systemd-timesyncd; servers a DHCP server pushes are never used.
    #[serde(default = "default_ntp")]
    pub ntp: Vec<String>,
    /// OpenSSH public keys (`authorized_keys` lines) that may log in as root.
    /// None means SSH accepts only keys from the boot partition's
    /// `authorized_keys`; passwords are never accepted.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<SshPublicKey>,
    /// The WiFi network joined at boot; a `wifi.txt` on the boot partition
    /// takes precedence.
    #[serde(default)]
    pub wifi: Option<WifiConfig>,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            ntp: default_ntp(),
            ssh_authorized_keys: Vec::new(),
            wifi: None,
        }
    }
}

/// Debian's NTP pool that has IPv6 addresses (pool number 2).
fn default_ntp() -> Vec<String> {
    vec!["2.debian.pool.ntp.org".into()]
}

/// A WiFi network (WPA2/WPA3 personal).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WifiConfig {
    pub ssid: String,
    /// The passphrase (8 to 63 characters) or a 64-digit hex key.
    pub psk: WifiPassphrase,
    /// Two-letter regulatory country code (e.g. `DE`); required by many
    /// WiFi chips to use all channels.
    #[serde(default)]
    pub country: String,
}

/// Root-tree files (a glob, e.g. `/usr/lib/raspi-firmware/*.elf`) copied
/// into a directory of the boot partition (`to`, default its root).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootFile {
    pub from: String,
    #[serde(default)]
    pub to: String,
}

fn default_suite() -> String {
    "trixie".into()
}
fn default_components() -> Vec<String> {
    vec!["main".into(), "non-free-firmware".into()]
}

/// A recipe: one concern of the image (base system, networking, the streamer).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Recipe {
    #[serde(default)]
    pub description: String,
    /// Debian packages to install (dependencies are added).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Names the image provides without installing a package, so dependencies
    /// on them are satisfied (e.g. `linux-initramfs-tool`: the builder makes
    /// the initramfs itself).
    #[serde(default)]
    pub provides: Vec<String>,
    /// Packages needed only to cross-compile `crates` (a sysroot), never installed.
    #[serde(default)]
    pub sysroot_packages: Vec<String>,
    /// Packages the builder takes programs from for the initramfs (busybox),
    /// never installed in the root.
    #[serde(default)]
    pub initramfs_packages: Vec<String>,
    /// Directories under `overlay/` copied onto the root, owned by root.
    #[serde(default)]
    pub overlay: Vec<OverlayName>,
    /// systemd units to enable (in addition to presets).
    #[serde(default)]
    pub services: Vec<String>,
    /// System users to create.
    #[serde(default)]
    pub users: Vec<UserSpec>,
    /// Kernel modules to include (with dependencies).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Workspace crates cross-compiled for the board and installed in /usr/bin.
    #[serde(default)]
    pub crates: Vec<String>,
    /// Paths dropped from the root (globs, e.g. `/usr/share/man/**`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Exceptions to `exclude` (e.g. `/usr/share/doc/*/copyright`).
    #[serde(default)]
    pub keep: Vec<String>,
    /// Recipe name; taken from the file name.
    #[serde(skip)]
    pub name: String,
}

/// A system user declared by a recipe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserSpec {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "default_home")]
    pub home: String,
    #[serde(default = "default_shell")]
    pub shell: String,
    #[serde(default)]
    pub description: String,
}

fn default_home() -> String {
    "/nonexistent".into()
}
fn default_shell() -> String {
    "/usr/sbin/nologin".into()
}

/// The project's configuration folders.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
}

impl Project {
    /// The project rooted at `root` (holding `boards/`, `recipes/`, `overlay/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Project { root: root.into() }
    }

    /// The workspace this builder was compiled from.
    pub fn from_workspace() -> Self {
        Self::new(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("workspace root"),
        )
    }

    pub fn boards_dir(&self) -> PathBuf {
        self.root.join("boards")
    }

    pub fn overlay_dir(&self, name: &str) -> PathBuf {
        self.root.join("overlay").join(name)
    }

    /// The lock file of a board.
    pub fn lock_path(&self, board: &str) -> PathBuf {
        self.boards_dir().join(format!("{board}.lock"))
    }

    /// Names of all boards, sorted.
    pub fn board_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.boards_dir())
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                if path.extension()? != "toml" {
                    return None;
                }
                Some(path.file_stem()?.to_string_lossy().into_owned())
            })
            .collect();
        names.sort();
        names
    }

    /// Loads a board by name.
    pub fn board(&self, name: &str) -> Result<Board, ConfigError> {
        if !is_plain_name(name) {
            return Err(ConfigError::BadBoardName {
                name: name.to_string(),
                available: self.board_names(),
            });
        }
        let file = self.boards_dir().join(format!("{name}.toml"));
        if !file.is_file() {
            return Err(ConfigError::UnknownBoard {
                name: name.to_string(),
                available: self.board_names(),
            });
        }
        let mut board: Board = parse_toml(&file)?;
        board.name = name.to_string();
        let problem = match (board.output, &board.kernel) {
            (OutputKind::SdImage, None) => Some(
                "an SD image boots a kernel: add a [kernel] section, or set `output = \"rootfs-tar\"` for a root filesystem archive",
            ),
            (OutputKind::RootfsTar, Some(_)) => Some(
                "`output = \"rootfs-tar\"` has no boot chain: remove the [kernel] section, or set `output = \"sd-image\"`",
            ),
            _ => None,
        };
        if let Some(message) = problem {
            return Err(ConfigError::Parse {
                file,
                message: message.to_string(),
            });
        }
        Ok(board)
    }

    /// Loads the recipes a board names, in order.
    pub fn recipes(&self, board: &Board) -> Result<Vec<Recipe>, ConfigError> {
        let board_file = self.boards_dir().join(format!("{}.toml", board.name));
        board
            .recipes
            .iter()
            .map(|name| {
                let file = self.root.join("recipes").join(format!("{name}.toml"));
                if !file.is_file() {
                    return Err(ConfigError::UnknownRecipe {
                        file: board_file.clone(),
                        name: name.to_string(),
                    });
                }
                let mut recipe: Recipe = parse_toml(&file)?;
                recipe.name = name.to_string();
                for overlay in &recipe.overlay {
                    if !self.overlay_dir(overlay.as_str()).is_dir() {
                        return Err(ConfigError::UnknownOverlay {
                            file: file.clone(),
                            name: overlay.to_string(),
                        });
                    }
                }
                Ok(recipe)
            })
            .collect()
    }
}

/// Parses a TOML file; errors carry the file, line and column.
fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
        file: file.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| ConfigError::Parse {
        file: file.to_path_buf(),
        message: toml_error_message(&text, &error),
    })
}

/// A TOML error as one line: `line L, column C: message`.
pub fn toml_error_message(text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = line_at(text, span.start);
            let column = span.start - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", error.message().trim())
        }
        None => error.message().trim().to_string(),
    }
}

/// The line number (from 1) of a byte offset in `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Everything the recipes of a board ask for, merged in recipe order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Package name → the recipe that asked for it first.
    pub packages: BTreeMap<String, String>,
    pub sysroot_packages: BTreeMap<String, String>,
    pub initramfs_packages: BTreeMap<String, String>,
    /// Modules the initramfs loads (also part of `modules`).
    pub initramfs_modules: Vec<String>,
    pub provides: BTreeSet<String>,
    pub overlays: Vec<String>,
    pub services: Vec<String>,
    pub users: Vec<UserSpec>,
    pub modules: Vec<String>,
    pub crates: Vec<String>,
    pub exclude: Vec<String>,
    pub keep: Vec<String>,
}

impl Plan {
    /// Merges a board's recipes; the kernel package is requested by the board.
    pub fn new(board: &Board, recipes: &[Recipe]) -> Self {
        let mut plan = Plan::default();
        if let Some(kernel) = &board.kernel {
            plan.packages.insert(
                kernel.package.clone(),
                format!("boards/{}.toml", board.name),
            );
            plan.modules.extend(kernel.modules.iter().cloned());
            plan.modules
                .extend(kernel.initramfs_modules.iter().cloned());
            plan.initramfs_modules = kernel.initramfs_modules.clone();
        }
        for recipe in recipes {
            let origin = format!("recipes/{}.toml", recipe.name);
            for package in &recipe.packages {
                plan.packages
                    .entry(package.clone())
                    .or_insert_with(|| origin.clone());
            }
            for package in &recipe.sysroot_packages {
                plan.sysroot_packages
                    .entry(package.clone())
                    .or_insert_with(|| origin.clone());
            }
            // Only a board with a kernel boots through an initramfs.
            if board.kernel.is_some() {
                for package in &recipe.initramfs_packages {
                    plan.initramfs_packages
                        .entry(package.clone())
                        .or_insert_with(|| origin.clone());
                }
            }
            plan.provides.extend(recipe.provides.iter().cloned());
            plan.overlays
                .extend(recipe.overlay.iter().map(OverlayName::to_string));
            plan.services.extend(recipe.services.iter().cloned());
            plan.users.extend(recipe.users.iter().cloned());
            plan.modules.extend(recipe.modules.iter().cloned());
            plan.crates.extend(recipe.crates.iter().cloned());
            plan.exclude.extend(recipe.exclude.iter().cloned());
            plan.keep.extend(recipe.keep.iter().cloned());
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let project = Project::new(dir.path());
        (dir, project)
    }

    const BOARD: &str = "description = \"Test\"\nhostname = \"t\"\nrecipes = [\"base\"]\n[kernel]\npackage = \"linux-image-arm64\"\nmodules = [\"ext4\"]\n";

    #[test]
    fn loads_board_and_merges_recipes() {
        let (_dir, project) = project(&[
            ("boards/test.toml", BOARD),
            (
                "recipes/base.toml",
                "packages = [\"systemd\", \"bash\"]\nmodules = [\"snd-aloop\"]\noverlay = [\"base\"]\n",
            ),
            ("overlay/base/etc/motd", "hi"),
        ]);
        let board = project.board("test").unwrap();
        assert_eq!(board.suite, "trixie");
        let recipes = project.recipes(&board).unwrap();
        let plan = Plan::new(&board, &recipes);
        assert_eq!(
            plan.packages.keys().collect::<Vec<_>>(),
            ["bash", "linux-image-arm64", "systemd"]
        );
        assert_eq!(plan.packages["bash"], "recipes/base.toml");
        assert_eq!(plan.modules, ["ext4", "snd-aloop"]);
    }

    #[test]
    fn errors_name_file_line_and_fix() {
        let (_dir, project) = project(&[
            ("boards/test.toml", BOARD),
            (
                "boards/typo.toml",
                "description = \"x\"\nhostname = \"t\"\nrecipes = []\nrecipies = []\n[kernel]\npackage = \"k\"\n",
            ),
            ("recipes/base.toml", "packages = \"systemd\"\n"),
        ]);
        let error = project.board("nope").unwrap_err().to_string();
        assert!(error.contains("available boards: test, typo"), "{error}");
        let error = project.board("typo").unwrap_err().to_string();
        assert!(error.contains("typo.toml: line 4, column 1"), "{error}");
        assert!(error.contains("recipies"), "{error}");
        let board = project.board("test").unwrap();
        let error = project.recipes(&board).unwrap_err().to_string();
        assert!(error.contains("base.toml: line 1"), "{error}");
    }

    #[test]
    fn missing_recipe_and_overlay_are_named() {
        let (_dir, project) = project(&[
            ("boards/test.toml", BOARD),
            ("recipes/base.toml", "overlay = [\"gone\"]\n"),
        ]);
        let board = project.board("test").unwrap();
        let error = project.recipes(&board).unwrap_err().to_string();
        assert!(error.contains("overlay/gone does not exist"), "{error}");
    }

    #[test]
    fn recipe_overlay_and_board_names_are_plain_names() {
        let (_dir, project) = project(&[
            (
                "boards/test.toml",
                "description = \"x\"\nhostname = \"t\"\nrecipes = [\n  \"base\",\n  \"../../etc/x\",\n]\n[kernel]\npackage = \"k\"\n",
            ),
            ("boards/ok.toml", BOARD),
            (
                "recipes/base.toml",
                "packages = []\noverlay = [\"base\", \"../../somewhere\"]\n",
            ),
            ("overlay/base/etc/motd", "hi"),
        ]);
        let error = project.board("test").unwrap_err().to_string();
        assert!(error.contains("test.toml: line 5, column 3"), "{error}");
        assert!(
            error.contains("recipe \"../../etc/x\" is not a plain name"),
            "{error}"
        );
        assert!(error.contains("recipes/<name>.toml"), "{error}");

        let board = project.board("ok").unwrap();
        let error = project.recipes(&board).unwrap_err().to_string();
        assert!(error.contains("base.toml: line 2, column 20"), "{error}");
        assert!(
            error.contains("overlay \"../../somewhere\" is not a plain name"),
            "{error}"
        );
        assert!(error.contains("overlay/<name>/"), "{error}");

        for bad in ["../boards/ok", "..", "/etc/passwd", "a/b"] {
            let error = project.board(bad).unwrap_err().to_string();
            assert!(
                error.contains(&format!("board name {bad:?} is not a plain name")),
                "{error}"
            );
            assert!(error.contains("give --board one of: ok, test"), "{error}");
        }
    }

    #[test]
    fn typed_values_are_checked_where_they_are_written() {
        let (_dir, project) = project(&[
            (
                "boards/name.toml",
                "description = \"x\"\nhostname = \"my_pi\"\nrecipes = []\n[kernel]\npackage = \"k\"\n",
            ),
            (
                "boards/arch.toml",
                "description = \"x\"\nhostname = \"t\"\narchitecture = \"armhf\"\nrecipes = []\n",
            ),
            (
                "boards/tar.toml",
                "description = \"x\"\nhostname = \"t\"\noutput = \"rootfs-tar\"\nrecipes = []\n",
            ),
            (
                "boards/nokernel.toml",
                "description = \"x\"\nhostname = \"t\"\nrecipes = []\n",
            ),
            (
                "boards/psk.toml",
                "description = \"x\"\nhostname = \"t\"\nrecipes = []\n[kernel]\npackage = \"k\"\n[device.wifi]\nssid = \"s\"\npsk = \"short\"\n",
            ),
        ]);
        let error = project.board("name").unwrap_err().to_string();
        assert!(error.contains("name.toml: line 2"), "{error}");
        assert!(error.contains("1 to 63 letters"), "{error}");
        let error = project.board("arch").unwrap_err().to_string();
        assert!(error.contains("arch.toml: line 3"), "{error}");
        assert!(error.contains("expected `arm64` or `amd64`"), "{error}");
        let error = project.board("psk").unwrap_err().to_string();
        assert!(error.contains("psk.toml: line 8"), "{error}");
        assert!(error.contains("8 to 63 printable"), "{error}");
        assert!(!error.contains("short"), "the passphrase leaked: {error}");
        let board = project.board("tar").unwrap();
        assert_eq!(
            (board.output, board.architecture),
            (OutputKind::RootfsTar, Architecture::Arm64)
        );
        let error = project.board("nokernel").unwrap_err().to_string();
        assert!(
            error.contains("nokernel.toml: an SD image boots a kernel"),
            "{error}"
        );
    }
}
