use crate::common::*;

#[tokio::test]
async fn admin_endpoints() {
    let sim = start(config(50)).await;
    let base = sim.base_url();
    let c = client();
    let clock: serde_json::Value = c
        .get(format!("{base}/__sim/clock"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let adv: serde_json::Value = c
        .post(format!("{base}/__sim/clock/advance?seconds=120"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(adv["now"].as_i64().unwrap() >= clock["now"].as_i64().unwrap() + 120);
    let m: serde_json::Value = c
        .post(format!("{base}/__sim/mutate?count=25"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let total: u64 = m["mutations"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 25);
    let truth: serde_json::Value = c
        .get(format!("{base}/__sim/truth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for s in [
        "tickets",
        "users",
        "tags",
        "ticket_comments",
        "deleted_users",
        "talk_phone_numbers",
    ] {
        assert!(truth[s]["count"].is_u64(), "{s}");
    }
    assert!(truth["tags"]["ids"][0].is_string());
    let one = c
        .get(format!("{base}/__sim/truth?stream=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 404);
    let _ = get_json(&sim, "/api/v2/groups.json").await;
    let stats: serde_json::Value = c
        .get(format!("{base}/__sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["endpoints"]["/api/v2/groups"]["status"]["200"], 1);
    c.post(format!("{base}/__sim/stats/reset")).send().await.unwrap();
    assert_eq!(sim.stats()["total"], 0);
    sim.shutdown().await;
}
