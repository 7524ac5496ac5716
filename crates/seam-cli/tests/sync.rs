//! `seam sync` against the simulator: complete, exact, and exactly once under kill -9.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use zendesk_sim::{FaultConfig, SimConfig, SimHandle};

const SCHEMA: &str = "stitch_zendesk";

/// The warehouse a test syncs into, and how it reads it back.
enum Warehouse {
    DuckDb(std::path::PathBuf),
    Postgres { url: String, schema: String },
}

impl Warehouse {
    fn destination(&self) -> String {
        match self {
            Warehouse::DuckDb(path) => format!("duckdb:{}", path.display()),
            Warehouse::Postgres { url, .. } => url.clone(),
        }
    }

    fn schema(&self) -> &str {
        match self {
            Warehouse::DuckDb(_) => SCHEMA,
            Warehouse::Postgres { schema, .. } => schema,
        }
    }

    /// Rows of a two-column text query; `None` when the table does not exist.
    fn pairs(&self, sql: &str) -> Option<Vec<(String, String)>> {
        match self {
            Warehouse::DuckDb(path) => {
                let conn = duckdb::Connection::open(path).unwrap();
                let mut stmt = conn.prepare(sql).ok()?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .unwrap()
                    .map(|r| r.unwrap())
                    .collect();
                Some(rows)
            }
            // The blocking client runs its own runtime: keep it off the test's async threads.
            Warehouse::Postgres { url, .. } => off_runtime(|| {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                let rows = client.query(sql, &[]).ok()?;
                Some(
                    rows.iter()
                        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                        .collect(),
                )
            }),
        }
    }
}

/// The test run's PostgreSQL server (see seam-test-support) with a fresh schema; `None` after a SKIP
/// line (a failure under CI and `scripts/test`).
fn postgres_warehouse(name: &str) -> Option<Warehouse> {
    let url = seam_test_support::postgres_url()?;
    let schema = seam_test_support::unique_name(&format!("sync_{name}"));
    Some(Warehouse::Postgres { url, schema })
}

/// Runs `f` on a plain thread (blocking clients may not run on an async runtime's threads).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

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

fn sync_command(config: &Path, wh: &Warehouse, batch: usize) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seam"));
    cmd.args([
        "sync",
        "--plain",
        "--schema",
        wh.schema(),
        "--max-batch-records",
        &batch.to_string(),
    ])
    .arg("--config")
    .arg(config)
    .arg("--destination")
    .arg(wh.destination())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

