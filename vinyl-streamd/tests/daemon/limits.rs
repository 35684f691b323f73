//! Connection limits under a flood: one host holding thousands of idle
//! connections must not lock out other listeners, the page or monitoring.

use crate::common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Connections the flooding host keeps open.
const FLOOD: usize = 2100;

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(from.into(), 0).into()).unwrap();
    sock.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect from {from} to {to}: {e}"));
    sock.into()
}

/// The daemon's IPv4 listening address, from its log.
fn ipv4_address(d: &Daemon) -> SocketAddr {
    let mut found = None;
    assert!(wait_until(Duration::from_secs(5), || {
        found = d.log().iter().find_map(|l| {
            let a: SocketAddr = l
                .split("listening on http://")
                .nth(1)?
                .trim_end_matches('/')
                .parse()
                .ok()?;
            a.is_ipv4().then_some(a)
        });
        found.is_some()
    }));
    found.unwrap()
}

/// What the flooding host saw.
#[derive(Debug, Default)]
struct FloodStats {
    /// Connections established.
    opened: usize,
    /// Connections the daemon answered 503.
    refused: usize,
    /// Connections the daemon closed without an answer (header timeout).
    closed: usize,
    /// Connection attempts that failed (backlog full, out of ports).
    failed: usize,
    /// Connections open when the flood stopped.
    open_at_end: usize,
}

/// Keeps `n` idle connections from 127.0.0.1 open to `to` until `stop`:
/// every 500 ms, the ones the daemon refused or closed are replaced.
fn flood(to: SocketAddr, n: usize, stop: Arc<AtomicBool>) -> FloodStats {
    let mut stats = FloodStats::default();
    let mut open: Vec<TcpStream> = Vec::with_capacity(n);
    loop {
        while open.len() < n {
            match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                Ok(s) => {
                    s.set_nonblocking(true).unwrap();
                    open.push(s);
                    stats.opened += 1;
                }
                Err(_) => {
                    stats.failed += 1;
                    break;
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        open.retain_mut(|s| {
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                Ok(k) if k > 0 => {
                    assert!(
                        buf.starts_with(b"HTTP/1.1 503"),
                        "{:?}",
                        String::from_utf8_lossy(&buf[..k])
                    );
                    stats.refused += 1;
                    false
                }
                _ => {
                    stats.closed += 1;
                    false
                }
            }
        });
    }
    stats.open_at_end = open.len();
    stats
}

/// A request from `from`; status code and seconds until the whole answer.
fn get_from(from: Ipv4Addr, to: SocketAddr, path: &str) -> (u16, f64) {
    let start = Instant::now();
    let mut s = connect_from(from, to);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    (split_response(&resp).0, start.elapsed().as_secs_f64())
}

#[test]
fn idle_flood_from_one_address_leaves_others_served() {
    if !have("ffmpeg") {
        return;
    }
    // The flood's sockets plus ffmpeg, /status clients and the harness.
    let soft = rlimit::increase_nofile_limit(4 * FLOOD as u64).unwrap();
    let low = (soft < FLOOD as u64 + 200)
        .then(|| format!("the open-file hard limit allows only {soft} (raise it with ulimit -Hn)"));
    if !test_support::require(&test_support::current_test(), low) {
        return;
    }
    let d = Daemon::start(&[
        "--source",
        "tone",
        "--tone-dbfs",
        "-6",
        "--listen",
        "127.0.0.1:0",
    ]);
    let v4 = ipv4_address(&d);

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = std::thread::spawn({
        let stop = stop.clone();
        move || flood(v4, FLOOD, stop)
    });
    // Let the first wave land: the daemon has seen the flooding host's cap.
    assert!(
        wait_until(Duration::from_secs(20), || d
            .metric("vinyl_http_refused_total")
            >= (FLOOD - 32) as f64),
        "the flood never reached the daemon"
    );

    // The flooding host itself is at its cap: one more gets 503.
    let (code, _) = get_from(Ipv4Addr::LOCALHOST, v4, "/stream.opus");
    assert_eq!(code, 503, "a 2101st connection from the flooding host");

    // Monitoring from another address.
    let status_from = Ipv4Addr::new(127, 0, 0, 3);
    let (code, status_s) = get_from(status_from, v4, "/status");
    assert_eq!(code, 200, "/status during the flood");
    let (code, metrics_s) = get_from(status_from, v4, "/metrics");
    assert_eq!(code, 200, "/metrics during the flood");

    // A new listener from another address gets the stream, in real time.
    let start = Instant::now();
    let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 2), v4);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /stream.opus HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let n = s.read(&mut buf).unwrap();
    let first_byte_s = start.elapsed().as_secs_f64();
    assert!(n > 0, "stream closed");
    let mut resp = buf[..n].to_vec();
    while !resp.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed before its head");
        resp.extend_from_slice(&buf[..n]);
    }
    let (code, head, body) = split_response(&resp);
    assert_eq!(code, 200, "{head}");
    let bytes = read_for(&mut s, body, Duration::from_secs(4));
    let listened_s = start.elapsed().as_secs_f64();
    let (code, status_late_s) = get_from(status_from, v4, "/status");
    assert_eq!(code, 200, "/status late in the flood");

    stop.store(true, Ordering::Relaxed);
    let stats = flooder.join().unwrap();
    let refused_total = d.metric("vinyl_http_refused_total");
    drop(s);

    let pcm = left(&decode_bytes(bytes));
    let audio_s = pcm.len() as f64 / 48_000.0;
    println!(
        "flood from 127.0.0.1: {} connections opened, {} answered 503, {} closed unanswered, \
         {} attempts failed, {} open at the end; daemon refused {refused_total} in all",
        stats.opened, stats.refused, stats.closed, stats.failed, stats.open_at_end
    );
    println!(
        "listener from 127.0.0.2: first response byte after {:.1} ms, {audio_s:.2} s of audio in {listened_s:.2} s; \
         /status from 127.0.0.3 in {:.1} ms (again {:.1} ms later), /metrics in {:.1} ms",
        first_byte_s * 1000.0,
        status_s * 1000.0,
        status_late_s * 1000.0,
        metrics_s * 1000.0
    );
    assert!(stats.opened >= FLOOD, "{stats:?}");
    assert!(stats.refused >= FLOOD - 32, "{stats:?}");
    assert!(audio_s > 3.4, "only {audio_s} s of audio in {listened_s} s");
    assert_tone(&pcm[48_000..2 * 48_000], -6.0, "listener during the flood");
    assert!(first_byte_s < 1.0, "first byte after {first_byte_s} s");
    assert!(status_s < 1.0 && status_late_s < 1.0);
}

