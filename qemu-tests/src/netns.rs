//! Named network namespaces for [`Network::Tap`](crate::Network::Tap)
//! machines, deleted on drop (needs root, `ip` from iproute2).
//!
//! Declare the [`NetNs`] before the [`Vm`](crate::Vm) that uses it, so the
//! machine is dropped (and QEMU gone) first:
//!
//! ```no_run
//! # use qemu_tests::{NetNs, Network, MachineConfig, Vm};
//! let netns = NetNs::create("vinyl-t1")?;
//! netns.ip(&["link", "set", "lo", "up"])?;
//! let config = MachineConfig::new("net", "/abs/disk.img", "/usr/lib/u-boot/qemu_arm64/u-boot.bin")
//!     .with_network(Network::Tap { netns: netns.name().into(), tap: "tap0".into(), mac: "52:54:00:12:34:56".into() });
//! let vm = Vm::start(config)?;
//! # Ok::<(), qemu_tests::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Result;
use crate::host::{probe, run_checked};

/// The file `ip netns` keeps a named namespace in.
pub fn netns_path(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

/// How to get `ip`.
pub const INSTALL: &str = "apt-get install iproute2";

/// A network namespace this process created; deleted on drop (with the
/// virtual devices in it, tap devices included).
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates the namespace `name` (`ip netns add`). A namespace of that
    /// name left behind by a killed earlier run is deleted first: tests own
    /// their namespace names.
    pub fn create(name: &str) -> Result<NetNs> {
        probe("ip", &["-V"], INSTALL)?;
        if netns_path(name).exists() {
            let _ = Command::new("ip").args(["netns", "delete", name]).status();
        }
        run_checked(
            Command::new("ip").args(["netns", "add", name]),
            "creating a network namespace",
        )?;
        Ok(NetNs { name: name.into() })
    }

    /// The namespace's name (for [`Network::Tap`](crate::Network::Tap)).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS…` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run_checked(
            Command::new("ip").arg("-n").arg(&self.name).args(args),
            "ip in the test namespace",
        )
    }

    /// Runs `PROGRAM ARGS…` inside the namespace (`ip netns exec`) and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        run_checked(
            Command::new("ip")
                .args(["netns", "exec", &self.name, program])
                .args(args),
            "running a program in the test namespace",
        )
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}
