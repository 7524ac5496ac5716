//! `seam serve` as a user runs it, against the simulator: SIGTERM stops it within its bound with a
//! job in progress (committed rows kept, the job `cancelled`), and a SIGKILL mid-job loses nothing
//! and duplicates nothing (the next job resumes from the committed bookmark).

use crate::common::serve::{Api, Serve, ServeOptions};
use crate::common::sim::{slow_down, start_sim};
use crate::common::truth::{assert_latest_versions, assert_streams_match_truth};
use crate::common::warehouse::Warehouse;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use zendesk_sim::SimHandle;

/// The schema "Stitch Zendesk" replicates into.
const SCHEMA: &str = "stitch_zendesk";

/// Dashboard sign-ins are not what these tests are about: a fixed admin password.
const ADMIN_PASSWORD: &str = "a-long-enough-admin-password";

/// Starts `seam serve` on `data_dir` with the simulator as Zendesk (see [`Serve::start`]); `token`
/// is the one the first start printed.
fn start_serve(data_dir: &Path, sim: &SimHandle, token: Option<&str>, log: &Path, args: &[&str]) -> Serve {
    let options = ServeOptions {
        args,
        admin_password: Some(ADMIN_PASSWORD),
        token,
    };
    Serve::start(data_dir, &sim.base_url(), log, options)
}

/// Creates "Stitch Zendesk" on the simulator, pauses it (so only Run Extraction Now starts jobs),
/// selects tickets and users; returns its id.
async fn create_integration(api: &Api) -> i64 {
    let (source, check) = api.create_zendesk_source("Stitch Zendesk").await;
    assert_eq!(source["name"], SCHEMA);
    assert_eq!(check["message"], "Success!", "{check}");
    let id = source["id"].as_i64().unwrap();
    api.pause(id).await;
    api.select_streams(id, &["tickets", "users"]).await;
    id
}

/// The warehouse `seam serve` loads "Stitch Zendesk" into by default.
fn warehouse(data_dir: &Path) -> Warehouse {
    Warehouse::duckdb(data_dir.join("warehouse.duckdb"), SCHEMA)
}

/// SIGTERM with a job waiting on a Zendesk that stopped answering: `seam serve` exits within its
/// shutdown bound (not after the requests time out), the job is recorded `cancelled` (not left
/// `running` for the next start to sweep), and the rows it committed stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_within_its_bound_with_a_job_in_progress() {
    // Every answer takes 1.5 s: the job cannot finish between its first commit and the hang below.
    let sim = start_sim(5_000, 11, 1_500).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let args = ["--max-batch-records", "100", "--shutdown-timeout", "15"];
    let mut serve = start_serve(&data, &sim, None, &log, &args);
    let api = serve.api();
    let id = create_integration(&api).await;
    let job_id = api.run_now(id).await;
    // At least one commit, then Zendesk stops answering (each request hangs for 10 minutes).
    seam_test_support::wait_until_async(Duration::from_secs(120), "a commit of tickets", async || {
        api.committed(id, "tickets").await.0 > 0
    })
    .await;
    slow_down(&sim, 600_000);
    let current = api
        .wait_for(
            &format!("/v4/sources/{id}/extractions/current"),
            Duration::from_secs(10),
            |p| p["job_id"] == job_id,
        )
        .await;
    assert_eq!(current["stopping"], false);
    // Let the source get stuck in a request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let committed = api.committed(id, "tickets").await.0;
    assert!(api.get(&format!("/v4/sources/{id}")).await["sync_status"] == "In Progress");

    serve.signal("TERM");
    let (serve, took) = tokio::task::spawn_blocking(move || {
        // The bound: the 15 s shutdown timeout plus the process's own exit grace, with room.
        let took = serve.wait_exit(Duration::from_secs(40));
        (serve, took)
    })
    .await
    .unwrap();
    let stderr = serve.stderr();
    eprintln!("seam serve stopped {took:?} after SIGTERM");
    assert!(
        took < Duration::from_secs(25),
        "seam serve took {took:?} to stop: {stderr}"
    );
    assert!(stderr.contains("scheduler stopped"), "{stderr}");

    // The next start finds the job cancelled, not running (nothing for the start-up sweep).
    let log2 = dir.path().join("serve2.log");
    let token = serve.token.clone();
    let mut serve = start_serve(&data, &sim, Some(&token), &log2, &[]);
    let job = serve.api().job(id, job_id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    serve.signal("TERM");
    tokio::task::spawn_blocking(move || {
        serve.wait_exit(Duration::from_secs(40));
    })
    .await
    .unwrap();

    // Committed rows are intact, once each.
    let rows = warehouse(&data)
        .pairs(&format!("SELECT CAST(id AS TEXT), '' FROM {SCHEMA}.tickets"))
        .unwrap();
    let unique: BTreeSet<&String> = rows.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), rows.len(), "duplicated tickets");
    assert!(
        rows.len() as i64 >= committed,
        "{} tickets in the warehouse, {committed} were committed before the stop",
        rows.len()
    );
}

