//! Boots built SD card images on emulated aarch64 machines and talks to them,
//! for end-to-end tests.
//!
//! ```no_run
//! use std::time::Duration;
//! use qemu_tests::{MachineConfig, Vm};
//!
//! let config = MachineConfig::new(
//!     "boot",
//!     "/work/out/vinyl-qemu-virt.img",
//!     "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
//! )
//! .with_shell();
//! let mut vm = Vm::start(config)?;
//! vm.wait_for_console("Hit any key", Duration::from_secs(30))?;
//! vm.wait_for_shell(Duration::from_secs(120))?;
//! let cmdline = vm.run("cat /proc/cmdline", Duration::from_secs(10))?;
//! assert!(cmdline.success());
//! # Ok::<(), qemu_tests::Error>(())
//! ```
//!
//! The image is never written: the machine boots from a qcow2 overlay in its
//! work directory (`target/qemu-tests/<name>-<pid>-<n>/`), where the console
//! log and QEMU's own output are kept after the test. QEMU runs on the host
//! or in a container ([`Backend`], `QEMU_TESTS_BACKEND=local|docker`).
//! Dropping the [`Vm`] — also while a test panics — kills QEMU and removes
//! its container; QEMU also dies when the test process dies.
//!
//! # Layers
//!
//! The modules form a DAG; data flows one way, from what to start to the
//! running machine. Each module uses only modules on lower lines:
//!
//! ```text
//! skip                      the skip-or-fail rule (test_support) for this crate's errors
//!  └ vm                     a running machine and its cleanup
//!     └ backend             local / docker (runner_image): start and kill QEMU
//!        └ cmdline          QEMU's and qemu-img's command lines (pure)
//!           └ config        MachineConfig, Boot, Machine, Network, Backend (data)
//! leaves:   workdir (work directories and their Layout), netns (network
//!           namespaces), console (the serial log), shell (the guest command
//!           channel), qmp (QEMU's machine protocol), tone (decoded audio),
//!           device_tree (QEMU fix-ups of a Pi's tree; uses host),
//!           host (running host programs, crate-private)
//! bottom:   error (used by all)
//! ```
//!
//! `vm` uses every layer below it and the leaves it needs; `cmdline` uses
//! `workdir::Layout` and `netns::netns_path`; the backends use `cmdline`,
//! `config`, `workdir` and `host`. Types shared across layers belong to the
//! lowest layer that needs them: [`Backend`] (which backend — data) is
//! defined in [`config`], and [`backend`] adds what a backend *does*
//! ([`Backend::check`]); the work directory's file names ([`workdir::Layout`])
//! belong to [`workdir`].
//!
//! Modules: [`config`] (what to start), [`cmdline`] (QEMU's command line),
//! [`backend`] (local and docker), [`console`] (the serial log), [`shell`]
//! (the guest command channel), [`device_tree`] (a Pi's device tree made fit
//! for QEMU), [`vm`] (a running machine and its cleanup),
//! [`netns`] (network namespaces), [`qmp`] (QEMU's machine protocol),
//! [`workdir`] (work directories), [`skip`] (the skip-or-fail rule for
//! tests), [`tone`] (what a listener hears: frequency, level and purity of
//! decoded audio).

pub mod backend;
pub mod cmdline;
pub mod config;
pub mod console;
pub mod device_tree;
pub mod error;
mod host;
pub mod netns;
pub mod qmp;
pub mod shell;
pub mod skip;
pub mod tone;
pub mod vm;
pub mod workdir;

pub use backend::ExitStatus;
pub use config::{Backend, Boot, Machine, MachineConfig, Network};
pub use console::Needle;
pub use error::{Error, Result, VmErrorKind};
pub use netns::NetNs;
pub use shell::CommandOutput;
pub use vm::Vm;

/// One `#[test]` per backend for a test body written once: for each line
/// `body => local_test, docker_test;` it defines `local_test` calling
/// `body(Backend::Local)` and `docker_test` calling `body(Backend::Docker)`
/// (`body` takes a [`Backend`]; a missing backend skips or fails through
/// [`skip`]).
///
/// ```
/// use qemu_tests::Backend;
///
/// fn boots(backend: Backend) {
///     // if !qemu_tests::skip::backend_ready(backend) { return; } …
///     let _ = backend;
/// }
///
/// qemu_tests::backend_tests! {
///     boots => local_boots, docker_boots;
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($($body:ident => $local:ident, $docker:ident;)+) => {
        $(
            #[test]
            fn $local() {
                $body($crate::Backend::Local);
            }

            #[test]
            fn $docker() {
                $body($crate::Backend::Docker);
            }
        )+
    };
}
