//! Where the boot state and the boot environment are, overridable for
//! tests and the QEMU harness.

use std::path::PathBuf;

/// The boot partition's mount point unless `VINYL_BOOT_DIR` says otherwise.
pub const BOOT_DIR: &str = "/boot/firmware";
/// The initramfs's record of what booted unless `VINYL_BOOT_ENV` says otherwise.
pub const BOOT_ENV: &str = "/run/vinyl/boot.env";

/// RAUC's status file (its `data-directory` on /data) unless
/// `VINYL_RAUC_STATUS` says otherwise.
pub const RAUC_STATUS: &str = "/data/rauc/central.raucs";

/// The image's release (`VERSION=`, `COMPATIBLE=`), `VINYL_RELEASE`.
pub const RELEASE: &str = "/usr/lib/vinyl/release";
/// The updater's settings as built, `VINYL_UPDATE_CONF`.
pub const UPDATE_CONF: &str = "/usr/lib/vinyl/update.conf";
/// The device's own settings, winning key by key, `VINYL_UPDATE_OVERRIDE`.
pub const UPDATE_OVERRIDE: &str = "/data/vinyl-update/update.conf";
/// The last check's record, `VINYL_UPDATE_STATE`.
pub const UPDATE_STATE: &str = "/data/vinyl-update/state.json";
/// Where `install = download` keeps bundles, `VINYL_UPDATE_DOWNLOADS`.
pub const UPDATE_DOWNLOADS: &str = "/data/vinyl-update/download";
/// vinyl-streamd's status (listeners, playing), `VINYL_STREAMD_STATUS`.
pub const STREAMD_STATUS: &str = "http://[::1]:8000/status";

/// The files the commands read and write.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The directory holding `ab-state-0.env` and `ab-state-1.env`.
    pub boot_dir: PathBuf,
    /// `boot.env`, written by the initramfs.
    pub boot_env: PathBuf,
    /// RAUC's record of what it installed into each slot.
    pub rauc_status: PathBuf,
    pub release: PathBuf,
    pub update_conf: PathBuf,
    pub update_override: PathBuf,
    pub update_state: PathBuf,
    pub update_downloads: PathBuf,
    /// A URL.
    pub streamd_status: String,
}

impl Paths {
    /// The defaults, overridden by the environment.
    pub fn from_env() -> Paths {
        let var = |name: &str, default: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        Paths {
            boot_dir: var("VINYL_BOOT_DIR", BOOT_DIR),
            boot_env: var("VINYL_BOOT_ENV", BOOT_ENV),
            rauc_status: var("VINYL_RAUC_STATUS", RAUC_STATUS),
            release: var("VINYL_RELEASE", RELEASE),
            update_conf: var("VINYL_UPDATE_CONF", UPDATE_CONF),
            update_override: var("VINYL_UPDATE_OVERRIDE", UPDATE_OVERRIDE),
            update_state: var("VINYL_UPDATE_STATE", UPDATE_STATE),
            update_downloads: var("VINYL_UPDATE_DOWNLOADS", UPDATE_DOWNLOADS),
            streamd_status: var("VINYL_STREAMD_STATUS", STREAMD_STATUS)
                .to_string_lossy()
                .into_owned(),
        }
    }
}
