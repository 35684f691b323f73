//! The workspace's one skip-or-fail rule for tests that need something from
//! the host (a program, QEMU, docker, root, a Debian mirror).
//!
//! When it is missing, a test **fails in CI** ([`in_ci`]) and **skips with a
//! printed reason** in a plain local `cargo test`: it prints
//! `SKIPPED <test>: <reason>` and returns without checking anything.
//!
//! ```no_run
//! fn which(program: &str) -> Option<std::path::PathBuf> {
//!     None // stands for a PATH search
//! }
//! // in a #[test]:
//! let Some(cpio) = test_support::found("gnu_cpio_reads_it", which("cpio"), || {
//!     "cpio is not installed (apt-get install cpio)".into()
//! }) else {
//!     return; // skipped (outside CI; under CI `found` panicked)
//! };
//! # let _ = cpio;
//! ```

/// Whether this is a CI run: `CI` is set to anything but empty, `0` or
/// `false` (surrounding blanks ignored).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| is_ci_value(&value))
}

/// Whether a value of `CI` means "this is CI".
fn is_ci_value(value: &str) -> bool {
    !matches!(value.trim(), "" | "0" | "false")
}

/// Test `test` cannot run because of `reason`: under CI this panics with the
/// reason; otherwise it prints `SKIPPED <test>: <reason>` and returns, and the
/// caller returns from the test.
pub fn skip_or_fail(test: &str, reason: &str) {
    if in_ci() {
        panic!("{test} cannot run: {reason}\n(CI is set: a missing prerequisite fails the test)");
    }
    eprintln!("SKIPPED {test}: {reason}");
}

/// Whether test `test` can run: `true` when nothing is `missing`; otherwise
/// [`skip_or_fail`] with the reason (a panic under CI) and `false`.
pub fn require(test: &str, missing: Option<String>) -> bool {
    match missing {
        None => true,
        Some(reason) => {
            skip_or_fail(test, &reason);
            false
        }
    }
}

/// `value` if it is there; otherwise [`skip_or_fail`] with `reason()` (a
/// panic under CI) and `None`. For "find the program, else skip" lookups.
pub fn found<T>(test: &str, value: Option<T>, reason: impl FnOnce() -> String) -> Option<T> {
    if value.is_none() {
        skip_or_fail(test, &reason());
    }
    value
}

pub mod gpg;
pub mod http;

/// The name of the running test, for helpers shared by several tests: the
/// test harness runs each test on a thread named after it (`"a test"` if
/// not).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or("a test")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_values() {
        for value in ["true", "1", "yes", " true ", "github"] {
            assert!(is_ci_value(value), "{value:?}");
        }
        for value in ["", "0", "false", " false\n", "  "] {
            assert!(!is_ci_value(value), "{value:?}");
        }
    }

    // The tests below never run with a missing prerequisite, so they behave
    // the same whether CI is set or not.

    #[test]
    fn nothing_missing_runs() {
        assert!(require("a test", None));
        assert_eq!(found("a test", Some(3), || unreachable!()), Some(3));
    }

    #[test]
    fn missing_skips_locally_and_fails_in_ci() {
        let outcome = std::panic::catch_unwind(|| require("a test", Some("no cpio".into())));
        if in_ci() {
            let panic = outcome.unwrap_err();
            let message = panic.downcast_ref::<String>().unwrap();
            assert!(message.contains("a test cannot run: no cpio"), "{message}");
        } else {
            assert!(!outcome.unwrap());
        }
    }

    #[test]
    fn the_current_test_is_named_after_its_thread() {
        assert!(
            current_test().ends_with("the_current_test_is_named_after_its_thread"),
            "{}",
            current_test()
        );
    }
}
