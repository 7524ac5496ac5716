use crate::common::*;
use zendesk_sim::{FaultConfig, FaultKind};

fn only(kind: FaultKind) -> FaultConfig {
    FaultConfig {
        rate: 1.0,
        kinds: vec![kind],
        ..FaultConfig::default()
    }
}

#[tokio::test]
async fn status_faults() {
    let sim = start(config(10)).await;
    for (kind, status) in [
        (FaultKind::Status500, 500),
        (FaultKind::Status502, 502),
        (FaultKind::Status503, 503),
        (FaultKind::Status504, 504),
    ] {
        sim.set_faults(only(kind));
        let resp = get(&sim, "/api/v2/groups.json").send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
    }
    // Admin paths are never faulted.
    let truth = client()
        .get(format!("{}/__sim/truth?stream=groups", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(truth.status(), 200);
    sim.set_faults(FaultConfig::default());
    assert_eq!(
        get(&sim, "/api/v2/groups.json").send().await.unwrap().status(),
        200
    );
    let stats = sim.stats();
    assert_eq!(stats["faults"], 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn broken_bodies() {
    let sim = start(config(10)).await;
    for kind in [FaultKind::Truncated, FaultKind::Malformed] {
        sim.set_faults(only(kind));
        let resp = get(&sim, "/api/v2/groups.json").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    }
    sim.set_faults(only(FaultKind::Reset));
    let resp = get(&sim, "/api/v2/incremental/tickets/cursor.json?start_time=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "headers arrive before the reset");
    assert!(resp.text().await.is_err(), "the connection is dropped mid-body");
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_set_over_http_are_seeded() {
    let sim = start(config(10)).await;
    let set = client()
        .post(format!("{}/__sim/faults", sim.base_url()))
        .json(&serde_json::json!({"rate": 0.5, "kinds": ["status500"], "seed": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let mut first = Vec::new();
    for _ in 0..20 {
        first.push(
            get(&sim, "/api/v2/groups.json")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    sim.set_faults(FaultConfig {
        rate: 0.5,
        kinds: vec![FaultKind::Status500],
        seed: 7,
        ..FaultConfig::default()
    });
    let mut second = Vec::new();
    for _ in 0..20 {
        second.push(
            get(&sim, "/api/v2/groups.json")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(first, second);
    assert!(first.contains(&500) && first.contains(&200));
    sim.shutdown().await;
}