fn run_to_end(config: &Path, wh: &Warehouse, batch: usize) -> String {
    let out = sync_command(config, wh, batch).output().unwrap();
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
fn assert_matches_truth(wh: &Warehouse, truth: &Value, earlier: Option<&Value>) {
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
        let sql = format!(
            "SELECT CAST(\"{key}\" AS TEXT), '' FROM \"{}\".\"{stream}\"",
            wh.schema()
        );
        let Some(rows) = wh.pairs(&sql) else {
            if !want.is_empty() {
                mismatches.insert(stream.clone(), "table missing".to_owned());
            }
            continue;
        };
        let got: Vec<String> = rows.into_iter().map(|(k, _)| k).collect();
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
fn assert_latest_versions(wh: &Warehouse, truth: &Value) {
    let schema = wh.schema();
    let tickets: BTreeMap<String, String> = wh
        .pairs(&format!(
            "SELECT CAST(id AS TEXT), CAST(generated_timestamp AS TEXT) FROM \"{schema}\".tickets"
        ))
        .unwrap()
        .into_iter()
        .collect();
    for (id, ts) in truth["tickets"]["updated"].as_object().unwrap() {
        assert_eq!(
            tickets.get(id).map(String::as_str),
            Some(ts.to_string().as_str()),
            "ticket {id}"
        );
    }
    let users_sql = match wh {
        Warehouse::DuckDb(_) => {
            format!("SELECT CAST(id AS TEXT), strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') FROM \"{schema}\".users")
        }
        Warehouse::Postgres { .. } => format!(
            "SELECT CAST(id AS TEXT), to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM \"{schema}\".users"
        ),
    };
    let users: BTreeMap<String, String> = wh.pairs(&users_sql).unwrap().into_iter().collect();
    for (id, ts) in truth["users"]["updated"].as_object().unwrap() {
        assert_eq!(users.get(id).map(String::as_str), ts.as_str(), "user {id}");
    }
}

/// A full sync, then Zendesk changes, then a second sync: the warehouse equals the truth both times.
async fn full_then_incremental(wh: Warehouse) {
    let sim = start_sim(300, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.base_url());
    let wh = std::sync::Arc::new(wh);
    let (c, w) = (config.clone(), wh.clone());
    let summary = tokio::task::spawn_blocking(move || run_to_end(&c, &w, 20_000))
        .await
        .unwrap();
    assert!(summary.contains("tickets"), "no per-table summary: {summary}");
    let before = sim.truth();
    assert_matches_truth(&wh, &before, None);
    assert_latest_versions(&wh, &before);

    // Zendesk changes; a minute later the second run picks up exactly the changes.
    sim.mutate(40);
    sim.advance_clock(61);
    let (c, w) = (config.clone(), wh.clone());
    tokio::task::spawn_blocking(move || run_to_end(&c, &w, 20_000))
        .await
        .unwrap();
    let after = sim.truth();
    assert_ne!(before, after, "the mutation changed nothing");
    assert_matches_truth(&wh, &after, Some(&before));
    assert_latest_versions(&wh, &after);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_sync_into_duckdb_matches_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    full_then_incremental(Warehouse::DuckDb(dir.path().join("wh.duckdb"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_sync_into_postgres_matches_the_truth() {
    let Some(wh) = postgres_warehouse("incremental") else {
        return;
    };
    full_then_incremental(wh).await;
}

/// Where a warehouse stands: the committed Singer state, and the rows of the incremental streams'
/// tables (never fewer after a later run: rows are upserted, never deleted).
#[derive(Debug, Clone, PartialEq)]
struct Position {
    state: Option<String>,
    rows: u64,
}

/// The committed position, after checking that no table holds a key twice (exactly once holds at
/// every point a run can die, not only once a run completes).
fn committed_position(wh: &Warehouse, streams: &[String]) -> Position {
    let schema = wh.schema();
    let state = wh
        .pairs(&format!(
            "SELECT state, CAST(committed_at AS TEXT) FROM \"{schema}\"._sdc_state"
        ))
        .and_then(|rows| rows.into_iter().next())
        .map(|(state, _)| state);
    let mut rows = 0;
    for stream in streams {
        let key = key_of(stream);
        let Some(counts) = wh.pairs(&format!(
            "SELECT CAST(count(*) AS TEXT), CAST(count(DISTINCT \"{key}\") AS TEXT) FROM \"{schema}\".\"{stream}\""
        )) else {
            continue; // not created yet
        };
        let (all, distinct) = &counts[0];
        assert_eq!(all, distinct, "{stream} holds a key twice");
        rows += all.parse::<u64>().unwrap();
    }
    Position { state, rows }
}

/// Kills `seam sync` with SIGKILL again and again, each time after it committed at least once, then
/// lets it finish: the warehouse equals the truth, and every kill point was consistent.
async fn kill_nine_at_many_points(wh: Warehouse) {
    // Slow answers stretch the sync so the kills land during extraction and between commits.
    let sim = start_sim(400, 15).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.base_url());
    let wh = std::sync::Arc::new(wh);
    let before = sim.truth();
    let streams: Vec<String> = before
        .as_object()
        .unwrap()
        .keys()
        .filter(|s| !FULL_TABLE.contains(&s.as_str()))
        .cloned()
        .collect();
    // How long a run lives before its kill: grown while runs die before their first commit, so a
    // slow machine still gets kills after commits; varied so kills land at different points.
    let mut lifetime = Duration::from_millis(400);
    let mut kills = Vec::new(); // (position before the run, position after its kill)
    for step in 0..12u64 {
        let start = committed_position(&wh, &streams);
        let mut child = sync_command(&config, &wh, 150).spawn().unwrap();
        let jitter = Duration::from_millis((step * 137) % 300);
        tokio::time::sleep(lifetime + jitter).await;
        if child.try_wait().unwrap().is_some() {
            // It finished first: nothing left to interrupt until Zendesk changes.
            child.wait().unwrap();
            lifetime = lifetime * 2 / 3;
        } else {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let end = committed_position(&wh, &streams);
            assert!(
                end.rows >= start.rows,
                "committed rows went back from {} to {} at kill {}",
                start.rows,
                end.rows,
                kills.len() + 1
            );
            if end.state == start.state {
                lifetime = lifetime * 3 / 2; // died before its first commit: let the next live longer
            }
            kills.push((start, end));
        }
        if step == 5 {
            // Data changes between interrupted runs too.
            sim.mutate(25);
            sim.advance_clock(61);
        }
    }
    let after_commit = kills.iter().filter(|(s, e)| e.state != s.state).count();
    let moved = kills.iter().filter(|(s, e)| e.rows > s.rows).count();
    let rows: Vec<u64> = kills.iter().map(|(_, e)| e.rows).collect();
    eprintln!(
        "{} kills, {after_commit} after a commit of their run, committed rows at each kill: {rows:?}",
        kills.len()
    );
    assert!(
        after_commit >= 4,
        "only {after_commit} of {} kills landed after their run committed: the test did not exercise crashes between commits",
        kills.len()
    );
    assert!(
        moved >= 3,
        "committed rows moved forward in only {moved} killed runs: {rows:?}"
    );
    let (c, w) = (config.clone(), wh.clone());
    tokio::task::spawn_blocking(move || run_to_end(&c, &w, 150))
        .await
        .unwrap();
    let after = sim.truth();
    assert_matches_truth(&wh, &after, Some(&before));
    assert_latest_versions(&wh, &after);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_many_points_into_duckdb_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    kill_nine_at_many_points(Warehouse::DuckDb(dir.path().join("wh.duckdb"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_many_points_into_postgres_loses_nothing_and_duplicates_nothing() {
    let Some(wh) = postgres_warehouse("kill") else {
        return;
    };
    kill_nine_at_many_points(wh).await;
}
