//! A running machine: [`Vm`].

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backend::{self, ExitStatus, Process};
use crate::cmdline;
use crate::config::{Backend, Boot, MachineConfig};
use crate::console::{ConsoleLog, Needle};
use crate::error::{Diagnostics, Error, QEMU_TAIL_LINES, Result, VmErrorKind, tail_lines};
use crate::qmp;
use crate::shell::{CommandOutput, ShellChannel, ShellFailure};
use crate::workdir::{self, Layout};

/// How often waits look at the console log and QEMU's state.
const POLL: Duration = Duration::from_millis(50);
/// How long [`Vm::wait_for_shell`] gives one `true` before sending another.
const SHELL_PROBE: Duration = Duration::from_secs(3);

/// A started machine. Dropping it kills QEMU (the process group, or the
/// container), removes the overlay and the shell socket and keeps the logs.
#[derive(Debug)]
pub struct Vm {
    config: MachineConfig,
    backend: Backend,
    layout: Layout,
    console: ConsoleLog,
    process: Mutex<Box<dyn Process>>,
    shell: Option<ShellChannel>,
    /// Held (flock) while the machine lives: the docker backend's container
    /// kills QEMU when it is released, i.e. when this process ends.
    _alive: File,
}

impl Vm {
    /// Starts a machine: makes a work directory, the overlay, and runs QEMU
    /// on the configured backend. Returns as soon as QEMU runs; wait for
    /// something with [`Vm::wait_for_console`] or [`Vm::wait_for_shell`].
    pub fn start(mut config: MachineConfig) -> Result<Vm> {
        let backend = match config.backend {
            Some(backend) => backend,
            None => Backend::from_env()?,
        };
        absolutize_inputs(&mut config)?;
        let image_len = fs::metadata(&config.image)
            .map_err(|e| Error::io(format!("disk image {}", config.image.display()), e))?
            .len();
        let root = workdir::root()?;
        workdir::sweep_stale(&root);
        let dir = workdir::create(&root, &config.name)?;
        let layout = Layout::new(dir);
        if layout.shell_socket.as_os_str().len() > workdir::MAX_SOCKET_PATH {
            return Err(Error::Config(format!(
                "socket paths like {} are longer than {} bytes; set {}=a shorter directory",
                layout.shell_socket.display(),
                workdir::MAX_SOCKET_PATH,
                workdir::DIR_ENV
            )));
        }
        cmdline::validate(&config)?;
        let alive = File::create(&layout.lock)
            .map_err(|e| Error::io(format!("creating {}", layout.lock.display()), e))?;
        rustix::fs::flock(&alive, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(format!("locking {}", layout.lock.display()), e.into()))?;

        let process: Box<dyn Process> = match backend {
            Backend::Local => Box::new(backend::local::start(&config, &layout, image_len)?),
            Backend::Docker => Box::new(backend::docker::start(&config, &layout, image_len)?),
        };
        Ok(Vm {
            console: ConsoleLog::new(&layout.console_log),
            config,
            backend,
            layout,
            process: Mutex::new(process),
            shell: None,
            _alive: alive,
        })
    }

    /// The configuration the machine was started with (paths made absolute).
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// The backend QEMU runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The machine's work directory (kept after the test).
    pub fn work_dir(&self) -> &Path {
        &self.layout.dir
    }

    /// The serial console log (kept after the test).
    pub fn console_log_path(&self) -> &Path {
        self.console.path()
    }

    /// QEMU's own stdout and stderr (kept after the test).
    pub fn qemu_log_path(&self) -> &Path {
        &self.layout.qemu_log
    }

    /// The qcow2 overlay the machine writes to (removed on drop).
    pub fn overlay_path(&self) -> &Path {
        &self.layout.overlay
    }

    /// Everything the console printed so far.
    pub fn console_text(&self) -> String {
        self.console.text()
    }

