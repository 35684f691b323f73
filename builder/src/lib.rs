//! The image builder: recipes → locked Debian packages → rootfs tree → image.

pub mod archive;
pub mod boot;
pub mod bundle;
pub mod config;
pub mod cross;
pub mod deb;
pub mod device;
pub mod doctor;
pub mod export;
pub mod fetch;
pub mod image;
pub mod lock;
pub mod mirror;
pub mod output_dir;
pub mod pipeline;
pub mod progress;
pub mod release;
pub mod rootfs;
pub mod slot_digest;
pub mod store;
pub mod values;
