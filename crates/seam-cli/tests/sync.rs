//! `seam sync` against the simulator: complete, exact, and exactly once under kill -9.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use zendesk_sim::{FaultConfig, SimConfig, SimHandle};

const SCHEMA: &str = "stitch_zendesk";

async fn start_sim(tickets: usize, slow_ms: u64) -> SimHandle {
    let config = SimConfig {
        tickets,
        seed: 7,
        rate_limits: false,
        faults: FaultConfig {
            slow_ms,
            slow_rate: 1.0,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    };
    zendesk_sim::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

fn write_config(dir: &Path, base_url: &str) -> std::path::PathBuf {
    let path = dir.join("zendesk.json");
    let config = serde_json::json!({
        "subdomain": "acme", "email": "admin@acme.test", "api_token": "sim-token",
        "start_date": "2000-01-01T00:00:00Z", "base_url": base_url,
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn sync_command(config: &Path, db: &Path, batch: usize) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seam"));
    cmd.args([
        "sync",
        "--plain",
        "--schema",
        SCHEMA,
        "--max-batch-records",
        &batch.to_string(),
    ])
    .arg("--config")
    .arg(config)
    .arg("--destination")
    .arg(format!("duckdb:{}", db.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

fn run_to_end(config: &Path, db: &Path, batch: usize) -> String {
    let out = sync_command(config, db, batch).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "seam sync failed: {stderr}");
    stderr
}

/// The primary key column of each stream in the warehouse, and how the simulator names its ids.
fn key_of(stream: &str) -> &'static str {
    if stream == "tags" {
        "name"
    } else {
        "id"
    }
}

fn ids(truth: &Value, stream: &str) -> BTreeSet<String> {
    truth[stream]["ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Streams whose every run replaces the table (ACTIVATE_VERSION): rows deleted at the source vanish.
const FULL_TABLE: &[&str] = &["tags", "sla_policies", "talk_phone_numbers"];

/// For every stream of the truth: no duplicate row, every id of the truth present, and nothing else —
/// except, for incremental streams, rows of records deleted at the source since `earlier` (Stitch
/// never deletes rows; deleted tickets themselves come back with `status: "deleted"`).
fn assert_matches_truth(db: &Path, truth: &Value, earlier: Option<&Value>) {
    let conn = duckdb::Connection::open(db).unwrap();
    let streams = truth.as_object().unwrap();
    assert!(streams.len() >= 16, "the truth lists {} streams", streams.len());
    let mut mismatches = BTreeMap::new();
    for (stream, t) in streams {
        assert_eq!(
            t["count"].as_u64().unwrap() as usize,
            t["ids"].as_array().unwrap().len()
        );
        let want = ids(truth, stream);
        let may_linger: BTreeSet<String> = match earlier {
            Some(e) if !FULL_TABLE.contains(&stream.as_str()) => {
                ids(e, stream).difference(&want).cloned().collect()
            }
            _ => BTreeSet::new(),
        };
        let key = key_of(stream);
        let sql = format!("SELECT CAST(\"{key}\" AS VARCHAR) FROM \"{SCHEMA}\".\"{stream}\"");
        let mut stmt = match conn.prepare(&sql) {
            Ok(s) => s,
            Err(e) => {
                if !want.is_empty() {
                    mismatches.insert(stream.clone(), format!("table missing: {e}"));
                }
                continue;
            }
        };
        let got: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        if unique.len() != got.len() {
            mismatches.insert(
                stream.clone(),
                format!("{} duplicated rows", got.len() - unique.len()),
            );
        } else {
            let missing = want.difference(&unique).count();
            let extra = unique
                .difference(&want)
                .filter(|id| !may_linger.contains(*id))
                .count();
            if missing + extra > 0 {
                mismatches.insert(stream.clone(), format!("{missing} missing, {extra} unexpected"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "warehouse differs from the truth: {mismatches:?}"
    );
}

/// The newest version of every ticket and user is in the warehouse (not an older one).
fn assert_latest_versions(db: &Path, truth: &Value) {
    let conn = duckdb::Connection::open(db).unwrap();
    let query = |sql: &str| -> BTreeMap<String, String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let tickets = query(&format!(
        "SELECT CAST(id AS VARCHAR), CAST(generated_timestamp AS VARCHAR) FROM \"{SCHEMA}\".tickets"
    ));
    for (id, ts) in truth["tickets"]["updated"].as_object().unwrap() {
        assert_eq!(
            tickets.get(id).map(String::as_str),
            Some(ts.to_string().as_str()),
            "ticket {id}"
        );
    }
    let users = query(&format!(
        "SELECT CAST(id AS VARCHAR), strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') FROM \"{SCHEMA}\".users"
    ));
    for (id, ts) in truth["users"]["updated"].as_object().unwrap() {
        assert_eq!(users.get(id).map(String::as_str), ts.as_str(), "user {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_sync_matches_the_truth() {
    let sim = start_sim(300, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.base_url());
    let db = dir.path().join("wh.duckdb");
    let (c, d) = (config.clone(), db.clone());
    let summary = tokio::task::spawn_blocking(move || run_to_end(&c, &d, 20_000))
        .await
        .unwrap();
    assert!(summary.contains("tickets"), "no per-table summary: {summary}");
    let before = sim.truth();
    assert_matches_truth(&db, &before, None);
    assert_latest_versions(&db, &before);

    // Zendesk changes; a minute later the second run picks up exactly the changes.
    sim.mutate(40);
    sim.advance_clock(61);
    sim.reset_stats();
    let (c, d) = (config.clone(), db.clone());
    tokio::task::spawn_blocking(move || run_to_end(&c, &d, 20_000))
        .await
        .unwrap();
    let after = sim.truth();
    assert_ne!(before, after, "the mutation changed nothing");
    assert_matches_truth(&db, &after, Some(&before));
    assert_latest_versions(&db, &after);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_many_points_loses_nothing_and_duplicates_nothing() {
    // Slow answers stretch the sync so the kills land during extraction and between commits.
    let sim = start_sim(400, 15).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.base_url());
    let db = dir.path().join("wh.duckdb");
    let before = sim.truth();
    let mut killed = 0;
    for step in 0..10u64 {
        let mut child = sync_command(&config, &db, 150).spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(150 + step * 170)).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        if step == 5 {
            // Data changes between interrupted runs too.
            sim.mutate(25);
            sim.advance_clock(61);
        }
    }
    assert!(
        killed >= 5,
        "only {killed} runs were killed mid-way: the test did not exercise crashes"
    );
    let (c, d) = (config.clone(), db.clone());
    tokio::task::spawn_blocking(move || run_to_end(&c, &d, 150))
        .await
        .unwrap();
    let after = sim.truth();
    assert_matches_truth(&db, &after, Some(&before));
    assert_latest_versions(&db, &after);
    sim.shutdown().await;
}