    /// Waits until the console shows `needle` (text or a regex, see
    /// [`Needle`]) after the previous match, and returns the line it is on
    /// — as far as it has been printed: match up to the end of what you
    /// need (`Needle::regex(r"Net:\s+eth0")`, not `"Net:"`).
    /// Fails on timeout or if QEMU exits first, with the console's tail and
    /// the log paths in the message.
    pub fn wait_for_console(&self, needle: impl Into<Needle>, timeout: Duration) -> Result<String> {
        let needle = needle.into();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.console.poll(&needle) {
                return Ok(line);
            }
            if let Some(status) = self.exit_status()? {
                // QEMU flushes the log as it exits: one last look.
                if let Some(line) = self.console.poll(&needle) {
                    return Ok(line);
                }
                return Err(self.error(
                    VmErrorKind::Exited,
                    format!(
                        "QEMU ended ({status}) before the console showed {}",
                        needle.describe()
                    ),
                ));
            }
            if Instant::now() >= deadline {
                return Err(self.error(
                    VmErrorKind::Timeout,
                    format!(
                        "the console did not show {} within {timeout:?}",
                        needle.describe()
                    ),
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the guest test shell answers (sends `true` every few
    /// seconds until one comes back).
    pub fn wait_for_shell(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.run_inner("true", left.min(SHELL_PROBE), deadline) {
                Ok(_) => return Ok(()),
                Err(ShellError::Exited(status)) => {
                    return Err(self.error(
                        VmErrorKind::Exited,
                        format!("QEMU ended ({status}) before the guest shell answered"),
                    ));
                }
                Err(ShellError::Config(e)) => return Err(e),
                Err(ShellError::Timeout(_) | ShellError::Io(_)) if Instant::now() < deadline => {
                    // a broken connection is made again on the next try
                }
                Err(ShellError::Timeout(_) | ShellError::Io(_)) => {
                    return Err(self.error(
                        VmErrorKind::Timeout,
                        format!(
                            "the guest shell did not answer within {timeout:?} (is the image \
                             built with --recipe test-shell?)"
                        ),
                    ));
                }
            }
        }
    }

    /// Runs `command` in the guest's root shell and returns its output and
    /// exit status. Needs `shell: true` and an image with the `test-shell`
    /// recipe; call [`Vm::wait_for_shell`] first after boot.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<CommandOutput> {
        let deadline = Instant::now() + timeout;
        self.run_inner(command, timeout, deadline)
            .map_err(|e| match e {
                ShellError::Config(e) => e,
                ShellError::Exited(status) => self.error(
                    VmErrorKind::Exited,
                    format!("QEMU ended ({status}) while running `{command}` in the guest"),
                ),
                ShellError::Timeout(pending) => self.error(
                    VmErrorKind::Timeout,
                    format!(
                        "`{command}` got no answer from the guest shell within {timeout:?}; \
                     received meanwhile: {:?}",
                        last_chars(&pending, 2000)
                    ),
                ),
                ShellError::Io(e) => self.error(
                    VmErrorKind::Shell,
                    format!("the guest shell channel failed while running `{command}`: {e}"),
                ),
            })
    }

    /// Like [`Vm::run`], but a non-zero status is an error too (showing the output).
    pub fn run_ok(&mut self, command: &str, timeout: Duration) -> Result<String> {
        let result = self.run(command, timeout)?;
        if result.success() {
            Ok(result.output)
        } else {
            Err(self.error(
                VmErrorKind::Shell,
                format!(
                    "`{command}` failed in the guest with status {}:\n{}",
                    result.status, result.output
                ),
            ))
        }
    }

    /// Sends `command` to the guest shell without waiting for an answer
    /// (`poweroff`, `reboot`, anything that does not come back).
    pub fn send(&mut self, command: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        self.connect_shell(deadline).map_err(|e| match e {
            ShellError::Config(e) => e,
            _ => self.error(
                VmErrorKind::Shell,
                format!("cannot reach the guest shell to send `{command}`"),
            ),
        })?;
        let channel = self.shell.as_mut().expect("connected above");
        if let Err(e) = channel.send(command) {
            self.shell = None;
            return Err(self.error(VmErrorKind::Shell, format!("sending `{command}`: {e}")));
        }
        Ok(())
    }

    /// Waits until QEMU ends by itself (after `poweroff` in the guest, or a
    /// reboot with `no_reboot`) and returns how it ended.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                self.shell = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.error(
                    VmErrorKind::Timeout,
                    format!("QEMU did not exit within {timeout:?}"),
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs the QMP command `execute` (with `arguments`, a JSON object, if
    /// any) and returns QEMU's answer line, `{"return": …}` or `{"error": …}`.
    pub fn qmp(&self, execute: &str, arguments: Option<&str>) -> Result<String> {
        qmp::execute(
            &self.layout.qmp_socket,
            execute,
            arguments,
            Duration::from_secs(30),
        )
        .map_err(|e| self.error(VmErrorKind::Shell, format!("QMP command {execute}: {e}")))
    }

    /// Runs a human monitor command (`info block`, `qemu-io disk0 "read 0 4k"`)
    /// through QMP and returns QEMU's answer line. Some commands (`qemu-io`)
    /// print to QEMU's own output ([`Vm::qemu_log_path`]) rather than answer.
    pub fn hmp(&self, command_line: &str) -> Result<String> {
        let arguments = format!("{{\"command-line\": {}}}", qmp::json_string(command_line));
        self.qmp("human-monitor-command", Some(&arguments))
    }

    /// How QEMU ended, or `None` while it runs.
    pub fn exit_status(&self) -> Result<Option<ExitStatus>> {
        self.process().try_wait()
    }

    /// Kills QEMU now and waits until it is gone (also done on drop).
    pub fn kill(&mut self) {
        self.shell = None;
        self.process().kill();
    }

    /// The log paths and tails, as errors show them.
    pub fn diagnostics(&self) -> Diagnostics {
        let qemu_log = fs::read(&self.layout.qemu_log).unwrap_or_default();
        Diagnostics {
            console_log: self.layout.console_log.clone(),
            qemu_log: self.layout.qemu_log.clone(),
            console_tail: self.console.tail(),
            qemu_tail: tail_lines(&String::from_utf8_lossy(&qemu_log), QEMU_TAIL_LINES),
        }
    }

    fn error(&self, kind: VmErrorKind, message: String) -> Error {
        Error::Vm {
            kind,
            message: format!(
                "machine {:?} ({} backend): {message}",
                self.config.name, self.backend
            ),
            diagnostics: Box::new(self.diagnostics()),
        }
    }

    fn process(&self) -> std::sync::MutexGuard<'_, Box<dyn Process>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connect_shell(&mut self, deadline: Instant) -> Result<(), ShellError> {
        if !self.config.shell {
            return Err(ShellError::Config(Error::Config(
                "the guest shell needs `shell: true` (MachineConfig::with_shell)".into(),
            )));
        }
        while self.shell.is_none() {
            if let Some(status) = self.exit_status().map_err(ShellError::Config)? {
                return Err(ShellError::Exited(status));
            }
            match ShellChannel::connect(&self.layout.shell_socket) {
                Ok(channel) => self.shell = Some(channel),
                // QEMU has not made the socket yet
                Err(e) if Instant::now() >= deadline => return Err(ShellError::Io(e)),
                Err(_) => std::thread::sleep(POLL),
            }
        }
        Ok(())
    }

    fn run_inner(
        &mut self,
        command: &str,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<CommandOutput, ShellError> {
        self.connect_shell(deadline)?;
        let process = &self.process;
        let channel = self.shell.as_mut().expect("connected above");
        let alive = || {
            let mut process = process.lock().unwrap_or_else(|e| e.into_inner());
            !matches!(process.try_wait(), Ok(Some(_)))
        };
        match channel.run(command, timeout, alive) {
            Ok(output) => Ok(output),
            Err(failure) => {
                if let Some(status) = self.exit_status().map_err(ShellError::Config)? {
                    self.shell = None;
                    return Err(ShellError::Exited(status));
                }
                match failure {
                    ShellFailure::Timeout(pending) => Err(ShellError::Timeout(pending)),
                    ShellFailure::Io(e) => {
                        self.shell = None;
                        Err(ShellError::Io(e))
                    }
                }
            }
        }
    }
}

enum ShellError {
    Config(Error),
    Exited(ExitStatus),
    Timeout(String),
    Io(std::io::Error),
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.shell = None;
        self.process().kill();
        for file in [
            &self.layout.overlay,
            &self.layout.shell_socket,
            &self.layout.qmp_socket,
            &self.layout.lock,
        ] {
            let _ = fs::remove_file(file);
        }
        if std::thread::panicking() {
            eprintln!(
                "qemu-tests: machine {:?} logs kept in {}",
                self.config.name,
                self.layout.dir.display()
            );
        }
    }
}

/// The last `n` characters of `text`.
fn last_chars(text: &str, n: usize) -> &str {
    let count = text.chars().count();
    match text.char_indices().nth(count.saturating_sub(n)) {
        Some((i, _)) => &text[i..],
        None => text,
    }
}

/// Makes the image and boot file paths absolute (the container sees the same
/// paths; qcow2 overlays record their backing file's path).
fn absolutize_inputs(config: &mut MachineConfig) -> Result<()> {
    let fix = |path: &mut PathBuf| -> Result<()> {
        *path = fs::canonicalize(&*path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(())
    };
    fix(&mut config.image)?;
    match &mut config.boot {
        Boot::Firmware(firmware) => fix(firmware)?,
        Boot::Kernel {
            kernel,
            initrd,
            dtb,
            ..
        } => {
            fix(kernel)?;
            if let Some(initrd) = initrd {
                fix(initrd)?;
            }
            if let Some(dtb) = dtb {
                fix(dtb)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_chars_keeps_the_end() {
        assert_eq!(last_chars("hello", 3), "llo");
        assert_eq!(last_chars("hé!", 2), "é!");
        assert_eq!(last_chars("ab", 5), "ab");
        assert_eq!(last_chars("", 5), "");
    }
}
