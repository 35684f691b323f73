//! GnuPG, the real OpenPGP implementation, as the signer in tests of the
//! code that checks signatures: a throw-away home with keys made by `gpg`
//! itself, and documents it signs.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A temporary GnuPG home (removed on drop).
pub struct Gpg {
    home: PathBuf,
}

/// The key algorithms a test can ask for (`gpg --quick-gen-key` names).
#[derive(Debug, Clone, Copy)]
pub enum Algorithm {
    Rsa2048,
    Ed25519,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Rsa2048 => "rsa2048",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

impl Gpg {
    /// A fresh home, or `None` when gpg is missing (skipped, or a failure
    /// under CI: see [`crate::skip_or_fail`]).
    pub fn new() -> Option<Self> {
        let works = Command::new("gpg")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            crate::skip_or_fail(
                &crate::current_test(),
                "gpg is not installed (apt-get install gnupg)",
            );
            return None;
        }
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // gpg-agent's socket path must stay short: use /tmp, not a target dir.
        let home = std::env::temp_dir().join(format!("tgpg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir(&home).expect("creating a GnuPG home");
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod GnuPG home");
        Some(Gpg { home })
    }

    /// Runs gpg in batch mode with `args`, feeding `input`; its stdout.
    pub fn run(&self, args: &[&str], input: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut child = Command::new("gpg")
            .arg("--homedir")
            .arg(&self.home)
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting gpg");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Makes a certification-only primary key for `uid` with a signing
    /// subkey (the shape of Debian's archive keys); returns its fingerprint.
    pub fn key_with_signing_subkey(&self, uid: &str, algorithm: Algorithm) -> String {
        self.run(
            &["--quick-gen-key", uid, algorithm.name(), "cert", "never"],
            b"",
        );
        let fingerprint = self.fingerprint(uid);
        self.run(
            &[
                "--quick-add-key",
                &fingerprint,
                algorithm.name(),
                "sign",
                "never",
            ],
            b"",
        );
        fingerprint
    }

    /// The primary key's fingerprint of `uid`.
    pub fn fingerprint(&self, uid: &str) -> String {
        let listing =
            String::from_utf8(self.run(&["--with-colons", "--list-keys", uid], b"")).unwrap();
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:::::::::"))
            .and_then(|rest| rest.split(':').next())
            .expect("a fingerprint in gpg's listing")
            .to_string()
    }

    /// The ASCII-armored public key of `uid`.
    pub fn public_key(&self, uid: &str) -> String {
        String::from_utf8(self.run(&["--armor", "--export", uid], b"")).unwrap()
    }

    /// `text`, cleartext-signed by `uid`'s signing key with `digest`
    /// (`SHA256`, `SHA512`, ...).
    pub fn clearsign(&self, uid: &str, digest: &str, text: &str) -> String {
        String::from_utf8(self.run(
            &["--local-user", uid, "--digest-algo", digest, "--clearsign"],
            text.as_bytes(),
        ))
        .unwrap()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"])
            .status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
