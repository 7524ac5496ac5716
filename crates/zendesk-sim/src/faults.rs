//! Injected faults: 5xx answers, slow answers, truncated or malformed JSON bodies, and
//! connections dropped mid-body. Draws come from a ChaCha RNG seeded by [`FaultConfig::seed`], so
//! a sequential client sees the same faults on every run. Faults never apply to `/__sim/*`.
//!
//! Besides those random faults, [`PathFault`] rules target one endpoint deterministically: answer a
//! status instead of the resource (a 403 on `/api/v2/tags.json`, 500s until a client gives up, a 429
//! with any `Retry-After`), answer it slowly, or add response headers (e.g. `ratelimit-reset`). A rule
//! applies to every request of its path, or to the next `times` requests only.

use std::collections::BTreeMap;

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
    /// Rules for single endpoints, applied whatever `rate` draws (the first matching rule wins).
    pub paths: Vec<PathFault>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            rate: 0.0,
            kinds: Vec::new(),
            slow_ms: 0,
            slow_rate: 1.0,
            seed: 1,
            paths: Vec::new(),
        }
    }
}

/// A fault for the requests of one endpoint (an element of `paths` in `POST /__sim/faults`, or of
/// the array `POST /__sim/faults/paths` takes).
///
/// ```json
/// {"path": "/api/v2/tags.json", "status": 403}
/// {"path": "/api/v2/tags.json", "delay_ms": 400}
/// {"path": "/api/v2/groups.json", "status": 429, "headers": {"retry-after": "1e20"}, "times": 1}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathFault {
    /// The request path, `.json` optional (`/api/v2/tags` matches `/api/v2/tags.json`), or its
    /// stats template with `{id}` for numeric segments (`/api/v2/tickets/{id}/audits`).
    pub path: String,
    /// Answer this status instead of the resource (100..=599): 403 and 404 with Zendesk's bodies,
    /// 429 with the rate-limit body (and only the `Retry-After` given in `headers`), 5xx with an
    /// error body. Absent: the resource is served as usual, with `delay_ms` and `headers` applied.
    #[serde(default)]
    pub status: Option<u16>,
    /// Milliseconds to wait before answering.
    #[serde(default)]
    pub delay_ms: u64,
    /// Response headers to add, replacing any the simulator sets (e.g. `retry-after`,
    /// `ratelimit-remaining`, `ratelimit-reset`); values are sent exactly as given.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Apply to this many more requests, then never again (absent: every request). `GET
    /// /__sim/faults/paths` shows what is left.
    #[serde(default)]
    pub times: Option<u64>,
}

impl PathFault {
    /// A rule answering `status` to every request of `path`.
    pub fn status(path: &str, status: u16) -> Self {
        PathFault {
            path: path.to_owned(),
            status: Some(status),
            delay_ms: 0,
            headers: BTreeMap::new(),
            times: None,
        }
    }

    /// A rule serving `path` as usual, `delay_ms` late.
    pub fn slow(path: &str, delay_ms: u64) -> Self {
        PathFault {
            path: path.to_owned(),
            status: None,
            delay_ms,
            headers: BTreeMap::new(),
            times: None,
        }
    }

    /// Checks the rule: a path under `/api/v2/`, a status between 100 and 599, valid header names
    /// and values. The error names the rule's path and what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with("/api/v2/") {
            return Err(format!(
                "path fault {:?}: path must start with /api/v2/",
                self.path
            ));
        }
        if let Some(s) = self.status {
            if !(100..=599).contains(&s) {
                return Err(format!(
                    "path fault {:?}: status {s} must be between 100 and 599",
                    self.path
                ));
            }
        }
        for (k, v) in &self.headers {
            if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || axum::http::HeaderValue::from_str(v).is_err()
            {
                return Err(format!(
                    "path fault {:?}: header {k:?}: {v:?} is not a valid HTTP header",
                    self.path
                ));
            }
        }
        Ok(())
    }

    fn matches(&self, path: &str, template: &str) -> bool {
        let want = self.path.strip_suffix(".json").unwrap_or(&self.path);
        let got = path.strip_suffix(".json").unwrap_or(path);
        want == got || want == template
    }
}

/// What a [`PathFault`] does to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathDraw {
    /// Status to answer instead of the resource.
    pub status: Option<u16>,
    /// Delay before answering, in milliseconds.
    pub delay_ms: u64,
    /// Headers to add to the answer.
    pub headers: Vec<(String, String)>,
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

    /// Replaces only the per-path rules (the random settings and the RNG are kept).
    pub fn set_paths(&self, paths: Vec<PathFault>) {
        self.inner.lock().0.paths = paths;
    }

    /// The rule for a request of `path` (whose stats template is `template`), if one applies; a
    /// rule with `times` left counts this request.
    pub fn path_draw(&self, path: &str, template: &str) -> Option<PathDraw> {
        let mut g = self.inner.lock();
        let rule =
            g.0.paths
                .iter_mut()
                .find(|r| r.times.is_none_or(|t| t > 0) && r.matches(path, template))?;
        if let Some(t) = rule.times.as_mut() {
            *t -= 1;
        }
        Some(PathDraw {
            status: rule.status,
            delay_ms: rule.delay_ms,
            headers: rule.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
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
    fn path_rules_match_with_or_without_json_and_run_out() {
        let f = Faults::new(FaultConfig::default());
        let mut once = PathFault::status("/api/v2/groups", 429);
        once.times = Some(1);
        once.headers.insert("retry-after".into(), "1e20".into());
        f.set_paths(vec![
            once,
            PathFault::status("/api/v2/tickets/{id}/audits", 404),
            PathFault::slow("/api/v2/tags.json", 5),
        ]);
        let d = f.path_draw("/api/v2/groups.json", "/api/v2/groups").unwrap();
        assert_eq!(d.status, Some(429));
        assert_eq!(d.headers, vec![("retry-after".to_owned(), "1e20".to_owned())]);
        assert_eq!(
            f.path_draw("/api/v2/groups.json", "/api/v2/groups"),
            None,
            "used up"
        );
        assert_eq!(f.get().paths[0].times, Some(0));
        let d = f.path_draw("/api/v2/tickets/7/audits.json", "/api/v2/tickets/{id}/audits");
        assert_eq!(d.unwrap().status, Some(404));
        let d = f.path_draw("/api/v2/tags", "/api/v2/tags").unwrap();
        assert_eq!((d.status, d.delay_ms), (None, 5));
        assert_eq!(f.path_draw("/api/v2/tags/x", "/api/v2/tags/x"), None);
    }

    #[test]
    fn path_rules_are_validated() {
        assert!(PathFault::status("/api/v2/tags.json", 403).validate().is_ok());
        assert!(PathFault::status("/api/v2/tags.json", 99).validate().is_err());
        assert!(PathFault::status("/tags.json", 403).validate().is_err());
        let mut bad = PathFault::slow("/api/v2/tags.json", 1);
        bad.headers.insert("bad header".into(), "x".into());
        assert!(bad.validate().is_err());
    }

    #[test]
    fn bodies_are_broken() {
        let body = r#"{"tickets":[{"id":1,"subject":"é"}]}"#;
        assert!(serde_json::from_str::<serde_json::Value>(&truncate(body)).is_err());
        assert!(serde_json::from_str::<serde_json::Value>(&malform(body)).is_err());
    }
}
