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

/// Interrupts through `interrupter` every `every` until `done` says the call ended (within a
/// minute): the call may not have reached DuckDB when the first one is sent, and an interrupt that
/// arrives between statements changes nothing.
fn interrupt_until_done(interrupter: &Arc<dyn Interrupt>, done: &mpsc::Receiver<()>, every: Duration) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        interrupter.interrupt();
        match done.recv_timeout(every) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    Instant::now() < deadline,
                    "the call did not end within a minute of interrupts"
                );
            }
            _ => return,
        }
    }
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

    let (done, ended) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        // Hours of work on one thread, unless interrupted.
        let r = d.connection().query_row(
            "SELECT count(*) FROM range(1000000) a, range(1000000) b",
            [],
            |r| r.get::<_, i64>(0),
        );
        let _ = done.send(());
        (d, r)
    });
    interrupt_until_done(&interrupter, &ended, Duration::from_millis(20));
    let (mut d, r) = worker.join().unwrap();
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
    let interrupter = d.interrupter().unwrap();
    let (done, ended) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = d.commit(Some(&state(2)));
        let _ = done.send(());
        (d, r)
    });
    interrupt_until_done(&interrupter, &ended, Duration::from_micros(200));
    let (mut d, r) = worker.join().unwrap();
    let e = r.expect_err("a commit interrupted all along fails");
    assert!(e.to_string().contains("INTERRUPT"), "{e}");
    // Nothing of the batch, nor its state, became durable.
    assert_eq!(contents(&mut d), before);

    // The batch stayed staged: retried, it commits whole.
    d.commit(Some(&state(2))).unwrap();
    let after = contents(&mut d);
    assert_eq!((after.0, after.1), (N, N));
    assert_ne!(after.2, before.2, "the names were replaced");
    assert_eq!(after.3, Some(state(2)));
    drop(d);
    let mut reopened = DuckDbDestination::open(&path, "s").unwrap();
    assert_eq!(contents(&mut reopened), after);
}
