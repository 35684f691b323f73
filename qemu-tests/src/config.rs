//! What machine to start: [`MachineConfig`] and its parts, including which
//! [`Backend`] runs it. Plain data: the bottom layer above [`crate::error`].

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Everything needed to start one emulated machine.
///
/// Start from [`MachineConfig::new`] (a `virt` machine booting U-Boot) or
/// [`MachineConfig::raspi`] and change fields; all are public.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// The raw disk image. It is never modified (unless `write_image`): the
    /// machine boots from a qcow2 overlay backed by it, in the machine's
    /// work directory.
    pub image: PathBuf,
    /// Boot from `image` itself and write into it, with no overlay: a test
    /// can kill QEMU (a power cut) and start a new machine on the same disk.
    /// `virt` on the local backend only; give each test its own copy.
    pub write_image: bool,
    /// How the machine boots.
    pub boot: Boot,
    /// Which machine QEMU emulates.
    pub machine: Machine,
    /// Memory in MiB; `None` is the machine's default (1024 on `virt`; the
    /// Raspberry Pi machines have a fixed size and take no `-m`).
    pub memory_mib: Option<u32>,
    /// CPUs; `None` is the machine's default (2 on `virt`, fixed on the Pis).
    pub smp: Option<u32>,
    /// Arguments appended to QEMU's command line as they are.
    pub extra_args: Vec<String>,
    /// Attach the guest test shell channel (virtio console
    /// `org.vinyl.shell`); `virt` only. The image needs the `test-shell` recipe.
    pub shell: bool,
    /// Network attachment (default: none).
    pub network: Network,
    /// Exit QEMU when the guest reboots (`-no-reboot`). Off by default, so
    /// reboot tests see the machine reset and boot again.
    pub no_reboot: bool,
    /// Names the work directory and log files; letters, digits, `.`, `_`, `-`
    /// (anything else becomes `_`).
    pub name: String,
    /// Where QEMU runs; `None` reads `QEMU_TESTS_BACKEND` (see [`Backend::from_env`]).
    pub backend: Option<Backend>,
}

impl MachineConfig {
    /// A `virt` machine (cortex-a72, 2 CPUs, 1 GiB) booting `firmware` (U-Boot)
    /// with `-bios`, the disk on virtio-blk, no network, no shell.
    pub fn new(
        name: impl Into<String>,
        image: impl Into<PathBuf>,
        firmware: impl Into<PathBuf>,
    ) -> Self {
        MachineConfig {
            image: image.into(),
            write_image: false,
            boot: Boot::Firmware(firmware.into()),
            machine: Machine::Virt,
            memory_mib: None,
            smp: None,
            extra_args: Vec::new(),
            shell: false,
            network: Network::None,
            no_reboot: false,
            name: name.into(),
            backend: None,
        }
    }

    /// A Raspberry Pi machine (`raspi3b`, `raspi4b`) booting `kernel` (a
    /// Linux kernel or U-Boot's `u-boot.bin`) with `-kernel`, the disk as its
    /// SD card.
    pub fn raspi(
        name: impl Into<String>,
        machine: Machine,
        image: impl Into<PathBuf>,
        kernel: impl Into<PathBuf>,
        dtb: Option<PathBuf>,
    ) -> Self {
        MachineConfig {
            boot: Boot::Kernel {
                kernel: kernel.into(),
                initrd: None,
                dtb,
                append: String::new(),
            },
            machine,
            ..MachineConfig::new(name, image, PathBuf::new())
        }
    }

    /// With the guest test shell channel attached.
    pub fn with_shell(mut self) -> Self {
        self.shell = true;
        self
    }

    /// With this network attachment.
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Writing into the image itself, with no overlay (see `write_image`).
    pub fn writing_the_image(mut self) -> Self {
        self.write_image = true;
        self
    }

