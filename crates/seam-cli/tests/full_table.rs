//! Full-table streams (tags, sla_policies, talk_phone_numbers) under failure: a run that is refused
//! (403), fails (500s until the retries run out), is stopped (SIGINT) or killed (SIGKILL) in the
//! middle of a full-table stream leaves that table exactly as the last complete run left it. Each
//! test syncs once to the end, then runs `seam sync` again with a per-path fault on the simulator's
//! `/api/v2/tags.json`, and compares the warehouse with the first run's snapshot and with the
//! simulator's truth; then a clean run still converges on the truth.

use seam_core::Destination;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zendesk_sim::{PathFault, SimConfig, SimHandle};

const TAGS: &str = "/api/v2/tags.json";
const FULL_TABLE: &[&str] = &["tags", "sla_policies", "talk_phone_numbers"];
/// Per-page delay on the tags endpoint in runs that are stopped or killed mid-stream: long enough
/// for the stream (one tag per page) to outlast `seam sync`'s first progress line (after 5 s).
const SLOW_PAGE_MS: u64 = 700;

/// The warehouse a test syncs into, and how it reads it back.
enum Warehouse {
    DuckDb(PathBuf),
    Postgres { url: String, schema: String },
}

type Rows = Vec<Vec<Option<String>>>;

impl Warehouse {
    fn destination(&self) -> String {
        match self {
            Warehouse::DuckDb(path) => format!("duckdb:{}", path.display()),
            Warehouse::Postgres { url, .. } => url.clone(),
        }
    }

    fn schema(&self) -> &str {
        match self {
            Warehouse::DuckDb(_) => "full_table",
            Warehouse::Postgres { schema, .. } => schema,
        }
    }

    /// Every row of a query, each column read as text.
    fn query(&self, sql: &str) -> Rows {
        match self {
            Warehouse::DuckDb(path) => {
                let conn = duckdb::Connection::open(path).unwrap();
                let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let mut rows = stmt.query([]).unwrap();
                let mut out = Vec::new();
                while let Some(r) = rows.next().unwrap() {
                    let n = r.as_ref().column_count();
                    out.push((0..n).map(|i| r.get::<_, Option<String>>(i).unwrap()).collect());
                }
                out
            }
            // The blocking client runs its own runtime: keep it off the test's async threads.
            Warehouse::Postgres { url, .. } => off_runtime(|| {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                let rows = client.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i)).collect())
                    .collect()
            }),
        }
    }

    /// The state committed with the rows (`<schema>._sdc_state`).
    fn committed_state(&self) -> seam_core::State {
        let schema = self.schema();
        let state = match self {
            Warehouse::DuckDb(path) => seam_warehouse::DuckDbDestination::open(path, schema)
                .unwrap()
                .committed_state()
                .unwrap(),
            Warehouse::Postgres { url, .. } => off_runtime(|| {
                seam_warehouse::PostgresDestination::connect_with(url, schema, HashSet::new())
                    .unwrap()
                    .committed_state()
                    .unwrap()
            }),
        };
        state.unwrap_or_default()
    }

    /// The table of `stream` and its subtables, with the columns the records carry (not `_sdc_*`).
    fn tables_of(&self, stream: &str) -> BTreeMap<String, Vec<String>> {
        let sql = format!(
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = '{}' AND (table_name = '{stream}' OR table_name LIKE '{stream}\\_\\_%' ESCAPE '\\')",
            self.schema()
        );
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in self.query(&sql) {
            let (Some(table), Some(column)) = (row[0].clone(), row[1].clone()) else {
                continue;
            };
            let cols = out.entry(table).or_default();
            if !column.starts_with("_sdc_") {
                cols.push(column);
            }
        }
        for cols in out.values_mut() {
            cols.sort();
        }
        out
    }

    /// Rows of `stream`'s table and subtables, business columns only, sorted: what a user sees.
    fn snapshot(&self, stream: &str) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for (table, cols) in self.tables_of(stream) {
            let select: Vec<String> = cols
                .iter()
                .map(|c| format!("CAST(\"{}\" AS TEXT)", c.replace('"', "\"\"")))
                .collect();
            let sql = format!(
                "SELECT {} FROM \"{}\".\"{table}\"",
                if select.is_empty() {
                    "'x'".to_owned()
                } else {
                    select.join(", ")
                },
                self.schema()
            );
            let mut rows: Vec<String> = self
                .query(&sql)
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|v| v.unwrap_or_else(|| "NULL".to_owned()))
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .collect();
            rows.sort();
            out.insert(table, rows);
        }
        out
    }

    /// Rows of the tags table per table version.
    fn tag_versions(&self) -> BTreeMap<String, usize> {
        let sql = format!(
            "SELECT CAST(\"_sdc_table_version\" AS TEXT) FROM \"{}\".\"tags\"",
            self.schema()
        );
        let mut out = BTreeMap::new();
        for r in self.query(&sql) {
            *out.entry(r[0].clone().unwrap_or_default()).or_insert(0) += 1;
        }
        out
    }
}

