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

/// `commit_start` may leave the commit running (PostgreSQL commits on a thread of its own; DuckDB
/// commits at once): what is staged meanwhile belongs to the next commit, and after a failed
/// `commit_finish` the retry commits the failed batch alone.
#[test]
fn a_commit_left_running_keeps_the_next_batch_apart_and_is_retried_alone() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
            .unwrap();
        d.write_batch("tickets", &[rec("tickets", json!({"id": 1}))])
            .unwrap();
        let started = d.commit_start(Some(&state(1))).unwrap();
        d.write_batch("tickets", &[rec("tickets", json!({"id": 2}))])
            .unwrap();
        let report = match started {
            Some(report) => report,
            None => {
                // It ends on its own; then `commit_finish` does not wait.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while d.commit_running() {
                    assert!(std::time::Instant::now() < deadline, "the commit never ended");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                d.commit_finish().unwrap()
            }
        };
        assert!(!d.commit_running());
        assert_eq!(report.rows.get("tickets"), Some(&1));
        assert_eq!(d.committed_state().unwrap(), Some(state(1)));
        assert_eq!(
            col(d.as_mut(), "SELECT COUNT(*) FROM §tickets"),
            vec![Some("1".into())]
        );

        // Make the state write, the last step of a commit, fail for state 666.
        let st = t(d.as_ref(), "_sdc_state");
        d.exec(&format!(
            "DROP TABLE {st}; CREATE TABLE {st} (id VARCHAR PRIMARY KEY, state VARCHAR NOT NULL CHECK (state NOT LIKE '%666%'), committed_at TIMESTAMP NOT NULL); \
             INSERT INTO {st} VALUES ('singer', '{{\"bookmarks\":{{\"tickets\":{{\"updated_at\":1}}}}}}', TIMESTAMP '2024-01-01 00:00:00')"
        ));
        let left_running = match d.commit_start(Some(&state(666))) {
            Ok(Some(_)) => panic!("a commit whose state the table refuses succeeded"),
            Ok(None) => {
                assert!(d.commit_finish().is_err());
                true
            }
            Err(_) => false,
        };
        assert_eq!(
            col(d.as_mut(), "SELECT COUNT(*) FROM §tickets"),
            vec![Some("1".into())]
        );
        assert_eq!(d.committed_state().unwrap(), Some(state(1)));
        if left_running {
            // Staged after the failed commit: not part of its retry.
            d.write_batch("tickets", &[rec("tickets", json!({"id": 3}))])
                .unwrap();
        }
        let report = match d.commit_start(Some(&state(7))).unwrap() {
            Some(report) => report,
            None => d.commit_finish().unwrap(),
        };
        assert_eq!(
            report.rows.get("tickets"),
            Some(&1),
            "the retry commits the failed batch alone"
        );
        assert_eq!(d.committed_state().unwrap(), Some(state(7)));
        if !left_running {
            d.write_batch("tickets", &[rec("tickets", json!({"id": 3}))])
                .unwrap();
        }
        let report = d.commit(Some(&state(8))).unwrap();
        assert_eq!(report.rows.get("tickets"), Some(&1));
        let ids = col(d.as_mut(), "SELECT id FROM §tickets ORDER BY id");
        assert_eq!(ids, vec![Some("1".into()), Some("2".into()), Some("3".into())]);
        assert_eq!(d.committed_state().unwrap(), Some(state(8)));
    });
}
