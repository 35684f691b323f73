//! Benchmarks that print figures: encoder realtime factor, capture-to-socket
//! latency, and the cost of many concurrent listeners.
//!
//! `cargo bench -p vinyl-streamd [-- encoder|latency|listeners]`;
//! `VINYL_BENCH_LISTENERS` sets the listener count (default 1000);
//! `VINYL_BENCH_ARGS` adds daemon flags, e.g. `--packets-per-page 2`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vinyl_streamd::config::Config;
use vinyl_streamd::ogg::{ParseError, parse_page};

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wants("encoder") {
        encoder();
    }
    if wants("latency") {
        latency();
    }
    if wants("listeners") {
        let n = std::env::var("VINYL_BENCH_LISTENERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        listeners(n);
    }
}

/// A music-like test signal: a few partials plus a little noise, stereo.
fn signal(rate: u32, secs: usize) -> Vec<f32> {
    let mut seed = 0x1234_5678u32;
    (0..rate as usize * secs)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 8) as f32 / (1 << 24) as f32 - 0.5;
            let s = 0.2 * (t * 220.0 * std::f32::consts::TAU).sin()
                + 0.1 * (t * 1330.0 * std::f32::consts::TAU).sin()
                + 0.05 * (t * 5100.0 * std::f32::consts::TAU).sin()
                + 0.02 * noise;
            [s, 0.9 * s]
        })
        .collect()
}

