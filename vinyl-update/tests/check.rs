//! `vinyl-update check` against channel files served by a loopback HTTP
//! server the test starts: every way an offer is turned down before RAUC
//! is asked, with the record it leaves on /data and its exit status. (The
//! install itself, RAUC's streaming and the reboot policy on a device run
//! under QEMU: qemu-tests/tests/delivery.rs.)

use ab_state::{STATE_FILES, State};
use std::path::PathBuf;
use std::process::{Command, Output};
use test_support::http::{Files, serve};

const BIN: &str = env!("CARGO_BIN_EXE_vinyl-update");

/// A device in a temporary directory: running `version` of vinyl-rpi4 on
/// slot a, its settings pointing at `url`.
struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    fn new(version: &str, settings: &str) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir(p.join("boot")).unwrap();
        for (copy, file) in STATE_FILES.iter().enumerate() {
            std::fs::write(
                p.join("boot").join(file),
                State::initial(copy as u32).to_bytes(),
            )
            .unwrap();
        }
        std::fs::write(p.join("boot.env"), "SLOT=a\nTRIAL=0\nROOT=x\n").unwrap();
        std::fs::write(
            p.join("release"),
            format!("VERSION={version}\nCOMPATIBLE=vinyl-rpi4\n"),
        )
        .unwrap();
        std::fs::write(p.join("update.conf"), settings).unwrap();
        Device { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        let p = self.dir.path();
        Command::new(BIN)
            .args(args)
            .env("VINYL_BOOT_DIR", p.join("boot"))
            .env("VINYL_BOOT_ENV", p.join("boot.env"))
            .env("VINYL_RAUC_STATUS", p.join("central.raucs"))
            .env("VINYL_RELEASE", p.join("release"))
            .env("VINYL_UPDATE_CONF", p.join("update.conf"))
            .env("VINYL_UPDATE_OVERRIDE", p.join("data/update.conf"))
            .env("VINYL_UPDATE_STATE", p.join("data/state.json"))
            .env("VINYL_UPDATE_DOWNLOADS", p.join("data/download"))
            .env("VINYL_STREAMD_STATUS", "http://127.0.0.1:9/status")
            .output()
            .unwrap()
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path("data/state.json")).unwrap()).unwrap()
    }
}

fn channel(version: &str, compatible: &str, min: Option<&str>, size: usize) -> String {
    let min = min.map_or(String::new(), |m| format!("\"min-version\": \"{m}\","));
    format!(
        r#"{{"format": 1, "compatible": "{compatible}", "version": "{version}", "build": "b",
            "released": "2026-12-04", {min}
            "bundle": {{"url": "v.raucb", "size": {size}, "sha256": "{}", "manifest-sha256": "{}"}}}}"#,
        "ab".repeat(32),
        "cd".repeat(32)
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn offers_that_must_not_be_installed_are_turned_down_and_recorded() {
    let files: Files = Default::default();
    let base = serve(files.clone());
    let bundle = vec![7u8; 1000];
    files
        .lock()
        .unwrap()
        .insert("/r/v.raucb".into(), bundle.clone());
    let device = Device::new("1.4.0", &format!("url = {base}/r/channel.json\n"));
    let offer = |text: String| {
        files
            .lock()
            .unwrap()
            .insert("/r/channel.json".into(), text.into_bytes());
    };

    // (channel file, exit success, recorded result, words in the message)
    let cases: Vec<(String, bool, &str, &str)> = vec![
        (
            channel("1.4.0", "vinyl-rpi4", None, 1000),
            true,
            "up-to-date",
            "running 1.4.0",
        ),
        (
            channel("1.3.0", "vinyl-rpi4", None, 1000),
            true,
            "up-to-date",
            "older 1.3.0",
        ),
        (
            "{\"format\": 1, \"version\":".into(),
            false,
            "refused",
            "channel file: not JSON",
        ),
        (
            channel("2.0.0", "vinyl-rpi3", None, 1000),
            false,
            "refused",
            "for vinyl-rpi3; this device is vinyl-rpi4",
        ),
        (
            channel("2.0.0", "vinyl-rpi4", Some("1.5.0"), 1000),
            false,
            "refused",
            "updates only from 1.5.0",
        ),
        (
            channel("2.0.0", "vinyl-rpi4", None, 999),
            false,
            "refused",
            "is 1000 bytes on the server; the channel file says 999",
        ),
    ];
    for (text, ok, result, says) in cases {
        offer(text.clone());
        let out = device.run(&["check"]);
        assert_eq!(out.status.success(), ok, "{text}: {}", stderr(&out));
        let state = device.state();
        assert_eq!(state["result"], result, "{text}: {state}");
        let message = state["message"].as_str().unwrap();
        assert!(message.contains(says), "{says:?} not in {message:?}");
        assert!(
            stderr(&out).contains(says),
            "the journal lacks {says:?}: {}",
            stderr(&out)
        );
    }

    // A channel file that is not there: a failed check, not a refusal.
    files.lock().unwrap().remove("/r/channel.json");
    let out = device.run(&["check"]);
    assert!(!out.status.success());
    assert_eq!(device.state()["result"], "failed");

    // The status command shows it.
    let status = String::from_utf8(device.run(&["status"]).stdout).unwrap();
    assert!(status.contains("version:   1.4.0 (vinyl-rpi4)"), "{status}");
    assert!(
        status.contains("failed: fetching the channel file"),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&device.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["update"]["last_check"]["result"], "failed", "{json}");
    assert_eq!(json["update"]["pending_reboot"], serde_json::Value::Null);
}

