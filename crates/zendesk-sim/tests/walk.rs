//! Runs `scripts/sim_walk.py` against an in-process simulator: every export and list walked to
//! the end must match `/__sim/truth`.

use crate::common::*;
use zendesk_sim::SimConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_walker_matches_truth() {
    let Some(python) = seam_test_support::require_program(
        &["python3"],
        "the walker is a Python script: apt-get install python3",
    ) else {
        return;
    };
    let sim = start(SimConfig {
        tickets: 400,
        ..config(400)
    })
    .await;
    sim.mutate(50);
    sim.advance_clock(61);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/sim_walk.py");
    let base = sim.base_url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args([
                script,
                "--base-url",
                &base,
                "--email",
                "admin@acme.test",
                "--token",
                "sim-token",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sim_walk.py failed:\n{stdout}\n{stderr}");
    sim.shutdown().await;
}
