//! The image builder: recipes → locked Debian packages → rootfs tree → image.

pub mod archive;
pub mod config;
pub mod deb;
pub mod debian;
pub mod fetch;
pub mod lock;
pub mod mirror;
pub mod rootfs;
pub mod store;
