//! Streaming behaviour: tone fidelity, joining listeners, slow listeners,
//! source gaps, bad requests, configuration and shutdown.

use crate::common::*;
use std::io::Write;
use std::time::{Duration, Instant};
use vinyl_streamd::ogg::parse_page;

/// Pages of a recorded stream, checking they form one logical stream.
fn check_single_stream(bytes: &[u8]) -> usize {
    let mut pos = 0;
    let mut pages = Vec::new();
    while let Ok((page, len)) = parse_page(&bytes[pos..]) {
        pages.push(page);
        pos += len;
    }
    assert!(pages.len() > 3, "only {} pages", pages.len());
    assert_eq!(&pages[0].packets[0][..8], b"OpusHead");
    assert_eq!(pages[0].flags, vinyl_streamd::ogg::BOS);
    assert_eq!(&pages[1].packets[0][..8], b"OpusTags");
    // Every listener's positions start at zero, however long the daemon runs.
    assert_eq!(
        (pages[2].sequence, pages[2].granule),
        (2, 960),
        "not rebased"
    );
    let serial = pages[0].serial;
    for w in pages[2..].windows(2) {
        assert_eq!(w[1].serial, serial, "chained stream");
        assert_eq!(w[1].flags & vinyl_streamd::ogg::BOS, 0, "second BOS");
        assert_eq!(w[1].sequence, w[0].sequence + 1, "page gap");
        assert_eq!(w[1].granule, w[0].granule + 960, "granule jump");
    }
    pages.len()
}

fn tone_through_ffmpeg(rate: &str) {
    if !have("ffmpeg") {
        return;
    }
    let d = Daemon::start(&["--source", "tone", "--rate", rate, "--tone-dbfs", "-6"]);
    let pcm = decode_three_seconds(&d.url("/stream.opus"));
    // One second well after the start, an integer number of cycles.
    assert_tone(
        &left(&pcm[2 * 48_000..2 * 96_000]),
        -6.0,
        &format!("{rate} Hz source"),
    );
}

#[test]
fn tone_48k_decodes_at_right_frequency_and_level() {
    tone_through_ffmpeg("48000");
}

#[test]
fn tone_44k1_is_resampled_correctly() {
    tone_through_ffmpeg("44100");
}

#[test]
fn listeners_joining_apart_both_decode_from_first_byte() {
    if !have("ffmpeg") {
        return;
    }
    let d = Daemon::start(&["--source", "tone", "--tone-dbfs", "-10"]);
    let first = std::thread::spawn({
        let addr = d.addr;
        move || record(addr, Duration::from_secs(5))
    });
    std::thread::sleep(Duration::from_secs(2));
    let second = record(d.addr, Duration::from_secs(3));
    let first = first.join().unwrap();
    // The second also gets the default start burst of recent audio at once.
    let burst = vinyl_streamd::config::DEFAULT_BURST_MS as f64 / 1000.0;
    for (name, bytes, secs) in [("first", first, 5.0), ("second", second, 3.0 + burst)] {
        check_single_stream(&bytes);
        let pcm = left(&decode_bytes(bytes));
        let got = pcm.len() as f64 / 48_000.0;
        assert!(
            (got - secs).abs() < 0.5,
            "{name}: {got} s decoded in {secs} s"
        );
        // The tone is there from the start of what the listener got.
        assert_tone(&pcm[4800..4800 + 48_000], -10.0, name);
    }
}

