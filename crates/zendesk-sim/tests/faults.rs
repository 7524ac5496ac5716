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

#[tokio::test]
async fn path_faults_answer_one_endpoint_only() {
    use zendesk_sim::PathFault;
    let sim = start(config(10)).await;
    let mut slow = PathFault::slow("/api/v2/groups.json", 1);
    slow.headers.insert("ratelimit-reset".into(), "1e30".into());
    sim.set_path_faults(vec![PathFault::status("/api/v2/tags.json", 403), slow])
        .unwrap();
    let tags = get(&sim, "/api/v2/tags.json?page[size]=5").send().await.unwrap();
    assert_eq!(tags.status(), 403);
    let body: serde_json::Value = tags.json().await.unwrap();
    assert_eq!(body["error"]["title"], "Forbidden");
    // Another path is served as usual; headers of a rule replace the simulator's own.
    let groups = get(&sim, "/api/v2/groups.json").send().await.unwrap();
    assert_eq!(groups.status(), 200);
    assert_eq!(groups.headers()["ratelimit-reset"], "1e30");
    // Wrong credentials still get 401, whatever the rule.
    let anon = client()
        .get(format!("{}/api/v2/tags.json", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);

    // Over HTTP: a 429 with an absurd Retry-After, once; then the endpoint answers again.
    let c = client();
    let url = format!("{}/__sim/faults/paths", sim.base_url());
    let set = c
        .post(&url)
        .json(&serde_json::json!([{"path": "/api/v2/tags", "status": 429, "headers": {"retry-after": "1e20"}, "times": 1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let limited = get(&sim, "/api/v2/tags.json").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1e20");
    assert_eq!(get(&sim, "/api/v2/tags.json").send().await.unwrap().status(), 200);
    let left: serde_json::Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(left[0]["times"], 0);
    // Bad rules are refused with a reason; DELETE clears the rules.
    let bad = c
        .post(&url)
        .json(&serde_json::json!([{"path": "/api/v2/tags", "status": 1000}]))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("between 100 and 599"));
    assert_eq!(c.delete(&url).send().await.unwrap().status(), 200);
    assert_eq!(sim.stats()["endpoints"]["/api/v2/tags"]["faults"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn talk_phone_numbers_carry_categorised_greetings() {
    // https://developer.zendesk.com/api-reference/voice/talk-api/phone_numbers/: greeting
    // category ids (digits) as object keys.
    let sim = start(config(10)).await;
    let page = get_json(&sim, "/api/v2/channels/voice/phone_numbers.json").await;
    let n = &page["phone_numbers"][0];
    assert_eq!(n["categorised_greetings"]["1"], "voicemail_en");
    assert_eq!(n["categorised_greetings"]["2"], "available_en");
    assert!(n["categorised_greetings_with_sub_settings"]["1"].is_object());
    sim.shutdown().await;
}
