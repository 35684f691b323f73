//! vinyl-streamd: captures a turntable from ALSA and streams it as Ogg Opus
//! over HTTP, keeping one logical stream alive through device loss.
//!
//! Pure logic (Ogg framing, levels, PCM conversion, configuration) lives in
//! modules of its own; threads and sockets are wired together in [`run`].

pub mod capture;
pub mod cli;
pub mod config;
pub mod encode;
pub mod flac;
pub mod flacframe;
pub mod http;
pub mod hub;
pub mod icecast;
pub mod level;
pub mod mp3;
pub mod mp3frame;
pub mod ogg;
pub mod oggopus;
pub mod opus;
pub mod page;
pub mod pcm;
pub mod resample;
pub mod source;
pub mod status;
pub mod systemd;
pub mod timeline;

use anyhow::Context;
use config::Config;
use hub::Hub;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The encoding half of the pipeline: encoder thread, hub and status.
pub struct Pipeline {
    /// Page feed for listeners.
    pub hub: Arc<Hub>,
    /// Shared state.
    pub status: Arc<status::Status>,
    /// Send 48 kHz interleaved stereo here.
    pub input: std::sync::mpsc::SyncSender<Vec<f32>>,
    /// FLAC frame feed, when the lossless stream is on.
    pub flac: Option<Arc<Hub>>,
    /// MP3 frame feed, when the MP3 stream is on.
    pub mp3: Option<Arc<Hub>>,
}

/// Starts the encoder thread with `config`'s encoder and silence settings.
pub fn start_pipeline(config: &Config) -> anyhow::Result<Pipeline> {
    let encoder = opus::Encoder::new(
        config.encoder.bitrate_kbps * 1000,
        config.encoder.complexity,
    )?;
    let head = oggopus::opus_head(2, encoder.pre_skip(), config.source.rate);
    let vendor = format!(
        "vinyl-streamd {} ({})",
        env!("CARGO_PKG_VERSION"),
        opus::version()
    );
    let tags = oggopus::opus_tags(&vendor, &[("TITLE", &config.http.name)]);
    // A serial that differs between runs keeps a restarted daemon's stream distinct.
    let serial = std::process::id()
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos());
    let muxer = oggopus::Muxer::new(serial, &head, &tags, config.encoder.packets_per_page);
    let page_ms = 20 * config.encoder.packets_per_page as u64;
    let hub = Arc::new(Hub::new(
        muxer.headers().to_vec().into(),
        timeline::Timeline::Ogg { header_pages: 2 },
        (config.http.client_queue_ms / page_ms) as usize,
        config.http.burst_ms.div_ceil(page_ms) as usize,
    ));
    let status = Arc::new(status::Status::default());
    let (input, rx) = std::sync::mpsc::sync_channel(64);
    let (flac_hub, flac_tx) = match config.encoder.flac {
        true => {
            // One FLAC frame is ~85 ms.
            let (hub, tx) = flac::start(
                (config.http.client_queue_ms / 85).max(2) as usize,
                config.http.burst_ms.div_ceil(85) as usize,
            );
            (Some(hub), Some(tx))
        }
        false => (None, None),
    };
    let (mp3_hub, mp3_input) = match config.encoder.mp3_kbps {
        0 => (None, None),
        kbps => {
            // One MP3 frame is 24 ms; a hub item holds at least one.
            let queue = (config.http.client_queue_ms / 24).max(2) as usize;
            let burst = config.http.burst_ms.div_ceil(24) as usize;
            let (hub, input) = mp3::start(kbps, queue, burst, status.clone())?;
            (Some(hub), Some(input))
        }
    };
    let encode = encode::EncodeLoop {
        encoder,
        muxer,
        hub: hub.clone(),
        status: status.clone(),
        silence: level::SilenceDetector::new(
            config.silence.threshold_db,
            Duration::from_secs_f32(config.silence.hold_s),
        ),
        hooks: encode::Hooks {
            on_silence: config.silence.on_silence.clone(),
            on_sound: config.silence.on_sound.clone(),
        },
        flac: flac_tx,
        mp3: mp3_input,
    };
    std::thread::Builder::new()
        .name("encoder".into())
        .spawn(move || encode.run(rx))?;
    Ok(Pipeline {
        hub,
        status,
        input,
        flac: flac_hub,
        mp3: mp3_hub,
    })
}

/// Binds a listening socket; IPv6 wildcard sockets also accept IPv4 where
/// the host allows it, and fall back to IPv4 on hosts without IPv6.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = match Socket::new(Domain::for_address(addr), Type::STREAM, None) {
        Err(e) if addr.is_ipv6() && addr.ip().is_unspecified() => {
            tracing::warn!("no IPv6 ({e}); listening on IPv4 only");
            return bind(SocketAddr::new(
                std::net::Ipv4Addr::UNSPECIFIED.into(),
                addr.port(),
            ));
        }
        r => r?,
    };
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket
        .bind(&addr.into())
        .with_context(|| format!("bind {addr}"))?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    // Each listener is a socket; the default soft limit (1024) is too low.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-files limit: {e}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))?;
    // Streaming bodies never end by themselves; don't wait for them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let pipeline = start_pipeline(&config)?;
    let (source, status, input) = (
        config.source.clone(),
        pipeline.status.clone(),
        pipeline.input.clone(),
    );
    std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || capture::run(source, status, input))?;

    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for addr in &config.http.listen {
        let l = tokio::net::TcpListener::from_std(bind(*addr)?)?;
        let local = l.local_addr()?;
        // Tests and scripts look for this line to learn the port.
        tracing::info!("listening on http://{local}/");
        bound.push(local);
        listeners.push(l);
    }
    let h = &config.http;
    let app = http::App::new(&pipeline, h, bound);
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        tasks.spawn(http::serve(l, app.clone()));
    }
    if let Some(target) = icecast::Target::parse(&config.icecast.url) {
        let format = config.icecast.format;
        let hub = match format {
            config::IcecastFormat::Mp3 => pipeline.mp3.clone().context("MP3 is off")?,
            config::IcecastFormat::Opus => pipeline.hub.clone(),
        };
        let push = icecast::Push {
            target,
            user: config.icecast.user.clone(),
            password: config.icecast.password.clone(),
            name: h.name.clone(),
            description: h.description.clone(),
            max_backoff: Duration::from_secs(config.icecast.max_backoff_s.max(1)),
            content_type: format.content_type(),
        };
        tasks.spawn(icecast::run(push, hub, pipeline.status.clone()));
    }
    tasks.spawn(systemd::watchdog(pipeline.status.clone()));
    systemd::ready();
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    systemd::stopping();
    tasks.abort_all();
    Ok(())
}
