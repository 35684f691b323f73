//! Debian archive formats and logic, pure: bytes and strings in, data out.
//! No I/O, no network: the builder fetches, this crate checks and parses.
//!
//! Modules, from the bottom up (each uses only those above it):
//! - [`deb822`]: control-file syntax (`Packages`, `Release`, `control`);
//! - [`version`]: version strings and dpkg's ordering;
//! - [`relation`]: `Depends`-style relations with alternatives;
//! - [`index`]: `Packages` indexes into [`index::Package`] records;
//! - [`openpgp`]: the RSA signatures of a cleartext-signed file and the
//!   keys that make them (only what an archive needs);
//! - [`release`]: `InRelease` — the OpenPGP signature checked against
//!   Debian's archive keys (shipped in `keys/`), then the checksums it signs;
//! - [`resolve`]: the dependency resolver over a [`resolve::Universe`].

pub mod deb822;
pub mod index;
pub mod openpgp;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod version;
