//! End to end: `zendesk-sim` → the real Zendesk source → the real DuckDB warehouse, driven over the
//! API, as the "done when" script would.

use crate::Api;
use reqwest::StatusCode;
use seam_runtime::scheduler::{SchedulerConfig, TokioClock};
use seam_server::connectors::{DefaultFactory, Warehouse};
use seam_server::{Service, ServiceConfig};
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_to_duckdb_over_the_api() {
    let sim = zendesk_sim::start(
        zendesk_sim::SimConfig {
            tickets: 60,
            ..Default::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let duckdb_path = dir.path().join("data").join("warehouse.duckdb");
    let service = Service::start(ServiceConfig {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        factory: Arc::new(DefaultFactory::new(
            Warehouse::DuckDb(duckdb_path.clone()),
            Some(sim.base_url()),
        )),
        clock: Arc::new(TokioClock::new()),
        scheduler: SchedulerConfig::default(),
        metastore: None,
        security: seam_server::SecurityConfig::default(),
    })
    .await
    .unwrap();
    let api = Api {
        base: format!("http://{}", service.addr()),
        token: service.initial_token().unwrap().to_owned(),
        client: reqwest::Client::new(),
        seen: Arc::default(),
    };

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
