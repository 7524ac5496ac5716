//! End to end: `zendesk-sim` → the real Zendesk source → the real DuckDB warehouse, driven over the
//! API, as the "done when" script would.

use crate::{real_connectors, service_config, start_service, Api};
use reqwest::StatusCode;
use seam_test_support::sim::start_sim_with;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_to_duckdb_over_the_api() {
    let sim = start_sim_with(zendesk_sim::SimConfig {
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

/// The tickets export, as the Zendesk source asks for it.
const TICKETS_EXPORT: &str = "/api/v2/incremental/tickets/cursor.json";

/// Creates an integration (waiting for its check to succeed) and selects `streams`; the scheduler
/// then starts its first job at once.
async fn integration_with(api: &Api, name: &str, streams: &[&str]) -> i64 {
    let (source, check) = api
        .create_with(json!({"display_name": name, "properties": {"subdomain": "acme",
            "email": "admin@acme.test", "api_token": "sim-token", "start_date": "2000-01-01T00:00:00Z"}}))
        .await;
    assert_eq!(check["message"], "Success!", "{check}");
    let id = source["id"].as_i64().unwrap();
    api.select(id, streams).await;
    id
}

/// Requests the simulator answered on `path` so far.
fn requests_to(sim: &zendesk_sim::SimHandle, template: &str) -> u64 {
    sim.stats()["endpoints"][template]["requests"]
        .as_u64()
        .unwrap_or(0)
}

/// No answer from Zendesk wedges a job of `seam serve`: with the real source, a job waiting out a
/// two-minute `Retry-After` stops within 5 s of Stop Extraction, and so does one waiting on an
/// answer that takes two minutes; meanwhile another integration's job loads into the same DuckDB
/// file; a `Retry-After: 1e20` fails the job with Zendesk's ask in words (no panic, nothing left
/// running), and Run Extraction Now works right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_from_zendesk_wedges_a_job() {
    let sim = start_sim_with(zendesk_sim::SimConfig {
        tickets: 40,
        rate_limits: false,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("data").join("warehouse.duckdb");
    let factory = real_connectors(warehouse.clone(), Some(sim.base_url()));
    let service = start_service(service_config(dir.path().join("data"), factory)).await;
    let api = Api::of(&service);

    let waits: [(&str, zendesk_sim::PathFault); 2] = [
        ("a two-minute Retry-After", {
            let mut f = zendesk_sim::PathFault::status(TICKETS_EXPORT, 429);
            f.headers.insert("retry-after".into(), "120".into());
            f
        }),
        (
            "a two-minute answer",
            zendesk_sim::PathFault::slow(TICKETS_EXPORT, 120_000),
        ),
    ];
    // The first wait is in place before the integration's first (scheduled) job starts.
    sim.set_path_faults(vec![waits[0].1.clone()]).unwrap();
    let waiting = integration_with(&api, "Waiting Zendesk", &["tickets"]).await;
    let other = integration_with(&api, "Other Zendesk", &["groups", "tags"]).await;
    for (i, (what, fault)) in waits.into_iter().enumerate() {
        if i > 0 {
            sim.set_path_faults(vec![fault]).unwrap();
            let (s, v) = api.post(&format!("/v4/sources/{waiting}/sync"), json!({})).await;
            assert_eq!(s, StatusCode::ACCEPTED, "{what}: {v}");
        }
        // The job is waiting on Zendesk once it is extracting and the faulted request was made (the
        // simulator counts a slowed request only once it answers: give it a moment instead).
        api.wait_for(&format!("/v4/sources/{waiting}/extractions/current"), |p| {
            p["phase"] == "extraction"
        })
        .await;
        if i == 0 {
            seam_test_support::wait_until_async(
                Duration::from_secs(60),
                format!("{what}: the export request"),
                async || requests_to(&sim, "/api/v2/incremental/tickets/cursor") > 0,
            )
            .await;
        } else {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if i == 0 {
            // Meanwhile, the other integration loads into the same DuckDB file.
            let jobs = api
                .wait_for(&format!("/v4/sources/{other}/extractions"), |jobs| {
                    jobs.as_array()
                        .is_some_and(|a| !a.is_empty() && a[0]["status"] != "running")
                })
                .await;
            assert_eq!(jobs[0]["status"], "succeeded", "{jobs}");
            let (_, current) = api
                .get(&format!("/v4/sources/{waiting}/extractions/current"))
                .await;
            assert_eq!(current["phase"], "extraction", "{what}: still waiting: {current}");
        }
        let stopped_at = Instant::now();
        let (s, v) = api.delete(&format!("/v4/sources/{waiting}/sync")).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{what}: {v}");
        let jobs = api
            .wait_for(&format!("/v4/sources/{waiting}/extractions"), |jobs| {
                jobs.as_array()
                    .is_some_and(|a| !a.is_empty() && a[0]["status"] != "running")
            })
            .await;
        let took = stopped_at.elapsed();
        assert_eq!(jobs[0]["status"], "cancelled", "{what}: {jobs}");
        assert!(took < Duration::from_secs(5), "{what}: the stop took {took:?}");
    }

    // A wait no one should make: the job fails, saying what Zendesk asked for.
    let mut absurd = zendesk_sim::PathFault::status(TICKETS_EXPORT, 429);
    absurd.headers.insert("retry-after".into(), "1e20".into());
    sim.set_path_faults(vec![absurd]).unwrap();
    let (s, v) = api.post(&format!("/v4/sources/{waiting}/sync"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let jobs = api
        .wait_for(&format!("/v4/sources/{waiting}/extractions"), |jobs| {
            jobs.as_array()
                .is_some_and(|a| a.len() >= 3 && a[0]["job_id"] == v["job_id"] && a[0]["status"] != "running")
        })
        .await;
    assert_eq!(jobs[0]["status"], "failed", "{jobs}");
    let message = jobs[0]["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Retry-After") && message.contains("limit"),
        "{message}"
    );

    // Nothing is left running: the next run goes through and loads every ticket.
    sim.set_path_faults(Vec::new()).unwrap();
    let (s, v) = api.post(&format!("/v4/sources/{waiting}/sync"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let jobs = api
        .wait_for(&format!("/v4/sources/{waiting}/extractions"), |jobs| {
            jobs.as_array().is_some_and(|a| {
                !a.is_empty() && a[0]["job_id"] == v["job_id"] && a[0]["status"] != "running"
            })
        })
        .await;
    assert_eq!(jobs[0]["status"], "succeeded", "{jobs}");
    service.shutdown().await;
    let conn = duckdb::Connection::open(&warehouse).unwrap();
    let tickets: i64 = conn
        .query_row(
            "SELECT count(DISTINCT id) FROM waiting_zendesk.tickets",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tickets, 40);
}

/// A simulated account of 30 tickets, and the service with the real connectors loading into the
/// PostgreSQL warehouse at `url` (its data directory in the returned temporary directory).
async fn sim_and_service_into_postgres(
    url: &str,
) -> (zendesk_sim::SimHandle, tempfile::TempDir, seam_server::Service) {
    let sim = start_sim_with(zendesk_sim::SimConfig {
        tickets: 30,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let warehouse: seam_warehouse::DestinationSpec = url.parse().unwrap();
    let factory = std::sync::Arc::new(seam_server::connectors::DefaultFactory::new(
        warehouse,
        Some(sim.base_url()),
    ));
    let service = start_service(service_config(dir.path().join("data"), factory)).await;
    (sim, dir, service)
}

/// `zendesk-sim` → the real Zendesk source → a PostgreSQL warehouse, through a job of the service:
/// the job succeeds and the tickets are in PostgreSQL. (The job used to drop its warehouse
/// connection on an async worker, where the blocking PostgreSQL client panics — "Cannot start a
/// runtime from within a runtime" — so a job into PostgreSQL could end failed after loading.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_to_postgres_through_a_job() {
    let Some(url) = seam_test_support::postgres_url() else {
        return;
    };
    let (_sim, _dir, service) = sim_and_service_into_postgres(&url).await;
    let api = Api::of(&service);
    let name = seam_test_support::unique_name("e2e_pg");
    let schema = seam_core::naming::schema_name(&name).unwrap();
    let id = integration_with(&api, &name, &["tickets"]).await;
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |jobs| {
            jobs.as_array()
                .is_some_and(|a| !a.is_empty() && a[0]["status"] != "running")
        })
        .await;
    let job_id = jobs[0]["job_id"].as_i64().unwrap();
    let (_, logs) = api
        .get(&format!("/v4/sources/{id}/extractions/{job_id}/logs?format=text"))
        .await;
    assert_eq!(jobs[0]["status"], "succeeded", "{jobs}\n{logs}");
    let tickets: i64 = tokio::task::spawn_blocking(move || {
        let mut check = seam_warehouse::PostgresDestination::connect(&url, &schema).unwrap();
        let row = check
            .client()
            .expect("client")
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".tickets"), &[])
            .unwrap();
        row.get(0)
    })
    .await
    .unwrap();
    assert_eq!(tickets, 30);
    service.shutdown().await;
}

/// A plain connection for the test's own statements (the lock holder, the watcher).
async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Sessions other than the test's own waiting for a lock on a table of `schema`.
async fn waiting_on_locks(watch: &tokio_postgres::Client, schema: &str) -> i64 {
    watch
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT l.granted AND n.nspname = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0)
}

/// A job whose commit waits on a lock another session holds in the PostgreSQL warehouse (a user's
/// `CREATE INDEX`, say), with a lock timeout longer than anyone waits: Stop Extraction ends the job,
/// and its commit is cancelled in the warehouse rather than left waiting there (with the locks it
/// took) after the job was reported stopped. Once the lock goes the next run loads every ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_while_its_commit_waits_on_a_lock_lets_go_of_the_warehouse() {
    let Some(url) = seam_test_support::postgres_url() else {
        return;
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let waits_long = format!("{url}{sep}options=-c%20lock_timeout%3D10min");
    let (sim, _dir, service) = sim_and_service_into_postgres(&waits_long).await;
    let api = Api::of(&service);
    let name = seam_test_support::unique_name("e2e_lock");
    let schema = seam_core::naming::schema_name(&name).unwrap();
    let id = integration_with(&api, &name, &["tickets"]).await;
    let ended = |after: i64| {
        move |jobs: &serde_json::Value| {
            jobs.as_array().is_some_and(|a| {
                !a.is_empty() && a[0]["job_id"].as_i64() > Some(after) && a[0]["status"] != "running"
            })
        }
    };
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), ended(0))
        .await;
    assert_eq!(jobs[0]["status"], "succeeded", "{jobs}");
    let first = jobs[0]["job_id"].as_i64().unwrap();

    // Another session holds the tickets table in SHARE mode; tickets change in Zendesk.
    let holder = pg(&url).await;
    holder
        .batch_execute(&format!("BEGIN; LOCK TABLE \"{schema}\".tickets IN SHARE MODE"))
        .await
        .unwrap();
    sim.mutate(20);
    sim.advance_clock(120);
    let watch = pg(&url).await;
    let (s, v) = api.post(&format!("/v4/sources/{id}/sync"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    seam_test_support::wait_until_async(
        Duration::from_secs(60),
        "the job's commit to wait on the lock",
        async || waiting_on_locks(&watch, &schema).await > 0,
    )
    .await;
    // The job's progress says it waits on the warehouse (once past 5 s).
    let current = api
        .wait_for(&format!("/v4/sources/{id}/extractions/current"), |p| {
            p["waiting_on_warehouse_secs"].as_u64().is_some()
        })
        .await;
    assert!(
        current["waiting_on_warehouse_secs"].as_u64() >= Some(5),
        "{current}"
    );

    let stopped_at = Instant::now();
    let (s, v) = api.delete(&format!("/v4/sources/{id}/sync")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), ended(first))
        .await;
    assert_eq!(jobs[0]["status"], "cancelled", "{jobs}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(30),
        "the stop took {:?}",
        stopped_at.elapsed()
    );
    // The commit the stopped job left waiting is cancelled: no one waits on the lock any more,
    // while the holder still holds it.
    seam_test_support::wait_until_async(
        Duration::from_secs(20),
        "the abandoned commit to stop waiting on the lock",
        async || waiting_on_locks(&watch, &schema).await == 0,
    )
    .await;
    let stopped = jobs[0]["job_id"].as_i64().unwrap();

    holder.batch_execute("COMMIT").await.unwrap();
    let (s, v) = api.post(&format!("/v4/sources/{id}/sync"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), ended(stopped))
        .await;
    assert_eq!(jobs[0]["status"], "succeeded", "{jobs}");
    let truth = sim.truth_of("tickets").unwrap();
    let expected: Vec<i64> = truth["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let loaded: Vec<i64> = watch
        .query(&format!("SELECT id FROM \"{schema}\".tickets ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(expected.len() > 30, "tickets were created: {}", expected.len());
    assert_eq!(loaded, expected, "every ticket, once");
    service.shutdown().await;
}
