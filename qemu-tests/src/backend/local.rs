//! The local backend: QEMU from the host's packages, as a child process.
//!
//! QEMU runs in its own process group (killed as a whole) with
//! `PR_SET_PDEATHSIG=SIGKILL`, so it dies with the test process even when
//! that is killed without unwinding. The death signal is tied to the
//! *thread* that started QEMU: keep a [`crate::Vm`] on the thread (test)
//! that started it.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use rustix::process::{Pid, Signal};

use super::{ExitStatus, Process};
use crate::cmdline::{self, NetnsEntry, QEMU, QEMU_IMG};
use crate::config::MachineConfig;
use crate::error::{Error, Result};
use crate::host::{probe, run_checked};
use crate::workdir::{self, Layout};

/// How to install what this backend needs on Debian.
pub const INSTALL: &str = "apt-get install qemu-system-arm qemu-utils";

/// Checks that `qemu-system-aarch64` and `qemu-img` run.
pub fn check() -> Result<()> {
    probe(QEMU, &["--version"], INSTALL)?;
    probe(QEMU_IMG, &["--version"], INSTALL)?;
    Ok(())
}

/// Makes the overlay and starts QEMU.
pub(crate) fn start(
    config: &MachineConfig,
    layout: &Layout,
    image_len: u64,
) -> Result<LocalProcess> {
    check()?;
    let prepare = cmdline::overlay_commands(config, image_len, &layout.overlay);
    let argv = cmdline::qemu_argv(config, layout, NetnsEntry::IpNetnsExec)?;
    let mut script: Vec<String> = prepare.iter().map(|c| cmdline::sh_command(c)).collect();
    script.push(cmdline::sh_command(&argv));
    workdir::write_command_file(layout, &script.join("\n"))?;
    for command in &prepare {
        run_checked(
            Command::new(&command[0]).args(&command[1..]),
            "making the disk overlay",
        )?;
    }

    let log = open_log(layout)?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io("duplicating the QEMU log handle", e))?;
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let parent = rustix::process::getpid();
    // SAFETY: between fork and exec only async-signal-safe system calls run
    // (prctl, getppid); nothing allocates.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died before prctl: then nobody would kill us.
            if rustix::process::getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", argv[0]), e))?;
    Ok(LocalProcess {
        pgid: Pid::from_child(&child),
        child,
        exited: None,
    })
}

fn open_log(layout: &Layout) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&layout.qemu_log)
        .map_err(|e| Error::io(format!("opening {}", layout.qemu_log.display()), e))
}

/// QEMU as a child of the test process.
#[derive(Debug)]
pub(crate) struct LocalProcess {
    child: Child,
    pgid: Pid,
    exited: Option<ExitStatus>,
}

impl Process for LocalProcess {
    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .map_err(|e| Error::io("checking on QEMU", e))?
                .map(ExitStatus::from);
        }
        Ok(self.exited)
    }

    fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        // The whole group: QEMU and anything it started.
        let _ = rustix::process::kill_process_group(self.pgid, Signal::KILL);
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exited = Some(status.into());
        }
    }
}
