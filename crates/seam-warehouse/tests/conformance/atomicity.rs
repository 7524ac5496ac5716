//! The state is committed with the rows it covers, or neither is; reopening reads it back.

use crate::harness::{both, col, rec, schema, t};
use seam_core::State;
use serde_json::json;

fn state(n: i64) -> State {
    State::from_value(json!({"bookmarks": {"tickets": {"updated_at": n}}})).unwrap()
}

#[test]
fn state_is_committed_with_rows_and_read_back_after_reopen() {
    both(|p| {
        let mut d = p.open();
        assert_eq!(d.committed_state().unwrap(), None);
        d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
            .unwrap();
        d.write_batch("tickets", &[rec("tickets", json!({"id": 1}))])
            .unwrap();
        d.commit(Some(&state(1))).unwrap();
        // Staged but never committed: a crash here loses these rows, and the state says so.
        d.write_batch("tickets", &[rec("tickets", json!({"id": 2}))])
            .unwrap();
        drop(d);
        let mut d = p.open();
        assert_eq!(d.committed_state().unwrap(), Some(state(1)));
        let n = col(d.as_mut(), "SELECT COUNT(*) FROM §tickets");
        assert_eq!(n, vec![Some("1".into())]);
    });
}

#[test]
fn a_failed_commit_leaves_neither_rows_nor_state_and_can_be_retried() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
            .unwrap();
        d.write_batch("tickets", &[rec("tickets", json!({"id": 1}))])
            .unwrap();
        d.commit(Some(&state(1))).unwrap();
        // Make the state write, the last step of a commit, fail.
        let st = t(d.as_ref(), "_sdc_state");
        d.exec(&format!(
            "DROP TABLE {st}; CREATE TABLE {st} (id VARCHAR PRIMARY KEY, state VARCHAR NOT NULL CHECK (state NOT LIKE '%666%'), committed_at TIMESTAMP NOT NULL); \
             INSERT INTO {st} VALUES ('singer', '{{\"bookmarks\":{{\"tickets\":{{\"updated_at\":1}}}}}}', TIMESTAMP '2024-01-01 00:00:00')"
        ));
        d.write_batch(
            "tickets",
            &[rec("tickets", json!({"id": 2, "new_col": "x", "tags": ["t"]}))],
        )
        .unwrap();
        assert!(d.commit(Some(&state(666))).is_err());
        let n = col(d.as_mut(), "SELECT COUNT(*) FROM §tickets");
        assert_eq!(
            n,
            vec![Some("1".into())],
            "rows of the failed commit are not visible"
        );
        assert_eq!(d.committed_state().unwrap(), Some(state(1)));
        // The staged rows are kept: retrying (with a state the table accepts) commits them.
        let report = d.commit(Some(&state(7))).unwrap();
        assert_eq!(report.rows.get("tickets"), Some(&1));
        assert_eq!(report.rows.get("tickets__tags"), Some(&1));
        let n = col(d.as_mut(), "SELECT COUNT(*) FROM §tickets");
        assert_eq!(n, vec![Some("2".into())]);
        assert_eq!(d.committed_state().unwrap(), Some(state(7)));
    });
}
