//! End to end: `zendesk-sim` → the real Zendesk source → the real DuckDB warehouse, driven over the
//! API, as the "done when" script would.

use crate::{real_connectors, service_config, start_service, start_sim, Api};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_to_duckdb_over_the_api() {
    let sim = start_sim(zendesk_sim::SimConfig {
        tickets: 60,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let duckdb_path = dir.path().join("data").join("warehouse.duckdb");
    let factory = real_connectors(duckdb_path.clone(), Some(sim.base_url()));
    let service = start_service(service_config(dir.path().join("data"), factory)).await;
    let api = Api::of(&service);

    // A wrong token: the check fails and says why.
    let (s, bad) = api
        .post(
            "/v4/sources",
            json!({"display_name": "Wrong Token", "properties": {"subdomain": "acme",
            "email": "admin@acme.test", "api_token": "nope", "start_date": "2000-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let check = api
        .wait_for(&format!("/v4/sources/{}/last-connection-check", bad["id"]), |c| {
            c["status"] != "running"
        })
        .await;
    assert_eq!(check["status"], "failed", "{check}");
    assert!(check["message"].as_str().unwrap().contains("401"), "{check}");

    // The real one.
    let (s, source) = api
        .post(
            "/v4/sources",
            json!({"display_name": "Acme Zendesk", "properties": {"subdomain": "acme",
            "email": "admin@acme.test", "api_token": "sim-token", "start_date": "2000-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{source}");
    let id = source["id"].as_i64().unwrap();
    let check = api
        .wait_for(&format!("/v4/sources/{id}/last-connection-check"), |c| {
            c["status"] != "running"
        })
        .await;
    assert_eq!(check["message"], "Success!", "{check}");
    let (_, streams) = api.get(&format!("/v4/sources/{id}/streams")).await;
    assert!(
        streams
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["tap_stream_id"] == "tickets"),
        "{streams}"
    );
    api.select_all(id).await;

    // The scheduler starts the first job at once (Pending → Active); wait for it.
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |jobs| {
            jobs.as_array()
                .is_some_and(|a| !a.is_empty() && a[0]["status"] != "running")
        })
        .await;
    assert_eq!(jobs[0]["status"], "succeeded", "{jobs}");
    let job_id = jobs[0]["job_id"].as_i64().unwrap();
    let (_, logs) = api
        .get(&format!("/v4/sources/{id}/extractions/{job_id}/logs?format=text"))
        .await;
    assert!(
        logs.as_str()
            .unwrap()
            .contains("main - INFO State update: bookmarks.tickets"),
        "{logs}"
    );

    // Rows in DuckDB (the job closed the file).
    let conn = duckdb::Connection::open(&duckdb_path).unwrap();
    let tickets: i64 = conn
        .query_row("SELECT count(*) FROM acme_zendesk.tickets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tickets, 60);
    drop(conn);

    // Usage and loads reflect the job.
    let (_, usage) = api.get("/v4/usage").await;
    assert!(usage["rows_used"].as_i64().unwrap() >= 60, "{usage}");
    let (_, loads) = api.get(&format!("/v4/sources/{id}/loads")).await;
    let t = loads
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["stream_name"] == "tickets")
        .unwrap();
    assert_eq!(t["rows_loaded"], 60, "{loads}");
    let (_, s) = api.get(&format!("/v4/sources/{id}")).await;
    assert_eq!(s["status"], "Active");
    assert!(s["schedule"]["next_fire_time"].is_string());
    service.shutdown().await;
}
