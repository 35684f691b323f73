//! Device trees made fit for QEMU's Raspberry Pi machines, derived at test
//! time from the image's own tree (never written into an image).
//!
//! QEMU models less of a Pi than the real SoC has. A node for hardware QEMU
//! lacks can stop the kernel before it prints anything (the Pi 4's HDMI
//! "AON" block), make a driver wait forever for a power sequence, or hand
//! the console's UART to a Bluetooth chip that is not there; each
//! [`Fixup`] turns one such node off and says why. Everything else — the
//! kernel, initramfs, U-Boot and boot script — is the image's, unchanged.
//! The changes are made with `fdtput` from Debian's device-tree-compiler;
//! each node or property is first looked up with `fdtget`, so a tree that
//! no longer has it (a new kernel's) fails the test instead of being
//! patched silently in the wrong place.
//!
//! ```no_run
//! use qemu_tests::{Machine, device_tree};
//! device_tree::for_qemu(
//!     Machine::Raspi4b,
//!     "bcm2711-rpi-4-b.dtb".as_ref(),
//!     "bcm2711-rpi-4-b-qemu.dtb".as_ref(),
//! )?;
//! # Ok::<(), qemu_tests::Error>(())
//! ```

use std::path::Path;
use std::process::Command;

use crate::config::Machine;
use crate::error::{Error, Result};
use crate::host::{probe, run_checked};

/// How to install `fdtput` and `fdtget`.
const INSTALL: &str = "apt-get install device-tree-compiler";

/// One change to a device tree node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `status = "disabled"`: no driver binds to the node.
    Disable,
    /// Removes the node's property of this name.
    DeleteProperty(&'static str),
    /// Removes the node and everything below it.
    DeleteNode,
}

/// A change to one node, and why QEMU needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixup {
    /// The node's full path.
    pub node: &'static str,
    /// What is changed.
    pub change: Change,
    /// Why: what QEMU does not model.
    pub why: &'static str,
}

/// The Pi 4's HDMI "AON" block at 0x7ef00000 is not modelled by QEMU 10:
/// the kernel's `brcmstb_l2_intc_of_init` faults on its interrupt
/// controller about 4.7 s in, before any console. Everything in it goes.
const AON: &str = "QEMU does not model the HDMI AON block at 0x7ef00000; \
                   probing it stops the kernel before any console";

/// The fix-ups for the Pi 4 device tree (`bcm2711-rpi-4-b.dtb`) on `raspi4b`.
pub const RASPI4B: &[Fixup] = &[
    Fixup {
        node: "/soc/clock@7ef00000",
        change: Change::Disable,
        why: AON,
    },
    Fixup {
        node: "/soc/interrupt-controller@7ef00100",
        change: Change::Disable,
        why: AON,
    },
    Fixup {
        node: "/soc/hdmi@7ef00700",
        change: Change::Disable,
        why: AON,
    },
    Fixup {
        node: "/soc/i2c@7ef04500",
        change: Change::Disable,
        why: AON,
    },
    Fixup {
        node: "/soc/hdmi@7ef05700",
        change: Change::Disable,
        why: AON,
    },
    Fixup {
        node: "/soc/i2c@7ef09500",
        change: Change::Disable,
        why: AON,
    },
    Fixup {
        node: "/soc/mmc@7e300000",
        change: Change::DeleteProperty("mmc-pwrseq"),
        why: "QEMU wires its SD card to this controller (the Pi's WiFi SDIO); \
              the WiFi power sequence needs a firmware GPIO call QEMU lacks, \
              and the card never probes while it waits",
    },
    Fixup {
        node: "/soc/mmc@7e300000/wifi@1",
        change: Change::DeleteNode,
        why: "there is no WiFi chip behind the controller QEMU's SD card is on",
    },
    Fixup {
        node: "/soc/serial@7e201000/bluetooth",
        change: Change::DeleteNode,
        why: "there is no Bluetooth chip on QEMU's PL011; with the node the \
              kernel hands the UART to the Bluetooth driver (serdev), and \
              ttyAMA0, the tests' console, gets no login prompt",
    },
    Fixup {
        node: "/emmc2bus/mmc@7e340000",
        change: Change::Disable,
        why: "QEMU has no card on EMMC2, and its regulator never appears",
    },
];

