//! The simulator's virtual clock: sim-now = real now + an offset that only moves forward.
//!
//! Every mutation is stamped with sim-now, and the incremental-export rules ("records changed in
//! the last minute are not returned yet", "a `start_time` less than a minute old is rejected") are
//! evaluated against sim-now. `POST /__sim/clock/advance?seconds=N` adds to the offset, so a test can
//! mutate, advance 61 s and sync without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

/// Virtual clock shared by the whole simulator.
#[derive(Debug, Default)]
pub struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    /// A clock that starts at real time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sim-now in unix seconds.
    pub fn now(&self) -> i64 {
        real_now() + self.offset_secs.load(Ordering::SeqCst)
    }

    /// Moves sim-now forward by `secs` (negative values are ignored: the clock never goes back).
    pub fn advance(&self, secs: i64) {
        if secs > 0 {
            self.offset_secs.fetch_add(secs, Ordering::SeqCst);
        }
    }

    /// The current offset from real time, in seconds.
    pub fn offset(&self) -> i64 {
        self.offset_secs.load(Ordering::SeqCst)
    }
}

/// Real wall-clock time in unix seconds.
pub fn real_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Formats unix seconds as Zendesk does: ISO-8601 in UTC with a `Z` suffix and no fraction.
///
/// Hand-written (civil-from-days) because generation formats a few million timestamps and
/// chrono's strftime path allocates per item; the unit test checks it against chrono.
pub fn iso(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses an ISO-8601 timestamp (as produced by [`iso`]) back into unix seconds.
pub fn parse_iso(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_forward_only() {
        let c = Clock::new();
        let before = c.now();
        c.advance(120);
        c.advance(-500);
        assert!(c.now() >= before + 120);
        assert_eq!(c.offset(), 120);
    }

    #[test]
    fn iso_matches_chrono() {
        for ts in [
            0,
            1,
            951_782_400,
            1_709_164_800,
            1_700_000_123,
            4_102_444_799,
            1_234_567_890,
        ] {
            let want = chrono::DateTime::from_timestamp(ts, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            assert_eq!(iso(ts), want);
        }
    }

    #[test]
    fn iso_roundtrip() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_iso(&iso(1_700_000_123)), Some(1_700_000_123));
    }
}
