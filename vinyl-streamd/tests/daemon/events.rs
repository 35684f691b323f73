//! The page's feeds: `/events` (server-sent levels and status) and
//! `/qr.svg`, spoken to over raw sockets.

use crate::common::*;
use serde_json::Value;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes a looped-file source: 1 s of 1 kHz, -20 dBFS on the left and
/// -26 dBFS on the right, with one full-scale sample on the left at 0.5 s.
fn tone_with_one_spike(path: &Path) {
    write_wav(path, 48_000, |i| {
        let s = (i as f64 * std::f64::consts::TAU * 1000.0 / 48_000.0).sin();
        let left = if i == 24_003 { 1.0 } else { s * 0.1 };
        [left, s * 10f64.powf(-26.0 / 20.0)]
    });
}

/// Opens `/events`: the socket after the head, the head, the first body bytes.
fn open_events(addr: SocketAddr) -> (TcpStream, String, Vec<u8>) {
    open_path(addr, "/events")
}

/// An event as read: when it was complete, its name and its JSON data.
struct Event {
    at: Instant,
    name: String,
    data: Value,
}

/// Reads events for `d`, each stamped with when its end arrived.
fn read_events(s: &mut TcpStream, mut buf: Vec<u8>, d: Duration) -> Vec<Event> {
    let deadline = Instant::now() + d;
    let mut events = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let text = String::from_utf8(buf.drain(..end + 2).collect()).unwrap();
            let field = |f: &str| text.lines().find_map(|l| l.strip_prefix(f));
            if let (Some(name), Some(data)) = (field("event: "), field("data: ")) {
                events.push(Event {
                    at: Instant::now(),
                    name: name.to_string(),
                    data: serde_json::from_str(data).unwrap(),
                });
            }
        }
        let n = s.read(&mut chunk).expect("events read");
        assert!(n > 0, "events closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    events
}

#[test]
fn events_bring_levels_25_times_a_second_with_every_peak() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("spike.wav");
    tone_with_one_spike(&wav);
    let d = Daemon::start(&["--source", "file", "--path", wav.to_str().unwrap()]);
    let (mut s, head, body) = open_events(d.addr);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let events = read_events(&mut s, body, Duration::from_secs(5));

    // A status event first (the same JSON as /status), then one a second.
    assert_eq!(events[0].name, "status");
    let opus = &events[0].data["streams"][0];
    assert_eq!(opus["path"], "/stream.opus");
    assert_eq!(opus["content_type"], "audio/ogg");
    assert_eq!(opus["urls"][0], d.url("/stream.opus"));
    assert_eq!(opus["urls"], events[0].data["addresses"]);
    let paths: Vec<&str> = events[0].data["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/stream.opus", "/stream.mp3"],
        "FLAC is off, MP3 on"
    );
    let statuses = events.iter().filter(|e| e.name == "status").count();
    assert!(
        (4..=7).contains(&statuses),
        "{statuses} status events in 5 s"
    );

    let levels: Vec<&Event> = events.iter().filter(|e| e.name == "levels").collect();
    let rate = levels.len() as f64 / 5.0;
    assert!(
        (20.0..=27.0).contains(&rate),
        "{rate} levels events a second"
    );

    // From the first event with the file's audio on: every event carries
    // the frames since the one before; the left channel's single-sample
    // spike at 0 dBFS shows in exactly one event per loop of the file.
    let db = |e: &Event, key: &str, ch: usize| e.data[key][ch].as_f64().unwrap();
    let start = levels
        .iter()
        .position(|e| db(e, "peak_dbfs", 1) > -40.0)
        .expect("the file never played");
    let mut spikes = Vec::new();
    for e in &levels[start..] {
        if e.data["frames"] == 0 {
            continue;
        }
        if db(e, "peak_dbfs", 0) >= -0.1 {
            spikes.push(e.at);
            continue;
        }
        assert!((db(e, "peak_dbfs", 0) + 20.0).abs() < 0.1, "{}", e.data);
        assert!((db(e, "peak_dbfs", 1) + 26.0).abs() < 0.1, "{}", e.data);
        assert!((db(e, "rms_dbfs", 0) + 23.0).abs() < 0.2, "{}", e.data);
    }
    assert!(spikes.len() >= 3, "{} spikes seen in 5 s", spikes.len());
    for pair in spikes.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap > Duration::from_millis(700) && gap < Duration::from_millis(1300),
            "spikes {gap:?} apart: one was missed or seen twice"
        );
    }
}

