//! Host prerequisites, checked up front with the exact command that
//! installs whatever is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One prerequisite and whether this host has it.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: &'static str,
    pub why: &'static str,
    pub ok: bool,
    /// Debian package that provides it, if installed with apt.
    pub apt_package: Option<&'static str>,
    /// Any other command that provides it.
    pub command: Option<String>,
}

/// Finds an executable on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// Whether rustc can build for `triple` (its standard library is installed).
pub fn rust_target_installed(triple: &str) -> bool {
    let Ok(output) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(triple)
        .join("lib")
        .is_dir()
}

/// What cross-compiling workspace crates for `triple` needs.
pub fn cross_checks(triple: &str) -> Vec<Check> {
    let tool = |what, why, package| Check {
        what,
        why,
        ok: which(what).is_some(),
        apt_package: Some(package),
        command: None,
    };
    vec![
        tool(
            "clang",
            "C compiler and linker driver for the target",
            "clang",
        ),
        tool("ld.lld", "linker for the target", "lld"),
        tool(
            "llvm-ar",
            "archiver for C code built for the target",
            "llvm",
        ),
        tool(
            "pkg-config",
            "finds the target's C libraries in the sysroot",
            "pkg-config",
        ),
        tool(
            "make",
            "builds the bundled LAME (MP3) C library for the target",
            "make",
        ),
        Check {
            what: "rust target",
            why: "Rust standard library for the board's CPU",
            ok: rust_target_installed(triple),
            apt_package: None,
            command: Some(format!("rustup target add {triple}")),
        },
    ]
}

/// The commands that fix every failed check, or None if all passed.
pub fn fix_commands(checks: &[Check]) -> Option<String> {
    let packages: Vec<&str> = checks
        .iter()
        .filter(|c| !c.ok)
        .filter_map(|c| c.apt_package)
        .collect();
    let mut commands: Vec<String> = Vec::new();
    if !packages.is_empty() {
        commands.push(format!("sudo apt-get install -y {}", packages.join(" ")));
    }
    commands.extend(
        checks
            .iter()
            .filter(|c| !c.ok)
            .filter_map(|c| c.command.clone()),
    );
    (!commands.is_empty()).then(|| commands.join("\n  "))
}

/// Fails with the install commands if any check failed.
pub fn require(checks: &[Check]) -> anyhow::Result<()> {
    match fix_commands(checks) {
        None => Ok(()),
        Some(fix) => {
            let missing: Vec<String> = checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{} ({})", c.what, c.why))
                .collect();
            anyhow::bail!(
                "this host lacks {}. Install with:\n  {fix}",
                missing.join(", ")
            )
        }
    }
}

/// Why an arm64 image can't be built on this host right now (no Debian
/// mirror to be found, or no cross toolchain), or `None` if it can. Tests
/// that build images use it to skip locally and fail in CI.
pub fn missing_build_prerequisites() -> Option<String> {
    let env = std::env::var(crate::mirror::MIRROR_ENV).ok();
    if let Err(e) = crate::mirror::find(None, env.as_deref(), std::path::Path::new("/")) {
        return Some(e.to_string());
    }
    fix_commands(&cross_checks("aarch64-unknown-linux-gnu"))
        .map(|fix| format!("the cross toolchain is missing; install it with: {fix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fix_commands_group_apt_packages() {
        let check = |what, ok, apt: Option<&'static str>, command: Option<&str>| Check {
            what,
            why: "",
            ok,
            apt_package: apt,
            command: command.map(String::from),
        };
        let checks = [
            check("clang", false, Some("clang"), None),
            check("ld.lld", true, Some("lld"), None),
            check("pkg-config", false, Some("pkg-config"), None),
            check("rust target", false, None, Some("rustup target add x")),
        ];
        assert_eq!(
            fix_commands(&checks).unwrap(),
            "sudo apt-get install -y clang pkg-config\n  rustup target add x"
        );
        assert!(fix_commands(&checks[1..2]).is_none());
        let error = require(&checks).unwrap_err().to_string();
        assert!(error.contains("lacks clang"), "{error}");
    }
}
