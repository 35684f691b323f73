//! The HTTP server: the stream, a web page, status JSON and metrics.
//! The page's own feeds (events, QR codes) are in [`crate::page`].

use crate::config::HttpConfig;
use crate::hub::Hub;
use crate::status::{Snapshot, Status, StreamInfo};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

type Body = UnsyncBoxBody<Bytes, Infallible>;

const INDEX_HTML: &str = include_str!("index.html");

/// Connections that may hold a non-stream request (the page, `/status`,
/// `/metrics`, ...) at once, on top of `max_connections` stream listeners,
/// so monitoring and the page still work when every stream slot is taken.
pub const OTHER_SLOTS: usize = 64;

/// Shared by every connection.
pub struct App {
    /// The page feed.
    pub hub: Arc<Hub>,
    /// The FLAC frame feed, if enabled.
    pub flac: Option<Arc<Hub>>,
    /// The MP3 frame feed, if enabled.
    pub mp3: Option<Arc<Hub>>,
    /// Daemon state.
    pub status: Arc<Status>,
    /// `icy-name`.
    pub name: String,
    /// `icy-description`.
    pub description: String,
    /// Most simultaneous stream listeners.
    pub max_connections: usize,
    /// Most open connections from one address.
    pub max_per_address: usize,
    /// How long a listener may make no progress before it is dropped.
    pub stall_limit: Duration,
    /// Kernel send buffer per connection, bytes.
    pub send_buffer: usize,
    /// Addresses the server listens on.
    pub listen: Vec<SocketAddr>,
    /// The self-updater's record, if the device has one.
    pub update_state: Option<std::path::PathBuf>,
    /// Stream slots taken (at most `max_connections`).
    streams: AtomicUsize,
    /// Other slots taken (at most [`OTHER_SLOTS`]).
    others: AtomicUsize,
    /// Open connections per client address.
    per_address: Mutex<HashMap<IpAddr, usize>>,
    epoch: Instant,
}

impl App {
    /// Shared state for a server of `pipeline`'s streams, listening on `listen`.
    pub fn new(
        pipeline: &crate::Pipeline,
        config: &HttpConfig,
        listen: Vec<SocketAddr>,
    ) -> Arc<Self> {
        Arc::new(App {
            hub: pipeline.hub.clone(),
            flac: pipeline.flac.clone(),
            mp3: pipeline.mp3.clone(),
            status: pipeline.status.clone(),
            name: config.name.clone(),
            description: config.description.clone(),
            max_connections: config.max_connections,
            max_per_address: config.max_per_address,
            stall_limit: Duration::from_millis(config.client_queue_ms),
            send_buffer: config.send_buffer_kib * 1024,
            listen,
            update_state: Some(config.update_state.clone()).filter(|p| !p.as_os_str().is_empty()),
            streams: AtomicUsize::new(0),
            others: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Counts a new connection from `ip`; `None` when that address already
    /// has `max_per_address` open.
    fn open_from(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut map = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_address {
            return None;
        }
        *n += 1;
        Some(AddressSlot(self.clone(), ip))
    }

    fn pool(&self, slot: u8) -> (&AtomicUsize, usize) {
        match slot {
            STREAM => (&self.streams, self.max_connections),
            _ => (&self.others, OTHER_SLOTS),
        }
    }

    /// Moves `conn` into the pool `slot` (if not there yet); false when
    /// that pool is full, leaving `conn` where it was.
    fn claim(&self, conn: &Conn, slot: u8) -> bool {
        let held = conn.slot.load(Ordering::Relaxed);
        if held == slot {
            return true;
        }
        let (count, limit) = self.pool(slot);
        if count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            return false;
        }
        self.release(conn);
        conn.slot.store(slot, Ordering::Relaxed);
        true
    }

    /// Gives back whatever slot `conn` holds.
    fn release(&self, conn: &Conn) {
        let held = conn.slot.swap(NO_SLOT, Ordering::Relaxed);
        if held != NO_SLOT {
            self.pool(held).0.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One open connection from an address; uncounted on drop.
struct AddressSlot(Arc<App>, IpAddr);

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.0.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// [`Conn::slot`] values: no request yet, a non-stream request, a stream.
const NO_SLOT: u8 = 0;
const OTHER: u8 = 1;
const STREAM: u8 = 2;

/// Per-connection liveness, watched so a listener that stops reading is
/// dropped even though its body stream is no longer polled.
#[derive(Default)]
struct Conn {
    streaming: AtomicBool,
    progress_ms: AtomicU64,
    /// The pool this connection's latest request counts against.
    slot: AtomicU8,
}

/// Accepts connections on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(address) = app.open_from(peer.ip().to_canonical()) else {
            // This address has enough open already; others are unaffected.
            app.status.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "refused: {} connections from this address", app.max_per_address);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(app.send_buffer);
        let app = app.clone();
        tokio::spawn(async move {
            let conn = Arc::new(Conn::default());
            connection(stream, peer, app.clone(), conn.clone()).await;
            app.release(&conn);
            drop(address);
        });
    }
}

/// Serves one connection. It takes a stream or other slot only once a
/// request has arrived (see [`App::claim`]); until then only the 10 s
/// header timeout and the per-address limit bound it.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    conn: Arc<Conn>,
) {
    let svc = {
        let (app, conn) = (app.clone(), conn.clone());
        service_fn(move |req| {
            let (app, conn) = (app.clone(), conn.clone());
            async move { Ok::<_, Infallible>(handle(&app, &conn, peer, req)) }
        })
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        r = served => if let Err(e) = r { tracing::debug!(%peer, "connection: {e}") },
        _ = stalled(&app, &conn, fd) => {
            app.status.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, "dropping listener: not reading for {:?}", app.stall_limit);
        }
    }
}

