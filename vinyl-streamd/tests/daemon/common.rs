//! Helpers shared by the daemon tests: starting the real binary, talking
//! raw HTTP to it, decoding with ffmpeg and measuring tones.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether `program` can run. When it cannot: panics under CI, otherwise
/// prints why the test is skipped.
pub fn have(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    let missing = (!found).then(|| format!("{program} is not installed (apt-get install it)"));
    test_support::require(&test_support::current_test(), missing)
}

/// A running vinyl-streamd, killed on drop.
pub struct Daemon {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts the daemon on an ephemeral [::1] port with extra `args`.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_env(args, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vinyl-streamd"))
            .args(["--listen", "[::1]:0", "--log", "info"])
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vinyl-streamd");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            log.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("listening on http://").nth(1) {
                addr = Some(rest.trim_end_matches('/').parse().unwrap());
                break;
            }
        }
        let addr =
            addr.unwrap_or_else(|| panic!("daemon did not start: {:?}", log.lock().unwrap()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Daemon { child, addr, log }
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// `http://[::1]:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self) -> Option<std::process::ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A JSON field of `/status`.
    pub fn status(&self) -> serde_json::Value {
        let (code, _, body) = http_get(self.addr, "/status");
        assert_eq!(code, 200);
        serde_json::from_slice(&body).unwrap()
    }

    /// A value from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, _, body) = http_get(self.addr, "/metrics");
        let text = String::from_utf8(body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in {text}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw `request` bytes; returns everything the server answered
/// before closing (or 5 s passing).
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// A one-shot HTTP/1.0 GET: status code, head, body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let resp = raw_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    split_response(&resp)
}

/// Splits a response into status code, head and body.
pub fn split_response(resp: &[u8]) -> (u16, String, Vec<u8>) {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(resp)));
    let head = String::from_utf8_lossy(&resp[..end]).to_string();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head, resp[end + 4..].to_vec())
}

/// GETs `path` over HTTP/1.0 (so the body is not chunked), asserts a 200,
/// and returns the socket positioned after the head, the head, and the
/// first body bytes.
pub fn open_path(addr: SocketAddr, path: &str) -> (TcpStream, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "{path} closed before its head");
        buf.extend_from_slice(&chunk[..n]);
    }
    let (code, head, body) = split_response(&buf);
    assert_eq!(code, 200, "{path}: {head}");
    (s, head, body)
}

/// Opens `/stream.opus`; returns the socket positioned at the first body
/// byte, plus that first body part.
pub fn open_stream(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let (s, head, body) = open_path(addr, "/stream.opus");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: audio/ogg"),
        "{head}"
    );
    (s, body)
}

/// Reads from the stream socket for `d` of wall time.
pub fn read_for(s: &mut TcpStream, mut body: Vec<u8>, d: Duration) -> Vec<u8> {
    let deadline = Instant::now() + d;
    let mut chunk = [0u8; 8192];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("stream read: {e}"),
        }
    }
    body
}

/// Records `/stream.opus` for `d`.
pub fn record(addr: SocketAddr, d: Duration) -> Vec<u8> {
    let (mut s, body) = open_stream(addr);
    read_for(&mut s, body, d)
}