#[test]
fn stream_slots_full_leaves_page_and_monitoring_working() {
    let d = Daemon::start(&["--source", "tone", "--max-connections", "2"]);
    let a = open_stream(d.addr);
    let _b = open_stream(d.addr);
    // A third listener is refused ...
    assert_eq!(http_get(d.addr, "/stream.opus").0, 503);
    // ... while the page, status and metrics have slots of their own.
    for path in ["/", "/status", "/metrics"] {
        assert_eq!(http_get(d.addr, path).0, 200, "{path}");
    }
    assert!(d.metric("vinyl_http_refused_total") >= 1.0);
    // Idle connections (no request yet) take no stream slot either.
    let _idle: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(d.addr).unwrap())
        .collect();
    drop(a);
    assert!(wait_until(
        Duration::from_secs(5),
        || d.status()["listeners"] == 1
    ));
    let _c = open_stream(d.addr);
}

#[test]
fn one_address_is_capped_others_are_not() {
    let d = Daemon::start(&["--source", "tone", "--max-per-address", "3"]);
    // ::1 holds three idle connections: its fourth is answered 503 ...
    let _idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(d.addr).unwrap())
        .collect();
    let resp = raw_request(d.addr, b"GET /status HTTP/1.0\r\n\r\n");
    assert!(
        resp.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // ... and once one closes, it gets in again.
    drop(_idle);
    assert!(wait_until(Duration::from_secs(5), || {
        raw_request(d.addr, b"GET /status HTTP/1.0\r\n\r\n").starts_with(b"HTTP/1.0 200")
    }));
}
