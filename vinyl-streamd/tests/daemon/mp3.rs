//! `/stream.mp3`: decoded by ffmpeg and Debian's mpg123, frame boundaries
//! judged by ffprobe, and the encoder idle without listeners.

use crate::common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes of one MPEG-1 Layer III frame at 192 kbit/s, 48 kHz (no padding
/// at 48 kHz): 144 × 192000 / 48000.
const FRAME_192: usize = 576;

/// Opens `/stream.mp3`: the socket after the head, the head, the first body bytes.
fn open_mp3(addr: SocketAddr) -> (TcpStream, String, Vec<u8>) {
    open_path(addr, "/stream.mp3")
}

/// Records `/stream.mp3` for `d`.
fn record_mp3(addr: SocketAddr, d: Duration) -> Vec<u8> {
    let (mut s, _, body) = open_mp3(addr);
    read_for(&mut s, body, d)
}

/// ffprobe's packet sizes of an MP3 byte stream (its own frame parser).
fn ffprobe_packet_sizes(mp3: &[u8]) -> Vec<usize> {
    let mut child = Command::new("ffprobe")
        .args(["-v", "error", "-f", "mp3", "-i", "pipe:0"])
        .args(["-show_entries", "packet=size", "-of", "csv=p=0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffprobe");
    let mut w = child.stdin.take().unwrap();
    let data = mp3.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(errors.trim().is_empty(), "ffprobe reported: {errors}");
    assert!(out.status.success(), "ffprobe failed: {:?}", out.status);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Checks a recording taken from its first byte: starts with a frame
/// header, ffprobe finds nothing but whole 192 kbit/s frames, ffmpeg
/// decodes it without a single error, and it holds the tone.
fn check_recording(body: &[u8], dbfs: f64, what: &str) {
    assert!(
        body.len() > 40 * FRAME_192,
        "{what}: only {} bytes",
        body.len()
    );
    assert_eq!(
        (body[0], body[1] & 0xFE),
        (0xFF, 0xFA),
        "{what}: does not start with an MPEG-1 Layer III header: {:02X?}",
        &body[..4]
    );
    // The recording stops at an arbitrary byte; keep the whole frames.
    let whole = &body[..body.len() / FRAME_192 * FRAME_192];
    let sizes = ffprobe_packet_sizes(whole);
    assert_eq!(sizes.len(), whole.len() / FRAME_192, "{what}: {sizes:?}");
    assert!(sizes.iter().all(|&s| s == FRAME_192), "{what}: {sizes:?}");
    let pcm = ffmpeg_decode(
        &["-f", "mp3", "-i", "pipe:0"],
        Some(whole.to_vec()),
        Duration::from_secs(30),
    );
    // 1152 samples per frame, give or take the decoder's delay.
    let frames = whole.len() / FRAME_192;
    assert!(
        pcm.len() / 2 + 2 * 1152 >= frames * 1152 && pcm.len() / 2 <= frames * 1152,
        "{what}: {} samples from {frames} frames",
        pcm.len() / 2
    );
    // Skip the first 100 ms: a listener joins where the bit reservoir of
    // earlier frames is missing, so the very first frame may be quiet.
    assert_tone(&left(&pcm[9600..]), dbfs, what);
}

#[test]
fn mp3_stream_is_audio_mpeg_with_icy_headers_and_decodes_to_the_tone() {
    if !have("ffmpeg") {
        return;
    }
    let d = Daemon::start(&["--source", "tone", "--tone-dbfs", "-20"]);
    let (code, head, _) =
        split_response(&raw_request(d.addr, b"HEAD /stream.mp3 HTTP/1.0\r\n\r\n"));
    assert_eq!(code, 200);
    let head = head.to_ascii_lowercase();
    for h in [
        "content-type: audio/mpeg",
        "icy-name: vinyl",
        "icy-description: live from the turntable",
    ] {
        assert!(head.contains(h), "{h} missing in {head}");
    }
    // ffmpeg fetches the URL itself, as a player does.
    let pcm = decode_three_seconds(&d.url("/stream.mp3"));
    assert_tone(&left(&pcm[48_000 * 2..]), -20.0, "MP3 via HTTP");
}

#[test]
fn mp3_listeners_start_at_a_frame_boundary_and_every_frame_is_whole() {
    if !have("ffmpeg") || !have("ffprobe") {
        return;
    }
    let d = Daemon::start(&["--source", "tone", "--tone-dbfs", "-12"]);
    let first = std::thread::spawn({
        let addr = d.addr;
        move || record_mp3(addr, Duration::from_secs(5))
    });
    std::thread::sleep(Duration::from_millis(2100));
    // Joins mid-stream, while the encoder is running for the first one.
    let (mut s, _, body) = open_mp3(d.addr);
    assert_eq!(d.status()["listeners"], 2);
    let second = read_for(&mut s, body, Duration::from_secs(3));
    check_recording(&first.join().unwrap(), -12.0, "first listener");
    check_recording(&second, -12.0, "second listener, 2 s later");
}

#[test]
fn mp3_encoder_runs_only_while_someone_listens_and_restarts_cleanly() {
    if !have("ffmpeg") || !have("ffprobe") {
        return;
    }
    let d = Daemon::start(&["--source", "tone", "--tone-dbfs", "-20"]);
    let frames = || d.metric("vinyl_mp3_frames_total");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(frames(), 0.0, "MP3 encoded with nobody listening");
    // Meanwhile the Opus stream is produced all the time.
    assert!(d.metric("vinyl_pages_total") > 20.0);

    let body = record_mp3(d.addr, Duration::from_millis(1500));
    check_recording(&body, -20.0, "first listener");
    let during = frames();
    // 1.5 s is 62 frames of 24 ms; LAME holds back about two.
    assert!((40.0..=70.0).contains(&during), "{during} frames");
    // The listener has gone: the encoder stops.
    assert!(wait_until(
        Duration::from_secs(2),
        || d.status()["listeners"] == 0
    ));
    std::thread::sleep(Duration::from_millis(300));
    let after = frames();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        frames(),
        after,
        "MP3 encoder kept running without listeners"
    );
    assert!(d.log().iter().any(|l| l.contains("MP3 encoder idle")));

    // A new listener gets a fresh encoder and a clean stream from its first byte.
    let body = record_mp3(d.addr, Duration::from_millis(2500));
    check_recording(&body, -20.0, "listener after an idle spell");
    assert!(frames() > after + 60.0);
    let starts = d
        .log()
        .iter()
        .filter(|l| l.contains("MP3 encoder started"))
        .count();
    assert_eq!(starts, 2, "{:?}", d.log());
}

#[test]
fn mp3_can_be_turned_off_and_bad_bitrates_are_refused() {
    let d = Daemon::start(&["--source", "tone", "--mp3-kbps", "0"]);
    assert_eq!(http_get(d.addr, "/stream.mp3").0, 404);
    drop(d);
    let out = Command::new(env!("CARGO_BIN_EXE_vinyl-streamd"))
        .args(["--source", "tone", "--mp3-kbps", "100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("`encoder.mp3_kbps`"), "{err}");
}

#[test]
fn mpg123_plays_the_mp3_stream_from_the_url() {
    if !have("mpg123") {
        return;
    }
    let d = Daemon::start(&[
        "--source",
        "tone",
        "--tone-dbfs",
        "-20",
        "--mp3-kbps",
        "128",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("out.wav");
    // 125 frames of 24 ms = 3 s; mpg123 stops by itself after them.
    let mut child = Command::new("mpg123")
        .args(["-n", "125", "-w"])
        .arg(&wav)
        .arg(d.url("/stream.mp3"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mpg123");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mpg123 did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mpg123 failed: {log}");
    for bad in ["error", "warning", "Note: Illegal", "Did not find"] {
        assert!(
            !log.to_lowercase().contains(&bad.to_lowercase()),
            "mpg123: {log}"
        );
    }
    assert!(
        log.contains("MPEG 1.0 L III cbr128 48000 j-s"),
        "mpg123: {log}"
    );
    assert!(log.contains("ICY-NAME: Vinyl"), "mpg123: {log}");
    let mut r = hound::WavReader::open(&wav).unwrap();
    let spec = r.spec();
    assert_eq!((spec.sample_rate, spec.channels), (48_000, 2), "{spec:?}");
    let scale = f32::from(i16::MAX) + 1.0;
    let pcm: Vec<f32> = r
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / scale)
        .collect();
    assert!(
        pcm.len() >= 2 * 125 * 1152 * 9 / 10,
        "{} samples",
        pcm.len()
    );
    assert_tone(&left(&pcm[9600..]), -20.0, "MP3 via mpg123");
}
