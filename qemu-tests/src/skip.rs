//! The rule for tests that need QEMU, docker or firmware from the host:
//! when something is missing, a local run skips with a printed reason and a
//! CI run (`CI` set) fails — the workspace's one rule, [`test_support`],
//! applied to this crate's [`Error::ToolMissing`].
//!
//! ```no_run
//! # fn a_test() {
//! use qemu_tests::{Backend, skip};
//! if !skip::backend_ready(Backend::Local) { return; }
//! let Some(u_boot) = skip::required(skip::u_boot_qemu()) else { return };
//! # }
//! ```

use std::path::PathBuf;

use crate::config::Backend;
use crate::error::{Error, Result};

/// Debian's U-Boot for QEMU's arm64 `virt` machine (package `u-boot-qemu`).
pub const U_BOOT_QEMU: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

pub use test_support::in_ci;

/// `Some(value)`, or for a missing prerequisite ([`Error::ToolMissing`]) a
/// skip (`None`, reason printed) or, under CI, a panic. Any other error is a
/// real failure and panics.
pub fn required<T>(result: Result<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) if error.is_tool_missing() => {
            test_support::skip_or_fail(&test_support::current_test(), &error.to_string());
            None
        }
        Err(error) => panic!("{error}"),
    }
}

/// Whether `backend` can run machines (see [`required`] for what happens if not).
pub fn backend_ready(backend: Backend) -> bool {
    required(backend.check()).is_some()
}

/// The path of Debian's qemu_arm64 U-Boot, if installed.
pub fn u_boot_qemu() -> Result<PathBuf> {
    let path = PathBuf::from(U_BOOT_QEMU);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::ToolMissing {
            tool: "u-boot-qemu".into(),
            install: "apt-get install u-boot-qemu".into(),
            detail: format!("{U_BOOT_QEMU} does not exist"),
        })
    }
}

/// Succeeds when running as root, which `purpose` needs.
pub fn root(purpose: &str) -> Result<()> {
    if rustix::process::getuid().is_root() {
        Ok(())
    } else {
        Err(Error::ToolMissing {
            tool: "root".into(),
            install: "run the tests as root (sudo -E cargo test …)".into(),
            detail: format!("{purpose} need root"),
        })
    }
}
