//! Fencing on PostgreSQL: once a newer job claims an integration's schema, the job it took over from
//! can no longer commit rows or state, even mid-commit.

use crate::harness::{postgres_url, rec, schema};
use seam_core::{Destination, ErrorKind, State};
use seam_warehouse::PostgresDestination;
use serde_json::json;

fn state(n: i64) -> State {
    State::from_value(json!({"bookmarks": {"tickets": {"updated_at": n}}})).unwrap()
}

#[test]
fn a_taken_over_writer_can_no_longer_commit() {
    let Some(url) = postgres_url() else { return };
    let name = seam_test_support::unique_name("fence");
    let tickets = schema("tickets", &["id"], json!({"type": "object"}));
    let mut old = PostgresDestination::connect(&url, &name).unwrap();
    old.fence(7).unwrap();
    old.ensure_table(&tickets).unwrap();
    old.write_batch("tickets", &[rec("tickets", json!({"id": 1}))])
        .unwrap();
    old.commit(Some(&state(1))).unwrap();

    // A newer job takes over (the old worker's lease ran out) and reads where the old one stopped.
    let mut new = PostgresDestination::connect(&url, &name).unwrap();
    new.fence(8).unwrap();
    assert_eq!(new.committed_state().unwrap(), Some(state(1)));

    // The old writer's next commit is refused: no row, no state.
    old.write_batch("tickets", &[rec("tickets", json!({"id": 2}))])
        .unwrap();
    let refused = old.commit(Some(&state(2))).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Config, "never retried: {refused}");
    assert!(refused.to_string().contains("took over"), "{refused}");
    // A claim older than the holder's is refused too.
    let again = old.fence(7).unwrap_err();
    assert!(again.to_string().contains("token 8"), "{again}");

    new.ensure_table(&tickets).unwrap();
    new.write_batch("tickets", &[rec("tickets", json!({"id": 3}))])
        .unwrap();
    new.commit(Some(&state(3))).unwrap();
    let mut check = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let ids: Vec<i64> = check
        .query(&format!("SELECT id FROM \"{name}\".tickets ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1, 3], "the fenced writer's row never landed");
    assert_eq!(new.committed_state().unwrap(), Some(state(3)));
    // A writer that never claims (seam sync, seam target) is not fenced.
    let mut plain = PostgresDestination::connect(&url, &name).unwrap();
    assert_eq!(plain.committed_state().unwrap(), Some(state(3)));
}