/// The PostgreSQL server tests use (`SEAM_TEST_POSTGRES_URL`, set by `.ci/run`), with a fresh schema.
fn postgres_warehouse(name: &str) -> Option<Warehouse> {
    let Ok(url) = std::env::var("SEAM_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set SEAM_TEST_POSTGRES_URL"
        );
        eprintln!("SKIP {name}: SEAM_TEST_POSTGRES_URL is not set");
        return None;
    };
    let schema = format!("full_table_{}_{name}", std::process::id());
    off_runtime(|| {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .unwrap();
    });
    Some(Warehouse::Postgres { url, schema })
}

/// Runs `f` on a plain thread (blocking clients may not run on an async runtime's threads).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

fn write_config(dir: &Path, name: &str, base_url: &str, page_size: u32) -> PathBuf {
    let path = dir.join(name);
    let config = serde_json::json!({
        "subdomain": "acme", "email": "admin@acme.test", "api_token": "sim-token",
        "start_date": "2000-01-01T00:00:00Z", "base_url": base_url, "page_size": page_size,
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A `seam sync` in progress; its stderr is read line by line on a thread (so the pipe never
/// fills) and kept for the test to look at while it runs.
struct Running {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(config: &Path, wh: &Warehouse, batch: usize, catalog: Option<&Path>) -> Running {
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
        if let Some(c) = catalog {
            cmd.arg("--catalog").arg(c);
        }
        let mut child = cmd.spawn().unwrap();
        let pipe = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
            sink.lock().unwrap().join("\n")
        });
        Running { child, stderr, lines }
    }

    /// Rows committed so far, as the latest progress line says (`…, N rows committed`).
    fn rows_committed(&self) -> u64 {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .rev()
            .find_map(|l| {
                let head = l.strip_suffix(" rows committed")?;
                head.rsplit(' ').next()?.parse().ok()
            })
            .unwrap_or(0)
    }

    /// Waits for the exit (at most `limit`: a run that hangs is killed and fails the test).
    fn finish(mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "seam sync did not exit within {limit:?}: {}",
                    self.stderr.join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, self.stderr.join().unwrap())
    }
}

/// Runs `seam sync` to its end (off the async runtime).
async fn sync(config: &Path, wh: &Arc<Warehouse>, batch: usize) -> (ExitStatus, String) {
    let (c, w) = (config.to_owned(), wh.clone());
    tokio::task::spawn_blocking(move || Running::start(&c, &w, batch, None).finish(Duration::from_secs(240)))
        .await
        .unwrap()
}

/// Waits until `done` holds, for at most `limit`; panics naming `what` otherwise.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tags requests the simulator answered so far.
fn tag_pages(sim: &SimHandle) -> u64 {
    sim.stats()["endpoints"]["/api/v2/tags"]["requests"]
        .as_u64()
        .unwrap_or(0)
}

/// A warehouse after one complete sync, and what it looked like then.
struct Synced {
    sim: SimHandle,
    wh: Arc<Warehouse>,
    _dir: tempfile::TempDir,
    /// Default page size (the first and the last, clean runs).
    config: PathBuf,
    /// One record per list page: the full-table stream takes many requests.
    small_pages: PathBuf,
    /// A catalog selecting tags alone (so every row committed in a run is a tag).
    only_tags: PathBuf,
    snapshot: BTreeMap<&'static str, BTreeMap<String, Vec<String>>>,
    first_version: String,
    tag_count: usize,
}

async fn first_sync(wh: Warehouse, dir: tempfile::TempDir) -> Synced {
    let sim = zendesk_sim::start(
        SimConfig {
            tickets: 40,
            seed: 11,
            rate_limits: false,
            ..SimConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let config = write_config(dir.path(), "zendesk.json", &sim.base_url(), 100);
    let small_pages = write_config(dir.path(), "small-pages.json", &sim.base_url(), 1);
    let only_tags = dir.path().join("only-tags.json");
    {
        let source =
            seam_zendesk::ZendeskSource::from_json(&std::fs::read_to_string(&config).unwrap()).unwrap();
        let mut catalog = seam_core::Source::discover(&source).await.unwrap();
        for e in &mut catalog.streams {
            e.set_selected(e.tap_stream_id == "tags");
        }
        std::fs::write(&only_tags, serde_json::to_string(&catalog).unwrap()).unwrap();
    }
    let wh = Arc::new(wh);
    let (status, stderr) = sync(&config, &wh, 20_000).await;
    assert!(status.success(), "first sync failed: {stderr}");
    let snapshot: BTreeMap<&'static str, _> = FULL_TABLE.iter().map(|s| (*s, wh.snapshot(s))).collect();
    assert_tags_match_truth(&wh, &sim);
    let versions = wh.tag_versions();
    assert_eq!(
        versions.len(),
        1,
        "one version after a complete run: {versions:?}"
    );
    let first_version = versions.keys().next().unwrap().clone();
    let tag_count = versions.values().sum();
    assert!(
        tag_count >= 12,
        "only {tag_count} tags: the mid-stream tests need a long stream"
    );
    Synced {
        sim,
        wh,
        _dir: dir,
        config,
        small_pages,
        only_tags,
        snapshot,
        first_version,
        tag_count,
    }
}

/// The tags table holds exactly the simulator's tags, with their counts.
fn assert_tags_match_truth(wh: &Warehouse, sim: &SimHandle) {
    let truth = sim.truth_of("tags").unwrap();
    let want: BTreeMap<String, f64> = truth["updated"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    let rows = wh.query(&format!(
        "SELECT CAST(name AS TEXT), CAST(\"count\" AS TEXT) FROM \"{}\".tags",
        wh.schema()
    ));
    assert_eq!(rows.len(), want.len(), "tags rows: {rows:?}");
    let got: BTreeMap<String, f64> = rows
        .into_iter()
        .map(|r| {
            let count = r[1].as_deref().unwrap().parse::<f64>().unwrap();
            (r[0].clone().unwrap(), count)
        })
        .collect();
    assert_eq!(got, want, "tags differ from the simulator's truth");
}

impl Synced {
    /// Every full-table table holds what the first run left, and the committed `version` marker
    /// has not moved.
    fn assert_unchanged(&self, after: &str) {
        for stream in FULL_TABLE {
            assert_eq!(
                self.wh.snapshot(stream),
                self.snapshot[stream],
                "{stream} changed after {after}"
            );
        }
        assert_tags_match_truth(&self.wh, &self.sim);
        // The first run committed its version as the stream's marker, and nothing moved it.
        let state = self.wh.committed_state();
        assert_eq!(
            state.bookmark("tags", "version").map(Value::to_string),
            Some(self.first_version.clone()),
            "after {after}, the committed version marker is wrong: {state:?}"
        );
    }

    /// Rows of the tags table committed by the interrupted run (a newer version) and rows still
    /// of the first run: the run was stopped in the middle, after committing some of the stream.
    fn assert_stopped_mid_stream(&self) {
        let versions = self.wh.tag_versions();
        let old = versions.get(&self.first_version).copied().unwrap_or(0);
        let new = versions.values().sum::<usize>() - old;
        assert!(
            new > 0 && old > 0,
            "expected rows of the new version committed before the stop and rows of the first run left: {versions:?}"
        );
    }

    /// With the fault gone, a clean run converges on the truth with one version again.
    async fn assert_recovers(self) {
        self.sim.set_path_faults(Vec::new()).unwrap();
        let (status, stderr) = sync(&self.config, &self.wh, 20_000).await;
        assert!(status.success(), "clean run failed: {stderr}");
        assert_tags_match_truth(&self.wh, &self.sim);
        let versions = self.wh.tag_versions();
        assert_eq!(versions.len(), 1, "{versions:?}");
        assert_ne!(versions.keys().next(), Some(&self.first_version));
        self.sim.shutdown().await;
    }

    /// Starts a run of tags alone, one tag per page, each page answered slowly and each record
    /// committed on its own; returns it once `seam sync` reports rows committed, while pages of
    /// the stream are still to come.
    async fn start_slow_run(&self) -> Running {
        self.sim
            .set_path_faults(vec![PathFault::slow(TAGS, SLOW_PAGE_MS)])
            .unwrap();
        self.sim.reset_stats();
        let run = Running::start(&self.small_pages, &self.wh, 1, Some(&self.only_tags));
        wait_until(
            Duration::from_secs(120),
            "a progress line with rows committed",
            || run.rows_committed() > 0,
        )
        .await;
        assert!(
            tag_pages(&self.sim) < self.tag_count as u64,
            "the tags stream ended before the stop: {} pages",
            tag_pages(&self.sim)
        );
        run
    }
}

async fn refused(wh: Warehouse, dir: tempfile::TempDir) {
    let s = first_sync(wh, dir).await;
    s.sim.set_path_faults(vec![PathFault::status(TAGS, 403)]).unwrap();
    let (status, stderr) = sync(&s.config, &s.wh, 20_000).await;
    assert!(status.success(), "a skipped stream is not a failure: {stderr}");
    assert!(stderr.contains("warning: skipped tags"), "{stderr}");
    s.assert_unchanged("a run that got 403 on /api/v2/tags.json");
    s.assert_recovers().await;
}

async fn failing(wh: Warehouse, dir: tempfile::TempDir) {
    let s = first_sync(wh, dir).await;
    s.sim.set_path_faults(vec![PathFault::status(TAGS, 500)]).unwrap();
    let (status, stderr) = sync(&s.config, &s.wh, 20_000).await;
    assert!(!status.success(), "the run should fail: {stderr}");
    assert!(
        stderr.contains("zendesk answered 500 for /api/v2/tags.json"),
        "{stderr}"
    );
    s.assert_unchanged("a run whose retries on /api/v2/tags.json ran out");
    s.assert_recovers().await;
}

async fn stopped(wh: Warehouse, dir: tempfile::TempDir) {
    let s = first_sync(wh, dir).await;
    let run = s.start_slow_run().await;
    let sent = Command::new("kill")
        .args(["-INT", &run.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let (status, stderr) = tokio::task::spawn_blocking(move || run.finish(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(stderr.contains("stopping at the next safe point"), "{stderr}");
    assert!(status.success(), "a stopped run ends cleanly: {stderr}");
    s.assert_unchanged("a run stopped in the middle of tags");
    s.assert_stopped_mid_stream();
    s.assert_recovers().await;
}

async fn killed(wh: Warehouse, dir: tempfile::TempDir) {
    let s = first_sync(wh, dir).await;
    let mut run = s.start_slow_run().await;
    run.child.kill().unwrap(); // SIGKILL
    let (status, _) = tokio::task::spawn_blocking(move || run.finish(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(!status.success());
    s.assert_unchanged("a run killed in the middle of tags");
    s.assert_stopped_mid_stream();
    s.assert_recovers().await;
}

fn duckdb() -> (Warehouse, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Warehouse::DuckDb(dir.path().join("wh.duckdb")), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_a_403_keeps_the_last_complete_version() {
    let (wh, dir) = duckdb();
    refused(wh, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_500s_until_retries_run_out_keep_the_last_complete_version() {
    let (wh, dir) = duckdb();
    failing(wh, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_a_run_stopped_mid_stream_keeps_the_last_complete_version() {
    let (wh, dir) = duckdb();
    stopped(wh, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_a_run_killed_mid_stream_keeps_the_last_complete_version() {
    let (wh, dir) = duckdb();
    killed(wh, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_403_keeps_the_last_complete_version() {
    let Some(wh) = postgres_warehouse("refused") else {
        return;
    };
    refused(wh, tempfile::tempdir().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_500s_until_retries_run_out_keep_the_last_complete_version() {
    let Some(wh) = postgres_warehouse("failing") else {
        return;
    };
    failing(wh, tempfile::tempdir().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_run_stopped_mid_stream_keeps_the_last_complete_version() {
    let Some(wh) = postgres_warehouse("stopped") else {
        return;
    };
    stopped(wh, tempfile::tempdir().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_run_killed_mid_stream_keeps_the_last_complete_version() {
    let Some(wh) = postgres_warehouse("killed") else {
        return;
    };
    killed(wh, tempfile::tempdir().unwrap()).await;
}
