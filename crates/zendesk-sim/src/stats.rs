//! Request accounting per endpoint (path template) and status, for `GET /__sim/stats`.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde_json::{json, Value};

#[derive(Debug, Default, Clone)]
struct EndpointStats {
    requests: u64,
    rate_limited: u64,
    faults: u64,
    statuses: BTreeMap<u16, u64>,
}

/// Counters for every API request (admin requests are not counted).
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<BTreeMap<String, EndpointStats>>,
}

impl Stats {
    /// Records one answered request.
    pub fn record(&self, template: &str, status: u16, faulted: bool) {
        let mut m = self.inner.lock();
        let e = m.entry(template.to_owned()).or_default();
        e.requests += 1;
        *e.statuses.entry(status).or_insert(0) += 1;
        if status == 429 {
            e.rate_limited += 1;
        }
        if faulted {
            e.faults += 1;
        }
    }

    /// Clears every counter.
    pub fn reset(&self) {
        self.inner.lock().clear();
    }

    /// `{"total": n, "rate_limited": n, "faults": n, "endpoints": {"<template>": {"requests", "rate_limited", "faults", "status": {"200": n}}}}`.
    pub fn snapshot(&self) -> Value {
        let m = self.inner.lock();
        let mut endpoints = serde_json::Map::new();
        let (mut total, mut limited, mut faults) = (0, 0, 0);
        for (k, e) in m.iter() {
            total += e.requests;
            limited += e.rate_limited;
            faults += e.faults;
            let statuses: serde_json::Map<String, Value> = e
                .statuses
                .iter()
                .map(|(s, n)| (s.to_string(), json!(n)))
                .collect();
            endpoints.insert(
                k.clone(),
                json!({"requests": e.requests, "rate_limited": e.rate_limited, "faults": e.faults, "status": statuses}),
            );
        }
        json!({"total": total, "rate_limited": limited, "faults": faults, "endpoints": endpoints})
    }
}

/// The path template used as a stats key: `.json` dropped, numeric segments replaced by `{id}`.
pub fn template(path: &str) -> String {
    let p = path.strip_suffix(".json").unwrap_or(path);
    p.split('/')
        .map(|seg| {
            let s = seg.strip_suffix(".json").unwrap_or(seg);
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(
            template("/api/v2/tickets/123/audits.json"),
            "/api/v2/tickets/{id}/audits"
        );
        assert_eq!(template("/api/v2/tickets/123.json"), "/api/v2/tickets/{id}");
        assert_eq!(
            template("/api/v2/incremental/tickets/cursor.json"),
            "/api/v2/incremental/tickets/cursor"
        );
    }

    #[test]
    fn snapshot_counts() {
        let s = Stats::default();
        s.record("/a", 200, false);
        s.record("/a", 429, false);
        s.record("/b", 500, true);
        let v = s.snapshot();
        assert_eq!(v["total"], 3);
        assert_eq!(v["endpoints"]["/a"]["status"]["429"], 1);
        assert_eq!(v["faults"], 1);
    }
}
