//! DuckDB destinations on one file in one process: each has its own connection to one shared
//! database instance, so integrations (schemas) load side by side and lose nothing.

use crate::harness::{rec, schema};
use seam_core::{Destination, State};
use seam_warehouse::DuckDbDestination;
use serde_json::json;
use std::path::Path;
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

pub(crate) fn users() -> seam_core::SchemaMessage {
    schema(
        "users",
        &["id"],
        json!({"type": "object", "properties": {"id": {"type": "integer"}}}),
    )
}

pub(crate) fn batch(from: i64, n: i64) -> Vec<seam_core::RecordMessage> {
    (from..from + n)
        .map(|id| {
            rec(
                "users",
                json!({"id": id, "name": format!("user {id}"), "tags": ["a", "b"]}),
            )
        })
        .collect()
}

pub(crate) fn state(n: i64) -> State {
    let mut s = State::default();
    s.set_bookmark("users", "n", json!(n));
    s
}

/// Rows in `schema.users` and its tags subtable, and the committed state, read by a fresh
/// destination.
fn read_back(path: &Path, schema_name: &str) -> (i64, i64, Option<State>) {
    let mut d = DuckDbDestination::open(path, schema_name).unwrap();
    let count = |table: &str| -> i64 {
        d.connection()
            .query_row(
                &format!("SELECT count(*) FROM \"{schema_name}\".\"{table}\""),
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let (users, tags) = (count("users"), count("users__tags"));
    (users, tags, d.committed_state().unwrap())
}

#[test]
fn a_destination_with_staged_rows_blocks_no_other_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    // A: a job that staged rows and now waits on its source.
    let mut a = DuckDbDestination::open(&path, "integration_a").unwrap();
    a.ensure_table(&users()).unwrap();
    a.write_batch("users", &batch(1, 3)).unwrap();
    // B: another integration loads and finishes meanwhile.
    let (done, finished) = mpsc::channel();
    let b_path = path.clone();
    std::thread::spawn(move || {
        let mut b = DuckDbDestination::open(&b_path, "integration_b").unwrap();
        b.ensure_table(&users()).unwrap();
        b.write_batch("users", &batch(100, 5)).unwrap();
        let report = b.commit(Some(&state(5))).unwrap();
        drop(b);
        let _ = done.send(report.rows.get("users").copied());
    });
    // Generous: B needs well under a second; blocked behind A it would never finish.
    let b_rows = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("B's load finished while A was open with staged rows");
    assert_eq!(b_rows, Some(5));
    // A's job resumes and commits.
    a.write_batch("users", &batch(4, 2)).unwrap();
    let report = a.commit(Some(&state(5))).unwrap();
    assert_eq!(report.rows.get("users"), Some(&5));
    drop(a);
    assert_eq!(read_back(&path, "integration_a"), (5, 10, Some(state(5))));
    assert_eq!(read_back(&path, "integration_b"), (5, 10, Some(state(5))));
}

#[test]
fn concurrent_commits_from_threads_lose_nothing() {
    const THREADS: usize = 4;
    const COMMITS: i64 = 6;
    const PER_COMMIT: i64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    // One destination stays open throughout, as the service's other jobs would.
    let mut idle = DuckDbDestination::open(&path, "idle").unwrap();
    idle.ensure_table(&users()).unwrap();
    idle.write_batch("users", &batch(1, 1)).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (path, start) = (path.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                let schema_name = format!("integration_{t}");
                let mut d = DuckDbDestination::open(&path, &schema_name).unwrap();
                d.ensure_table(&users()).unwrap();
                start.wait();
                for c in 0..COMMITS {
                    d.write_batch("users", &batch(c * PER_COMMIT, PER_COMMIT))
                        .unwrap();
                    let report = d
                        .commit(Some(&state(c + 1)))
                        .unwrap_or_else(|e| panic!("{schema_name} commit {c}: {e}"));
                    assert_eq!(report.rows.get("users"), Some(&(PER_COMMIT as u64)));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a loading thread failed");
    }
    idle.commit(None).unwrap();
    drop(idle);
    for t in 0..THREADS {
        let n = COMMITS * PER_COMMIT;
        assert_eq!(
            read_back(&path, &format!("integration_{t}")),
            (n, 2 * n, Some(state(COMMITS))),
            "integration_{t}"
        );
    }
    assert_eq!(read_back(&path, "idle"), (1, 2, None));
}

#[test]
fn the_file_closes_when_its_last_destination_drops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let mut d = DuckDbDestination::open(&path, "s").unwrap();
    d.ensure_table(&users()).unwrap();
    d.write_batch("users", &batch(1, 2)).unwrap();
    d.commit(None).unwrap();
    drop(d);
    // Closed: a plain connection (another instance, as another process would have) can open it.
    let conn = duckdb::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM s.users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}
