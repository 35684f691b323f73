//! Boot chain pieces the builder writes itself (no `mkimage`, no U-Boot
//! tools on the host): the boot script image and the A/B state files.

pub mod env;
pub mod script;
