//! Error kinds and the one retry policy.
//!
//! Every boundary error (`SourceError`, `DestinationError`, the metastore's, the API's) exposes an
//! [`ErrorKind`]. Whether and when to retry is decided in exactly one place, [`RetryPolicy::decide`],
//! so the Zendesk client, the warehouse loaders and the scheduler cannot drift apart.

use rand::Rng;
use std::time::Duration;

/// What kind of failure an error is; drives retries and what the user is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is wrong (bad subdomain, unknown key, bad value). Never retried.
    Config,
    /// Credentials were rejected (401) or lack permission (403). Never retried.
    Auth,
    /// The remote side asked us to slow down; wait `retry_after` when it said how long.
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A failure that may pass: 5xx, timeouts, resets, truncated bodies, a busy database.
    Transient,
    /// Data that does not fit: malformed records, schema conflicts. Never retried.
    Schema,
    /// A bug or an invariant broken inside seam. Never retried.
    Internal,
}

impl ErrorKind {
    /// True for kinds that a retry may cure.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::RateLimited { .. } | ErrorKind::Transient)
    }

    /// A short lowercase label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimited { .. } => "rate_limited",
            ErrorKind::Transient => "transient",
            ErrorKind::Schema => "schema",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Implemented by every error that crosses a component boundary.
pub trait Classify {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Give up and surface the error.
    GiveUp,
}

/// The single retry policy: bounded exponential backoff with full jitter for transient failures;
/// the server's `Retry-After` (or `rate_limit_default_wait` when it sent none) for rate limits, unless
/// the server asks for more than `max_wait`; never for config, auth, schema or internal errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. After this many failures the error is surfaced.
    pub max_attempts: u32,
    /// Backoff base for the first retry of a transient failure.
    pub initial_backoff: Duration,
    /// Upper bound for one transient backoff.
    pub max_backoff: Duration,
    /// Wait after a 429 that carried no `Retry-After` (Zendesk's edge protection sends none).
    pub rate_limit_default_wait: Duration,
    /// Attempts allowed for rate-limited responses (they are expected, so more are allowed).
    pub max_rate_limited_attempts: u32,
    /// The longest wait a server may ask for (`Retry-After`, a rate-limit reset). A rate limit that
    /// asks for more is not waited out: the error is surfaced, and the next scheduled run tries again.
    pub max_wait: Duration,
}

/// The default [`RetryPolicy::max_wait`]: five minutes.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            rate_limit_default_wait: Duration::from_secs(60),
            max_rate_limited_attempts: 30,
            max_wait: DEFAULT_MAX_WAIT,
        }
    }
}

