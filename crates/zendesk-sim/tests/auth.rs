use crate::common::*;
use zendesk_sim::{Role, SimConfig};

#[tokio::test]
async fn wrong_credentials_are_401() {
    let sim = start(config(10)).await;
    let resp = client()
        .get(format!("{}/api/v2/users/me.json", sim.base_url()))
        .basic_auth("admin@acme.test/token", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "Couldn't authenticate you");
    let resp = client()
        .get(format!("{}/api/v2/users/me.json", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let me = get_json(&sim, "/api/v2/users/me.json").await;
    assert_eq!(me["user"]["role"], "admin");
    assert_eq!(me["user"]["email"], "admin@acme.test");
    sim.shutdown().await;
}

#[tokio::test]
async fn oauth_bearer_is_accepted() {
    let sim = start(SimConfig {
        oauth_token: Some("oauth-abc".into()),
        ..config(10)
    })
    .await;
    let ok = client()
        .get(format!("{}/api/v2/groups.json", sim.base_url()))
        .bearer_auth("oauth-abc")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = client()
        .get(format!("{}/api/v2/groups.json", sim.base_url()))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn gated_groups_are_403() {
    let sim = start(SimConfig {
        gated: vec!["sla_policies".into(), "ticket_forms".into(), "talk".into()],
        ..config(10)
    })
    .await;
    for path in [
        "/api/v2/slas/policies.json",
        "/api/v2/ticket_forms.json",
        "/api/v2/channels/voice/phone_numbers.json",
    ] {
        let resp = get(&sim, path).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["title"], "Forbidden");
    }
    assert_eq!(
        get(&sim, "/api/v2/groups.json").send().await.unwrap().status(),
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn agents_cannot_export() {
    let sim = start(SimConfig {
        role: Role::Agent,
        ..config(10)
    })
    .await;
    let me = get_json(&sim, "/api/v2/users/me.json").await;
    assert_eq!(me["user"]["role"], "agent");
    let resp = get(&sim, "/api/v2/incremental/tickets/cursor.json?start_time=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_subdomain_is_404() {
    let sim = start(config(10)).await;
    let resp = get(&sim, "/api/v2/users/me.json")
        .header("host", "nosuch.zendesk.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = get(&sim, "/api/v2/users/me.json")
        .header("host", "acme.zendesk.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = get(&sim, "/api/v2/nonexistent.json").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    sim.shutdown().await;
}
