//! HTTP downloads from the mirror into the store, verified on the way in.

use crate::mirror::Mirror;
use crate::store::{Store, StoreError};
use std::io::Read;
use std::time::Duration;

/// How long a mirror may take to start answering a request (the status
/// line and headers): one that accepts connections and never answers
/// must not hang the build.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A body may take this long whatever its size ...
const BODY_BASE: Duration = Duration::from_secs(60);
/// ... plus its size at this rate: a mirror slower than 64 KiB/s over a
/// whole package, or one that stops sending half-way, fails the download.
const MIN_RATE: u64 = 64 * 1024;
/// Bodies of unknown size (`InRelease`) are small.
const UNKNOWN_SIZE: u64 = 4 << 20;

/// How often a request is tried before its failure is final.
const ATTEMPTS: u32 = 3;
/// The wait before the second try; it doubles before each further one.
const RETRY_WAIT: Duration = Duration::from_secs(2);

/// Whether a failed request may succeed when tried again: network trouble
/// and server errors may pass, a missing file (404) or a bad URL will not.
fn may_pass(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::StatusCode(code) => *code >= 500,
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed => true,
        _ => false,
    }
}

/// A download that failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("downloading {url}: {reason}")]
    Http { url: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Downloads files from one mirror.
pub struct Fetcher {
    agent: ureq::Agent,
    mirror: Mirror,
    /// The time a body may take regardless of its size.
    body_base: Duration,
}

impl Fetcher {
    /// A fetcher with sensible timeouts.
    pub fn new(mirror: Mirror) -> Self {
        Self::with_timeouts(mirror, RESPONSE_TIMEOUT, BODY_BASE)
    }

    /// A fetcher whose requests fail when no response has begun within
    /// `response`, and whose bodies may take `body_base` plus their size at
    /// [`MIN_RATE`].
    fn with_timeouts(mirror: Mirror, response: Duration, body_base: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_send_request(Some(response))
            .timeout_recv_response(Some(response))
            .user_agent(concat!("vinyl-builder/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent: config.into(),
            mirror,
            body_base,
        }
    }

    /// How long a body of `size` bytes may take to arrive.
    fn body_timeout(&self, size: u64) -> Duration {
        self.body_base + Duration::from_secs(size / MIN_RATE)
    }

    /// The mirror this fetcher talks to.
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.mirror.url, path.trim_start_matches('/'))
    }

    /// Starts a download. A request that fails before any byte arrived
    /// for a reason that may pass (a name lookup, a refused or timed-out
    /// connection, a server that does not answer, a server error) is tried
    /// again, [`ATTEMPTS`] times in all.
    fn get(&self, path: &str, size: u64) -> Result<impl Read + use<>, FetchError> {
        let url = self.url(path);
        let mut attempt = 1;
        loop {
            let request = self
                .agent
                .get(&url)
                .config()
                .timeout_recv_body(Some(self.body_timeout(size)))
                .build();
            match request.call() {
                Ok(response) => return Ok(response.into_body().into_reader()),
                Err(error) if attempt < ATTEMPTS && may_pass(&error) => {
                    let wait = RETRY_WAIT * 2u32.pow(attempt - 1);
                    tracing::warn!("{url}: {error}; trying again in {wait:?}");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(error) => {
                    return Err(FetchError::Http {
                        url,
                        reason: error.to_string(),
                    });
                }
            }
        }
    }

    /// Fetches a small file whole (e.g. `InRelease`, which is verified by signature).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, FetchError> {
        let mut bytes = Vec::new();
        self.get(path, UNKNOWN_SIZE)?
            .read_to_end(&mut bytes)
            .map_err(|e| FetchError::Http {
                url: self.url(path),
                reason: e.to_string(),
            })?;
        Ok(bytes)
    }

    /// Ensures the file at `path` with the given size and SHA-256 is in the
    /// store, downloading and verifying it if missing. A download that
    /// breaks off, stalls or arrives damaged is tried again, [`ATTEMPTS`]
    /// times in all.
    pub fn ensure(
        &self,
        store: &Store,
        path: &str,
        size: u64,
        sha256: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<(), FetchError> {
        if store.contains(sha256) {
            return Ok(());
        }
        let mut attempt = 1;
        loop {
            let body = self.get(path, size)?;
            let mut received = 0;
            let result = store.insert_verified(path, body, size, sha256, |n| {
                received += n;
                progress(n);
            });
            match result {
                Err(StoreError::Io { source, .. }) if attempt < ATTEMPTS => {
                    tracing::warn!(
                        "{}: {source} after {received} of {size} bytes; trying again",
                        self.url(path)
                    );
                }
                Err(error @ StoreError::Mismatch { .. }) if attempt < ATTEMPTS => {
                    tracing::warn!("{error}; trying again");
                }
                Err(StoreError::Io { source, .. }) => {
                    return Err(FetchError::Http {
                        url: self.url(path),
                        reason: format!(
                            "{source} after {received} of {size} bytes, {ATTEMPTS} times"
                        ),
                    });
                }
                result => return Ok(result?),
            }
            attempt += 1;
        }
    }

    /// The bytes of the file at `path` with the given size and SHA-256:
    /// from the store when it holds them intact, else downloaded (again).
    pub fn read(
        &self,
        store: &Store,
        path: &str,
        size: u64,
        sha256: &str,
    ) -> Result<Vec<u8>, FetchError> {
        self.ensure(store, path, size, sha256, |_| {})?;
        match store.read(sha256) {
            // Removed as damaged: fetch it once more.
            Err(StoreError::Corrupt { .. }) => {
                self.ensure(store, path, size, sha256, |_| {})?;
                Ok(store.read(sha256)?)
            }
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_trouble_is_tried_again_and_missing_files_are_not() {
        assert!(may_pass(&ureq::Error::HostNotFound));
        assert!(may_pass(&ureq::Error::ConnectionFailed));
        assert!(may_pass(&ureq::Error::Io(std::io::Error::other(
            "failed to lookup address information"
        ))));
        assert!(may_pass(&ureq::Error::StatusCode(503)));
        assert!(!may_pass(&ureq::Error::StatusCode(404)));
        assert!(!may_pass(&ureq::Error::BadUri("x".into())));
    }

    /// A mirror at `http://127.0.0.1:port/debian`.
    fn local_mirror(port: u16) -> Mirror {
        Mirror {
            url: format!("http://127.0.0.1:{port}/debian"),
            origin: "test".into(),
        }
    }

    #[test]
    fn a_mirror_that_stalls_half_way_is_tried_again_and_named() {
        // Headers and half the body, then silence with the connection open.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 1024];
                let _ = std::io::Read::read(&mut stream, &mut request);
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
                std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
                std::io::Write::write_all(&mut stream, &[7u8; 500]).unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        let fetcher = Fetcher::with_timeouts(
            local_mirror(port),
            Duration::from_millis(500),
            Duration::from_secs(1),
        );
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sha = crate::store::sha256_hex(&[7u8; 1000]);
        let started = std::time::Instant::now();
        let error = fetcher
            .ensure(&store, "pool/main/x.deb", 1000, &sha, |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("127.0.0.1:{port}/debian/pool/main/x.deb")),
            "{error}"
        );
        assert!(error.contains("after 500 of 1000 bytes"), "{error}");
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!store.contains(&sha));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_refused_connection_is_tried_three_times_then_named() {
        // A port nothing listens on: every attempt is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let fetcher = Fetcher::new(local_mirror(port));
        let started = std::time::Instant::now();
        let error = fetcher
            .get_bytes("dists/trixie/InRelease")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("127.0.0.1:{port}/debian/dists/trixie/InRelease")),
            "{error}"
        );
        // Waited 2 s and 4 s between the three attempts.
        assert!(
            started.elapsed() >= RETRY_WAIT * 3,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_mirror_that_accepts_and_never_answers_fails_with_the_url() {
        // Connections are accepted (and kept open) but nothing is ever sent.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().collect();
            drop(held);
        });
        let fetcher = Fetcher::with_timeouts(
            local_mirror(port),
            Duration::from_millis(500),
            Duration::from_secs(1),
        );
        let started = std::time::Instant::now();
        let error = fetcher
            .get_bytes("dists/trixie/InRelease")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("127.0.0.1:{port}/debian/dists/trixie/InRelease")),
            "{error}"
        );
        assert!(error.contains("timeout"), "{error}");
        // Three attempts of 0.5 s, with the 2 s and 4 s waits between them.
        let took = started.elapsed();
        assert!(
            took >= RETRY_WAIT * 3 && took < Duration::from_secs(15),
            "{took:?}"
        );
    }
}
