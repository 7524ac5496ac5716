//! Wall-clock time for the scheduler and jobs; virtual in tests.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::fmt;

/// Wall-clock time for the scheduler and jobs.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// Wall time that advances with tokio's clock: `base + (tokio now - tokio base)`. Under
/// `tokio::time::pause` it advances only when the test advances time.
#[derive(Debug, Clone)]
pub struct TokioClock {
    base_wall: DateTime<Utc>,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at the system's current time.
    pub fn new() -> Self {
        Self::starting_at(Utc::now())
    }

    /// Starts at `wall`.
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        TokioClock {
            base_wall: wall,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.base);
        self.base_wall + ChronoDuration::from_std(elapsed).unwrap_or(ChronoDuration::zero())
    }
}
