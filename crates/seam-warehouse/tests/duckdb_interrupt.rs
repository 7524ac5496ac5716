//! A DuckDB destination's interrupter ends the statement its connection runs (a stopped run's
//! commit then stops instead of running to its end), and what an interrupted commit leaves is what
//! any failed commit leaves: the rows and state committed before, and its batch staged for a retry.

use crate::duckdb_shared::{batch, state, users};
use seam_core::{Destination, Interrupt};
use seam_warehouse::DuckDbDestination;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows in `s.users` and its tags subtable, the names' checksum, and the committed state.
fn contents(d: &mut DuckDbDestination) -> (i64, i64, i64, Option<seam_core::State>) {
    let count = |d: &DuckDbDestination, sql: &str| -> i64 {
        d.connection().query_row(sql, [], |r| r.get(0)).unwrap()
    };
    (
        count(d, "SELECT count(*) FROM s.users"),
        count(d, "SELECT count(*) FROM s.users__tags"),
        count(
            d,
            "SELECT coalesce(sum(hash(name) % 1000003), 0)::BIGINT FROM s.users",
        ),
        d.committed_state().unwrap(),
    )
}

/// Runs `call` on `d` on a thread of its own while interrupting `d` every `every`, until the call
/// returns (within a minute): the call may not have reached DuckDB when the first interrupt is
/// sent, and one that arrives between statements changes nothing.
fn interrupted<T: Send + 'static>(
    mut d: DuckDbDestination,
    every: Duration,
    call: impl FnOnce(&mut DuckDbDestination) -> T + Send + 'static,
) -> (DuckDbDestination, T) {
    let interrupter: Arc<dyn Interrupt> = d.interrupter().expect("a DuckDB destination can be interrupted");
    let (done, ended) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let out = call(&mut d);
        let _ = done.send(());
        (d, out)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        interrupter.interrupt();
        match ended.recv_timeout(every) {
            Err(mpsc::RecvTimeoutError::Timeout) => assert!(
                Instant::now() < deadline,
                "the call did not end within a minute of interrupts"
            ),
            _ => break,
        }
    }
    worker.join().unwrap()
}

#[test]
fn an_interrupted_statement_ends_and_the_destination_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let mut d = DuckDbDestination::open(&path, "s").unwrap();
    d.ensure_table(&users()).unwrap();
    d.write_batch("users", &batch(1, 10)).unwrap();
    d.commit(Some(&state(10))).unwrap();
    let interrupter = d.interrupter().expect("a DuckDB destination can be interrupted");
    // An interrupt with no statement under way changes nothing.
    interrupter.interrupt();
    assert_eq!(contents(&mut d).0, 10);

    // Hours of work on one thread, unless interrupted.
    let (mut d, r) = interrupted(d, Duration::from_millis(20), |d| {
        d.connection().query_row(
            "SELECT count(*) FROM range(1000000) a, range(1000000) b",
            [],
            |r| r.get::<_, i64>(0),
        )
    });
    let e = r.expect_err("the statement was interrupted");
    assert!(e.to_string().contains("INTERRUPT"), "{e}");

    // The destination goes on loading.
    d.write_batch("users", &batch(11, 5)).unwrap();
    d.commit(Some(&state(15))).unwrap();
    assert_eq!(contents(&mut d).0, 15);
    assert_eq!(contents(&mut d).3, Some(state(15)));
}

#[test]
fn an_interrupted_commit_keeps_what_was_committed_and_can_be_retried() {
    const N: i64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let mut d = DuckDbDestination::open(&path, "s").unwrap();
    d.ensure_table(&users()).unwrap();
    d.write_batch("users", &batch(0, N)).unwrap();
    d.commit(Some(&state(1))).unwrap();
    let before = contents(&mut d);
    assert_eq!((before.0, before.1), (N, 2 * N));

    // The same keys again with other names: a merge (key checks, deletes, appends), many statements.
    let renamed: Vec<_> = (0..N)
        .map(|id| {
            crate::harness::rec(
                "users",
                serde_json::json!({"id": id, "name": format!("renamed {id}"), "tags": ["c"]}),
            )
        })
        .collect();
    d.write_batch("users", &renamed).unwrap();
    let (mut d, r) = interrupted(d, Duration::from_micros(200), |d| d.commit(Some(&state(2))));
    let e = r.expect_err("a commit interrupted all along fails");
    // A statement says "INTERRUPT Error: Interrupted!", an appender's flush in the commit "Failed to
    // append: Interrupted!" (on a loaded machine the first interrupts to land may come there).
    assert!(e.to_string().to_lowercase().contains("interrupt"), "{e}");
    // Nothing of the batch, nor its state, became durable (read on a connection of its own: the
    // interrupts may also have ended the failed commit's rollback, whose transaction the next
    // commit then rolls back first).
    let mut reader = DuckDbDestination::open(&path, "s").unwrap();
    assert_eq!(contents(&mut reader), before);

    // The batch stayed staged: retried, it commits whole.
    d.commit(Some(&state(2))).unwrap();
    let after = contents(&mut d);
    assert_eq!((after.0, after.1), (N, N));
    assert_ne!(after.2, before.2, "the names were replaced");
    assert_eq!(after.3, Some(state(2)));
    assert_eq!(contents(&mut reader), after);
    drop((d, reader));
    let mut reopened = DuckDbDestination::open(&path, "s").unwrap();
    assert_eq!(contents(&mut reopened), after);
}