#[test]
fn stalled_listener_neither_delays_others_nor_stays() {
    if !have("ffmpeg") {
        return;
    }
    // The documented defaults: client_queue_ms = 4000, send_buffer_kib = 64
    // (a kernel send buffer holding over 6 s of audio, which must not count).
    let d = Daemon::start(&["--source", "tone"]);
    // A listener with a tiny receive window that never reads.
    let stalled = {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&d.addr.into()).unwrap();
        let mut s: std::net::TcpStream = sock.into();
        s.write_all(b"GET /stream.opus HTTP/1.0\r\n\r\n").unwrap();
        s
    };
    // Watch, from the client's side, when its receive buffer stops filling
    // (it stops acknowledging then), and when the daemon reports the drop.
    let asked = Instant::now();
    let watcher = std::thread::spawn({
        let (addr, peek) = (d.addr, stalled.try_clone().unwrap());
        move || {
            peek.set_nonblocking(true).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let (mut queued, mut full_at) = (0, 0.0);
            let deadline = asked + Duration::from_secs(15);
            while Instant::now() < deadline {
                let n = peek.peek(&mut buf).unwrap_or(0);
                if n > queued {
                    (queued, full_at) = (n, asked.elapsed().as_secs_f64());
                }
                let (_, _, body) = http_get(addr, "/metrics");
                let dropped = String::from_utf8(body).unwrap().lines().any(|l| {
                    l.strip_prefix("vinyl_listeners_dropped_total ")
                        .is_some_and(|v| v != "0")
                });
                if dropped {
                    return Some((full_at, asked.elapsed().as_secs_f64(), queued));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        }
    });
    let start = Instant::now();
    let pcm = left(&decode_bytes(record(d.addr, Duration::from_secs(4))));
    let elapsed = start.elapsed().as_secs_f64();
    let audio = pcm.len() as f64 / 48_000.0;
    assert!(
        audio > 3.4,
        "healthy listener got only {audio} s in {elapsed} s"
    );
    let (full_at, dropped_at, queued) = watcher
        .join()
        .unwrap()
        .expect("stalled listener never dropped");
    let not_reading = dropped_at - full_at;
    println!(
        "stalled listener: receive buffer full ({queued} bytes) {full_at:.2} s after its request, \
         dropped {dropped_at:.2} s after it: {not_reading:.2} s without taking anything (client_queue_ms 4000)"
    );
    assert!(
        (4.0..5.0).contains(&not_reading),
        "dropped after {not_reading:.2} s without progress, documented 4 s"
    );
    assert!(d.log().iter().any(|l| l.contains("dropping listener")));
    assert_eq!(d.metric("vinyl_listeners"), 0.0);
    drop(stalled);
}

#[test]
fn source_gap_keeps_listener_in_one_stream() {
    if !have("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pcm");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let d = Daemon::start(&[
        "--source",
        "file",
        "--path",
        fifo.to_str().unwrap(),
        "--format",
        "s16",
        "--retry-ms",
        "100",
    ]);
    let (mut sock, body) = open_stream(d.addr);
    let (writer, recorder) = (
        fifo.clone(),
        std::thread::spawn(move || read_for(&mut sock, body, Duration::from_secs(8))),
    );
    let start = Instant::now();
    feed_fifo(&writer, 2.5);
    // The writer is gone: the daemon must report it and stream silence.
    assert!(wait_until(Duration::from_secs(2), || d.status()["state"]
        == "no-device"));
    std::thread::sleep(Duration::from_secs(2));
    feed_fifo(&writer, 3.0);
    assert_eq!(d.status()["state"], "no-device", "source ended again");
    let bytes = recorder.join().unwrap();
    let wall = start.elapsed().as_secs_f64();
    check_single_stream(&bytes);
    let pcm = left(&decode_bytes(bytes));
    let secs = pcm.len() as f64 / 48_000.0;
    assert!(
        secs > 7.0 && secs < wall + 1.0,
        "decoded {secs} s over {wall} s"
    );
    let at = |t: f64| &pcm[(t * 48_000.0) as usize..((t + 0.5) * 48_000.0) as usize];
    assert_tone(at(1.0), -6.02, "before the gap");
    assert!(
        rms_db(at(3.3)) < -60.0,
        "gap is not silent: {}",
        rms_db(at(3.3))
    );
    assert_tone(at(6.0), -6.02, "after the gap");
    assert!(d.metric("vinyl_source_losses_total") >= 2.0);
    assert!(d.metric("vinyl_filler_frames_total") > 50.0);
}

#[test]
fn malformed_requests_get_4xx_and_server_keeps_serving() {
    let d = Daemon::start(&["--source", "tone"]);
    let code = |resp: Vec<u8>| {
        let text = String::from_utf8_lossy(&resp).to_string();
        text.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"))
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"garbage\r\n\r\n".to_vec()),
        ("binary", vec![0, 1, 2, 0xff, b'\r', b'\n', b'\r', b'\n']),
        ("huge header", format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024)).into_bytes()),
        ("huge uri", format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(64 * 1024)).into_bytes()),
        ("bad version", b"GET / HTTP/9.9\r\n\r\n".to_vec()),
        ("post", b"POST /stream.opus HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()),
        ("unknown path", b"GET /nope HTTP/1.0\r\n\r\n".to_vec()),
    ];
    for (what, req) in cases {
        let c = code(raw_request(d.addr, &req));
        assert!((400..500).contains(&c), "{what}: got {c}");
    }
    // A client that connects and says nothing does not block anyone either.
    let _idle = std::net::TcpStream::connect(d.addr).unwrap();
    let (code, head, body) = http_get(d.addr, "/");
    assert_eq!(code, 200);
    assert!(head.to_ascii_lowercase().contains("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("id=\"play\""));
    let (code, head, _) =
        split_response(&raw_request(d.addr, b"HEAD /stream.opus HTTP/1.0\r\n\r\n"));
    assert_eq!(code, 200);
    let head = head.to_ascii_lowercase();
    for h in [
        "content-type: audio/ogg",
        "icy-name: vinyl",
        "icy-description:",
        "access-control-allow-origin: *",
    ] {
        assert!(head.contains(h), "missing {h} in {head}");
    }
    // The source opens on its own thread: give a loaded machine a moment.
    assert!(
        wait_until(Duration::from_secs(5), || d.status()["state"] == "playing"),
        "the tone never played: {}",
        d.status()
    );
    let status = d.status();
    assert_eq!(status["state"], "playing");
    assert_eq!(status["device"], "test tone");
    assert!(
        status["addresses"][0]
            .as_str()
            .unwrap()
            .contains("/stream.opus")
    );
    assert!(wait_until(Duration::from_secs(5), || d
        .metric("vinyl_pages_total")
        > 0.0));
}

