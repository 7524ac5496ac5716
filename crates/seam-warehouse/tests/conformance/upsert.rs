//! Upserts by key, subtable replacement, and `_sdc_sequence` ordering.

use crate::harness::{both, col, rec, rows, schema, seq};
use serde_json::json;

#[test]
fn upsert_replaces_the_row_and_its_subtable_rows() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
            .unwrap();
        d.write_batch(
            "tickets",
            &[
                rec(
                    "tickets",
                    json!({"id": 1, "status": "open", "tags": ["a", "b", "c"]}),
                ),
                rec("tickets", json!({"id": 2, "status": "new", "tags": ["x"]})),
            ],
        )
        .unwrap();
        d.commit(None).unwrap();
        d.write_batch(
            "tickets",
            &[rec(
                "tickets",
                json!({"id": 1, "status": "solved", "tags": ["z"]}),
            )],
        )
        .unwrap();
        d.commit(None).unwrap();
        let got = rows(d.as_mut(), "SELECT id, status FROM §tickets ORDER BY id");
        assert_eq!(
            got,
            vec![
                vec![Some("1".into()), Some("solved".into())],
                vec![Some("2".into()), Some("new".into())]
            ]
        );
        let tags = rows(
            d.as_mut(),
            "SELECT _sdc_source_key_id, value FROM §tickets__tags ORDER BY 1, 2",
        );
        assert_eq!(
            tags,
            vec![
                vec![Some("1".into()), Some("z".into())],
                vec![Some("2".into()), Some("x".into())]
            ]
        );
        // A new version with an empty array removes the old subtable rows.
        d.write_batch(
            "tickets",
            &[rec("tickets", json!({"id": 2, "status": "new", "tags": []}))],
        )
        .unwrap();
        d.commit(None).unwrap();
        let n = col(
            d.as_mut(),
            "SELECT COUNT(*) FROM §tickets__tags WHERE _sdc_source_key_id = 2",
        );
        assert_eq!(n, vec![Some("0".into())]);
    });
}

#[test]
fn older_sequence_never_overwrites_newer() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
            .unwrap();
        d.write_seq(
            "tickets",
            &[seq(200, "tickets", json!({"id": 1, "v": "new", "tags": ["n"]}))],
        );
        d.commit(None).unwrap();
        d.write_seq(
            "tickets",
            &[seq(
                100,
                "tickets",
                json!({"id": 1, "v": "old", "tags": ["o1", "o2"]}),
            )],
        );
        d.commit(None).unwrap();
        let v = col(d.as_mut(), "SELECT v FROM §tickets");
        assert_eq!(v, vec![Some("new".into())]);
        let tags = col(d.as_mut(), "SELECT value FROM §tickets__tags");
        assert_eq!(tags, vec![Some("n".into())]);
        // Within one batch, the newest sequence wins whatever the arrival order.
        d.write_seq(
            "tickets",
            &[
                seq(400, "tickets", json!({"id": 2, "v": "b"})),
                seq(300, "tickets", json!({"id": 2, "v": "a"})),
            ],
        );
        d.commit(None).unwrap();
        let v = col(d.as_mut(), "SELECT v FROM §tickets WHERE id = 2");
        assert_eq!(v, vec![Some("b".into())]);
        // The same sequence again is harmless.
        d.write_seq("tickets", &[seq(400, "tickets", json!({"id": 2, "v": "b"}))]);
        d.commit(None).unwrap();
        let n = col(d.as_mut(), "SELECT COUNT(*) FROM §tickets");
        assert_eq!(n, vec![Some("2".into())]);
    });
}

/// Batches of new keys only (appended without a merge where the destination can) and batches that
/// mix new and known keys (merged) leave every key once, each with its newest row and subtable rows.
#[test]
fn new_keys_append_and_known_keys_merge_across_commits() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
            .unwrap();
        d.ensure_table(&schema("audits", &[], json!({"type": "object"})))
            .unwrap();
        let ticket =
            |id: i64, v: &str, tags: &[&str]| rec("tickets", json!({"id": id, "v": v, "tags": tags}));
        // A first batch into a new table, then one of new keys only, then a mix.
        d.write_batch("tickets", &[ticket(1, "a", &["t1"])]).unwrap();
        d.write_batch("audits", &[rec("audits", json!({"n": 1}))])
            .unwrap();
        d.commit(None).unwrap();
        d.write_batch("tickets", &[ticket(2, "a", &["t2", "u2"]), ticket(3, "a", &[])])
            .unwrap();
        d.write_batch("audits", &[rec("audits", json!({"n": 2}))])
            .unwrap();
        d.commit(None).unwrap();
        d.write_batch(
            "tickets",
            &[ticket(4, "a", &["t4"]), ticket(1, "b", &["v1", "w1"])],
        )
        .unwrap();
        // An append-only record sent again (a replay) is not added twice, beside a new one.
        d.write_batch(
            "audits",
            &[rec("audits", json!({"n": 2})), rec("audits", json!({"n": 3}))],
        )
        .unwrap();
        d.commit(None).unwrap();
        let got = rows(d.as_mut(), "SELECT id, v FROM §tickets ORDER BY id");
        let expect: Vec<Vec<Option<String>>> = [(1, "b"), (2, "a"), (3, "a"), (4, "a")]
            .iter()
            .map(|(id, v)| vec![Some(id.to_string()), Some((*v).to_owned())])
            .collect();
        assert_eq!(got, expect);
        let tags = rows(
            d.as_mut(),
            "SELECT _sdc_source_key_id, value FROM §tickets__tags ORDER BY 1, 2",
        );
        let expect: Vec<Vec<Option<String>>> = [(1, "v1"), (1, "w1"), (2, "t2"), (2, "u2"), (4, "t4")]
            .iter()
            .map(|(id, v)| vec![Some(id.to_string()), Some((*v).to_owned())])
            .collect();
        assert_eq!(tags, expect);
        let audits = col(d.as_mut(), "SELECT n FROM §audits ORDER BY n");
        assert_eq!(audits, vec![Some("1".into()), Some("2".into()), Some("3".into())]);
    });
}
