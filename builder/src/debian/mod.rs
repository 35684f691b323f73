//! Debian archive formats and logic: control files, versions, relations,
//! signed Release files, Packages indexes and dependency resolution.
//! Everything here is pure: bytes and strings in, data out.

pub mod deb822;
pub mod index;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod version;