#[test]
fn the_timer_honours_the_switch_and_the_interval() {
    let files: Files = Default::default();
    let base = serve(files.clone());
    files.lock().unwrap().insert(
        "/channel.json".into(),
        channel("1.4.0", "vinyl-rpi4", None, 1).into_bytes(),
    );
    let device = Device::new(
        "1.4.0",
        &format!("url = {base}/channel.json\ncheck-every = 1h\n"),
    );
    // Switched off on /data: the timer's tick records it once and stops.
    std::fs::create_dir_all(device.path("data")).unwrap();
    std::fs::write(device.path("data/update.conf"), "enabled = false\n").unwrap();
    let out = device.run(&["check", "--timer"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(device.state()["result"], "off");
    // By hand it still checks.
    assert!(device.run(&["check"]).status.success());
    assert_eq!(device.state()["result"], "up-to-date");
    // Switched on: checked a moment ago, so the next tick waits an hour.
    std::fs::remove_file(device.path("data/update.conf")).unwrap();
    let before = std::fs::read(device.path("data/state.json")).unwrap();
    let out = device.run(&["check", "--timer"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "not due yet");
    assert_eq!(
        std::fs::read(device.path("data/state.json")).unwrap(),
        before
    );

    // A broken override names its file, line and key.
    std::fs::write(device.path("data/update.conf"), "# mine\nreboot = soon\n").unwrap();
    let out = device.run(&["check", "--timer"]);
    assert!(!out.status.success());
    let error = stderr(&out);
    let file = device.path("data/update.conf");
    assert!(
        error.contains(&format!(
            "{} line 2: reboot \"soon\": give idle",
            file.display()
        )),
        "{error}"
    );
    assert_eq!(device.state()["result"], "failed");
}

#[test]
fn without_a_url_the_device_never_checks() {
    let device = Device::new(
        "1.4.0",
        "# url = https://updates.example.org/vinyl/channel.json\n",
    );
    let out = device.run(&["check", "--timer"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state = device.state();
    assert_eq!(state["result"], "not-configured");
    assert!(state["message"].as_str().unwrap().contains("--update-url"));
}

#[test]
fn a_release_whose_trial_failed_here_is_not_installed_again() {
    let files: Files = Default::default();
    let base = serve(files.clone());
    files
        .lock()
        .unwrap()
        .insert("/v.raucb".into(), vec![7u8; 1000]);
    files.lock().unwrap().insert(
        "/channel.json".into(),
        channel("2.0.0", "vinyl-rpi4", None, 1000).into_bytes(),
    );
    let device = Device::new("1.4.0", &format!("url = {base}/channel.json\n"));
    // RAUC wrote 2.0.0 into slot b and made it the next boot; its trial
    // failed, so the boot state has slot b bad and the device runs slot a.
    let rauc_status = |activated: &str| {
        format!(
            "[slot.rootfs.1]\nbundle.compatible=vinyl-rpi4\nbundle.version=2.0.0\nstatus=ok\n\
             installed.timestamp=2026-12-04T10:00:00.000000Z\n{activated}"
        )
    };
    std::fs::write(
        device.path("central.raucs"),
        rauc_status("activated.timestamp=2026-12-04T10:00:01.000000Z\n"),
    )
    .unwrap();
    let out = device.run(&["check"]);
    assert!(!out.status.success());
    let state = device.state();
    assert_eq!(state["result"], "refused", "{state}");
    let message = state["message"].as_str().unwrap();
    assert!(
        message.contains("2.0.0 failed its trial boot on this device (slot b was marked bad)"),
        "{message}"
    );

    // Written but never activated (a power cut in between): installed again,
    // as it is when forced; both go on to ask RAUC about the bundle.
    for (status, args) in [
        (rauc_status(""), &["check"][..]),
        (
            rauc_status("activated.timestamp=2026-12-04T10:00:01.000000Z\n"),
            &["check", "--force"][..],
        ),
    ] {
        std::fs::write(device.path("central.raucs"), status).unwrap();
        let _ = device.run(args);
        let message = device.state()["message"].as_str().unwrap().to_string();
        assert!(!message.contains("trial"), "{args:?}: {message}");
        assert!(message.contains("rauc info"), "{args:?}: {message}");
    }
}

/// `install = download`: the bundle goes to /data first, a partial file is
/// resumed with a range request, and what does not have the channel's
/// SHA-256 is deleted and not installed.
#[test]
fn a_downloaded_bundle_is_resumed_and_checked_before_rauc_sees_it() {
    use sha2::{Digest, Sha256};
    let files: Files = Default::default();
    let base = serve(files.clone());
    let bundle: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let sha256 = hex::encode(Sha256::digest(&bundle));
    files
        .lock()
        .unwrap()
        .insert("/r/v.raucb".into(), bundle.clone());
    let offer = |sha: &str| {
        let text = channel("2.0.0", "vinyl-rpi4", None, bundle.len())
            .replace(&"ab".repeat(32), sha)
            .into_bytes();
        files.lock().unwrap().insert("/r/channel.json".into(), text);
    };
    let device = Device::new(
        "1.4.0",
        &format!("url = {base}/r/channel.json\ninstall = download\n"),
    );
    let downloads = device.path("data/download");
    let run = || {
        let out = device.run(&["check"]);
        (stderr(&out), device.state())
    };

    // A partial download whose first bytes are not the bundle's: resumed
    // from where it stopped (not fetched anew), the whole is not the bundle.
    offer(&sha256);
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::write(downloads.join(format!("{sha256}.part")), vec![0u8; 2000]).unwrap();
    std::fs::write(downloads.join("old-release.raucb"), b"stale").unwrap();
    let (err, state) = run();
    assert_eq!(state["result"], "refused", "{err}");
    assert!(
        err.contains("downloaded SHA-256 ") && err.contains("deleted and not installed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&downloads).unwrap().count(),
        0,
        "left behind"
    );

    // A partial download of the right bytes: resumed, complete, checked and
    // handed to RAUC, which refuses these bytes and the file is deleted (or,
    // in a local run without RAUC, fails to start and the file is kept).
    std::fs::write(downloads.join(format!("{sha256}.part")), &bundle[..2000]).unwrap();
    let (err, state) = run();
    assert!(!err.contains("deleted and not installed"), "{err}");
    let kept = std::fs::read(downloads.join(format!("{sha256}.raucb")));
    if state["result"] == "refused" {
        assert!(
            err.contains("rauc info") && err.contains("refused the bundle"),
            "{err}"
        );
        assert!(kept.is_err(), "a bundle RAUC refused stays on /data");
    } else {
        assert_eq!(state["result"], "failed", "{err}");
        assert!(err.contains("running rauc info"), "{err}");
        assert_eq!(kept.unwrap(), bundle);
    }

    // A swapped bundle: the channel states another digest.
    offer(&"ef".repeat(32));
    let (err, state) = run();
    assert_eq!(state["result"], "refused", "{err}");
    assert!(
        err.contains("a truncated or swapped bundle, deleted"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&downloads).unwrap().count(),
        0,
        "left behind"
    );
}
