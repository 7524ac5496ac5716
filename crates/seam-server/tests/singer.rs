//! A Singer tap as an integration, end to end over the API: registered with the production factory,
//! listed in `/v4/source-types`, its secret sealed and never shown, a failing check that quotes the
//! tap, a full sync into DuckDB, then an incremental one that resumes from the committed state and
//! duplicates nothing, with the tap's stderr in its extraction log.

use crate::{service_config, start_service, Api};
use reqwest::StatusCode;
use seam_server::connectors::DefaultFactory;
use seam_singer::{TapLimits, TapProgram};
use seam_warehouse::DestinationSpec;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// A tap in Python: `rows` items from config, resuming after `bookmarks.items.last_id`, a STATE every
/// 10 records; it refuses any `password` but `s3cret`.
pub(crate) const TAP: &str = r#"#!/usr/bin/env python3
import json, sys
args = sys.argv[1:]
cfg = json.load(open(args[args.index("--config") + 1]))
if cfg.get("password") != "s3cret":
    print("FATAL: password authentication failed for user seam", file=sys.stderr)
    sys.exit(1)
schema = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
          "tags": {"type": ["null", "array"], "items": {"type": "string"}}}}
if "--discover" in args:
    print(json.dumps({"streams": [{"tap_stream_id": "items", "stream": "items", "schema": schema,
        "metadata": [{"breadcrumb": [], "metadata": {"table-key-properties": ["id"],
            "valid-replication-keys": ["id"], "forced-replication-method": "INCREMENTAL"}}]}]}))
    sys.exit(0)
state = json.load(open(args[args.index("--state") + 1])) if "--state" in args else {}
last = state.get("bookmarks", {}).get("items", {}).get("last_id", 0)
catalog = json.load(open(args[args.index("--catalog") + 1]))
assert [s["tap_stream_id"] for s in catalog["streams"]] == ["items"]
print(json.dumps({"type": "SCHEMA", "stream": "items", "schema": schema, "key_properties": ["id"]}))
for i in range(last + 1, int(cfg["rows"]) + 1):
    print(json.dumps({"type": "RECORD", "stream": "items", "record": {"id": i, "name": "item %d" % i, "tags": ["a", "b"]}}))
    if i % 10 == 0:
        print(json.dumps({"type": "STATE", "value": {"bookmarks": {"items": {"last_id": i}}}}))
print(json.dumps({"type": "STATE", "value": {"bookmarks": {"items": {"last_id": int(cfg["rows"])}}}}))
print("synced up to %s" % cfg["rows"], file=sys.stderr)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singer_tap_runs_as_an_integration_exactly() {
    if seam_test_support::require_program(&["python3"], "apt-get install python3").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tap_path = dir.path().join("tap-items");
    seam_test_support::write_program(&tap_path, TAP);
    let tap = TapProgram::parse(&format!("items={},password", tap_path.display())).unwrap();
    let duckdb_path = dir.path().join("data").join("warehouse.duckdb");
    let limits = TapLimits {
        discover_timeout: Duration::from_secs(30),
        ..TapLimits::default()
    };
    let factory = Arc::new(
        DefaultFactory::new(DestinationSpec::DuckDb(duckdb_path.clone()), None).with_taps(vec![tap], limits),
    );
    let service = start_service(service_config(dir.path().join("data"), factory)).await;
    let api = Api::of(&service);

    let (_, types) = api.get("/v4/source-types").await;
    let items = types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "singer.items")
        .unwrap_or_else(|| panic!("{types}"));
    assert_eq!(
        items["properties_schema"]["properties"]["password"]["writeOnly"],
        true
    );
    assert_eq!(items["properties_schema"]["additionalProperties"], true);

    // A wrong password: the check fails with the tap's own words.
    let (source, check) = api
        .create_with(json!({"display_name": "Items Tap", "type": "singer.items",
            "properties": {"rows": 25, "password": "wrong", "start_date": "2024-01-01T00:00:00Z"}}))
        .await;
    assert_eq!(check["status"], "failed", "{check}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("password authentication failed for user seam"),
        "{check}"
    );
    let id = source["id"].as_i64().unwrap();
    assert_eq!(source["type"], "singer.items");
    assert_eq!(source["properties"]["rows"], 25);
    assert_eq!(source["properties"]["credentials_set"], json!(["password"]));
    assert!(!source.to_string().contains("wrong"), "{source}");

    // What the API shows beside the settings cannot be a setting, even of an open spec.
    let (s, v) = api
        .put(
            &format!("/v4/sources/{id}"),
            json!({"properties": {"credentials_set": ["x"]}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // The right one: the check succeeds and discovers the tap's stream.
    let (s, v) = api
        .put(
            &format!("/v4/sources/{id}"),
            json!({"properties": {"password": "s3cret"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let check = api
        .wait_for(&format!("/v4/sources/{id}/last-connection-check"), |c| {
            c["status"] != "running"
        })
        .await;
    assert_eq!(check["message"], "Success!", "{check}");
    api.select(id, &["items"]).await;

    // The first job (started at once) loads every item, its tags as a subtable.
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |jobs| {
            jobs.as_array()
                .is_some_and(|a| !a.is_empty() && a[0]["status"] != "running")
        })
        .await;
    assert_eq!(jobs[0]["status"], "succeeded", "{jobs}");
    let count = |table: &str| -> i64 {
        let conn = duckdb::Connection::open(&duckdb_path).unwrap();
        conn.query_row(&format!("SELECT count(*) FROM items_tap.{table}"), [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!((count("items"), count("items__tags")), (25, 50));

    // More items: the next run resumes after the committed bookmark and duplicates nothing.
    let (s, v) = api
        .put(&format!("/v4/sources/{id}"), json!({"properties": {"rows": 40}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    api.wait_for(&format!("/v4/sources/{id}/last-connection-check"), |c| {
        c["status"] != "running"
    })
    .await;
    let (s, v) = api.post(&format!("/v4/sources/{id}/sync"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |jobs| {
            jobs.as_array()
                .is_some_and(|a| a.len() == 2 && a[0]["status"] != "running")
        })
        .await;
    assert_eq!(jobs[0]["status"], "succeeded", "{jobs}");
    let job_id = jobs[0]["job_id"].as_i64().unwrap();
    let (_, logs) = api
        .get(&format!("/v4/sources/{id}/extractions/{job_id}/logs?format=text"))
        .await;
    let logs = logs.as_str().unwrap().to_owned();
    assert!(logs.contains("found current bookmark for items"), "{logs}");
    assert!(logs.contains("items: 15 records extracted"), "{logs}");
    assert!(
        logs.contains("tap - INFO synced up to 40"),
        "the tap's stderr is in the extraction log: {logs}"
    );
    assert_eq!((count("items"), count("items__tags")), (40, 80));
    let conn = duckdb::Connection::open(&duckdb_path).unwrap();
    let distinct: i64 = conn
        .query_row("SELECT count(DISTINCT id) FROM items_tap.items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(distinct, 40);
    drop(conn);
    service.shutdown().await;
}
