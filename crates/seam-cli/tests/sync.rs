//! `seam sync` against the simulator: complete, exact, and exactly once under kill -9.

use crate::common::sim::{start_sim, write_config};
use crate::common::sync::{sync_to_end, RunningSync, RUN_LIMIT};
use crate::common::truth::{
    assert_latest_versions, assert_matches_truth, assert_nothing_rejected, assert_phone_numbers_match_truth,
    key_of, FULL_TABLE,
};
use crate::common::warehouse::Warehouse;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const SCHEMA: &str = "stitch_zendesk";

fn duckdb(dir: &tempfile::TempDir) -> Warehouse {
    duckdb_at(dir, "wh.duckdb")
}

fn duckdb_at(dir: &tempfile::TempDir, file: &str) -> Warehouse {
    Warehouse::duckdb(dir.path().join(file), SCHEMA)
}

/// Runs `seam sync` to its end, which must be a success; returns its stderr.
async fn run_to_end(config: &Path, wh: &Arc<Warehouse>, batch: usize) -> String {
    let (status, stderr) = sync_to_end(config, wh, batch).await;
    assert!(status.success(), "seam sync failed: {stderr}");
    stderr
}

/// A full sync, then Zendesk changes, then a second sync: the warehouse equals the truth both times
/// (Talk phone numbers, whose greetings are keyed by digits, included), and nothing is rejected.
async fn full_then_incremental(wh: Warehouse) {
    let sim = start_sim(300, 7, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "zendesk.json", &sim.base_url(), None);
    let wh = Arc::new(wh);
    let summary = run_to_end(&config, &wh, 20_000).await;
    assert!(summary.contains("tickets"), "no per-table summary: {summary}");
    let before = sim.truth();
    assert_matches_truth(&wh, &before, None);
    assert_latest_versions(&wh, &before);
    assert_phone_numbers_match_truth(&wh, &sim).await;
    assert_nothing_rejected(&wh);

    // Zendesk changes; a minute later the second run picks up exactly the changes.
    sim.mutate(40);
    sim.advance_clock(61);
    run_to_end(&config, &wh, 20_000).await;
    let after = sim.truth();
    assert_ne!(before, after, "the mutation changed nothing");
    assert_matches_truth(&wh, &after, Some(&before));
    assert_latest_versions(&wh, &after);
    assert_phone_numbers_match_truth(&wh, &sim).await;
    assert_nothing_rejected(&wh);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_sync_into_duckdb_matches_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    full_then_incremental(duckdb(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_sync_into_postgres_matches_the_truth() {
    let Some(wh) = Warehouse::postgres("sync_incremental") else {
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
    // Slow answers stretch the sync so the kills land during extraction and between commits (the
    // answers and the account size, not the loader, set the pace: 400 tickets at 15 ms were all loaded
    // by the third kill once loading got faster, and 1000 at 25 ms by the fifth once staging went
    // columnar).
    let sim = start_sim(1000, 7, 40).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "zendesk.json", &sim.base_url(), None);
    let wh = Arc::new(wh);
    let before = sim.truth();
    let streams = incremental_streams(&before);
    // How long a run lives before its kill: grown while runs die before their first commit, so a
    // slow machine still gets kills after commits; varied so kills land at different points.
    let mut lifetime = Duration::from_millis(400);
    let mut kills = Vec::new(); // (position before the run, position after its kill)
    for step in 0..12u64 {
        let start = committed_position(&wh, &streams);
        let mut run = RunningSync::start(&config, &wh, 150, None);
        let jitter = Duration::from_millis((step * 137) % 300);
        tokio::time::sleep(lifetime + jitter).await;
        if run.has_exited() {
            // It finished first: nothing left to interrupt until Zendesk changes.
            run.finish(RUN_LIMIT);
            lifetime = lifetime * 2 / 3;
        } else {
            run.child.kill().unwrap(); // SIGKILL
            run.finish(RUN_LIMIT);
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
    run_to_end(&config, &wh, 150).await;
    let after = sim.truth();
    assert_matches_truth(&wh, &after, Some(&before));
    assert_latest_versions(&wh, &after);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_many_points_into_duckdb_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    kill_nine_at_many_points(duckdb(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_many_points_into_postgres_loses_nothing_and_duplicates_nothing() {
    let Some(wh) = Warehouse::postgres("sync_kill") else {
        return;
    };
    kill_nine_at_many_points(wh).await;
}

/// Runs `cmd` to its end off the async runtime; returns its exit status and stderr.
async fn finish(mut cmd: std::process::Command) -> (std::process::ExitStatus, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The incremental streams (not full-table) of the simulator's `truth`.
fn incremental_streams(truth: &serde_json::Value) -> Vec<String> {
    truth
        .as_object()
        .unwrap()
        .keys()
        .filter(|s| !FULL_TABLE.contains(&s.as_str()))
        .cloned()
        .collect()
}

/// `seam sync` into `wh` (batches of 150 records) on a disk with room for `limit` bytes a file: every
/// write past it fails as on a full disk (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored so that the write
/// returns `EFBIG`, "File too large", instead of killing the process). Needs `sh` and `prlimit`
/// (util-linux); without them the run fails, and the test with it.
async fn sync_on_a_small_disk(
    config: &Path,
    wh: &Warehouse,
    limit: u64,
) -> (std::process::ExitStatus, String) {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"trap '' XFSZ; exec prlimit --fsize="$0" -- "$@""#)
        .arg(limit.to_string())
        .arg(env!("CARGO_BIN_EXE_seam"))
        .args([
            "sync",
            "--plain",
            "--schema",
            wh.schema(),
            "--max-batch-records",
            "150",
        ])
        .arg("--config")
        .arg(config)
        .arg("--destination")
        .arg(wh.destination())
        .env_remove("SEAM_METASTORE_URL")
        .env_remove("SEAM_DATA_DIR")
        .stdin(std::process::Stdio::null());
    finish(cmd).await
}

/// The disk fills up while `seam sync` loads into DuckDB, after some of its commits: the run fails
/// with an error that names the file and the cause once, and keeps what it committed (consistent:
/// no key twice, its state stored with it); the next run, with room, finishes from there, and the
/// warehouse equals the truth — nothing lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_sync_clearly_and_the_next_run_loses_nothing() {
    let sim = start_sim(300, 7, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "zendesk.json", &sim.base_url(), None);
    let truth = sim.truth();
    let streams = incremental_streams(&truth);
    // The smallest room (doubling from 256 KB) in which the run commits rows of the incremental
    // streams before the disk fills: how much that is depends on DuckDB's files, not on the test.
    let mut limit: u64 = 256 * 1024;
    let (wh, stderr) = loop {
        let wh = duckdb_at(&dir, &format!("wh_{limit}.duckdb"));
        let (status, stderr) = sync_on_a_small_disk(&config, &wh, limit).await;
        assert!(!stderr.contains("panicked"), "seam sync panicked: {stderr}");
        assert!(
            !status.success(),
            "seam sync finished in files of {limit} bytes without failing after a commit first: {stderr}"
        );
        // A commit of incremental rows landed (one of full-table streams and a state alone does not
        // count: the rows checked below are the incremental streams').
        let committed = committed_position(&wh, &streams);
        if committed.rows > 0 {
            break (wh, stderr);
        }
        assert!(
            limit < 64 << 20,
            "seam sync never committed before its disk filled: {stderr}"
        );
        limit *= 2;
    };
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        error.contains("the bookmark did not move") && error.contains(&format!("wh_{limit}.duckdb")),
        "the error does not say the bookmark stayed and which file: {error}"
    );
    assert_eq!(
        error.matches("File too large").count(),
        1,
        "the cause should show once: {error}"
    );
    assert!(
        !error.contains("Unknown error code"),
        "DuckDB's status code says nothing: {error}"
    );
    let committed = committed_position(&wh, &streams);
    assert!(committed.rows > 0, "nothing committed before the disk filled");
    eprintln!(
        "files limited to {limit} bytes: {} rows committed before the disk filled",
        committed.rows
    );

    let wh = Arc::new(wh);
    let rest = run_to_end(&config, &wh, 150).await;
    assert!(rest.contains("commits"), "no summary: {rest}");
    assert_matches_truth(&wh, &truth, None);
    assert_latest_versions(&wh, &truth);
    assert_nothing_rejected(&wh);
    sim.shutdown().await;
}

/// Runs `seam sync` from `config` into `destination` to its end; returns its exit status and stderr.
async fn sync_once(config: &Path, destination: &str) -> (std::process::ExitStatus, String) {
    let mut cmd = crate::common::seam();
    cmd.args([
        "sync",
        "--plain",
        "--schema",
        SCHEMA,
        "--destination",
        destination,
    ])
    .arg("--config")
    .arg(config)
    .stdin(std::process::Stdio::null());
    finish(cmd).await
}

/// `--destination` is parsed once, with the same parser as `seam serve --warehouse`, before any
/// request to Zendesk: a PostgreSQL URL seam cannot use fails at once, saying what to fix; and the
/// destination's password is never printed, neither in progress lines nor in errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_password_is_never_printed_and_a_bad_url_fails_before_zendesk_is_asked() {
    let sim = start_sim(20, 7, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "zendesk.json", &sim.base_url(), None);

    // Nothing listens on port 1: the run gets as far as connecting to the warehouse, and fails.
    let (status, stderr) = sync_once(
        &config,
        "postgres://seam:hunter2@127.0.0.1:1/warehouse?sslmode=disable",
    )
    .await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("seam:***@127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password was printed: {stderr}");

    // An sslmode seam does not know: refused before the first request to Zendesk.
    sim.reset_stats();
    let (status, stderr) = sync_once(
        &config,
        "postgres://seam:hunter2@127.0.0.1:1/warehouse?sslmode=verify",
    )
    .await;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("--destination")
            && stderr.contains("sslmode=verify")
            && stderr.contains("verify-full"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "the password was printed: {stderr}");
    assert_eq!(
        sim.stats()["total"],
        0,
        "zendesk was asked before the destination was checked: {}",
        sim.stats()
    );

    let (status, stderr) = sync_once(&config, "./warehouse.duckdb").await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("duckdb:./warehouse.duckdb"), "{stderr}");
    sim.shutdown().await;
}

/// The commits a finished run's summary reports (`N commits, M API requests, …`).
fn commits_reported(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.split_once(" commits, ")?.0.trim().parse().ok())
        .unwrap_or_else(|| panic!("no commit count in: {stderr}"))
}

/// `--max-batch-bytes` sets how much record JSON a commit gathers: a small limit makes many commits
/// of the same account, and the warehouse still equals the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batch_bytes_sets_the_commit_size() {
    let sim = start_sim(100, 11, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "zendesk.json", &sim.base_url(), None);
    let mut commits = Vec::new();
    for (name, bytes) in [("default", None), ("small", Some("20000"))] {
        let wh = Warehouse::duckdb(dir.path().join(format!("{name}.duckdb")), SCHEMA);
        let mut cmd = crate::common::seam();
        cmd.args(["sync", "--plain", "--schema", SCHEMA, "--config"])
            .arg(&config)
            .arg("--destination")
            .arg(wh.destination());
        if let Some(b) = bytes {
            cmd.args(["--max-batch-bytes", b]);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "seam sync failed: {stderr}");
        assert_matches_truth(&wh, &sim.truth(), None);
        commits.push(commits_reported(&stderr));
    }
    assert!(
        commits[1] > commits[0] + 10,
        "20 kB batches made {} commits, the default {}",
        commits[1],
        commits[0]
    );
    sim.shutdown().await;
}
