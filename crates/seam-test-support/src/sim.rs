//! The simulated Zendesk that tests talk to (feature `sim`): started on a free loopback port, and the
//! Zendesk config that points seam at it.

use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use zendesk_sim::{FaultConfig, SimConfig, SimHandle};

/// The simulator account's login email, as [`write_config`] names it.
pub const EMAIL: &str = "admin@acme.test";
/// The simulator account's API token, as [`write_config`] names it.
pub const API_TOKEN: &str = "sim-token";

/// A simulator with `tickets` tickets made from `seed`, no rate limits, and every answer `slow_ms`
/// late (0: none).
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

/// A simulator with `config`, on a free loopback port. Panics when it cannot start.
pub async fn start_sim_with(config: SimConfig) -> SimHandle {
    match zendesk_sim::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await {
        Ok(sim) => sim,
        Err(e) => panic!("the Zendesk simulator did not start: {e}"),
    }
}

/// Makes every later answer of `sim` wait `slow_ms` (and removes any other fault).
pub fn slow_down(sim: &SimHandle, slow_ms: u64) {
    sim.set_faults(FaultConfig {
        slow_ms,
        slow_rate: 1.0,
        ..FaultConfig::default()
    });
}

/// Writes `dir/name`: a Zendesk config (tap-zendesk's keys) for the simulator at `base_url`,
/// replicating from 2000, with `page_size` when given. Panics when it cannot write the file.
pub fn write_config(dir: &Path, name: &str, base_url: &str, page_size: Option<u32>) -> PathBuf {
    let path = dir.join(name);
    let mut config = json!({
        "subdomain": "acme", "email": EMAIL, "api_token": API_TOKEN,
        "start_date": "2000-01-01T00:00:00Z", "base_url": base_url,
    });
    if let Some(size) = page_size {
        config["page_size"] = json!(size);
    }
    if let Err(e) = std::fs::write(&path, config.to_string()) {
        panic!("cannot write {}: {e}", path.display());
    }
    path
}