/// Runs `ffmpeg` (killed after `limit`) with `input_args` and decodes to
/// 48 kHz stereo f32; fails the test if ffmpeg reports any error.
pub fn ffmpeg_decode(input_args: &[&str], stdin: Option<Vec<u8>>, limit: Duration) -> Vec<f32> {
    let mut child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error"])
        .args(input_args)
        .args(["-f", "f32le", "-ac", "2", "-ar", "48000", "-"])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg");
    if let Some(data) = stdin {
        let mut w = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let bytes = reader.join().unwrap();
    let errors = err_reader.join().unwrap();
    assert!(errors.trim().is_empty(), "ffmpeg reported: {errors}");
    assert!(
        status.is_none_or(|s| s.success()),
        "ffmpeg failed: {status:?}"
    );
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Decodes a recorded Ogg Opus byte stream.
pub fn decode_bytes(ogg: Vec<u8>) -> Vec<f32> {
    ffmpeg_decode(
        &["-f", "ogg", "-i", "pipe:0"],
        Some(ogg),
        Duration::from_secs(30),
    )
}

/// Decodes the first three seconds of a stream URL and checks ffmpeg
/// delivered (nearly) all of them.
pub fn decode_three_seconds(url: &str) -> Vec<f32> {
    let pcm = ffmpeg_decode(&["-i", url, "-t", "3"], None, Duration::from_secs(15));
    assert!(
        pcm.len() >= 2 * 48_000 * 29 / 10,
        "only {} samples",
        pcm.len()
    );
    pcm
}

/// Left channel of interleaved stereo.
pub fn left(stereo: &[f32]) -> Vec<f32> {
    stereo.iter().step_by(2).copied().collect()
}

/// Amplitude of the `freq` component of `x` (Goertzel).
pub fn goertzel(x: &[f32], rate: f64, freq: f64) -> f64 {
    let c = 2.0 * (std::f64::consts::TAU * freq / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - c * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

/// The strongest frequency between `lo` and `hi` Hz and its level in dBFS
/// (peak amplitude), from a coarse then a fine Goertzel scan.
pub fn dominant_tone(x: &[f32], lo: f64, hi: f64) -> (f64, f64) {
    let best = |from: f64, to: f64, step: f64| {
        let mut f = from;
        let mut best = (from, 0.0);
        while f <= to {
            let a = goertzel(x, 48_000.0, f);
            if a > best.1 {
                best = (f, a);
            }
            f += step;
        }
        best
    };
    let (coarse, _) = best(lo, hi, 2.0);
    let (freq, amp) = best(coarse - 2.0, coarse + 2.0, 0.05);
    (freq, 20.0 * amp.log10())
}

/// Asserts that `x` holds a 1 kHz tone at `dbfs` (±5 Hz, ±1 dB).
pub fn assert_tone(x: &[f32], dbfs: f64, what: &str) {
    let (freq, level) = dominant_tone(x, 500.0, 2000.0);
    assert!((freq - 1000.0).abs() <= 5.0, "{what}: tone at {freq} Hz");
    assert!(
        (level - dbfs).abs() <= 1.0,
        "{what}: level {level} dBFS, expected {dbfs}"
    );
}

/// RMS of `x` in dBFS.
pub fn rms_db(x: &[f32]) -> f64 {
    let sum: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    10.0 * (sum / x.len().max(1) as f64).max(1e-12).log10()
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Writes `secs` of a 1 kHz tone (s16 stereo 48 kHz) into `fifo`, in real time.
pub fn feed_fifo(fifo: &std::path::Path, secs: f64) {
    let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    let start = Instant::now();
    let amp = 0.5 * 32767.0;
    let total = (secs * 48_000.0) as usize;
    for block in 0..total / 480 {
        let mut buf = Vec::with_capacity(480 * 4);
        for i in block * 480..(block + 1) * 480 {
            let s = (amp * (i as f64 * std::f64::consts::TAU * 1000.0 / 48_000.0).sin()) as i16;
            buf.extend_from_slice(&s.to_le_bytes());
            buf.extend_from_slice(&s.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
        let due = Duration::from_millis(10 * (block as u64 + 1));
        std::thread::sleep(due.saturating_sub(start.elapsed()));
    }
}

/// Writes a 48 kHz 16-bit stereo WAV of `frames` frames; `frame(i)` gives
/// frame `i`'s left and right samples (full scale = 1.0).
pub fn write_wav(path: &std::path::Path, frames: usize, frame: impl Fn(usize) -> [f64; 2]) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames {
        for v in frame(i) {
            w.write_sample((v * 32767.0).round() as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}
