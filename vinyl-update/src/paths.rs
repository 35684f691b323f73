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

/// The files the commands read and write.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The directory holding `ab-state-0.env` and `ab-state-1.env`.
    pub boot_dir: PathBuf,
    /// `boot.env`, written by the initramfs.
    pub boot_env: PathBuf,
    /// RAUC's record of what it installed into each slot.
    pub rauc_status: PathBuf,
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
        }
    }
}