impl RetryPolicy {
    /// A fast policy for tests: same shape, millisecond waits.
    pub fn fast_for_tests() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            rate_limit_default_wait: Duration::from_millis(200),
            max_rate_limited_attempts: 30,
            max_wait: DEFAULT_MAX_WAIT,
        }
    }

    /// True when a server may make seam wait `wait` (at most [`RetryPolicy::max_wait`]).
    pub fn allows_wait(&self, wait: Duration) -> bool {
        wait <= self.max_wait
    }

    /// Decides whether to retry after `attempt` failed attempts (1 = the first attempt failed).
    pub fn decide(&self, kind: ErrorKind, attempt: u32) -> RetryDecision {
        match kind {
            ErrorKind::RateLimited { retry_after } => {
                if attempt >= self.max_rate_limited_attempts
                    || retry_after.is_some_and(|w| !self.allows_wait(w))
                {
                    return RetryDecision::GiveUp;
                }
                // A small jitter keeps concurrent streams from waking up in lockstep.
                let base = retry_after
                    .unwrap_or(self.rate_limit_default_wait)
                    .min(self.max_wait);
                let jitter = rand::thread_rng().gen_range(0..=base.as_millis().min(1000) as u64 / 10 + 1);
                RetryDecision::RetryAfter(base.saturating_add(Duration::from_millis(jitter)))
            }
            ErrorKind::Transient => {
                if attempt >= self.max_attempts {
                    return RetryDecision::GiveUp;
                }
                let exp = self
                    .initial_backoff
                    .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
                let cap = exp.min(self.max_backoff);
                // Full jitter, but never less than half the step so retries do spread out.
                let half = cap / 2;
                let extra = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
                RetryDecision::RetryAfter(half + Duration::from_millis(extra))
            }
            ErrorKind::Config | ErrorKind::Auth | ErrorKind::Schema | ErrorKind::Internal => {
                RetryDecision::GiveUp
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_kinds_are_never_retried() {
        let p = RetryPolicy::default();
        for k in [
            ErrorKind::Config,
            ErrorKind::Auth,
            ErrorKind::Schema,
            ErrorKind::Internal,
        ] {
            assert_eq!(p.decide(k, 1), RetryDecision::GiveUp);
            assert!(!k.is_retryable());
        }
    }

    #[test]
    fn transient_backs_off_exponentially_within_bounds_then_gives_up() {
        let p = RetryPolicy::default();
        let mut last_cap = Duration::ZERO;
        for attempt in 1..p.max_attempts {
            let RetryDecision::RetryAfter(d) = p.decide(ErrorKind::Transient, attempt) else {
                panic!("attempt {attempt} should retry");
            };
            let cap = (p.initial_backoff * (1 << (attempt - 1))).min(p.max_backoff);
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {attempt}: {d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= last_cap);
            last_cap = cap;
        }
        assert_eq!(
            p.decide(ErrorKind::Transient, p.max_attempts),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn rate_limits_wait_retry_after_or_the_default() {
        let p = RetryPolicy::default();
        let RetryDecision::RetryAfter(d) = p.decide(
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            },
            1,
        ) else {
            panic!("should retry");
        };
        assert!(
            d >= Duration::from_secs(7) && d <= Duration::from_millis(7_101),
            "{d:?}"
        );
        let RetryDecision::RetryAfter(d) = p.decide(ErrorKind::RateLimited { retry_after: None }, 3) else {
            panic!("should retry");
        };
        assert!(d >= p.rate_limit_default_wait);
        assert_eq!(
            p.decide(
                ErrorKind::RateLimited { retry_after: None },
                p.max_rate_limited_attempts
            ),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn a_rate_limit_asking_for_more_than_max_wait_gives_up_at_once() {
        let p = RetryPolicy::default();
        let asks = |secs: u64| ErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(p.max_wait, Duration::from_secs(300));
        assert!(matches!(p.decide(asks(300), 1), RetryDecision::RetryAfter(_)));
        assert_eq!(p.decide(asks(301), 1), RetryDecision::GiveUp);
        assert_eq!(
            p.decide(
                ErrorKind::RateLimited {
                    retry_after: Some(Duration::MAX)
                },
                1
            ),
            RetryDecision::GiveUp
        );
        // A default wait longer than the limit is cut to the limit.
        let p = RetryPolicy {
            rate_limit_default_wait: Duration::from_secs(3600),
            ..RetryPolicy::default()
        };
        let RetryDecision::RetryAfter(d) = p.decide(ErrorKind::RateLimited { retry_after: None }, 1) else {
            panic!("should retry");
        };
        assert!(d <= p.max_wait + Duration::from_millis(102), "{d:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
        /// Whatever a server asks for and however many attempts failed, deciding never panics and
        /// never waits longer than `max_wait` (plus the jitter) or `max_backoff`.
        #[test]
        fn decide_is_total_and_bounded(secs in proptest::prelude::any::<u64>(), nanos in 0u32..1_000_000_000,
                                        attempt in proptest::prelude::any::<u32>(), some in proptest::prelude::any::<bool>()) {
            let p = RetryPolicy::default();
            let retry_after = some.then(|| Duration::new(secs, nanos));
            if let RetryDecision::RetryAfter(d) = p.decide(ErrorKind::RateLimited { retry_after }, attempt) {
                proptest::prop_assert!(d <= p.max_wait + Duration::from_millis(102));
            }
            if let RetryDecision::RetryAfter(d) = p.decide(ErrorKind::Transient, attempt) {
                proptest::prop_assert!(d <= p.max_backoff);
            }
        }
    }
}
