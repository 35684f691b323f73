//! Shared by the builder's integration tests that build from the real archive.

/// Whether a test that builds an image can run: it needs a Debian mirror and
/// the cross toolchain. A local run without them skips (printing why); a CI
/// run fails.
pub fn prerequisites_or_skip(test: &str) -> bool {
    let Some(problem) = builder::doctor::missing_build_prerequisites() else {
        return true;
    };
    if std::env::var_os("CI").is_some() {
        panic!("{test} cannot run: {problem}");
    }
    eprintln!("skipping {test}: {problem}");
    false
}
