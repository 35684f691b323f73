//! The built binary against a boot directory in a temporary directory, as
//! RAUC calls it: the files it writes, and the ones it must leave alone.

use ab_state::{STATE_FILES, Slot, State};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_vinyl-update");

/// A boot directory and a boot.env beside it.
struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    /// A new image's boot partition: copy 0 at sequence 0, copy 1 at 1.
    fn new() -> Device {
        let device = Device::empty();
        for copy in 0..2 {
            device.put(copy, &State::initial(copy as u32).to_bytes());
        }
        device
    }

    fn empty() -> Device {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("boot")).unwrap();
        Device { dir }
    }

    fn boot_dir(&self) -> PathBuf {
        self.dir.path().join("boot")
    }

    fn copy(&self, copy: usize) -> PathBuf {
        self.boot_dir().join(STATE_FILES[copy])
    }

    /// Writes a copy, dated an hour ago so that a rewrite shows.
    fn put(&self, copy: usize, bytes: &[u8]) {
        fs::write(self.copy(copy), bytes).unwrap();
        let file = fs::File::options()
            .write(true)
            .open(self.copy(copy))
            .unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }

    fn booted(&self, slot: &str, trial: bool) {
        let text = format!(
            "SLOT={slot}\nTRIAL={}\nROOT=PARTUUID=0-0\n",
            u8::from(trial)
        );
        fs::write(self.dir.path().join("boot.env"), text).unwrap();
    }

    /// Bytes, mtime and inode of both copies.
    fn files(&self) -> Vec<Option<(Vec<u8>, SystemTime, u64)>> {
        (0..2)
            .map(|copy| {
                let meta = fs::metadata(self.copy(copy)).ok()?;
                Some((
                    fs::read(self.copy(copy)).unwrap(),
                    meta.modified().unwrap(),
                    meta.ino(),
                ))
            })
            .collect()
    }

    fn state(&self, copy: usize) -> State {
        State::from_bytes(&fs::read(self.copy(copy)).unwrap()).unwrap()
    }

    fn run_with(&self, program: &Path, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("VINYL_BOOT_DIR", self.boot_dir())
            .env("VINYL_BOOT_ENV", self.dir.path().join("boot.env"))
            .output()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(Path::new(BIN), args)
    }

    /// `vinyl-update backend ARGS`, which must succeed; its stdout.
    fn backend(&self, args: &[&str]) -> String {
        let mut all = vec!["backend"];
        all.extend_from_slice(args);
        let output = self.run(&all);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

fn trial(seq: u32, active: Slot, slot: Slot, tries: u32) -> State {
    State {
        seq,
        active,
        trial: Some(slot),
        tries: Some(tries),
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn rauc_install_sequence_puts_the_new_slot_on_trial() {
    let device = Device::new();
    device.booted("a", false);
    assert_eq!(device.backend(&["get-primary"]), "a\n");
    assert_eq!(device.backend(&["get-state", "b"]), "bad\n");
    let before = device.files();

    // Before writing slot b: already bad, nothing written.
    device.backend(&["set-state", "b", "bad"]);
    assert_eq!(device.files(), before);

    // After writing it: a trial, in the older copy (0), in place.
    device.backend(&["set-primary", "b"]);
    let after = device.files();
    assert_eq!(device.state(0), trial(2, Slot::A, Slot::B, 3));
    assert_ne!(after[0].as_ref().unwrap().1, before[0].as_ref().unwrap().1);
    assert_eq!(after[0].as_ref().unwrap().2, before[0].as_ref().unwrap().2);
    assert_eq!(after[1], before[1], "the winner must stay untouched");
    assert_eq!(fs::metadata(device.copy(0)).unwrap().len(), 4096);

    assert_eq!(device.backend(&["get-primary"]), "b\n");
    assert_eq!(device.backend(&["get-state", "b"]), "good\n");
    assert_eq!(device.backend(&["get-state", "a"]), "good\n");

    // Repeated: nothing written, not even the mtime.
    device.backend(&["set-primary", "b"]);
    assert_eq!(device.files(), after);
}

#[test]
fn mark_good_in_a_trial_boot_makes_the_slot_active() {
    let device = Device::new();
    // U-Boot counted one try and booted b.
    device.put(0, &trial(3, Slot::A, Slot::B, 2).to_bytes());
    device.booted("b", true);
    assert_eq!(device.backend(&["get-current"]), "b\n");
    device.backend(&["set-state", "b", "good"]);
    assert_eq!(
        device.state(1),
        State {
            active: Slot::B,
            ..State::initial(4)
        }
    );
    assert_eq!(device.backend(&["get-primary"]), "b\n");
    assert_eq!(device.backend(&["get-state", "a"]), "bad\n");
    let after = device.files();
    device.backend(&["set-state", "b", "good"]);
    assert_eq!(device.files(), after);
}

#[test]
fn mark_bad_in_a_trial_boot_rolls_back() {
    let device = Device::new();
    device.put(0, &trial(3, Slot::A, Slot::B, 2).to_bytes());
    device.booted("b", true);
    device.backend(&["set-state", "b", "bad"]);
    assert_eq!(device.state(1), State::initial(4));
    assert_eq!(device.backend(&["get-primary"]), "a\n");
    assert_eq!(device.backend(&["get-state", "b"]), "bad\n");
}

#[test]
fn a_torn_newer_copy_loses_and_is_overwritten() {
    let device = Device::new();
    device.put(0, &State::initial(4).to_bytes());
    let mut torn = trial(5, Slot::A, Slot::B, 3).to_bytes();
    torn[10] ^= 0x01;
    device.put(1, &torn);
    assert_eq!(device.backend(&["get-primary"]), "a\n");
    let before = device.files();
    device.backend(&["set-primary", "b"]);
    assert_eq!(device.state(1), trial(5, Slot::A, Slot::B, 3));
    assert_eq!(device.files()[0], before[0]);
    assert_eq!(device.backend(&["get-primary"]), "b\n");
}

#[test]
fn a_missing_copy_is_created_and_no_valid_copy_means_slot_a() {
    let device = Device::empty();
    device.put(0, &[0xff; 4096]);
    assert_eq!(device.backend(&["get-primary"]), "a\n");
    device.backend(&["set-primary", "b"]);
    // Neither copy valid: the state is a new image's at sequence 0, and
    // the write goes to copy 0.
    assert_eq!(device.state(0), trial(1, Slot::A, Slot::B, 3));
    assert!(!device.copy(1).exists());
    device.backend(&["set-state", "b", "good"]);
    assert_eq!(fs::metadata(device.copy(1)).unwrap().len(), 4096);
    assert_eq!(device.state(1).active, Slot::B);
}

#[test]
fn no_state_files_at_all_is_an_error() {
    let device = Device::empty();
    for args in [
        &["backend", "get-primary"][..],
        &["backend", "set-primary", "b"],
    ] {
        let output = device.run(args);
        assert_eq!(output.status.code(), Some(1));
        let message = stderr(&output);
        assert!(message.contains("no boot state in"), "{message}");
        assert!(message.contains("ab-state-0.env"), "{message}");
        assert!(output.stdout.is_empty());
    }
    assert!(!device.copy(0).exists());
    fs::remove_dir(device.boot_dir()).unwrap();
    let output = device.run(&["backend", "get-primary"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("is the boot partition mounted?"));
}

#[test]
fn get_current_reads_boot_env() {
    let device = Device::new();
    let output = device.run(&["backend", "get-current"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("boot.env"), "{}", stderr(&output));
    device.booted("b", false);
    assert_eq!(device.backend(&["get-current"]), "b\n");
    fs::write(device.dir.path().join("boot.env"), "SLOT=x\n").unwrap();
    let output = device.run(&["backend", "get-current"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("SLOT=\"x\": expected a or b"));
}

#[test]
fn status_as_text_and_json() {
    let device = Device::new();
    device.put(0, &trial(2, Slot::A, Slot::B, 2).to_bytes());
    device.booted("b", true);
    let output = device.run(&["status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "booted:    slot b (trial boot)",
        "active:    slot a (known good)",
        "trial:     slot b, 2 tries left",
        "next boot: slot b",
        "state:     sequence 0x2, copy 0 won",
        "copy 1:    ab-state-1.env, sequence 0x1",
        "slot a:    good",
        "slot b:    good",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }

    let output = device.run(&["status", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json["booted"],
        serde_json::json!({"slot": "b", "trial": true})
    );
    assert_eq!(json["active"], "a");
    assert_eq!(json["trial"], serde_json::json!({"slot": "b", "tries": 2}));
    assert_eq!(json["primary"], "b");
    assert_eq!(json["seq"], 2);
    assert_eq!(json["copy"], 0);
    assert_eq!(json["copies"][1]["seq"], 1);
    assert_eq!(json["slots"], serde_json::json!({"a": "good", "b": "good"}));

    // A torn copy and an unknown boot: still a status.
    device.put(1, &[0; 4096]);
    fs::remove_file(device.dir.path().join("boot.env")).unwrap();
    let output = device.run(&["status", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["booted"], serde_json::Value::Null);
    assert!(json["booted_error"].as_str().unwrap().contains("boot.env"));
    assert_eq!(json["copies"][1]["valid"], false);
    assert!(
        json["copies"][1]["error"]
            .as_str()
            .unwrap()
            .contains("bad CRC")
    );
}

#[test]
fn invoked_as_vinyl_update_backend() {
    let device = Device::new();
    let link = device.dir.path().join("vinyl-update-backend");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let output = device.run_with(&link, &["get-primary"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, b"a\n");
    let output = device.run_with(&link, &["set-primary", "b"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(device.run_with(&link, &["get-primary"]).stdout, b"b\n");
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let device = Device::new();
    let before = device.files();
    for args in [
        &["backend", "get-state", "c"][..],
        &["backend", "set-state", "b", "maybe"],
        &["backend", "set-primary"],
        &["backend", "frobnicate"],
        &["update"],
    ] {
        let output = device.run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert!(message.contains("error:"), "{args:?}: {message}");
    }
    let message = stderr(&device.run(&["backend", "get-state", "c"]));
    assert!(message.contains("possible values: a, b"), "{message}");
    assert_eq!(device.files(), before);
}