/// SIGKILL mid-job after a commit that carried a tickets bookmark, restart, run again: the
/// interrupted job is marked failed, the new one resumes from the committed bookmark (it reads fewer
/// tickets than there are), and the warehouse equals the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_job_then_restart_resumes_from_the_bookmark() {
    // Slow answers stretch the job so the kill lands mid-way.
    let sim = start_sim(3_000, 11, 400).await;
    let before = sim.truth();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let args = ["--max-batch-records", "200"];
    let serve = start_serve(&data, &sim, None, &log, &args);
    let api = serve.api();
    let id = create_integration(&api).await;
    let interrupted = api.run_now(id).await;
    // Tickets rows are committed from the first batch on; their bookmark only with the commit after
    // the first page's STATE. Kill once a commit carried it.
    let committed = seam_test_support::wait_for_async(
        Duration::from_secs(120),
        "a commit carrying a tickets bookmark",
        async || {
            let (rows, bookmark) = api.committed(id, "tickets").await;
            bookmark.starts_with("generated_timestamp").then_some(rows)
        },
    )
    .await;
    let progress = api.get(&format!("/v4/sources/{id}/extractions/current")).await;
    assert_eq!(progress["job_id"], interrupted, "the job ended before the kill");
    serve.signal("KILL");
    let token = serve.token.clone();
    drop(serve);
    let total = sim.truth()["tickets"]["count"].as_i64().unwrap();
    assert!(
        committed < total,
        "the kill came after every ticket was committed ({committed})"
    );

    // Zendesk changes while seam is down.
    sim.mutate(30);
    sim.advance_clock(61);
    slow_down(&sim, 0);

    let log2 = dir.path().join("serve2.log");
    let mut serve = start_serve(&data, &sim, Some(&token), &log2, &args);
    let api = serve.api();
    let job = api.job(id, interrupted).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("seam stopped"),
        "{job}"
    );
    let extracted = api.run_resumed(id, "tickets", Duration::from_secs(300)).await;
    assert!(
        extracted < total,
        "the resumed job read {extracted} of {total} tickets: it did not start from the bookmark"
    );
    serve.signal("TERM");
    tokio::task::spawn_blocking(move || {
        serve.wait_exit(Duration::from_secs(60));
    })
    .await
    .unwrap();

    let after = sim.truth();
    assert_ne!(before, after, "the mutation changed nothing");
    let wh = warehouse(&data);
    assert_streams_match_truth(&wh, &after, Some(&before), &["tickets", "users"]);
    assert_latest_versions(&wh, &after);
}

/// A slow Singer tap (Python): `ROWS` items, a STATE every 10, resuming after `last_id`; after the
/// first 50 items each one takes 20 ms, so a job lasts long enough to be killed mid-way.
const SLOW_TAP: &str = r#"#!/usr/bin/env python3
import json, sys, time
args = sys.argv[1:]
schema = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
if "--discover" in args:
    print(json.dumps({"streams": [{"tap_stream_id": "items", "stream": "items", "schema": schema,
        "metadata": [{"breadcrumb": [], "metadata": {"table-key-properties": ["id"]}}]}]}))
    sys.exit(0)
