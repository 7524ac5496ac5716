//! Rate limits as Zendesk enforces them
//! (<https://developer.zendesk.com/api-reference/introduction/rate-limits/>):
//!
//! - an account budget per minute by plan (Team 200, Growth 400, Professional 400, Enterprise 700,
//!   High Volume 2,500) that every API request counts against, exports included;
//! - incremental exports: 10 requests per minute (30 with the High Volume add-on), one budget shared
//!   by all `/api/v2/incremental/*` endpoints
//!   (<https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/>);
//! - per-ticket audits `/api/v2/tickets/{id}/audits`: 450 requests per minute.
//!
//! Windows are fixed: the minute is divided by `time_scale` (time_scale 60 → a one-second window).
//! A request over any budget gets 429 with `Retry-After` = the real seconds until that window
//! resets, rounded up and at least 1 (the header is an integer, so a compressed window still asks
//! for ≥ 1 s). Rejected requests do not consume budget.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Zendesk Support plans and their account budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Plan {
    /// 200 requests/min.
    Team,
    /// 400 requests/min.
    Growth,
    /// 400 requests/min.
    #[default]
    Professional,
    /// 700 requests/min.
    Enterprise,
    /// 2,500 requests/min, and 30/min on incremental exports.
    HighVolume,
}

impl Plan {
    /// Account-wide requests per minute.
    pub fn account_limit(self) -> u32 {
        match self {
            Plan::Team => 200,
            Plan::Growth | Plan::Professional => 400,
            Plan::Enterprise => 700,
            Plan::HighVolume => 2_500,
        }
    }

    /// Incremental export requests per minute.
    pub fn export_limit(self) -> u32 {
        if self == Plan::HighVolume {
            30
        } else {
            10
        }
    }

    /// Parses `team|growth|professional|enterprise|high-volume`.
    pub fn parse(s: &str) -> Option<Plan> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "team" => Some(Plan::Team),
            "growth" => Some(Plan::Growth),
            "professional" => Some(Plan::Professional),
            "enterprise" => Some(Plan::Enterprise),
            "high-volume" | "highvolume" => Some(Plan::HighVolume),
            _ => None,
        }
    }
}

/// Per-ticket audit endpoint budget per minute.
pub const AUDITS_PER_MINUTE: u32 = 450;

/// Which endpoint-specific budget a request falls under (besides the account budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointClass {
    /// `/api/v2/incremental/*`.
    IncrementalExport,
    /// `/api/v2/tickets/{id}/audits`.
    TicketAudits,
    /// Everything else.
    Other,
}

/// Header values for a request that passed.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// Account limit per minute.
    pub limit: u32,
    /// Account requests left in this window.
    pub remaining: u32,
    /// Real seconds until the window resets (≥ 1).
    pub reset_secs: u64,
}

/// Outcome of [`RateLimiter::check`].
#[derive(Debug, Clone, Copy)]
pub enum Decision {
    /// Go ahead.
    Allowed(Quota),
    /// Over a budget: answer 429.
    Limited {
        /// Seconds to put in `Retry-After`.
        retry_after: u64,
        /// Headers to send with the 429.
        quota: Quota,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    window: u64,
    account: u32,
    exports: u32,
    audits: u32,
}

/// Fixed-window limiter for one simulated account.
#[derive(Debug)]
pub struct RateLimiter {
    plan: Plan,
    enabled: bool,
    window: Duration,
    origin: Instant,
    counts: Mutex<Counts>,
}

impl RateLimiter {
    /// A limiter for `plan`; `time_scale` compresses the minute; `enabled: false` lets everything through.
    pub fn new(plan: Plan, time_scale: f64, enabled: bool) -> Self {
        let scale = if time_scale.is_finite() && time_scale > 0.0 {
            time_scale
        } else {
            1.0
        };
        let window = Duration::from_secs_f64((60.0 / scale).max(0.001));
        Self {
            plan,
            enabled,
            window,
            origin: Instant::now(),
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Forgets all counts (admin reset).
    pub fn reset(&self) {
        *self.counts.lock() = Counts::default();
    }

    /// Counts a request of `class` if every budget it falls under has room.
    pub fn check(&self, class: EndpointClass) -> Decision {
        let limit = self.plan.account_limit();
        let elapsed = self.origin.elapsed();
        let w = self.window.as_secs_f64();
        let idx = (elapsed.as_secs_f64() / w) as u64;
        let into = elapsed.as_secs_f64() - idx as f64 * w;
        let reset_secs = ((w - into).ceil() as u64).max(1);
        if !self.enabled {
            return Decision::Allowed(Quota {
                limit,
                remaining: limit,
                reset_secs,
            });
        }
        let mut c = self.counts.lock();
        if c.window != idx {
            *c = Counts {
                window: idx,
                ..Counts::default()
            };
        }
        let quota = |used: u32| Quota {
            limit,
            remaining: limit.saturating_sub(used),
            reset_secs,
        };
        let over = c.account >= limit
            || (class == EndpointClass::IncrementalExport && c.exports >= self.plan.export_limit())
            || (class == EndpointClass::TicketAudits && c.audits >= AUDITS_PER_MINUTE);
        if over {
            return Decision::Limited {
                retry_after: reset_secs,
                quota: quota(c.account),
            };
        }
        c.account += 1;
        match class {
            EndpointClass::IncrementalExport => c.exports += 1,
            EndpointClass::TicketAudits => c.audits += 1,
            EndpointClass::Other => {}
        }
        Decision::Allowed(quota(c.account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_budget_is_ten_per_window() {
        let rl = RateLimiter::new(Plan::Enterprise, 1.0, true);
        for _ in 0..10 {
            assert!(matches!(
                rl.check(EndpointClass::IncrementalExport),
                Decision::Allowed(_)
            ));
        }
        match rl.check(EndpointClass::IncrementalExport) {
            Decision::Limited { retry_after, .. } => assert!((1..=60).contains(&retry_after)),
            Decision::Allowed(_) => panic!("11th export request should be limited"),
        }
        // Other endpoints still have account budget.
        assert!(matches!(rl.check(EndpointClass::Other), Decision::Allowed(_)));
    }

    #[test]
    fn account_budget_by_plan() {
        let rl = RateLimiter::new(Plan::Team, 1.0, true);
        for _ in 0..200 {
            assert!(matches!(rl.check(EndpointClass::Other), Decision::Allowed(_)));
        }
        assert!(matches!(rl.check(EndpointClass::Other), Decision::Limited { .. }));
        assert_eq!(Plan::parse("high-volume"), Some(Plan::HighVolume));
        assert_eq!(Plan::HighVolume.export_limit(), 30);
    }

    #[test]
    fn disabled_lets_everything_through() {
        let rl = RateLimiter::new(Plan::Team, 1.0, false);
        for _ in 0..1000 {
            assert!(matches!(
                rl.check(EndpointClass::IncrementalExport),
                Decision::Allowed(_)
            ));
        }
    }
}
