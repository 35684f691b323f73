//! Shared by the builder's integration tests that build from the real archive.

/// Whether a test that builds an image can run: it needs a Debian mirror and
/// the cross toolchain. A local run without them skips (printing why); a CI
/// run fails.
pub fn prerequisites_or_skip(test: &str) -> bool {
    test_support::require(test, builder::doctor::missing_build_prerequisites())
}
