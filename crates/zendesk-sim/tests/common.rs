use std::collections::BTreeSet;

use serde_json::Value;
use zendesk_sim::{SimConfig, SimHandle};

/// Walks over paginated lists and exports end within this many pages, or the test fails.
pub const MAX_PAGES: usize = 10_000;

pub async fn start(config: SimConfig) -> SimHandle {
    zendesk_sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

pub fn config(tickets: usize) -> SimConfig {
    SimConfig {
        tickets,
        rate_limits: false,
        ..SimConfig::default()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

pub fn get(sim: &SimHandle, url: &str) -> reqwest::RequestBuilder {
    let url = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("{}{}", sim.base_url(), url)
    };
    client()
        .get(url)
        .basic_auth("admin@acme.test/token", Some("sim-token"))
}

pub async fn get_json(sim: &SimHandle, url: &str) -> Value {
    let resp = get(sim, url).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "GET {url} -> {status}: {text}");
    serde_json::from_str(&text).unwrap()
}

pub fn ids(v: &Value) -> BTreeSet<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

pub fn truth_ids(sim: &SimHandle, stream: &str) -> BTreeSet<u64> {
    ids(&sim.truth_of(stream).unwrap()["ids"])
}

pub fn record_ids(v: &Value, key: &str) -> Vec<u64> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}
