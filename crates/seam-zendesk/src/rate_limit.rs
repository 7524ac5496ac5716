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
}

impl Bucket {
    fn new(per_window: u32, now: Instant) -> Self {
        let per_window = f64::from(per_window.max(1));
        Bucket {
            per_window,
            tokens: per_window,
            last: now,
            paused_until: None,
        }
    }

    /// Refills, then returns how long until a token is available (zero: available now).
    fn wait(&mut self, now: Instant, window: Duration) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_window / window.as_secs_f64()).min(self.per_window);
        if let Some(p) = self.paused_until {
            if now < p {
                return p - now;
            }
            self.paused_until = None;
        }
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) * window.as_secs_f64() / self.per_window)
        }
    }

    fn set_budget(&mut self, per_window: u32) {
        let per_window = f64::from(per_window.max(1));
        if (per_window - self.per_window).abs() > f64::EPSILON {
            self.tokens = self.tokens.min(per_window);
            self.per_window = per_window;
        }
    }

    fn pause(&mut self, until: Instant) {
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
    }
}

/// The limiter for one account.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<[Bucket; 3]>,
}

fn header_u64(headers: &HeaderMap, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| {
        headers
            .get(*n)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .map(|v| v.max(0.0) as u64)
    })
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

    /// Waits until a request of `class` may be sent, and takes its tokens.
    pub async fn acquire(&self, class: EndpointClass) {
        loop {
            let wait = {
                let mut b = self.buckets.lock();
                let now = Instant::now();
                let w = self.limits.window;
                let mut wait = b[0].wait(now, w);
                if class != EndpointClass::Account {
                    wait = wait.max(b[class.index()].wait(now, w));
                }
                if wait.is_zero() {
                    b[0].tokens -= 1.0;
                    if class != EndpointClass::Account {
                        b[class.index()].tokens -= 1.0;
                    }
                    return;
                }
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Reads Zendesk's rate-limit headers from a response.
    pub fn observe(&self, headers: &HeaderMap) {
        let limit = header_u64(headers, &["x-rate-limit", "ratelimit-limit"]);
        let remaining = header_u64(headers, &["x-rate-limit-remaining", "ratelimit-remaining"]);
        let reset = header_u64(headers, &["ratelimit-reset"]);
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
            let secs = reset.unwrap_or(self.limits.window.as_secs()).max(1);
            let wait = self.scaled(Duration::from_secs(secs));
            b[0].pause(Instant::now() + wait);
        }
    }

    /// Pauses `class` (and the account, for account-class requests) for `wait` after a 429.
    pub fn pause(&self, class: EndpointClass, wait: Duration) {
        let until = Instant::now() + wait;
        let mut b = self.buckets.lock();
        b[class.index()].pause(until);
    }

    /// Server seconds are minutes-relative; with a compressed window they shrink the same way.
    fn scaled(&self, d: Duration) -> Duration {
        let factor = self.limits.window.as_secs_f64() / 60.0;
        Duration::from_secs_f64(d.as_secs_f64() * factor.min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[tokio::test(start_paused = true)]
    async fn exports_are_paced_after_the_burst() {
        let l = RateLimiter::new(RateLimits {
            exports_per_window: 2,
            ..RateLimits::default()
        });
        let t0 = Instant::now();
        for _ in 0..2 {
            l.acquire(EndpointClass::Export).await;
        }
        assert_eq!(Instant::now(), t0, "the burst goes at once");
        l.acquire(EndpointClass::Export).await;
        let waited = Instant::now() - t0;
        assert!(
            waited >= Duration::from_secs(29) && waited <= Duration::from_secs(31),
            "{waited:?}"
        );
        // Account-only requests are not held back by the export budget.
        let t1 = Instant::now();
        l.acquire(EndpointClass::Account).await;
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
        l.acquire(EndpointClass::Account).await;
        assert!(Instant::now() - t0 >= Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_the_class() {
        let l = RateLimiter::new(RateLimits::default());
        l.pause(EndpointClass::Export, Duration::from_secs(5));
        let t0 = Instant::now();
        l.acquire(EndpointClass::Export).await;
        assert!(Instant::now() - t0 >= Duration::from_secs(5));
    }
}
