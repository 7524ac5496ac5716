//! Shared helpers: start a simulator, build a source for it, run a read, compare with the truth.

use seam_core::singer::Message;
use seam_core::{Catalog, ReadSummary, RetryPolicy, Source, SourceError, State};
use seam_zendesk::{RateLimits, ZendeskConfigRaw, ZendeskSource};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zendesk_sim::{SimConfig, SimHandle};

/// A simulator whose rate-limit minutes last a second (time_scale 60), with `tickets` tickets.
pub fn sim_config(tickets: usize) -> SimConfig {
    SimConfig {
        tickets,
        time_scale: 60.0,
        ..SimConfig::default()
    }
}

pub async fn start(config: SimConfig) -> SimHandle {
    let sim = zendesk_sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // Exports hold back the last minute: step past it so everything generated is visible.
    sim.advance_clock(61);
    sim
}

pub fn raw_config(sim: &SimHandle, extra: Value) -> ZendeskConfigRaw {
    let mut v = json!({"subdomain": "acme", "email": "admin@acme.test", "api_token": "sim-token",
        "start_date": "2000-01-01T00:00:00Z", "base_url": sim.base_url(), "concurrency": 6});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    ZendeskConfigRaw::from_json(&v.to_string()).unwrap()
}

/// A source with fast retries and one-second budget windows (matching time_scale 60).
pub fn source(sim: &SimHandle, extra: Value) -> ZendeskSource {
    let config = raw_config(sim, extra).validate().unwrap();
    let limits = RateLimits {
        window: Duration::from_secs(1),
        ..RateLimits::default()
    };
    ZendeskSource::with_options(config, RetryPolicy::fast_for_tests(), limits).unwrap()
}

#[derive(Debug)]
pub struct Run {
    pub messages: Vec<Message>,
    pub result: Result<ReadSummary, SourceError>,
}

impl Run {
    pub fn summary(&self) -> &ReadSummary {
        self.result.as_ref().unwrap()
    }

    /// The value of the last STATE message.
    pub fn last_state(&self) -> State {
        let v = self
            .messages
            .iter()
            .rev()
            .find_map(|m| match m {
                Message::State { value } => Some(value.clone()),
                _ => None,
            })
            .unwrap_or(Value::Null);
        State::from_value(v).unwrap()
    }

    /// Record keys per stream (ids, or `name` for tags), in emission order.
    pub fn keys(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in &self.messages {
            if let Message::Record(r) = m {
                let v = r.value().unwrap();
                let key = if r.stream == "tags" {
                    v["name"].as_str().unwrap().to_owned()
                } else {
                    v["id"].to_string()
                };
                out.entry(r.stream.clone()).or_default().push(key);
            }
        }
        out
    }

    pub fn key_set(&self, stream: &str) -> BTreeSet<String> {
        self.keys()
            .remove(stream)
            .unwrap_or_default()
            .into_iter()
            .collect()
    }
}

/// Every stream selected.
pub async fn all_streams(src: &ZendeskSource) -> Catalog {
    let mut c = src.discover().await.unwrap();
    c.select_all();
    c
}

/// Runs a read to the end, collecting every message.
pub async fn read(src: &ZendeskSource, catalog: &Catalog, state: State) -> Run {
    read_until(src, catalog, state, usize::MAX).await
}

/// Runs a read, but the consumer stops after `limit` messages (an interrupted run).
pub async fn read_until(src: &ZendeskSource, catalog: &Catalog, state: State, limit: usize) -> Run {
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let collector = tokio::spawn(async move {
        let mut v = Vec::new();
        while let Some(m) = rx.recv().await {
            v.push(m);
            if v.len() >= limit {
                break;
            }
        }
        v
    });
    let result = src.read(catalog, state, tx, CancellationToken::new()).await;
    let messages = collector.await.unwrap();
    Run { messages, result }
}

/// The truth's keys for a stream, as strings.
pub fn truth_keys(truth: &Value, stream: &str) -> BTreeSet<String> {
    truth[stream]["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no truth for {stream}"))
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Checks the Singer contract on a message sequence: SCHEMA before a stream's first RECORD, no
/// record twice within an incremental stream, and bookmarks that never move backwards.
pub fn check_contract(messages: &[Message]) {
    let mut schemas = BTreeSet::new();
    let mut last: BTreeMap<(String, String), i64> = BTreeMap::new();
    for m in messages {
        match m {
            Message::Schema(s) => {
                schemas.insert(s.stream.clone());
            }
            Message::Record(r) => assert!(
                schemas.contains(&r.stream),
                "RECORD of {} before its SCHEMA",
                r.stream
            ),
            Message::State { value } => {
                for (stream, marks) in value["bookmarks"].as_object().unwrap() {
                    for (k, v) in marks.as_object().unwrap() {
                        let Some(t) = v
                            .as_str()
                            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                        else {
                            continue;
                        };
                        let t = t.timestamp();
                        let prev = last.entry((stream.clone(), k.clone())).or_insert(t);
                        assert!(t >= *prev, "bookmark {stream}.{k} moved backwards: {prev} -> {t}");
                        *prev = t;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Asserts no stream repeats a key within one run.
pub fn assert_no_duplicates(run: &Run) {
    for (stream, keys) in run.keys() {
        let set: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(
            set.len(),
            keys.len(),
            "{stream} emitted {} duplicate records",
            keys.len() - set.len()
        );
    }
}

/// Asserts a full run's records equal the truth for every stream.
pub fn assert_matches_truth(run: &Run, truth: &Value, skip: &[&str]) {
    let keys = run.keys();
    for def in seam_zendesk::streams::STREAMS {
        if skip.contains(&def.name) {
            continue;
        }
        let got: BTreeSet<String> = keys
            .get(def.name)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let want = truth_keys(truth, def.name);
        let missing: Vec<_> = want.difference(&got).take(5).collect();
        let extra: Vec<_> = got.difference(&want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: {} records, truth {}; missing {:?}, extra {:?}",
            def.name,
            got.len(),
            want.len(),
            missing,
            extra
        );
    }
}

/// Waits until `done` holds, for at most `limit`; panics naming `what` otherwise.
pub async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
