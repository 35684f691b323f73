//! Where QEMU runs: on the host ([`local`]) or in a container ([`docker`]).
//!
//! Both run the same command lines ([`crate::cmdline`]) with the same work
//! directory paths, so everything else (console log, shell socket) is
//! backend-independent.

use std::fmt;
use std::process::Command;

use crate::error::{Error, Result};

pub mod docker;
pub mod local;
pub mod runner_image;

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

    /// Checks that this backend's programs are there and work (the docker
    /// backend also makes sure its runner image exists, building it if needed).
    pub fn check(self) -> Result<()> {
        match self {
            Backend::Local => local::check(),
            Backend::Docker => docker::check().and_then(|()| runner_image::ensure().map(drop)),
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

/// How QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal, if it was killed by one.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Whether QEMU exited with code 0 (as after a guest `poweroff`).
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// From a shell's `$?` (128+N means killed by signal N).
    pub fn from_shell_status(status: i32) -> Self {
        if status > 128 {
            ExitStatus {
                code: None,
                signal: Some(status - 128),
            }
        } else {
            ExitStatus {
                code: Some(status),
                signal: None,
            }
        }
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        ExitStatus {
            code: status.code(),
            signal: status.signal(),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("unknown status"),
        }
    }
}

/// A running QEMU, whichever backend runs it.
pub(crate) trait Process: Send + fmt::Debug {
    /// The exit status if QEMU has ended, without waiting.
    fn try_wait(&mut self) -> Result<Option<ExitStatus>>;
    /// Kills QEMU (and whatever runs it) and waits until it is gone. Idempotent.
    fn kill(&mut self);
}

/// Runs `command` to completion and returns its stdout, or an error naming
/// the command and showing its stderr.
pub(crate) fn run_checked(command: &mut Command, what: &str) -> Result<String> {
    let output = command
        .output()
        .map_err(|e| Error::io(format!("{what}: running {command:?}"), e))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Setup(format!(
            "{what}: {command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// Checks that `program --version`-style `args` run, else [`Error::ToolMissing`].
pub(crate) fn probe(program: &str, args: &[&str], install: &str) -> Result<String> {
    match Command::new(program).args(args).output() {
        Ok(output) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(output) => Err(Error::ToolMissing {
            tool: program.into(),
            install: install.into(),
            detail: format!(
                "`{program} {}` failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }),
        Err(e) => Err(Error::ToolMissing {
            tool: program.into(),
            install: install.into(),
            detail: format!("cannot run `{program}`: {e}"),
        }),
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

    #[test]
    fn exit_status_from_a_shell() {
        assert!(ExitStatus::from_shell_status(0).success());
        assert_eq!(ExitStatus::from_shell_status(1).code, Some(1));
        assert_eq!(ExitStatus::from_shell_status(137).signal, Some(9));
        assert_eq!(
            ExitStatus::from_shell_status(137).to_string(),
            "killed by signal 9"
        );
    }

    #[test]
    fn a_missing_program_names_the_install_command() {
        let error = probe(
            "qemu-tests-no-such-program",
            &["--version"],
            "apt-get install nothing",
        )
        .unwrap_err();
        assert!(error.is_tool_missing());
        assert!(
            error
                .to_string()
                .contains("install it with: apt-get install nothing")
        );
    }
}
