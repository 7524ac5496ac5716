//! One limiter per endpoint class, shared by every stream of a read.
//!
//! Zendesk meters requests per minute (https://developer.zendesk.com/api-reference/introduction/rate-limits/):
//! an account budget set by the plan that every request counts against, 10 requests/min on the
//! incremental exports (30 with High Volume), and 450/min on per-ticket audits. Each class is a
//! token bucket refilled evenly over the window; every request takes a token from the account
//! bucket and from its own class's bucket. Response headers steer it: `X-Rate-Limit` /
//! `ratelimit-limit` set the account budget (capped by `max_requests_per_minute`), and
//! `X-Rate-Limit-Remaining` / `ratelimit-remaining` at 0 pause the account until `ratelimit-reset`.
//! A 429 pauses its class for the wait the retry policy chose, so concurrent streams wait too.
//!
//! The limiter never sleeps itself: [`RateLimiter::reserve`] takes a token or says how long to wait
//! (and, for a pause a header asked for, what it asked), and the client sleeps, racing its cancel
//! token and asking the retry policy whether the wait is acceptable at all.

use crate::headers::{self, Asked};
use parking_lot::Mutex;
use reqwest::header::HeaderMap;
use std::time::Duration;
use tokio::time::Instant;

/// The budget a request counts against (besides the account budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointClass {
    /// Only the account budget.
    Account,
    /// `/api/v2/incremental/*`.
    Export,
    /// `/api/v2/tickets/{id}/audits`.
    TicketAudits,
}

impl EndpointClass {
    fn index(self) -> usize {
        match self {
            EndpointClass::Account => 0,
            EndpointClass::Export => 1,
            EndpointClass::TicketAudits => 2,
        }
    }
}

/// Budgets per window. Zendesk's window is a minute; tests shrink it to match a simulator whose
/// minutes are compressed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Account requests per window before the server says otherwise.
    pub account_per_window: u32,
    /// Cap on the account budget (`max_requests_per_minute`); the server's limit never raises it.
    pub account_cap: Option<u32>,
    /// Export requests per window.
    pub exports_per_window: u32,
    /// Per-ticket audit requests per window.
    pub audits_per_window: u32,
    /// The window.
    pub window: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            // Team plan's budget until the first response says what the plan allows.
            account_per_window: 200,
            account_cap: None,
            exports_per_window: crate::config::DEFAULT_EXPORT_REQUESTS_PER_MINUTE,
            audits_per_window: crate::config::AUDITS_REQUESTS_PER_MINUTE,
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    per_window: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    /// What the server asked for, when the pause comes from its headers.
    pause_asked: Option<Asked>,
}

/// `now + wait`, or the latest instant the clock can represent on the way there (a wait that long
/// is refused by the retry policy anyway).
fn deadline(now: Instant, wait: Duration) -> Instant {
    [
        wait,
        Duration::from_secs(86_400 * 365),
        Duration::from_secs(86_400),
    ]
    .into_iter()
    .find_map(|w| now.checked_add(w))
    .unwrap_or(now)
}

/// A request has to wait before it may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// How long, from now.
    pub wait: Duration,
    /// What Zendesk asked for, when the wait is a pause its headers asked for (`ratelimit-reset`
    /// with nothing remaining); `None` for budget refills and pauses after a 429.
    pub asked: Option<Asked>,
}

impl Bucket {
    fn new(per_window: u32, now: Instant) -> Self {
        let per_window = f64::from(per_window.max(1));
        Bucket {
            per_window,
            tokens: per_window,
            last: now,
            paused_until: None,
            pause_asked: None,
        }
    }