state = json.load(open(args[args.index("--state") + 1]))
last = state.get("bookmarks", {}).get("items", {}).get("last_id", 0)
print(json.dumps({"type": "SCHEMA", "stream": "items", "schema": schema, "key_properties": ["id"]}), flush=True)
for i in range(last + 1, 401):
    print(json.dumps({"type": "RECORD", "stream": "items", "record": {"id": i, "name": "item %d" % i}}), flush=True)
    if i % 10 == 0:
        print(json.dumps({"type": "STATE", "value": {"bookmarks": {"items": {"last_id": i}}}}), flush=True)
    if i > 50:
        time.sleep(0.02)
print(json.dumps({"type": "STATE", "value": {"bookmarks": {"items": {"last_id": 400}}}}), flush=True)
"#;

/// SIGKILL of `seam serve` mid-job of a Singer tap integration, restart, run again: the interrupted
/// job is marked failed, the new one resumes from the committed bookmark, and the warehouse holds
/// every item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_tap_job_then_restart_resumes_exactly() {
    if seam_test_support::require_program(&["python3"], "apt-get install python3").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tap = dir.path().join("tap-slow");
    seam_test_support::write_program(&tap, SLOW_TAP);
    let data = dir.path().join("data");
    let registration = format!("slow={}", tap.display());
    let args = ["--max-batch-records", "20", "--singer-tap", &registration];
    let options = |token| ServeOptions {
        args: &args,
        admin_password: Some(ADMIN_PASSWORD),
        token,
    };
    // No Zendesk here: any loopback address will do for the flag.
    let nowhere = "http://127.0.0.1:9";
    let serve = Serve::start(&data, nowhere, &dir.path().join("serve.log"), options(None));
    let api = serve.api();
    let (status, source) = api
        .call(
            reqwest::Method::POST,
            "/v4/sources",
            Some(serde_json::json!({"display_name": "Slow Tap", "type": "singer.slow", "properties": {}})),
        )
        .await;
    assert_eq!(status.as_u16(), 201, "{source}");
    let id = source["id"].as_i64().unwrap();
    let check = api
        .wait_for(
            &format!("/v4/sources/{id}/last-connection-check"),
            Duration::from_secs(60),
            |c| c["status"] != "running",
        )
        .await;
    assert_eq!(check["message"], "Success!", "{check}");
    api.pause(id).await;
    api.select_streams(id, &["items"]).await;
    let interrupted = api.run_now(id).await;
    let committed = seam_test_support::wait_for_async(
        Duration::from_secs(120),
        "a commit carrying an items bookmark past the first 50",
        async || {
            let (rows, bookmark) = api.committed(id, "items").await;
            (bookmark.starts_with("last_id") && rows > 60).then_some(rows)
        },
    )
    .await;
    serve.signal("KILL");
    let token = serve.token.clone();
    drop(serve);
    assert!(committed < 400, "the kill came after every item was committed");

    let mut serve = Serve::start(
        &data,
        nowhere,
        &dir.path().join("serve2.log"),
        options(Some(&token)),
    );
    let api = serve.api();
    let job = api.job(id, interrupted).await;
    assert_eq!(job["status"], "failed", "{job}");
    let extracted = api.run_resumed(id, "items", Duration::from_secs(120)).await;
    assert!(
        extracted < 400,
        "the resumed job read all {extracted} items: it did not resume"
    );
    serve.signal("TERM");
    tokio::task::spawn_blocking(move || {
        serve.wait_exit(Duration::from_secs(60));
    })
    .await
    .unwrap();
    let rows = Warehouse::duckdb(data.join("warehouse.duckdb"), "slow_tap")
        .pairs("SELECT CAST(id AS TEXT), name FROM slow_tap.items")
        .unwrap();
    let ids: BTreeSet<i64> = rows.iter().map(|(id, _)| id.parse().unwrap()).collect();
    assert_eq!(rows.len(), 400, "every item once");
    assert_eq!(ids, (1..=400).collect::<BTreeSet<i64>>());
}