#[test]
fn silence_is_detected_and_reported() {
    let d = Daemon::start(&[
        "--source",
        "tone",
        "--tone-dbfs",
        "-70",
        "--silence-hold-s",
        "0.3",
    ]);
    assert!(wait_until(Duration::from_secs(5), || d.status()["state"] == "silent"));
    assert_eq!(d.metric("vinyl_silent"), 1.0);
    let rms = d.status()["rms_dbfs"].as_f64().unwrap();
    assert!((rms + 73.0).abs() < 0.5, "rms {rms}");
}

#[test]
fn sigterm_exits_cleanly_even_with_listeners() {
    let d = Daemon::start(&["--source", "tone"]);
    let (_sock, _) = open_stream(d.addr);
    let status = d.terminate().expect("daemon did not exit within 5 s");
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_config_names_the_key_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let run = |file: &str, args: &[&str]| {
        std::fs::write(&path, file).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vinyl-streamd"))
            .args(["--config", path.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{file} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
        err
    };
    let err = run("[encoder]\nbitrate_kbps = 5000\n", &[]);
    assert!(err.contains("encoder.bitrate_kbps"), "{err}");
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "[silence]\nhold_s = 1e30\n",
            &[],
            "bad config key `silence.hold_s`: must be 0 to 86400 (got 1e30)",
        ),
        (
            "[http]\nclient_queue_ms = 99999999999\n",
            &[],
            "`http.client_queue_ms`: must be 100 to 60000 (got 99999999999)",
        ),
        (
            "[source]\nretry_ms = 0\n",
            &[],
            "`source.retry_ms`: must be 100 to 600000 (got 0)",
        ),
        (
            "[silence]\nthreshold_db = nan\n",
            &[],
            "`silence.threshold_db`: must be -120 to 0 (got NaN)",
        ),
        (
            "[http]\nlisten = [\"[::]:99999\"]\n",
            &[],
            "port must be 0 to 65535 (got 99999",
        ),
        (
            "",
            &["--listen", "[::]:99999"],
            "port must be 0 to 65535 (got 99999",
        ),
        (
            "",
            &["--silence-hold-s", "inf"],
            "`silence.hold_s`: must be 0 to 86400 (got inf)",
        ),
        ("", &["--max-connections", "lots"], "--max-connections"),
        ("[encoder\nbitrate_kbps = 96\n", &[], "line 1"),
        ("[encoder]\nbitrate_kbps = 9 6\n", &[], "line 2"),
    ];
    for (file, args, expected) in cases {
        let err = run(file, args);
        assert!(err.starts_with("vinyl-streamd: "), "{err}");
        assert!(err.contains(expected), "{file} {args:?}: {err}");
    }

    std::fs::write(&path, "[http]\nname = \"Den\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vinyl-streamd"))
        .args([
            "--config",
            path.to_str().unwrap(),
            "--bitrate-kbps",
            "96",
            "--print-config",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let effective: vinyl_streamd::config::Config =
        toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(effective.http.name, "Den");
    assert_eq!(effective.encoder.bitrate_kbps, 96);
}

#[test]
fn missing_alsa_device_streams_silence() {
    if !have("ffmpeg") {
        return;
    }
    let d = Daemon::start(&[
        "--source",
        "alsa",
        "--device",
        "no-such-card-here",
        "--retry-ms",
        "200",
    ]);
    let status = d.status();
    assert_eq!(status["state"], "no-device");
    assert!(status["device"].is_null());
    let bytes = record(d.addr, Duration::from_secs(2));
    check_single_stream(&bytes);
    let pcm = decode_bytes(bytes);
    assert!(
        pcm.len() as f64 / 2.0 / 48_000.0 > 1.5,
        "silence is streamed in real time"
    );
    assert!(rms_db(&pcm) < -80.0);
    assert!(
        d.log()
            .iter()
            .any(|l| l.contains("source unavailable") && l.contains("no-such-card-here"))
    );
    assert_eq!(d.metric("vinyl_source_up"), 0.0);
}

#[test]
fn wav_file_24bit_44k1_is_streamed_in_a_loop() {
    if !have("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    // One second of a -12 dBFS 1 kHz tone: 1000 whole cycles, so it loops seamlessly.
    for i in 0..44_100 {
        let s = (0.251 * 8_388_607.0 * (i as f64 * std::f64::consts::TAU * 1000.0 / 44_100.0).sin())
            as i32;
        w.write_sample(s).unwrap();
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let d = Daemon::start(&["--source", "file", "--path", path.to_str().unwrap()]);
    // The source opens on its own thread, just after the server starts.
    wait_until(Duration::from_secs(2), || !d.status()["format"].is_null());
    assert_eq!(d.status()["format"], "S24_3LE 44100 Hz 2ch");
    let pcm = decode_three_seconds(&d.url("/stream.opus"));
    // Spans the loop point at 1 s of file time.
    assert_tone(&left(&pcm[2 * 48_000..2 * 96_000]), -12.0, "looped WAV");
    assert_eq!(d.status()["state"], "playing");
}

#[test]
fn flac_stream_is_lossless_enough_to_measure_and_off_by_default() {
    if !have("ffmpeg") {
        return;
    }
    let off = Daemon::start(&["--source", "tone"]);
    assert_eq!(http_get(off.addr, "/stream.flac").0, 404);
    drop(off);
    let d = Daemon::start(&["--source", "tone", "--tone-dbfs", "-20", "--flac", "true"]);
    let (code, head, _) =
        split_response(&raw_request(d.addr, b"HEAD /stream.flac HTTP/1.0\r\n\r\n"));
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: audio/flac"),
        "{head}"
    );
    let pcm = decode_three_seconds(&d.url("/stream.flac"));
    let tone = left(&pcm[2 * 48_000..2 * 96_000]);
    assert_tone(&tone, -20.0, "FLAC");
    // Lossless: the decoded tone matches a synthetic one to 24-bit precision
    // up to its phase, so compare levels precisely.
    let (_, level) = dominant_tone(&tone, 990.0, 1010.0);
    assert!((level + 20.0).abs() < 0.01, "FLAC level {level}");
}

#[test]
fn systemd_notifications_ready_watchdog_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let d = Daemon::start_env(
        &["--source", "tone"],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !(seen.iter().any(|m: &String| m.contains("READY=1"))
            && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3)
    {
        let n = sock.recv(&mut buf).expect("no notification");
        seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
    assert!(
        seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3,
        "{seen:?}"
    );
    let status = d.terminate().expect("exit");
    assert!(status.success());
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
        if stopping {
            break;
        }
    }
    assert!(stopping, "no STOPPING=1");
}