    /// On this backend rather than the one `QEMU_TESTS_BACKEND` names.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The files the machine reads: the image and the boot files.
    pub(crate) fn input_files(&self) -> Vec<&PathBuf> {
        let mut files = vec![&self.image];
        match &self.boot {
            Boot::Firmware(firmware) => files.push(firmware),
            Boot::Kernel {
                kernel,
                initrd,
                dtb,
                ..
            } => {
                files.push(kernel);
                files.extend(initrd);
                files.extend(dtb);
            }
        }
        files
    }
}

/// How the machine boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// `-bios FILE` (`virt` only): firmware such as Debian's
    /// `/usr/lib/u-boot/qemu_arm64/u-boot.bin`, which then runs the disk's
    /// `boot.scr`.
    Firmware(PathBuf),
    /// `-kernel`, optionally `-initrd` and `-dtb`, and `-append` when not empty.
    /// On the Pi machines the "kernel" may be U-Boot itself.
    Kernel {
        /// The kernel (or U-Boot) image.
        kernel: PathBuf,
        /// An initramfs.
        initrd: Option<PathBuf>,
        /// A device tree blob.
        dtb: Option<PathBuf>,
        /// The kernel command line (left out when empty).
        append: String,
    },
}

/// The emulated machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// QEMU's generic `virt` board: cortex-a72, virtio-blk disk, PCI.
    Virt,
    /// `raspi3b`: the disk is the SD card (`-drive if=sd`).
    Raspi3b,
    /// `raspi4b` (QEMU 9.0 and newer; no PCIe, USB or Ethernet).
    Raspi4b,
}

impl Machine {
    /// QEMU's `-M` name.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Machine::Virt => "virt",
            Machine::Raspi3b => "raspi3b",
            Machine::Raspi4b => "raspi4b",
        }
    }

    /// Whether the disk is an SD card (whose size QEMU wants a power of two).
    pub fn disk_is_sd(self) -> bool {
        !matches!(self, Machine::Virt)
    }
}

/// How the machine is networked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// No network card (`-nic none`).
    #[default]
    None,
    /// A virtio-net card on a tap device `tap` inside the network namespace
    /// `netns` (which must exist, e.g. from [`crate::NetNs`]; QEMU creates the
    /// tap device if it does not exist and removes it when it exits). `virt` only.
    Tap {
        /// Name of the network namespace (as in `ip netns`).
        netns: String,
        /// Name of the tap device inside it.
        tap: String,
        /// The card's MAC address, `52:54:00:xx:xx:xx` style.
        mac: String,
    },
}

/// The environment variable that selects the backend.
pub const BACKEND_ENV: &str = "QEMU_TESTS_BACKEND";

/// Where QEMU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The host's `qemu-system-aarch64` and `qemu-img` (Debian: `qemu-system-arm`, `qemu-utils`).
    Local,
    /// A container of the locally built runner image, through `testcontainers`.
    Docker,
}

impl Backend {
    /// The backend `QEMU_TESTS_BACKEND` names: `local` (the default when
    /// unset or empty) or `docker`.
    pub fn from_env() -> Result<Backend> {
        match std::env::var(BACKEND_ENV) {
            Ok(value) => value.parse(),
            Err(std::env::VarError::NotPresent) => Ok(Backend::Local),
            Err(e) => Err(Error::Config(format!("{BACKEND_ENV}: {e}"))),
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;

    fn from_str(value: &str) -> Result<Backend> {
        match value.trim() {
            "" | "local" => Ok(Backend::Local),
            "docker" => Ok(Backend::Docker),
            other => Err(Error::Config(format!(
                "{BACKEND_ENV}={other:?}: expected \"local\" or \"docker\""
            ))),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Local => "local",
            Backend::Docker => "docker",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!("local".parse::<Backend>().unwrap(), Backend::Local);
        assert_eq!("docker".parse::<Backend>().unwrap(), Backend::Docker);
        assert_eq!("".parse::<Backend>().unwrap(), Backend::Local);
        let error = "podman".parse::<Backend>().unwrap_err().to_string();
        assert!(error.contains("QEMU_TESTS_BACKEND=\"podman\""), "{error}");
        assert_eq!(Backend::Docker.to_string(), "docker");
    }
}
