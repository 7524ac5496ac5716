//! A DuckDB destination answers "does the table hold one of this batch's keys?" from the keys it
//! wrote itself to a table it created, and asks DuckDB otherwise; either way every key lands once,
//! with its newest row and subtable rows.

use crate::harness::{col, rows, schema, seq};
use seam_core::{Destination, SequencedRecord};
use seam_warehouse::duckdb::KeyChecks;
use seam_warehouse::DuckDbDestination;
use serde_json::json;

fn ticket(sequence: i64, id: i64, v: &str, tags: &[&str]) -> SequencedRecord {
    seq(sequence, "tickets", json!({"id": id, "v": v, "tags": tags}))
}

fn checks(asked: u64, answered: u64) -> KeyChecks {
    KeyChecks { asked, answered }
}

fn state(d: &mut DuckDbDestination) -> Vec<Option<String>> {
    col(d, "SELECT id || ':' || v FROM §tickets ORDER BY id")
}

fn tags(d: &mut DuckDbDestination) -> Vec<Vec<Option<String>>> {
    rows(
        d,
        "SELECT _sdc_source_key_id, value FROM §tickets__tags ORDER BY 1, 2",
    )
}

fn strs(v: &[&str]) -> Vec<Option<String>> {
    v.iter().map(|s| Some((*s).to_owned())).collect()
}

fn pairs(v: &[(i64, &str)]) -> Vec<Vec<Option<String>>> {
    v.iter()
        .map(|(id, s)| vec![Some(id.to_string()), Some((*s).to_owned())])
        .collect()
}

#[test]
fn keys_new_to_a_table_this_destination_created_are_not_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let mut d = DuckDbDestination::open(&path, "zendesk").unwrap();
    d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
        .unwrap();

    // The commit that creates the table checks nothing; later batches of new keys are answered
    // from the keys written.
    d.write_sequenced("tickets", &[ticket(1, 1, "a", &["a1"]), ticket(1, 2, "b", &[])])
        .unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.key_checks(), checks(0, 0));
    d.write_sequenced("tickets", &[ticket(2, 3, "c", &["c1"]), ticket(2, 4, "d", &[])])
        .unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.key_checks(), checks(0, 1));
    assert_eq!(state(&mut d), strs(&["1:a", "2:b", "3:c", "4:d"]));

    // A batch with a key written before: DuckDB is asked and the rows are merged (the newer row
    // replaces the older with its subtable rows; an older one loses).
    d.write_sequenced(
        "tickets",
        &[
            ticket(3, 5, "e", &["e1"]),
            ticket(3, 1, "a'", &["a2"]),
            ticket(0, 2, "old", &[]),
        ],
    )
    .unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.key_checks(), checks(1, 1));
    assert_eq!(state(&mut d), strs(&["1:a'", "2:b", "3:c", "4:d", "5:e"]));
    assert_eq!(tags(&mut d), pairs(&[(1, "a2"), (3, "c1"), (5, "e1")]));

    // A key that first came in a merged batch is among those written too.
    d.write_sequenced("tickets", &[ticket(4, 5, "e'", &["e2"])])
        .unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.key_checks(), checks(2, 1));
    assert_eq!(state(&mut d), strs(&["1:a'", "2:b", "3:c", "4:d", "5:e'"]));

    // A failed commit's keys stay among those written (its rows are rolled back): the retry asks
    // DuckDB, which finds none of them, and they land once.
    d.write_sequenced("tickets", &[ticket(5, 6, "f", &["f1"])])
        .unwrap();
    d.connection()
        .execute_batch("DROP TABLE zendesk._sdc_state")
        .unwrap();
    let failed = d.commit(Some(&seam_core::State::default()));
    assert!(failed.is_err(), "the state table is gone: {failed:?}");
    d.connection()
        .execute_batch(
            "CREATE TABLE zendesk._sdc_state (id VARCHAR PRIMARY KEY, state VARCHAR NOT NULL, committed_at TIMESTAMP NOT NULL)",
        )
        .unwrap();
    d.commit(Some(&seam_core::State::default())).unwrap();
    assert_eq!(d.key_checks(), checks(3, 2));
    assert_eq!(state(&mut d), strs(&["1:a'", "2:b", "3:c", "4:d", "5:e'", "6:f"]));

    // A new destination on the same file did not create the table: it asks DuckDB.
    drop(d);
    let mut d = DuckDbDestination::open(&path, "zendesk").unwrap();
    d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
        .unwrap();
    d.write_sequenced("tickets", &[ticket(6, 7, "g", &[])]).unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.key_checks(), checks(1, 0));
    d.write_sequenced("tickets", &[ticket(7, 7, "g'", &["g1"]), ticket(7, 8, "h", &[])])
        .unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.key_checks(), checks(2, 0));
    assert_eq!(
        state(&mut d),
        strs(&["1:a'", "2:b", "3:c", "4:d", "5:e'", "6:f", "7:g'", "8:h"])
    );
    assert_eq!(
        tags(&mut d),
        pairs(&[(1, "a2"), (3, "c1"), (5, "e2"), (6, "f1"), (7, "g1")])
    );
}
