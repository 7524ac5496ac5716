//! The simulated Zendesk the tests talk to, and the Zendesk config that points `seam` at it.

use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use zendesk_sim::{FaultConfig, SimConfig, SimHandle};

/// The simulator's account, as `write_config` names it.
pub const EMAIL: &str = "admin@acme.test";
pub const API_TOKEN: &str = "sim-token";

/// A simulator with `tickets` tickets made from `seed`, no rate limits, and every answer
/// `slow_ms` late (0: none).
pub async fn start_sim(tickets: usize, seed: u64, slow_ms: u64) -> SimHandle {
    start_sim_with(SimConfig {
        tickets,
        seed,
        rate_limits: false,
        faults: FaultConfig {
            slow_ms,
            slow_rate: 1.0,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    })
    .await
}

/// A simulator with `config`, on a free loopback port.
pub async fn start_sim_with(config: SimConfig) -> SimHandle {
    zendesk_sim::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

/// Makes every later simulator answer wait `slow_ms`, through the simulator's admin API.
pub async fn slow_down(sim: &SimHandle, slow_ms: u64) {
    let resp = reqwest::Client::new()
        .post(format!("{}/__sim/faults", sim.base_url()))
        .json(&json!({"rate": 0.0, "kinds": [], "slow_ms": slow_ms, "slow_rate": 1.0, "seed": 1}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
}

/// Writes `dir/name`: a Zendesk config (tap-zendesk's keys) for the simulator at `base_url`,
/// replicating from 2000, with `page_size` when given.
pub fn write_config(dir: &Path, name: &str, base_url: &str, page_size: Option<u32>) -> PathBuf {
    let path = dir.join(name);
    let mut config = json!({
        "subdomain": "acme", "email": EMAIL, "api_token": API_TOKEN,
        "start_date": "2000-01-01T00:00:00Z", "base_url": base_url,
    });
    if let Some(size) = page_size {
        config["page_size"] = json!(size);
    }
    std::fs::write(&path, config.to_string()).unwrap();
    path
}