/// Answers 503 and closes gracefully: FIN first, then drain what the
/// client sent, so it reads the answer instead of a reset.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer =
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if stream.write_all(answer).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// How often a streaming connection's progress is checked.
const STALL_POLL: Duration = Duration::from_millis(200);

/// Completes when the connection streams audio but the client has taken
/// nothing for longer than the stall limit.
///
/// Progress is what the client acknowledges at the TCP level, not what
/// hyper takes from the body: the kernel send buffer (128 KiB with the
/// default 64 KiB setting: over 6 s of Opus) and hyper's write queue would
/// otherwise hide a stalled client for seconds on top of the limit. A
/// client counts as making progress while its acknowledged byte count
/// grows or nothing is waiting for it in the kernel. `fd` stays open as
/// long as this future is polled alongside the connection.
async fn stalled(app: &App, conn: &Conn, fd: std::os::fd::RawFd) {
    let mut acked = None;
    let mut since = app.now_ms();
    loop {
        tokio::time::sleep(STALL_POLL).await;
        let now = app.now_ms();
        if !conn.streaming.load(Ordering::Relaxed) {
            since = now;
            continue;
        }
        match tcp_progress(fd) {
            Some((bytes, queued)) => {
                if acked != Some(bytes) || queued == 0 {
                    acked = Some(bytes);
                    since = now;
                }
            }
            // No TCP_INFO: fall back to when the body last handed a page to hyper.
            None => since = conn.progress_ms.load(Ordering::Relaxed),
        }
        if now.saturating_sub(since) > app.stall_limit.as_millis() as u64 {
            return;
        }
    }
}

/// Bytes of this connection the client has acknowledged, and bytes still
/// in the kernel send queue (unsent or unacknowledged), from `TCP_INFO`
/// and `SIOCOUTQ`.
fn tcp_progress(fd: std::os::fd::RawFd) -> Option<(u64, u32)> {
    // SAFETY: `fd` is an open TCP socket (see `stalled`); both calls only
    // write into the buffers passed, whose sizes are given.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        // tcpi_bytes_acked needs Linux 4.1; older kernels return less.
        let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8;
        if r != 0 || (len as usize) < needed {
            return None;
        }
        let mut queued: libc::c_int = 0;
        if libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) != 0 {
            return None;
        }
        Some((info.tcpi_bytes_acked, queued.max(0) as u32))
    }
}

