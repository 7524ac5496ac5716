use crate::common::*;
use zendesk_sim::{Plan, SimConfig};

#[tokio::test]
async fn export_limit_answers_429_with_retry_after() {
    let sim = start(SimConfig {
        rate_limits: true,
        time_scale: 60.0,
        plan: Plan::Enterprise,
        ..config(10)
    })
    .await;
    // Align to a fresh window so ten requests fit in it.
    sim.reset_rate_limits();
    let mut limited = None;
    for i in 0..40 {
        let resp = get(&sim, "/api/v2/incremental/organizations.json?start_time=1")
            .send()
            .await
            .unwrap();
        assert!(resp.headers().contains_key("x-rate-limit"));
        assert!(resp.headers().contains_key("ratelimit-remaining"));
        assert!(resp.headers().contains_key("ratelimit-reset"));
        if resp.status() == 429 {
            limited = Some((i, resp));
            break;
        }
    }
    let (i, resp) = limited.expect("the export budget must run out");
    assert!(i >= 10, "at least ten export requests per window");
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let again = get(&sim, "/api/v2/incremental/organizations.json?start_time=1")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let stats = sim.stats();
    assert!(
        stats["endpoints"]["/api/v2/incremental/organizations"]["rate_limited"]
            .as_u64()
            .unwrap()
            >= 1
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn edge_protection_429_has_no_retry_after() {
    let sim = start(SimConfig {
        rate_limits: true,
        edge_429_without_retry_after: true,
        ..config(10)
    })
    .await;
    let mut hit = false;
    for _ in 0..20 {
        let resp = get(&sim, "/api/v2/incremental/tickets/cursor.json?start_time=1")
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            assert!(!resp.headers().contains_key("retry-after"));
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["detail"], "Rate limited by Zendesk edge protection");
            hit = true;
            break;
        }
    }
    assert!(hit);
    sim.shutdown().await;
}

#[tokio::test]
async fn account_budget_by_plan() {
    let sim = start(SimConfig {
        rate_limits: true,
        plan: Plan::Team,
        ..config(10)
    })
    .await;
    let mut n429 = 0;
    for _ in 0..210 {
        let resp = get(&sim, "/api/v2/groups.json").send().await.unwrap();
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
            n429 += 1;
        } else {
            assert_eq!(resp.headers()["x-rate-limit"], "200");
        }
    }
    assert!(n429 >= 10 || n429 > 0);
    sim.shutdown().await;
}
