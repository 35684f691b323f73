//! Where QEMU runs: on the host ([`local`]) or in a container ([`docker`]).
//!
//! Both run the same command lines ([`crate::cmdline`]) with the same work
//! directory paths, so everything else (console log, shell socket) is
//! backend-independent.
//!
//! Which backend a machine uses is configuration ([`Backend`], defined in
//! [`crate::config`] and re-exported here); this module implements what a
//! backend does ([`Backend::check`], starting and killing QEMU) and is used
//! only by [`crate::vm`] (and the skip rule).

use std::fmt;

pub use crate::config::{BACKEND_ENV, Backend};
use crate::error::Result;

pub mod docker;
pub mod local;
pub mod runner_image;

// `Backend` is data (which backend; see `config`); what a backend does
// lives here.
impl Backend {
    /// Checks that this backend's programs are there and work (the docker
    /// backend also makes sure its runner image exists, building it if needed).
    pub fn check(self) -> Result<()> {
        match self {
            Backend::Local => local::check(),
            Backend::Docker => docker::check().and_then(|()| runner_image::ensure().map(drop)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
