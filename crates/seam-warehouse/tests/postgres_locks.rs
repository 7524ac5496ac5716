//! Locks another session holds in the warehouse: a commit waits for them a bounded time, a call
//! interrupted from another thread lets go of the warehouse, and neither loses or doubles a row.

use crate::harness::{postgres_url, rec, schema};
use seam_core::{Destination, ErrorKind, State};
use seam_warehouse::PostgresDestination;
use serde_json::json;
use std::time::{Duration, Instant};

fn state(n: i64) -> State {
    State::from_value(json!({"bookmarks": {"tickets": {"updated_at": n}}})).unwrap()
}

/// `url` with one more query parameter.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

fn show(d: &mut PostgresDestination, setting: &str) -> String {
    d.client()
        .unwrap()
        .query_one(&format!("SHOW {setting}"), &[])
        .unwrap()
        .get(0)
}

/// Each id with its `v`, in id order.
fn tickets(url: &str, name: &str) -> Vec<(i64, String)> {
    let mut check = postgres::Client::connect(url, postgres::NoTls).unwrap();
    check
        .query(&format!("SELECT id, v FROM \"{name}\".tickets ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A destination holding ids 1 and 2 (`v` "one", "two"), committed with state 1.
fn loaded(url: &str, name: &str) -> PostgresDestination {
    let mut d = PostgresDestination::connect(url, name).unwrap();
    d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
        .unwrap();
    d.write_batch(
        "tickets",
        &[
            rec("tickets", json!({"id": 1, "v": "one"})),
            rec("tickets", json!({"id": 2, "v": "two"})),
        ],
    )
    .unwrap();
    d.commit(Some(&state(1))).unwrap();
    d
}

/// Another session's transaction holding `mode` on the tickets table until it is dropped.
fn hold_lock(url: &str, name: &str, mode: &str) -> postgres::Client {
    let mut holder = postgres::Client::connect(url, postgres::NoTls).unwrap();
    holder
        .batch_execute(&format!("BEGIN; LOCK TABLE \"{name}\".tickets IN {mode} MODE"))
        .unwrap();
    holder
}

/// Stages an update of id 2 and a new id 3.
fn stage_second_batch(d: &mut PostgresDestination) {
    d.write_batch(
        "tickets",
        &[
            rec("tickets", json!({"id": 2, "v": "two again"})),
            rec("tickets", json!({"id": 3, "v": "three"})),
        ],
    )
    .unwrap();
}

/// Only the first batch is in the table, and its state is the one committed.
fn first_batch_only(url: &str, name: &str, d: &mut PostgresDestination) {
    assert_eq!(tickets(url, name), vec![(1, "one".into()), (2, "two".into())]);
    assert_eq!(d.committed_state().unwrap(), Some(state(1)));
}

/// The failed commit, retried, loads the second batch once with its state.
fn retry_commits_the_second_batch(url: &str, name: &str, d: &mut PostgresDestination) {
    d.commit(Some(&state(2))).unwrap();
    let expected: Vec<(i64, String)> = vec![(1, "one".into()), (2, "two again".into()), (3, "three".into())];
    assert_eq!(tickets(url, name), expected);
    assert_eq!(d.committed_state().unwrap(), Some(state(2)));
}

#[test]
fn sessions_bound_their_lock_waits_unless_the_url_says_otherwise() {
    let Some(url) = postgres_url() else { return };
    let name = seam_test_support::unique_name("lockdefault");
    let mut d = PostgresDestination::connect(&url, &name).unwrap();
    assert_eq!(
        show(&mut d, "lock_timeout"),
        seam_warehouse::postgres::LOCK_TIMEOUT
    );
    assert_eq!(
        show(&mut d, "idle_in_transaction_session_timeout"),
        seam_warehouse::postgres::IDLE_IN_TRANSACTION_TIMEOUT
    );
    // The URL's own settings win (so would the role's, the database's or the server's).
    let own = with_param(
        &url,
        "options=-c%20lock_timeout%3D5s%20-c%20idle_in_transaction_session_timeout%3D1h",
    );
    let mut d = PostgresDestination::connect(&own, &name).unwrap();
    assert_eq!(show(&mut d, "lock_timeout"), "5s");
    assert_eq!(show(&mut d, "idle_in_transaction_session_timeout"), "1h");
}

#[test]
fn a_commit_waits_for_a_lock_no_longer_than_the_lock_timeout_and_its_retry_loads_the_batch() {
    let Some(url) = postgres_url() else { return };
    let name = seam_test_support::unique_name("lockwait");
    let short = with_param(&url, "options=-c%20lock_timeout%3D300ms");
    let mut d = loaded(&short, &name);

    // Another session holds the table in SHARE mode (as `CREATE INDEX` does): no writes.
    let holder = hold_lock(&url, &name, "SHARE");
    stage_second_batch(&mut d);
    let begun = Instant::now();
    let refused = d.commit(Some(&state(2))).unwrap_err();
    let waited = begun.elapsed();
    assert_eq!(refused.kind, ErrorKind::Transient, "tried again: {refused}");
    // Said once the error is shown (a job's message, a log line), not only in its causes.
    let shown = refused.to_string();
    assert!(
        shown.contains("canceling statement due to lock timeout"),
        "{shown}"
    );
    assert!(
        shown.contains("another session holds a lock on the table"),
        "{shown}"
    );
    assert!(
        waited >= Duration::from_millis(300),
        "it waited the lock timeout: {waited:?}"
    );
    assert!(waited < Duration::from_secs(20), "and no longer: {waited:?}");
    // Nothing of the batch, nor its state, became durable; the lock gone, the retry commits it.
    drop(holder);
    first_batch_only(&url, &name, &mut d);
    retry_commits_the_second_batch(&url, &name, &mut d);
}

#[test]
fn an_interrupted_commit_lets_go_of_the_warehouse_and_its_retry_loads_the_batch() {
    let Some(url) = postgres_url() else { return };
    let name = seam_test_support::unique_name("lockcancel");
    // A lock timeout far longer than the test: only the interrupt ends the wait.
    let long = with_param(&url, "options=-c%20lock_timeout%3D10min");
    let mut d = loaded(&long, &name);
    let pid: i32 = d
        .client()
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let interrupter = d.interrupter().expect("PostgreSQL has an interrupter");

    let holder = hold_lock(&url, &name, "SHARE");
    stage_second_batch(&mut d);
    let (tx, rx) = std::sync::mpsc::channel();
    let committing = std::thread::spawn(move || {
        let result = d.commit(Some(&state(2)));
        tx.send(result.map(|_| ())).unwrap();
        d
    });

    // The commit waits on the lock, in a transaction of its own.
    let mut watch = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let waiting = || -> bool {
        let n: i64 = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                &[&pid],
            )
            .unwrap()
            .get(0);
        n == 1
    };
    seam_test_support::wait_until(Duration::from_secs(20), "the commit waits on the lock", waiting);
    assert!(
        rx.try_recv().is_err(),
        "the commit is still waiting before the interrupt"
    );

    interrupter.interrupt();
    let result = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the interrupted commit returns");
    let e = result.unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("canceling statement due to user request"),
        "{shown}"
    );
    let mut d = committing.join().unwrap();
    // Its transaction is over: the connection holds no lock on any table.
    let held: i64 = watch
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'relation'",
            &[&pid],
        )
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "the interrupted commit let go of its locks");
    drop(holder);
    first_batch_only(&url, &name, &mut d);
    retry_commits_the_second_batch(&url, &name, &mut d);
}
