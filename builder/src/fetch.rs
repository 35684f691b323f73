//! HTTP downloads from the mirror into the store, verified on the way in.

use crate::mirror::Mirror;
use crate::store::{Store, StoreError};
use std::io::Read;
use std::time::Duration;

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
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(20)))
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

    fn get(&self, path: &str) -> Result<impl Read + use<>, FetchError> {
        let url = self.url(path);
        let response = self.agent.get(&url).call().map_err(|e| FetchError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        Ok(response.into_body().into_reader())
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