    /// Refills, then returns how long until a token is available (`None`: available now).
    fn wait(&mut self, now: Instant, window: Duration) -> Option<Hold> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let window_secs = window.as_secs_f64().max(f64::MIN_POSITIVE);
        self.tokens = (self.tokens + elapsed * self.per_window / window_secs).min(self.per_window);
        if let Some(p) = self.paused_until {
            if now < p {
                return Some(Hold {
                    wait: p - now,
                    asked: self.pause_asked.clone(),
                });
            }
            self.paused_until = None;
            self.pause_asked = None;
        }
        if self.tokens >= 1.0 {
            None
        } else {
            let secs = (1.0 - self.tokens) * window_secs / self.per_window;
            Some(Hold {
                wait: Duration::try_from_secs_f64(secs).unwrap_or(window),
                asked: None,
            })
        }
    }

    fn set_budget(&mut self, per_window: u32) {
        let per_window = f64::from(per_window.max(1));
        if (per_window - self.per_window).abs() > f64::EPSILON {
            self.tokens = self.tokens.min(per_window);
            self.per_window = per_window;
        }
    }

    fn pause(&mut self, until: Instant, asked: Option<Asked>) {
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
            self.pause_asked = asked;
        }
    }
}

/// The limiter for one account.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<[Bucket; 3]>,
}

fn header<'h>(headers: &'h HeaderMap, names: &[&str]) -> Option<&'h str> {
    names
        .iter()
        .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
}

fn header_count(headers: &HeaderMap, names: &[&str]) -> Option<u64> {
    names
        .iter()
        .find_map(|n| headers::count(headers.get(*n)?.to_str().ok()?))
}

impl RateLimiter {
    /// A limiter with these budgets.
    pub fn new(limits: RateLimits) -> Self {
        let now = Instant::now();
        let account = limits
            .account_cap
            .map_or(limits.account_per_window, |c| c.min(limits.account_per_window));
        RateLimiter {
            limits,
            buckets: Mutex::new([
                Bucket::new(account, now),
                Bucket::new(limits.exports_per_window, now),
                Bucket::new(limits.audits_per_window, now),
            ]),
        }
    }

    /// Takes the tokens of one request of `class` if they are available (`None`), or says how long
    /// to wait before asking again.
    pub fn reserve(&self, class: EndpointClass) -> Option<Hold> {
        let mut b = self.buckets.lock();
        let now = Instant::now();
        let w = self.limits.window;
        let mut hold = b[0].wait(now, w);
        if class != EndpointClass::Account {
            if let Some(h) = b[class.index()].wait(now, w) {
                if hold.as_ref().is_none_or(|a| h.wait > a.wait) {
                    hold = Some(h);
                }
            }
        }
        if hold.is_none() {
            b[0].tokens -= 1.0;
            if class != EndpointClass::Account {
                b[class.index()].tokens -= 1.0;
            }
        }
        hold
    }

    /// Reads Zendesk's rate-limit headers from a response. Any value is safe: unreadable ones are
    /// ignored, huge ones saturate (and the client refuses a wait above the policy's limit).
    pub fn observe(&self, headers: &HeaderMap) {
        let limit = header_count(headers, &["x-rate-limit", "ratelimit-limit"]);
        let remaining = header_count(headers, &["x-rate-limit-remaining", "ratelimit-remaining"]);
        if limit.is_none() && remaining.is_none() {
            return;
        }
        let mut b = self.buckets.lock();
        if let Some(limit) = limit {
            let limit = u32::try_from(limit).unwrap_or(u32::MAX);
            b[0].set_budget(self.limits.account_cap.map_or(limit, |c| c.min(limit)));
        }
        if remaining == Some(0) {
            // The account (possibly with the customer's other apps) spent the window: sit it out.
            let asked = header(headers, &[headers::RATELIMIT_RESET]).and_then(headers::reset);
            let wait = match &asked {
                Some(a) => self.scaled(a.wait.max(Duration::from_secs(1))),
                None => self.limits.window,
            };
            b[0].pause(deadline(Instant::now(), wait), asked);
        }
    }

