//! Injected faults: 5xx answers, slow answers, truncated or malformed JSON bodies, and
//! connections dropped mid-body. Draws come from a ChaCha RNG seeded by [`FaultConfig::seed`], so
//! a sequential client sees the same faults on every run. Faults never apply to `/__sim/*`.

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 500 with a JSON body.
    Status500,
    /// 502 with an HTML body from the load balancer.
    Status502,
    /// 503 with `Retry-After: 1`.
    Status503,
    /// 504 with an HTML body from the load balancer.
    Status504,
    /// 200 whose JSON body is cut in half.
    Truncated,
    /// 200 whose body is not valid JSON.
    Malformed,
    /// The connection is dropped after part of the body was sent.
    Reset,
}

/// Every fault kind.
pub const ALL_FAULTS: &[FaultKind] = &[
    FaultKind::Status500,
    FaultKind::Status502,
    FaultKind::Status503,
    FaultKind::Status504,
    FaultKind::Truncated,
    FaultKind::Malformed,
    FaultKind::Reset,
];

/// Fault settings (also the JSON body of `POST /__sim/faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Probability (0..=1) that an API request gets a fault.
    pub rate: f64,
    /// Kinds to choose from (uniformly); empty means all kinds.
    pub kinds: Vec<FaultKind>,
    /// Delay added to slowed requests, in milliseconds (0 = none).
    pub slow_ms: u64,
    /// Probability (0..=1) that a request is slowed by `slow_ms`.
    pub slow_rate: f64,
    /// Seed for the fault RNG.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            rate: 0.0,
            kinds: Vec::new(),
            slow_ms: 0,
            slow_rate: 1.0,
            seed: 1,
        }
    }
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultDraw {
    /// Fault to inject, if any.
    pub fault: Option<FaultKind>,
    /// Delay before answering, in milliseconds.
    pub delay_ms: u64,
}

/// Fault state: settings plus the RNG.
#[derive(Debug)]
pub struct Faults {
    inner: Mutex<(FaultConfig, ChaCha8Rng)>,
}

impl Faults {
    /// Faults with the given settings.
    pub fn new(config: FaultConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Self {
            inner: Mutex::new((config, rng)),
        }
    }

    /// Replaces the settings and reseeds the RNG.
    pub fn set(&self, config: FaultConfig) {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        *self.inner.lock() = (config, rng);
    }

    /// The current settings.
    pub fn get(&self) -> FaultConfig {
        self.inner.lock().0.clone()
    }

    /// Draws the fate of one request.
    pub fn draw(&self) -> FaultDraw {
        let mut g = self.inner.lock();
        let (cfg, rng) = &mut *g;
        let mut d = FaultDraw::default();
        if cfg.slow_ms > 0 && rng.gen_bool(cfg.slow_rate.clamp(0.0, 1.0)) {
            d.delay_ms = cfg.slow_ms;
        }
        if cfg.rate > 0.0 && rng.gen_bool(cfg.rate.clamp(0.0, 1.0)) {
            let kinds: &[FaultKind] = if cfg.kinds.is_empty() {
                ALL_FAULTS
            } else {
                &cfg.kinds
            };
            d.fault = Some(kinds[rng.gen_range(0..kinds.len())]);
        }
        d
    }
}

/// A body cut in half (on a char boundary).
pub fn truncate(body: &str) -> String {
    let mut cut = body.len() / 2;
    while cut > 0 && !body.is_char_boundary(cut) {
        cut -= 1;
    }
    body[..cut].to_owned()
}

/// A body that is not valid JSON.
pub fn malform(body: &str) -> String {
    let head = truncate(body);
    format!("{head},,\u{0}<html>unexpected</html>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_given_seed() {
        let cfg = FaultConfig {
            rate: 0.5,
            seed: 42,
            ..FaultConfig::default()
        };
        let a = Faults::new(cfg.clone());
        let b = Faults::new(cfg);
        let da: Vec<_> = (0..50).map(|_| a.draw().fault).collect();
        let db: Vec<_> = (0..50).map(|_| b.draw().fault).collect();
        assert_eq!(da, db);
        assert!(da.iter().any(Option::is_some) && da.iter().any(Option::is_none));
    }

    #[test]
    fn bodies_are_broken() {
        let body = r#"{"tickets":[{"id":1,"subject":"é"}]}"#;
        assert!(serde_json::from_str::<serde_json::Value>(&truncate(body)).is_err());
        assert!(serde_json::from_str::<serde_json::Value>(&malform(body)).is_err());
    }
}
