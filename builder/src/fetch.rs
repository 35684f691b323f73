//! HTTP downloads from the mirror into the store, verified on the way in.

use crate::mirror::Mirror;
use crate::store::{Store, StoreError};
use std::io::Read;
use std::time::Duration;

/// How long a mirror may take to start answering a request (the status
/// line and headers): one that accepts connections and never answers
/// must not hang the build.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

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
}

impl Fetcher {
    /// A fetcher with sensible timeouts.
    pub fn new(mirror: Mirror) -> Self {
        Self::with_response_timeout(mirror, RESPONSE_TIMEOUT)
    }

    /// A fetcher whose requests fail when no response has begun within
    /// `response`.
    fn with_response_timeout(mirror: Mirror, response: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_send_request(Some(response))
            .timeout_recv_response(Some(response))
            .timeout_recv_body(Some(Duration::from_secs(600)))
            .user_agent(concat!("vinyl-builder/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent: config.into(),
            mirror,
        }
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
    fn get(&self, path: &str) -> Result<impl Read + use<>, FetchError> {
        let url = self.url(path);
        let mut attempt = 1;
        loop {
            match self.agent.get(&url).call() {
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
        self.get(path)?
            .read_to_end(&mut bytes)
            .map_err(|e| FetchError::Http {
                url: self.url(path),
                reason: e.to_string(),
            })?;
        Ok(bytes)
    }

    /// Ensures the file at `path` with the given size and SHA-256 is in the
    /// store, downloading and verifying it if missing.
    pub fn ensure(
        &self,
        store: &Store,
        path: &str,
        size: u64,
        sha256: &str,
        progress: impl FnMut(u64),
    ) -> Result<(), FetchError> {
        if store.contains(sha256) {
            return Ok(());
        }
        let body = self.get(path)?;
        store.insert_verified(path, body, size, sha256, progress)?;
        Ok(())
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
        let fetcher =
            Fetcher::with_response_timeout(local_mirror(port), Duration::from_millis(500));
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
