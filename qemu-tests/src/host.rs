//! Running host programs: [`run_checked`] for a command that must succeed,
//! [`probe`] for a prerequisite that may be missing ([`Error::ToolMissing`],
//! which tests turn into a skip or, in CI, a failure). A leaf: used by the
//! backends and by [`netns`](crate::netns).

use std::process::Command;

use crate::error::{Error, Result};

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
