//! The ALSA source against real alsa-lib, without hardware: a PCM defined in
//! a private ~/.asoundrc whose capture data comes from a file (the `file`
//! plugin's `infile` over the `null` plugin). That plugin is not paced by a
//! clock, so these tests check negotiation and the read path, not timing.

use crate::common::*;
use std::time::Duration;

/// A HOME with an .asoundrc defining `pcm.vinyltest`, capturing a -6 dBFS
/// 1 kHz tone (s16 stereo 48 kHz) from a file.
fn fake_card() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let infile = home.path().join("capture.raw");
    let mut pcm = Vec::new();
    for i in 0..96_000 {
        let s =
            (0.5 * 32767.0 * (i as f64 * std::f64::consts::TAU * 1000.0 / 48_000.0).sin()) as i16;
        pcm.extend_from_slice(&s.to_le_bytes());
        pcm.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(&infile, pcm).unwrap();
    let conf = format!(
        "pcm.vinyltest {{\n type file\n slave.pcm \"null\"\n file \"/dev/null\"\n infile \"{}\"\n format \"raw\"\n}}\n",
        infile.display()
    );
    std::fs::write(home.path().join(".asoundrc"), conf).unwrap();
    home
}

fn start(home: &tempfile::TempDir, args: &[&str]) -> Daemon {
    let mut all = vec!["--source", "alsa", "--device", "vinyltest"];
    all.extend_from_slice(args);
    Daemon::start_env(&all, &[("HOME", home.path().to_str().unwrap())])
}

#[test]
fn alsa_pcm_is_opened_negotiated_and_read() {
    let home = fake_card();
    let d = start(&home, &["--format", "s16"]);
    assert!(
        wait_until(Duration::from_secs(5), || d.status()["state"] == "playing"),
        "{:?}",
        d.log()
    );
    let s = d.status();
    assert_eq!(s["device"], "vinyltest");
    assert_eq!(s["format"], "S16_LE 48000 Hz 2ch");
    assert!(wait_until(Duration::from_secs(5), || {
        let s = d.status();
        (s["peak_dbfs"].as_f64().unwrap() + 6.02).abs() < 0.1
            && (s["rms_dbfs"].as_f64().unwrap() + 9.03).abs() < 0.1
    }));
}

#[test]
fn alsa_prefers_24_bit_and_honours_the_rate() {
    let home = fake_card();
    let d = start(&home, &["--rate", "44100"]);
    assert!(wait_until(Duration::from_secs(5), || d.status()["state"] == "playing"));
    assert_eq!(d.status()["format"], "S24_3LE 44100 Hz 2ch");
}

#[test]
fn missing_fixed_device_is_reported_once_not_per_retry() {
    // No card 99: alsa-lib complains on every attempt (ten a second here).
    let home = tempfile::tempdir().unwrap();
    let d = Daemon::start_env(
        &["--source", "alsa", "--device", "hw:99", "--retry-ms", "100"],
        &[("HOME", home.path().to_str().unwrap())],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(d.status()["state"], "no-device");
    let log = d.log();
    let about: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("ALSA") || l.contains("hw:99") || l.contains("card"))
        .collect();
    println!("stderr lines about the device in 3 s of retries: {about:#?}");
    assert!(
        !log.iter().any(|l| l.starts_with("ALSA lib")),
        "alsa-lib printed to stderr: {log:#?}"
    );
    assert!(about.len() <= 2, "{about:#?}");
    // What alsa-lib said is still there, once, in the daemon's own warning.
    assert!(
        about
            .iter()
            .any(|l| l.contains("source unavailable") && l.contains("alsa-lib:")),
        "{about:#?}"
    );
}
