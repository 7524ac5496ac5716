//! Faults and rate limits switched on still give exact results.

use crate::common::*;
use seam_core::State;
use serde_json::json;
use zendesk_sim::{FaultConfig, Plan, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_rate_limits_still_give_exact_results() {
    // 15% of requests fail: 5xx, truncated and malformed bodies, resets. Rate limits on (Team plan,
    // one-second minutes), so 429s with Retry-After happen as well.
    let faults = FaultConfig {
        rate: 0.15,
        seed: 7,
        ..FaultConfig::default()
    };
    let sim = start(SimConfig {
        faults,
        plan: Plan::Team,
        ..sim_config(1500)
    })
    .await;
    let src = source(&sim, json!({"concurrency": 8}));
    let catalog = all_streams(&src).await;
    let run = read(&src, &catalog, State::default()).await;
    if let Err(e) = &run.result {
        panic!("read failed: {e}");
    }
    let truth = sim.truth();
    assert_matches_truth(&run, &truth, &[]);
    assert_no_duplicates(&run);
    check_contract(&run.messages);
    let stats = sim.stats();
    assert!(stats["faults"].as_u64().unwrap() > 0, "{stats}");

    // And incrementally.
    let state = run.last_state();
    sim.mutate(100);
    sim.advance_clock(61);
    let t1 = truth;
    let second = read(&src, &catalog, state).await;
    if let Err(e) = &second.result {
        panic!("incremental read failed: {e}");
    }
    let t2 = sim.truth();
    for s in [
        "tickets",
        "users",
        "organizations",
        "ticket_comments",
        "ticket_audits",
    ] {
        let old = t1[s]["updated"].as_object().unwrap();
        let want: std::collections::BTreeSet<String> = t2[s]["updated"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(id, v)| old.get(*id) != Some(v))
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(second.key_set(s), want, "{s}");
    }
}

/// A client that asks for more than the plan allows, so the server pushes back with 429s.
async fn pushed_back(edge_429_without_retry_after: bool) {
    // Three-second minutes: the export budget (10) runs out long before the sync is done.
    let config = SimConfig {
        edge_429_without_retry_after,
        plan: Plan::Team,
        time_scale: 20.0,
        ..sim_config(2500)
    };
    let sim = start(config).await;
    let src = source(
        &sim,
        json!({"export_requests_per_minute": 1000, "max_requests_per_minute": 100000}),
    );
    let catalog = all_streams(&src).await;
    let run = read(&src, &catalog, State::default()).await;
    if let Err(e) = &run.result {
        panic!("read failed: {e}");
    }
    assert_matches_truth(&run, &sim.truth(), &[]);
    assert_no_duplicates(&run);
    let stats = sim.stats();
    assert!(
        stats["rate_limited"].as_u64().unwrap() > 0,
        "the server never pushed back: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_with_retry_after_are_honoured() {
    pushed_back(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_without_retry_after_are_waited_out() {
    // Edge protection: 429 without Retry-After; the policy's default wait applies.
    pushed_back(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_failures_end_the_read_with_a_clear_error() {
    let faults = FaultConfig {
        rate: 1.0,
        kinds: vec![zendesk_sim::FaultKind::Status500],
        ..FaultConfig::default()
    };
    let sim = start(SimConfig {
        faults,
        ..sim_config(20)
    })
    .await;
    let src = source(&sim, json!({}));
    let mut catalog = seam_core::Catalog::default();
    // discover itself would fail: build the catalog from a healthy simulator.
    let healthy = start(sim_config(20)).await;
    catalog.streams = all_streams(&source(&healthy, json!({}))).await.streams;
    let run = read(&src, &catalog, State::default()).await;
    let e = run.result.unwrap_err();
    assert_eq!(e.kind, seam_core::ErrorKind::Transient);
    assert!(e.to_string().contains("zendesk answered 500"), "{e}");
    assert!(
        run.messages
            .iter()
            .all(|m| !matches!(m, seam_core::singer::Message::State { .. })),
        "no bookmark moved"
    );
}