/// The fix-ups `machine` needs (none for `virt`, whose tree QEMU makes, nor
/// for `raspi3b`, which boots the Pi 3 tree as it is).
pub fn fixups(machine: Machine) -> &'static [Fixup] {
    match machine {
        Machine::Raspi4b => RASPI4B,
        Machine::Virt | Machine::Raspi3b => &[],
    }
}

/// Writes `original` with `machine`'s [`fixups`] applied to `out`.
pub fn for_qemu(machine: Machine, original: &Path, out: &Path) -> Result<()> {
    probe("fdtput", &["--version"], INSTALL)?;
    probe("fdtget", &["--version"], INSTALL)?;
    std::fs::copy(original, out)
        .map_err(|e| Error::io(format!("copying {}", original.display()), e))?;
    for fixup in fixups(machine) {
        apply(out, fixup)?;
    }
    Ok(())
}

/// Applies one fix-up to the tree in `dtb`, after checking that what it
/// changes is there.
fn apply(dtb: &Path, fixup: &Fixup) -> Result<()> {
    let what = format!("device tree fix-up {fixup:?}");
    let mut exists = Command::new("fdtget");
    exists.arg(dtb);
    match fixup.change {
        Change::DeleteProperty(property) => exists.args([fixup.node, property]),
        Change::Disable | Change::DeleteNode => exists.args(["-p", fixup.node]),
    };
    run_checked(&mut exists, &format!("{what}: not in {}", dtb.display()))?;
    let mut change = Command::new("fdtput");
    match fixup.change {
        Change::Disable => change
            .args(["-t", "s"])
            .arg(dtb)
            .args([fixup.node, "status", "disabled"]),
        Change::DeleteProperty(property) => change.arg("-d").arg(dtb).args([fixup.node, property]),
        Change::DeleteNode => change.arg("-r").arg(dtb).arg(fixup.node),
    };
    run_checked(&mut change, &what)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixup_says_why() {
        for fixup in RASPI4B {
            assert!(fixup.node.starts_with('/'), "{fixup:?}");
            assert!(fixup.why.len() > 20, "{fixup:?}");
        }
        assert!(fixups(Machine::Virt).is_empty());
    }

    /// A tree without the node a fix-up names is refused, not patched.
    #[test]
    fn a_missing_node_fails_the_fixup() {
        if probe("fdtput", &["--version"], INSTALL).is_err()
            || probe("dtc", &["--version"], INSTALL).is_err()
        {
            return test_support::skip_or_fail(
                &test_support::current_test(),
                "fdtput and dtc are missing: apt-get install device-tree-compiler",
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("t.dts");
        std::fs::write(
            &source,
            "/dts-v1/;\n/ { soc { mmc@7e300000 { mmc-pwrseq = <1>; }; }; };\n",
        )
        .unwrap();
        let dtb = dir.path().join("t.dtb");
        let compiled = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&source)
            .status()
            .unwrap();
        assert!(compiled.success());

        let pwrseq = Fixup {
            node: "/soc/mmc@7e300000",
            change: Change::DeleteProperty("mmc-pwrseq"),
            why: "test",
        };
        apply(&dtb, &pwrseq).unwrap();
        let error = apply(&dtb, &pwrseq).unwrap_err().to_string();
        assert!(error.contains("not in"), "{error}");
        let aon = RASPI4B[0];
        let error = apply(&dtb, &aon).unwrap_err().to_string();
        assert!(error.contains("/soc/clock@7ef00000"), "{error}");
        let emmc = Fixup {
            node: "/soc/mmc@7e300000",
            change: Change::Disable,
            why: "test",
        };
        apply(&dtb, &emmc).unwrap();
        let status = Command::new("fdtget")
            .arg(&dtb)
            .args(["/soc/mmc@7e300000", "status"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "disabled");
    }
}
