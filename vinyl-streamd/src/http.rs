//! The HTTP server: the stream, a web page, status JSON and metrics.

use crate::config::HttpConfig;
use crate::hub::Hub;
use crate::status::Status;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

type Body = UnsyncBoxBody<Bytes, Infallible>;

const INDEX_HTML: &str = include_str!("index.html");

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
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// How long a listener may make no progress before it is dropped.
    pub stall_limit: Duration,
    /// Kernel send buffer per connection, bytes.
    pub send_buffer: usize,
    /// Addresses the server listens on.
    pub listen: Vec<SocketAddr>,
    connections: AtomicUsize,
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
            stall_limit: Duration::from_millis(config.client_queue_ms),
            send_buffer: config.send_buffer_kib * 1024,
            listen,
            connections: AtomicUsize::new(0),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Per-connection liveness, watched so a listener that stops reading is
/// dropped even though its body stream is no longer polled.
#[derive(Default)]
struct Conn {
    streaming: AtomicBool,
    progress_ms: AtomicU64,
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
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(app.send_buffer);
        let app = app.clone();
        tokio::spawn(async move {
            let count = app.connections.fetch_add(1, Ordering::Relaxed) + 1;
            connection(stream, peer, app.clone(), count).await;
            app.connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, app: Arc<App>, count: usize) {
    if count > app.max_connections {
        refuse(stream).await;
        return;
    }
    let conn = Arc::new(Conn::default());
    let svc = {
        let (app, conn) = (app.clone(), conn.clone());
        service_fn(move |req| {
            let (app, conn) = (app.clone(), conn.clone());
            async move { Ok::<_, Infallible>(handle(&app, &conn, peer, req)) }
        })
    };
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        r = served => if let Err(e) = r { tracing::debug!(%peer, "connection: {e}") },
        _ = stalled(&app, &conn) => {
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

/// Completes when the connection streams audio but has made no progress
/// for longer than the stall limit.
async fn stalled(app: &App, conn: &Conn) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = app
            .now_ms()
            .saturating_sub(conn.progress_ms.load(Ordering::Relaxed));
        if conn.streaming.load(Ordering::Relaxed) && idle > app.stall_limit.as_millis() as u64 {
            return;
        }
    }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
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
    let mut resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => {
            full(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML)
        }
        (&Method::GET | &Method::HEAD, "/stream.opus") => {
            stream(app, &app.hub, "audio/ogg", conn, peer, head)
        }
        (&Method::GET | &Method::HEAD, "/stream.flac") if app.flac.is_some() => stream(
            app,
            app.flac.as_ref().unwrap(),
            "audio/flac",
            conn,
            peer,
            head,
        ),
        (&Method::GET | &Method::HEAD, "/stream.mp3") if app.mp3.is_some() => stream(
            app,
            app.mp3.as_ref().unwrap(),
            "audio/mpeg",
            conn,
            peer,
            head,
        ),
        (&Method::GET | &Method::HEAD, "/status") => {
            let mut snap = app.status.snapshot();
            snap.name = app.name.clone();
            snap.addresses = stream_urls(&app.listen);
            let json = serde_json::to_vec_pretty(&snap).expect("status serialises");
            full(StatusCode::OK, "application/json", json)
        }
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
        let (headers, rx) = hub.subscribe();
        app.status.listeners.fetch_add(1, Ordering::Relaxed);
        app.status.listeners_total.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%peer, content_type, "listener joined");
        let guard = ListenerGuard(app.status.clone());
        conn.progress_ms.store(app.now_ms(), Ordering::Relaxed);
        conn.streaming.store(true, Ordering::Relaxed);
        let (app, conn) = (app.clone(), conn.clone());
        let pages = tokio_stream::once(Ok(headers))
            .chain(BroadcastStream::new(rx))
            .map_while(move |page| {
                let _keep = &guard;
                match page {
                    Ok(page) => {
                        conn.progress_ms.store(app.now_ms(), Ordering::Relaxed);
                        Some(Ok(Frame::data(page)))
                    }
                    Err(BroadcastStreamRecvError::Lagged(n)) => {
                        conn.streaming.store(false, Ordering::Relaxed);
                        app.status.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, "dropping listener: {n} pages behind");
                        None
                    }
                }
            });
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

/// Stream URLs on this host: the listen addresses, with wildcard addresses
/// expanded to the interfaces' (link-local ones left out: they need a zone).
pub fn stream_urls(listen: &[SocketAddr]) -> Vec<String> {
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
            let url = format!("http://{}/stream.opus", SocketAddr::new(ip, addr.port()));
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    urls
}