fn encoder() {
    let secs = 30;
    let input = signal(48_000, secs);
    let mut enc = vinyl_streamd::opus::Encoder::new(160_000, 10).unwrap();
    let start = Instant::now();
    let mut bytes = 0;
    for frame in input.chunks_exact(1920) {
        bytes += enc.encode(frame).unwrap().len();
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "encoder: {secs} s of 48 kHz stereo at 160 kbit/s, complexity 10 in {took:.2} s: \
         realtime factor {:.0}x on one core ({:.1}% of a core), {:.0} kbit/s actual",
        secs as f64 / took,
        100.0 * took / secs as f64,
        bytes as f64 * 8.0 / secs as f64 / 1000.0
    );
    let mut flac = vinyl_streamd::flac::FlacEncoder::new();
    let start = Instant::now();
    let bytes: usize = input
        .chunks(1920)
        .flat_map(|c| flac.push(c))
        .map(|f| f.bytes.len())
        .sum();
    let took = start.elapsed().as_secs_f64();
    println!(
        "flac: {secs} s of 48 kHz stereo 24-bit in {took:.2} s: realtime factor {:.0}x, {:.0} kbit/s",
        secs as f64 / took,
        bytes as f64 * 8.0 / secs as f64 / 1000.0
    );
    for kbps in [192, 320, 128] {
        let mut mp3 = vinyl_streamd::mp3::Mp3Encoder::new(kbps).unwrap();
        let start = Instant::now();
        let (mut bytes, mut frames) = (0, 0);
        for c in input.chunks(1920) {
            let (out, n) = mp3.push(c).unwrap();
            bytes += out.len();
            frames += n;
        }
        let took = start.elapsed().as_secs_f64();
        println!(
            "mp3: {secs} s of 48 kHz stereo at {kbps} kbit/s CBR ({}) in {took:.2} s: \
             realtime factor {:.0}x on one core ({:.1}% of a core), {frames} frames, {:.0} kbit/s",
            vinyl_streamd::mp3::version(),
            secs as f64 / took,
            100.0 * took / secs as f64,
            bytes as f64 * 8.0 / secs as f64 / 1000.0
        );
    }
    let input = signal(44_100, secs);
    let mut rs = vinyl_streamd::resample::Resampler::new(44_100).unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    for chunk in input.chunks(882) {
        rs.process(chunk, &mut out).unwrap();
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "resampler: {secs} s of 44.1 kHz stereo to 48 kHz in {took:.3} s: realtime factor {:.0}x",
        secs as f64 / took
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Time from a sample entering the encoder input to the page holding it
/// arriving through a loopback socket at a listener, default settings.
fn latency() {
    let config = Config::default();
    let pipeline = vinyl_streamd::start_pipeline(&config).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("[::1]:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = vinyl_streamd::http::App::new(&pipeline, &config.http, vec![addr]);
    runtime.spawn(vinyl_streamd::http::serve(listener, app));

    // Feed 10 ms chunks in real time from the start, so granule positions
    // map one-to-one to input samples (no filler frames).
    let secs = 12;
    let input = signal(48_000, secs);
    let tx = pipeline.input.clone();
    let feeder = std::thread::spawn(move || {
        let start = Instant::now();
        let mut pushed = Vec::new();
        for (i, chunk) in input.chunks_exact(960).enumerate() {
            std::thread::sleep(
                (start + Duration::from_millis(10 * i as u64))
                    .saturating_duration_since(Instant::now()),
            );
            pushed.push(Instant::now());
            tx.send(chunk.to_vec()).unwrap();
        }
        pushed
    });
    std::thread::sleep(Duration::from_secs(1));
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.write_all(b"GET /stream.opus HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut arrivals = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(secs as u64 - 2);
    let mut head_done = false;
    while Instant::now() < end {
        let n = sock.read(&mut chunk).unwrap();
        let now = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        if !head_done {
            let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            buf.drain(..p + 4);
            head_done = true;
        }
        loop {
            match parse_page(&buf) {
                Ok((page, len)) => {
                    if page.granule > 0 {
                        arrivals.push((page.granule, now));
                    }
                    buf.drain(..len);
                }
                Err(ParseError::Incomplete) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    let pushed = feeder.join().unwrap();
    let fillers = pipeline.status.filler_frames.load(Ordering::Relaxed);
    assert_eq!(
        fillers, 0,
        "filler frames would break the sample-to-page mapping"
    );
    let ms = |sample: u64, at: Instant| {
        at.duration_since(pushed[(sample / 480) as usize])
            .as_secs_f64()
            * 1000.0
    };
    let mut first: Vec<f64> = arrivals.iter().map(|&(g, at)| ms(g - 960, at)).collect();
    let mut last: Vec<f64> = arrivals.iter().map(|&(g, at)| ms(g - 1, at)).collect();
    first.sort_by(f64::total_cmp);
    last.sort_by(f64::total_cmp);
    println!(
        "latency (sample into encoder -> page read from loopback socket, {} pages): \
         oldest sample in page p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; newest sample p50 {:.1} ms, p99 {:.1} ms",
        first.len(),
        percentile(&first, 0.5),
        percentile(&first, 0.99),
        first[first.len() - 1],
        percentile(&last, 0.5),
        percentile(&last, 0.99),
    );
}

/// Total CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; fields[0] is field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// A `kB` line of /proc/PID/status, in MiB.
fn proc_mib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap();
    kb / 1024.0
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap()
}

/// `n` concurrent listeners on loopback against the real daemon binary.
fn listeners(n: usize) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vinyl-streamd"))
        .args([
            "--source",
            "tone",
            "--listen",
            "[::1]:0",
            "--log",
            "warn,vinyl_streamd=info",
        ])
        .args(["--max-connections", &(n + 100).to_string()])
        .args(["--max-per-address", &(n + 100).to_string()])
        .args(
            std::env::var("VINYL_BENCH_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("listening on http://")
                .nth(1)
                .map(|a| a.trim_end_matches('/').parse().unwrap())
        })
        .unwrap();
    std::thread::spawn(move || lines.for_each(drop));

    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = proc_mib(pid, "VmRSS:");
    let c0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(3));
    let idle_cpu = (cpu_seconds(pid) - c0) / 3.0;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let received: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for i in 0..n {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /stream.opus HTTP/1.0\r\n\r\n").await.unwrap();
            let received = received.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    received[i].fetch_add(k as u64, Ordering::Relaxed);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while (metric(addr, "vinyl_listeners") as usize) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(metric(addr, "vinyl_listeners") as usize, n, "not all listeners connected");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before: Vec<u64> = received.iter().map(|r| r.load(Ordering::Relaxed)).collect();
        let c0 = cpu_seconds(pid);
        let window = 10.0;
        tokio::time::sleep(Duration::from_secs_f64(window)).await;
        let cpu = (cpu_seconds(pid) - c0) / window;
        let rates: Vec<f64> = received
            .iter()
            .zip(&before)
            .map(|(r, b)| (r.load(Ordering::Relaxed) - b) as f64 * 8.0 / window / 1000.0)
            .collect();
        let min_rate = rates.iter().copied().fold(f64::MAX, f64::min);
        let avg_rate = rates.iter().sum::<f64>() / n as f64;
        let dropped = metric(addr, "vinyl_listeners_dropped_total");
        println!(
            "listeners: {n} concurrent on loopback for {window} s: daemon CPU {:.1}% of one core \
             ({:.1}% idle with none, {:.1} us CPU per listener-second); RSS {:.1} MiB (peak {:.1}, {:.1} idle); \
             per-listener rate avg {avg_rate:.0} kbit/s, min {min_rate:.0} kbit/s; {dropped} dropped",
            cpu * 100.0,
            idle_cpu * 100.0,
            (cpu - idle_cpu) / n as f64 * 1e6,
            proc_mib(pid, "VmRSS:"),
            proc_mib(pid, "VmHWM:"),
            idle_rss,
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}
