//! Full-table streams (tags, sla_policies, talk_phone_numbers) under failure: a run that is refused
//! (403), fails (500s until the retries run out), is stopped (SIGINT) or killed (SIGKILL) in the
//! middle of a full-table stream leaves that table exactly as the last complete run left it. Each
//! test syncs once to the end, then runs `seam sync` again with a per-path fault on the simulator's
//! `/api/v2/tags.json`, and compares the warehouse with the first run's snapshot and with the
//! simulator's truth; then a clean run still converges on the truth.

use crate::common::sim::{start_sim, write_config};
use crate::common::sync::{sync_to_end, RunningSync};
use crate::common::truth::{assert_tags_match_truth, FULL_TABLE};
use crate::common::warehouse::Warehouse;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use zendesk_sim::{PathFault, SimHandle};

const TAGS: &str = "/api/v2/tags.json";
/// Per-page delay on the tags endpoint in runs that are stopped or killed mid-stream: long enough
/// for the stream (one tag per page) to outlast `seam sync`'s first progress line (after 5 s).
const SLOW_PAGE_MS: u64 = 700;

/// The table of `stream` and its subtables, with the columns the records carry (not `_sdc_*`).
fn tables_of(wh: &Warehouse, stream: &str) -> BTreeMap<String, Vec<String>> {
    let sql = format!(
        "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns \
         WHERE table_schema = '{}' AND (table_name = '{stream}' OR table_name LIKE '{stream}\\_\\_%' ESCAPE '\\')",
        wh.schema()
    );
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in wh.query(&sql) {
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
fn snapshot(wh: &Warehouse, stream: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (table, cols) in tables_of(wh, stream) {
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
            wh.schema()
        );
        let mut rows: Vec<String> = wh
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
fn tag_versions(wh: &Warehouse) -> BTreeMap<String, usize> {
    let sql = format!(
        "SELECT CAST(\"_sdc_table_version\" AS TEXT) FROM \"{}\".\"tags\"",
        wh.schema()
    );
    let mut out = BTreeMap::new();
    for r in wh.query(&sql) {
        *out.entry(r[0].clone().unwrap_or_default()).or_insert(0) += 1;
    }
    out
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
    let sim = start_sim(40, 11, 0).await;
    let config = write_config(dir.path(), "zendesk.json", &sim.base_url(), Some(100));
    let small_pages = write_config(dir.path(), "small-pages.json", &sim.base_url(), Some(1));
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
    let (status, stderr) = sync_to_end(&config, &wh, 20_000).await;
    assert!(status.success(), "first sync failed: {stderr}");
    let snapshot: BTreeMap<&'static str, _> = FULL_TABLE.iter().map(|s| (*s, snapshot(&wh, s))).collect();
    assert_tags_match_truth(&wh, &sim);
    let versions = tag_versions(&wh);
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

impl Synced {
    /// Every full-table table holds what the first run left, and the committed `version` marker
    /// has not moved.
    fn assert_unchanged(&self, after: &str) {
        for stream in FULL_TABLE {
            assert_eq!(
                snapshot(&self.wh, stream),
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
        let versions = tag_versions(&self.wh);
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
        let (status, stderr) = sync_to_end(&self.config, &self.wh, 20_000).await;
        assert!(status.success(), "clean run failed: {stderr}");
        assert_tags_match_truth(&self.wh, &self.sim);
        let versions = tag_versions(&self.wh);
        assert_eq!(versions.len(), 1, "{versions:?}");
        assert_ne!(versions.keys().next(), Some(&self.first_version));
        self.sim.shutdown().await;
    }

    /// Starts a run of tags alone, one tag per page, each page answered slowly and each record
    /// committed on its own; returns it once `seam sync` reports rows committed, while pages of
    /// the stream are still to come.
    async fn start_slow_run(&self) -> RunningSync {
        self.sim
            .set_path_faults(vec![PathFault::slow(TAGS, SLOW_PAGE_MS)])
            .unwrap();
        self.sim.reset_stats();
        let run = RunningSync::start(&self.small_pages, &self.wh, 1, Some(&self.only_tags));
        seam_test_support::wait_until_async(
            Duration::from_secs(120),
            "a progress line with rows committed",
            async || run.rows_committed() > 0,
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
    let (status, stderr) = sync_to_end(&s.config, &s.wh, 20_000).await;
    assert!(status.success(), "a skipped stream is not a failure: {stderr}");
    assert!(stderr.contains("warning: skipped tags"), "{stderr}");
    s.assert_unchanged("a run that got 403 on /api/v2/tags.json");
    s.assert_recovers().await;
}

async fn failing(wh: Warehouse, dir: tempfile::TempDir) {
    let s = first_sync(wh, dir).await;
    s.sim.set_path_faults(vec![PathFault::status(TAGS, 500)]).unwrap();
    let (status, stderr) = sync_to_end(&s.config, &s.wh, 20_000).await;
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
    assert!(stderr.contains("stopping: at the next safe point"), "{stderr}");
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
    (Warehouse::duckdb(dir.path().join("wh.duckdb"), "full_table"), dir)
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
    let Some(wh) = Warehouse::postgres("full_table_refused") else {
        return;
    };
    refused(wh, tempfile::tempdir().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_500s_until_retries_run_out_keep_the_last_complete_version() {
    let Some(wh) = Warehouse::postgres("full_table_failing") else {
        return;
    };
    failing(wh, tempfile::tempdir().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_run_stopped_mid_stream_keeps_the_last_complete_version() {
    let Some(wh) = Warehouse::postgres("full_table_stopped") else {
        return;
    };
    stopped(wh, tempfile::tempdir().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_run_killed_mid_stream_keeps_the_last_complete_version() {
    let Some(wh) = Warehouse::postgres("full_table_killed") else {
        return;
    };
    killed(wh, tempfile::tempdir().unwrap()).await;
}
