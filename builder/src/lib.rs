//! The image builder: recipes → locked Debian packages → rootfs tree → image.

pub mod debian;