    /// Pauses `class` for `wait` after a 429 (a wait the retry policy accepted).
    pub fn pause(&self, class: EndpointClass, wait: Duration) {
        let until = deadline(Instant::now(), wait);
        let mut b = self.buckets.lock();
        b[class.index()].pause(until, None);
    }

    /// Server seconds are minutes-relative; with a compressed window they shrink the same way.
    fn scaled(&self, d: Duration) -> Duration {
        let factor = (self.limits.window.as_secs_f64() / 60.0).min(1.0);
        Duration::try_from_secs_f64(d.as_secs_f64() * factor)
            .unwrap_or(d)
            .min(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// Takes a token, sleeping (paused test time) as long as the limiter says.
    async fn acquire(l: &RateLimiter, class: EndpointClass) {
        while let Some(h) = l.reserve(class) {
            tokio::time::sleep(h.wait).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn exports_are_paced_after_the_burst() {
        let l = RateLimiter::new(RateLimits {
            exports_per_window: 2,
            ..RateLimits::default()
        });
        let t0 = Instant::now();
        for _ in 0..2 {
            acquire(&l, EndpointClass::Export).await;
        }
        assert_eq!(Instant::now(), t0, "the burst goes at once");
        acquire(&l, EndpointClass::Export).await;
        let waited = Instant::now() - t0;
        assert!(
            waited >= Duration::from_secs(29) && waited <= Duration::from_secs(31),
            "{waited:?}"
        );
        // Account-only requests are not held back by the export budget.
        let t1 = Instant::now();
        acquire(&l, EndpointClass::Account).await;
        assert_eq!(Instant::now(), t1);
    }

    #[tokio::test(start_paused = true)]
    async fn headers_set_the_budget_and_zero_remaining_pauses() {
        let l = RateLimiter::new(RateLimits {
            account_cap: Some(100),
            ..RateLimits::default()
        });
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit", HeaderValue::from_static("700"));
        h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("ratelimit-reset", HeaderValue::from_static("7"));
        l.observe(&h);
        assert_eq!(
            l.buckets.lock()[0].per_window,
            100.0,
            "the cap wins over the plan"
        );
        let t0 = Instant::now();
        acquire(&l, EndpointClass::Account).await;
        assert!(Instant::now() - t0 >= Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_the_class() {
        let l = RateLimiter::new(RateLimits::default());
        l.pause(EndpointClass::Export, Duration::from_secs(5));
        let t0 = Instant::now();
        acquire(&l, EndpointClass::Export).await;
        assert!(Instant::now() - t0 >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_headers_neither_panic_nor_overflow() {
        let l = RateLimiter::new(RateLimits::default());
        for (limit, remaining, reset) in [
            ("1e30", "0", "1e20"),
            ("-5", "0", "NaN"),
            ("inf", "0.0", "1e400"),
            ("18446744073709551616", "0", "18446744073709551615"),
        ] {
            let mut h = HeaderMap::new();
            h.insert("x-rate-limit", HeaderValue::from_static(limit));
            h.insert("ratelimit-remaining", HeaderValue::from_static(remaining));
            h.insert("ratelimit-reset", HeaderValue::from_static(reset));
            l.observe(&h);
        }
        // The pause is there, bounded, and says what Zendesk asked for.
        let hold = l.reserve(EndpointClass::Account).unwrap();
        assert!(hold.wait <= headers::LONGEST_WAIT);
        let asked = hold.asked.unwrap();
        assert_eq!(asked.header, "ratelimit-reset");
        assert_eq!(asked.said, "100000000000000000000 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_pause_reports_what_was_asked() {
        let l = RateLimiter::new(RateLimits::default());
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
        h.insert("ratelimit-reset", HeaderValue::from_static("40"));
        l.observe(&h);
        let hold = l.reserve(EndpointClass::Export).unwrap();
        assert_eq!(hold.wait, Duration::from_secs(40));
        assert_eq!(hold.asked.unwrap().said, "40 s");
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(l.reserve(EndpointClass::Export), None);
    }
}
