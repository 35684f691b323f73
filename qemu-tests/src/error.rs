//! Errors that say what happened and where to look.
//!
//! Anything that goes wrong with a running machine ([`Error::Vm`]) carries a
//! [`Diagnostics`]: the paths of the console log and QEMU's own output, and
//! the last lines of both, so a failed test's message is enough to start
//! debugging. The files themselves are kept after the test.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the harness can fail with.
///
/// `Debug` shows the same text as `Display`, so `unwrap()` in a test prints
/// the readable message with the console tail.
#[derive(thiserror::Error)]
pub enum Error {
    /// A program the chosen backend needs is missing or unusable.
    #[error("{tool} is missing or unusable: {detail}\n  install it with: {install}")]
    ToolMissing {
        /// What is missing (`qemu-system-aarch64`, `docker`, ...).
        tool: String,
        /// The command that installs it.
        install: String,
        /// What was tried and how it failed.
        detail: String,
    },
    /// The [`MachineConfig`](crate::MachineConfig) asks for something impossible.
    #[error("invalid machine configuration: {0}")]
    Config(String),
    /// A host file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Setting up the machine failed before it ran (qemu-img, docker, runner image).
    #[error("{0}")]
    Setup(String),
    /// Something went wrong with a started machine: a timeout, an unexpected
    /// exit, a broken shell channel.
    #[error("{message}\n{diagnostics}")]
    Vm {
        /// Which kind of failure (to match on in tests).
        kind: VmErrorKind,
        /// What was expected and what happened.
        message: String,
        /// Log paths and their tails.
        diagnostics: Box<Diagnostics>,
    },
}

/// The kinds of [`Error::Vm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmErrorKind {
    /// Waiting for console text, a shell answer or an exit took too long.
    Timeout,
    /// QEMU exited while something was still expected from it.
    Exited,
    /// The guest shell channel failed (socket error, malformed answer).
    Shell,
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Error {
    /// Whether this is a [`VmErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Vm {
                kind: VmErrorKind::Timeout,
                ..
            }
        )
    }

    /// Whether QEMU exited while something was still expected.
    pub fn is_exited(&self) -> bool {
        matches!(
            self,
            Error::Vm {
                kind: VmErrorKind::Exited,
                ..
            }
        )
    }

    /// Whether a needed program is missing (tests skip or fail on this, see
    /// [`crate::skip`]).
    pub fn is_tool_missing(&self) -> bool {
        matches!(self, Error::ToolMissing { .. })
    }

    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Where a machine's logs are and how they end.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    /// The serial console log (kept after the test).
    pub console_log: PathBuf,
    /// QEMU's (and qemu-img's) own stdout and stderr (kept after the test).
    pub qemu_log: PathBuf,
    /// The last lines of the console log.
    pub console_tail: String,
    /// The last lines of QEMU's own output.
    pub qemu_tail: String,
}

/// How many console lines an error shows.
pub const CONSOLE_TAIL_LINES: usize = 40;
/// How many lines of QEMU's own output an error shows.
pub const QEMU_TAIL_LINES: usize = 15;

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  console log: {}", self.console_log.display())?;
        writeln!(f, "  QEMU output: {}", self.qemu_log.display())?;
        if !self.qemu_tail.trim().is_empty() {
            writeln!(f, "  last lines of QEMU output:")?;
            for line in self.qemu_tail.lines() {
                writeln!(f, "    | {line}")?;
            }
        }
        if self.console_tail.trim().is_empty() {
            write!(f, "  the console printed nothing")
        } else {
            writeln!(f, "  last {CONSOLE_TAIL_LINES} console lines:")?;
            let mut lines = self.console_tail.lines().peekable();
            while let Some(line) = lines.next() {
                write!(f, "    | {line}")?;
                if lines.peek().is_some() {
                    writeln!(f)?;
                }
            }
            Ok(())
        }
    }
}

/// The last `n` lines of `text`, without carriage returns.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|line| line.trim_end_matches('\r'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_lines("a\nb\r\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 5), "");
    }

    #[test]
    fn diagnostics_show_paths_and_tails() {
        let diagnostics = Diagnostics {
            console_log: "/w/console.log".into(),
            qemu_log: "/w/qemu.log".into(),
            console_tail: "U-Boot\n=> ".into(),
            qemu_tail: String::new(),
        };
        let error = Error::Vm {
            kind: VmErrorKind::Timeout,
            message: "timed out".into(),
            diagnostics: Box::new(diagnostics),
        };
        let text = error.to_string();
        assert!(text.starts_with("timed out\n"), "{text}");
        assert!(text.contains("console log: /w/console.log"), "{text}");
        assert!(text.contains("    | U-Boot\n    | => "), "{text}");
        assert!(!text.contains("last lines of QEMU output"), "{text}");
        assert!(error.is_timeout() && !error.is_exited());
    }
}
