//! A verified view of the Debian archive: the signed `InRelease`, then the
//! `Packages` indexes whose SHA-256 it lists. Used only to (re)write locks.

use crate::fetch::{FetchError, Fetcher};
use crate::store::Store;
use debian::index::{IndexError, parse_packages};
use debian::release::{Keyring, Release, ReleaseError};
use debian::resolve::Universe;
use rayon::prelude::*;
use std::io::Read;

/// Failure to obtain a trustworthy index.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("dists/{suite}/InRelease lists no {path}; is {component} a component of {suite}?")]
    MissingIndex {
        suite: String,
        component: String,
        path: String,
    },
}

/// Everything resolvable for one suite and architecture.
pub struct Archive {
    pub release: Release,
    pub universe: Universe,
}

impl Archive {
    /// Downloads and verifies the release and package indexes.
    pub fn load(
        fetcher: &Fetcher,
        store: &Store,
        suite: &str,
        components: &[String],
        architecture: &str,
    ) -> Result<Archive, ArchiveError> {
        let in_release_path = format!("dists/{suite}/InRelease");
        let signed = fetcher.get_bytes(&in_release_path)?;
        let file = format!("{}/{in_release_path}", fetcher.mirror().url);
        let text =
            Keyring::debian_trixie().verify_cleartext(&file, &String::from_utf8_lossy(&signed))?;
        let release = Release::parse(&file, &text, suite)?;

        let packages = components
            .par_iter()
            .map(|component| -> Result<_, ArchiveError> {
                let path = format!("{component}/binary-{architecture}/Packages.xz");
                let (size, sha256) =
                    release
                        .sha256
                        .get(&path)
                        .ok_or_else(|| ArchiveError::MissingIndex {
                            suite: suite.to_string(),
                            component: component.clone(),
                            path: path.clone(),
                        })?;
                let url_path = format!("dists/{suite}/{path}");
                let compressed = fetcher.read(store, &url_path, *size, sha256)?;
                let mut text = String::new();
                xz2::read::XzDecoder::new(&compressed[..])
                    .read_to_string(&mut text)
                    .map_err(|e| IndexError {
                        file: url_path.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(parse_packages(&url_path, &text, component)?)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let universe = Universe::new(packages.into_iter().flatten().collect(), architecture);
        Ok(Archive { release, universe })
    }
}
