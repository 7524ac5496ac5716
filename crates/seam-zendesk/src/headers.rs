//! Zendesk's rate-limit headers, read without trusting them: any text gives a bounded wait, a count,
//! or nothing — never a panic, never a `Duration` or `Instant` overflow.
//!
//! - `Retry-After` (RFC 9110 §10.2.3, https://www.rfc-editor.org/rfc/rfc9110#field.retry-after):
//!   delay-seconds, or an HTTP-date in the IMF-fixdate form every sender must use
//!   (`Sun, 06 Nov 1994 08:49:37 GMT`). A fractional number of seconds is accepted too.
//! - `X-Rate-Limit` / `ratelimit-limit` and `X-Rate-Limit-Remaining` / `ratelimit-remaining`:
//!   request counts (https://developer.zendesk.com/api-reference/introduction/rate-limits/).
//! - `ratelimit-reset`: seconds until the rate-limit window resets.

use chrono::DateTime;
use std::time::{Duration, SystemTime};

/// The longest wait a header can produce; longer asks are cut to it (no retry policy accepts such
/// a wait anyway, and the message still says what the server asked for).
pub const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `Retry-After`.
pub const RETRY_AFTER: &str = "retry-after";
/// `ratelimit-reset`.
pub const RATELIMIT_RESET: &str = "ratelimit-reset";

/// A wait a server asked for, and how it put it (for the message when seam will not wait that long).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The wait, at most [`LONGEST_WAIT`].
    pub wait: Duration,
    /// What the server asked for, for messages: `100000000000000000000 s`, or `until <HTTP-date>`.
    pub said: String,
    /// The header, as Zendesk documents it (`Retry-After`, `ratelimit-reset`).
    pub header: &'static str,
}

/// A non-negative, finite number of seconds: the wait (at most [`LONGEST_WAIT`]) and the number as
/// written for messages. Anything else (negative, `NaN`, `inf`, text) is `None`.
pub fn seconds(text: &str) -> Option<(Duration, String)> {
    let secs: f64 = text.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let wait = Duration::try_from_secs_f64(secs)
        .unwrap_or(LONGEST_WAIT)
        .min(LONGEST_WAIT);
    // Plain digits read best ("100000000000000000000 s"); past that, the exponent form is shorter.
    let said = if secs < 1e21 {
        format!("{secs}")
    } else {
        format!("{secs:e}")
    };
    Some((wait, said))
}

/// Reads a `Retry-After` value: delay-seconds, or an HTTP-date (a date in the past means no wait).
/// `now` is the current wall-clock time (the date is compared with it).
pub fn retry_after(text: &str, now: SystemTime) -> Option<Asked> {
    if let Some((wait, said)) = seconds(text) {
        return Some(Asked {
            wait,
            said: format!("{said} s"),
            header: "Retry-After",
        });
    }
    let text = text.trim();
    let date = DateTime::parse_from_rfc2822(text).ok()?;
    // A date before 1970 is in the past: no wait.
    let since_epoch = Duration::from_secs(u64::try_from(date.timestamp()).unwrap_or(0));
    let at = SystemTime::UNIX_EPOCH.checked_add(since_epoch)?;
    let asked = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(Asked {
        wait: asked.min(LONGEST_WAIT),
        said: format!("until {text} ({} s)", asked.as_secs()),
        header: "Retry-After",
    })
}

/// Reads a `ratelimit-reset` value (seconds until the window resets).
pub fn reset(text: &str) -> Option<Asked> {
    let (wait, said) = seconds(text)?;
    Some(Asked {
        wait,
        said: format!("{said} s"),
        header: "ratelimit-reset",
    })
}

/// Reads a request count (`X-Rate-Limit`, `ratelimit-remaining`, ...): a whole number, or a
/// non-negative finite decimal (rounded down; counts past `u64::MAX` saturate).
pub fn count(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Some(n);
    }
    let f: f64 = text.parse().ok()?;
    // `as` saturates for floats; the filter leaves out NaN, infinities and negatives.
    (f.is_finite() && f >= 0.0).then_some(f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = at(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let a = retry_after(" 7 ", now).unwrap();
        assert_eq!((a.wait, a.said.as_str()), (Duration::from_secs(7), "7 s"));
        assert_eq!(retry_after("1.5", now).unwrap().wait, Duration::from_millis(1500));
        let a = retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now).unwrap();
        assert_eq!(a.wait, Duration::from_secs(120));
        assert_eq!(a.said, "until Sun, 06 Nov 1994 08:51:37 GMT (120 s)");
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now).unwrap().wait,
            Duration::ZERO,
            "a date in the past: no wait"
        );
        for bad in [
            "",
            "soon",
            "-1",
            "NaN",
            "inf",
            "-inf",
            "1e400",
            "0x10",
            "Sun, 31 Feb 1994 08:49:37 GMT",
        ] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn absurd_waits_are_clamped_and_said_as_asked() {
        let a = retry_after("1e20", SystemTime::now()).unwrap();
        assert_eq!(a.wait, LONGEST_WAIT);
        assert_eq!(a.said, "100000000000000000000 s");
        let a = reset("1e300").unwrap();
        assert_eq!((a.wait, a.said.as_str()), (LONGEST_WAIT, "1e300 s"));
        assert_eq!(
            retry_after("Fri, 31 Dec 9999 23:59:59 GMT", SystemTime::now())
                .unwrap()
                .wait,
            LONGEST_WAIT
        );
    }

    #[test]
    fn counts() {
        assert_eq!(count("700"), Some(700));
        assert_eq!(count(" 0 "), Some(0));
        assert_eq!(count("12.9"), Some(12));
        assert_eq!(count("1e30"), Some(u64::MAX));
        for bad in ["", "-1", "NaN", "inf", "many"] {
            assert_eq!(count(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        /// Any header text: no panic; a wait is at most LONGEST_WAIT.
        #[test]
        fn any_header_text_is_safe(text in any::<String>(), now_secs in 0u64..=253_402_300_799) {
            let now = at(now_secs);
            if let Some(a) = retry_after(&text, now) {
                prop_assert!(a.wait <= LONGEST_WAIT);
                prop_assert!(!a.said.is_empty());
            }
            if let Some(a) = reset(&text) {
                prop_assert!(a.wait <= LONGEST_WAIT);
            }
            let _ = count(&text);
        }

        /// Numbers and dates as servers (or broken servers) write them.
        #[test]
        fn numeric_and_date_headers_are_safe(
            n in prop_oneof![any::<f64>().prop_map(|f| f.to_string()), any::<u64>().prop_map(|n| n.to_string()),
                             any::<i64>().prop_map(|n| format!("{n}e{}", n % 400)), "[0-9.eE+-]{1,40}"],
            ts in any::<i64>(),
        ) {
            for text in [n.clone(), DateTime::from_timestamp(ts % 253_402_300_799, 0)
                .map(|d| d.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
                .unwrap_or_default()] {
                if let Some(a) = retry_after(&text, SystemTime::now()) {
                    prop_assert!(a.wait <= LONGEST_WAIT);
                }
                if let Some(a) = reset(&text) {
                    prop_assert!(a.wait <= LONGEST_WAIT);
                }
                let _ = count(&text);
            }
        }
    }
}