pub(crate) fn full(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap(),
    );
    r
}

fn handle(
    app: &Arc<App>,
    conn: &Arc<Conn>,
    peer: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let slot = match req.uri().path().starts_with("/stream.") && req.method() == Method::GET {
        true => STREAM,
        false => OTHER,
    };
    if !app.claim(conn, slot) {
        app.status.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, path = req.uri().path(), "refused: all slots taken");
        let mut r = full(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "busy\n");
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let mut resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => {
            full(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML)
        }
        (&Method::GET | &Method::HEAD, path)
            if let Some((_, content_type, hub)) = served(app).find(|(p, _, _)| *p == path) =>
        {
            stream(app, hub, content_type, conn, peer, head)
        }
        (&Method::GET | &Method::HEAD, "/status") => {
            let json = serde_json::to_vec_pretty(&snapshot(app)).expect("status serialises");
            full(StatusCode::OK, "application/json", json)
        }
        (&Method::GET | &Method::HEAD, "/events") => events(app, head),
        (&Method::GET | &Method::HEAD, "/qr.svg") => qr_svg(app, &req),
        (&Method::GET | &Method::HEAD, "/metrics") => full(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            app.status.metrics(),
        ),
        (&Method::OPTIONS, _) => {
            let mut r = full(StatusCode::NO_CONTENT, "text/plain", Bytes::new());
            let h = r.headers_mut();
            h.insert(
                "access-control-allow-methods",
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            h.insert(
                "access-control-allow-headers",
                HeaderValue::from_static("*"),
            );
            r
        }
        (&Method::GET | &Method::HEAD, _) => {
            full(StatusCode::NOT_FOUND, "text/plain", "not found\n")
        }
        _ => {
            let mut r = full(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n",
            );
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            r
        }
    };
    let h = resp.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    resp
}

/// Decrements the listener gauge when a stream body is dropped.
struct ListenerGuard(Arc<Status>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

fn stream(
    app: &Arc<App>,
    hub: &Hub,
    content_type: &'static str,
    conn: &Arc<Conn>,
    peer: SocketAddr,
    head: bool,
) -> Response<Body> {
    let body = if head {
        Full::new(Bytes::new()).boxed_unsync()
    } else {
        let crate::hub::Subscription {
            headers,
            burst,
            live,
            mut rebase,
        } = hub.subscribe();
        // The header and the start burst go out as one write.
        let mut first = bytes::BytesMut::from(&headers[..]);
        for chunk in &burst {
            first.extend_from_slice(&rebase.apply(chunk));
        }
        app.status.listeners.fetch_add(1, Ordering::Relaxed);
        app.status.listeners_total.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%peer, content_type, "listener joined");
        let guard = ListenerGuard(app.status.clone());
        conn.progress_ms.store(app.now_ms(), Ordering::Relaxed);
        conn.streaming.store(true, Ordering::Relaxed);
        let (app, conn) = (app.clone(), conn.clone());
        let live = BroadcastStream::new(live).map_while(move |chunk| {
            let _keep = &guard;
            match chunk {
                Ok(chunk) => {
                    conn.progress_ms.store(app.now_ms(), Ordering::Relaxed);
                    Some(Ok(Frame::data(rebase.apply(&chunk))))
                }
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    conn.streaming.store(false, Ordering::Relaxed);
                    app.status.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, "dropping listener: {n} chunks behind");
                    None
                }
            }
        });
        let pages = tokio_stream::once(Ok(Frame::data(first.freeze()))).chain(live);
        StreamBody::new(pages).boxed_unsync()
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    for (k, v) in [
        ("icy-name", &app.name),
        ("icy-description", &app.description),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    r
}

