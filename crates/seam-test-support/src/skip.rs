//! The one rule for tests that need something the machine may not have.

use std::fmt::Display;

/// Set (to anything but `0` or `false`) by `scripts/test`: the full test command skips nothing.
pub const NO_SKIP_ENV: &str = "SEAM_TEST_NO_SKIP";

/// True when a skip must fail the test instead: under `CI` (which `.ci/run` exports) or
/// [`NO_SKIP_ENV`].
pub fn must_not_skip() -> bool {
    [std::env::var("CI").ok(), std::env::var(NO_SKIP_ENV).ok()]
        .iter()
        .any(|v| v.as_deref().is_some_and(is_set))
}

fn is_set(value: &str) -> bool {
    let v = value.trim();
    !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
}

/// Gives up on a test that cannot run here. `reason` says what is missing and what to install.
///
/// Prints `SKIP <reason>` and returns, so the caller returns too; panics instead when
/// [`must_not_skip`] holds, so CI and `scripts/test` never pass a suite that did not run.
#[track_caller]
pub fn skip(reason: impl Display) {
    decide(must_not_skip(), &reason.to_string());
}

#[track_caller]
fn decide(strict: bool, reason: &str) {
    if strict {
        panic!(
            "{reason}\n(CI or {NO_SKIP_ENV} is set: a missing dependency fails the test instead of skipping it)"
        );
    }
    eprintln!("SKIP {reason}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_fails_when_strict_and_prints_otherwise() {
        decide(false, "python3 is not installed");
        let panic = std::panic::catch_unwind(|| decide(true, "python3 is not installed"))
            .expect_err("a strict skip panics");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.starts_with("python3 is not installed"), "{message}");
        assert!(message.contains("CI"), "{message}");
    }

    #[test]
    fn ci_values_that_mean_unset() {
        for v in ["", " ", "0", "false", "FALSE"] {
            assert!(!is_set(v), "{v:?}");
        }
        for v in ["1", "true", "yes", "github"] {
            assert!(is_set(v), "{v:?}");
        }
    }
}