#[test]
fn events_are_connections_but_not_listeners_and_do_not_delay_sigterm() {
    let d = Daemon::start(&[
        "--source",
        "tone",
        "--max-connections",
        "1",
        "--max-per-address",
        "3",
    ]);
    let mut open: Vec<TcpStream> = (0..2).map(|_| open_events(d.addr).0).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.status()["listeners"], 0);
    // Event streams hold no listener slot: the only one is still free ...
    let (stream, _) = open_stream(d.addr);
    // ... but they are this address's connections: a fourth one gets 503.
    let (code, _, _) = split_response(&raw_request(
        d.addr,
        b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    assert_eq!(code, 503);
    open.push(stream);
    let t = Instant::now();
    let status = d.terminate().expect("daemon did not exit within 5 s");
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "exit took {:?}",
        t.elapsed()
    );
    drop(open);
}

#[test]
fn qr_code_of_known_stream_urls_only() {
    let d = Daemon::start(&["--source", "tone"]);
    let get = |request: String| split_response(&raw_request(d.addr, request.as_bytes()));
    let with_host = |path: &str, host: &str| {
        get(format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ))
    };
    let (code, head, svg) = with_host("/qr.svg?path=/stream.opus", "vinyl.local:8000");
    assert_eq!(code, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: image/svg+xml")
    );
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    let (code, _, page_svg) = with_host("/qr.svg?path=%2F", "[::1]:8000");
    assert_eq!(code, 200);
    assert_ne!(page_svg, svg.as_bytes(), "another URL, another code");

    // FLAC is off here; other paths are not streams.
    for path in ["/stream.flac", "/etc/passwd", "/stream.opus/../x", ""] {
        let (code, _, _) = with_host(&format!("/qr.svg?path={path}"), "vinyl.local");
        assert_eq!(code, 400, "{path}");
    }
    let (code, _, _) = with_host("/qr.svg", "vinyl.local");
    assert_eq!(code, 400);
    // No Host, or one that is not a host.
    let (code, _, _) = get("GET /qr.svg?path=/stream.opus HTTP/1.0\r\n\r\n".into());
    assert_eq!(code, 400);
    for host in ["evil.example/x", "user@vinyl.local", "vinyl local"] {
        let (code, _, _) = with_host("/qr.svg?path=/stream.opus", host);
        assert_eq!(code, 400, "{host}");
    }
    if !have("zbarimg") {
        return;
    }
    // An independent decoder reads the URL back.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("qr.svg");
    std::fs::write(&file, &svg).unwrap();
    let out = std::process::Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "http://vinyl.local:8000/stream.opus",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The device's self-updater record shows in `/status` (and so on the
/// page) as `update`, re-read on each request; without one it is null.
#[test]
fn status_carries_the_self_updaters_last_check() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("spike.wav");
    tone_with_one_spike(&wav);
    let record = dir.path().join("state.json");
    let d = Daemon::start(&[
        "--source",
        "file",
        "--path",
        wav.to_str().unwrap(),
        "--update-state",
        record.to_str().unwrap(),
    ]);
    assert_eq!(d.status()["update"], Value::Null, "no record yet");
    std::fs::write(
        &record,
        r#"{"last-check": "2026-12-04T19:40:00Z", "result": "refused", "message": "for vinyl-rpi3", "offered": "2.0.0"}"#,
    )
    .unwrap();
    let update = d.status()["update"].clone();
    assert_eq!(update["result"], "refused", "{update}");
    assert_eq!(update["offered"], "2.0.0");
    assert_eq!(update["last-check"], "2026-12-04T19:40:00Z");
}