/// `GET /events`, the page's live feed (levels and status; see
/// [`crate::page::events`]). It is no stream listener: it takes no listener
/// slot, only a connection, and ends with the daemon.
fn events(app: &Arc<App>, head: bool) -> Response<Body> {
    let body = if head {
        Full::new(Bytes::new()).boxed_unsync()
    } else {
        let status_app = app.clone();
        crate::page::events(&app.status, move || {
            serde_json::to_string(&snapshot(&status_app)).expect("status serialises")
        })
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

/// `GET /qr.svg?path=...`: a QR code of a stream's (or the page's) URL.
fn qr_svg(app: &App, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    let streams: Vec<&str> = streams(app).into_iter().map(|(path, _)| path).collect();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    match crate::page::qr_svg(req.uri().query(), host, &streams) {
        Ok(svg) => full(StatusCode::OK, "image/svg+xml", svg),
        Err(why) => full(StatusCode::BAD_REQUEST, "text/plain", format!("{why}\n")),
    }
}

/// The streams this daemon serves: path, content type and hub, the one
/// list both the routes and the listings come from.
fn served(app: &App) -> impl Iterator<Item = (&'static str, &'static str, &Arc<Hub>)> {
    [
        Some(("/stream.opus", "audio/ogg", &app.hub)),
        app.flac.as_ref().map(|h| ("/stream.flac", "audio/flac", h)),
        app.mp3.as_ref().map(|h| ("/stream.mp3", "audio/mpeg", h)),
    ]
    .into_iter()
    .flatten()
}

/// The streams this daemon serves: path and content type.
pub fn streams(app: &App) -> Vec<(&'static str, &'static str)> {
    served(app)
        .map(|(path, content_type, _)| (path, content_type))
        .collect()
}

/// What `/status` and the page's status events report.
pub fn snapshot(app: &App) -> Snapshot {
    let mut snap = app.status.snapshot();
    snap.name = app.name.clone();
    snap.description = app.description.clone();
    snap.addresses = stream_urls(&app.listen, "/stream.opus");
    snap.streams = streams(app)
        .into_iter()
        .map(|(path, content_type)| StreamInfo {
            path,
            content_type,
            urls: stream_urls(&app.listen, path),
        })
        .collect();
    snap.update = app.update_state.as_deref().and_then(update_status);
    snap
}

/// The running release's version and the self-updater's last record, for
/// `/status`; `None` when the updater has never written one.
fn update_status(record: &std::path::Path) -> Option<serde_json::Value> {
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(record).ok()?).ok()?;
    let release = std::fs::read_to_string(RELEASE_FILE).unwrap_or_default();
    if let Some(version) = release.lines().find_map(|l| l.strip_prefix("VERSION=")) {
        value["version"] = version.trim().into();
    }
    Some(value)
}

/// The image's release file (the image builder writes it).
const RELEASE_FILE: &str = "/usr/lib/vinyl/release";

/// URLs of `path` on this host: the listen addresses, with wildcard
/// addresses expanded to the interfaces' (link-local ones left out: they
/// need a zone).
pub fn stream_urls(listen: &[SocketAddr], path: &str) -> Vec<String> {
    let interfaces: Vec<std::net::IpAddr> = if_addrs::get_if_addrs()
        .map(|v| v.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    let mut urls = Vec::new();
    for addr in listen {
        let ips: Vec<std::net::IpAddr> = if addr.ip().is_unspecified() {
            interfaces
                .iter()
                .copied()
                .filter(|ip| addr.is_ipv6() || ip.is_ipv4())
                .filter(|ip| !matches!(ip, std::net::IpAddr::V6(v6) if v6.is_unicast_link_local()))
                .collect()
        } else {
            vec![addr.ip()]
        };
        for ip in ips {
            let url = format!("http://{}{path}", SocketAddr::new(ip, addr.port()));
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    urls
}
