//! Link libopus and libasound from the system through pkg-config, so a
//! cross build against a Debian sysroot (PKG_CONFIG_SYSROOT_DIR) finds them.
fn main() {
    for lib in ["opus", "alsa"] {
        if let Err(e) = pkg_config::Config::new().probe(lib) {
            panic!("pkg-config could not find {lib} (install lib{lib}-dev / libasound2-dev): {e}");
        }
    }
}
