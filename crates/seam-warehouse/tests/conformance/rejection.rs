//! Records that cannot be loaded go to `_sdc_rejected`, never a crash, never silently dropped.

use crate::harness::{both, col, rec, schema};
use serde_json::json;

#[test]
fn collisions_reserved_names_and_bad_keys_are_rejected_with_reasons() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("users", &["id"], json!({"type": "object"})))
            .unwrap();
        let long = "f".repeat(70);
        d.write_batch(
            "users",
            &[
                rec("users", json!({"id": 1, "ok": "yes"})),
                rec("users", json!({"id": 2, "customer#id": 1, "customerid": 2})),
                rec("users", json!({"id": 3, "_sdc_sequence": 1})),
                rec("users", json!({"id": 4, "age__bi": 1})),
                rec("users", json!({"id": 5, long: 1})),
                rec("users", json!({"name": "no id"})),
                rec("users", json!({"id": "seven"})),
            ],
        )
        .unwrap();
        let report = d.commit(None).unwrap();
        assert_eq!(report.rows.get("users"), Some(&1));
        assert_eq!(report.rejected.get("users"), Some(&6));
        let reasons = col(d.as_mut(), "SELECT reason FROM §_sdc_rejected ORDER BY reason");
        let reasons: Vec<String> = reasons.into_iter().map(Option::unwrap).collect();
        assert!(
            reasons.iter().any(|r| r == "Field collision on customerid"),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("reserved prefix or system column")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("reserved datatype suffix")),
            "{reasons:?}"
        );
        assert!(reasons.iter().any(|r| r.contains("too long")), "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("primary key id")),
            "{reasons:?}"
        );
        assert!(reasons.iter().any(|r| r.contains("another type")), "{reasons:?}");
        let rec_text = col(
            d.as_mut(),
            "SELECT record FROM §_sdc_rejected WHERE table_name = 'users' AND reason LIKE 'Field%'",
        );
        assert_eq!(
            rec_text,
            vec![Some(r#"{"id":2,"customer#id":1,"customerid":2}"#.into())]
        );
    });
}

/// A key of another type than its table's key column is rejected with the record as it came, in a
/// later batch of the same run (background commits included) and in a later run, while records
/// with the column's type load: the destination keeps a record's JSON only when its key may be
/// refused, and these are the records it must keep it for.
#[test]
fn a_key_of_another_type_than_its_column_is_rejected_with_its_record_in_later_batches_and_runs() {
    both(|p| {
        let users = schema("users", &["id"], json!({"type": "object"}));
        let rejected = |d: &mut dyn crate::harness::TestDest| {
            col(
                d,
                "SELECT record FROM §_sdc_rejected WHERE reason LIKE '%another type%' ORDER BY record",
            )
        };
        {
            let mut d = p.open();
            d.ensure_table(&users).unwrap();
            d.write_batch("users", &[rec("users", json!({"id": 1, "tags": ["a"]}))])
                .unwrap();
            // PostgreSQL commits this in the background while the next batch is staged.
            let first = d.commit_start(None).unwrap();
            d.write_batch(
                "users",
                &[
                    rec("users", json!({"id": "two", "tags": ["b"]})),
                    rec("users", json!({"id": 3, "tags": ["c"]})),
                ],
            )
            .unwrap();
            if first.is_none() {
                d.commit_finish().unwrap();
            }
            let report = d.commit(None).unwrap();
            assert_eq!(report.rejected.get("users"), Some(&1));
            assert_eq!(
                rejected(d.as_mut()),
                vec![Some(r#"{"id":"two","tags":["b"]}"#.into())]
            );
        }
        let mut d = p.open();
        d.ensure_table(&users).unwrap();
        d.write_batch(
            "users",
            &[
                rec("users", json!({"id": 4.5})),
                rec("users", json!({"id": 5, "tags": ["e"]})),
                rec("users", json!({"id": "six"})),
            ],
        )
        .unwrap();
        let report = d.commit(None).unwrap();
        assert_eq!(report.rejected.get("users"), Some(&2));
        assert_eq!(
            rejected(d.as_mut()),
            vec![
                Some(r#"{"id":"six"}"#.into()),
                Some(r#"{"id":"two","tags":["b"]}"#.into()),
                Some(r#"{"id":4.5}"#.into()),
            ]
        );
        let ids = col(d.as_mut(), "SELECT id FROM §users ORDER BY id");
        assert_eq!(ids, vec![Some("1".into()), Some("3".into()), Some("5".into())]);
        let tags = col(d.as_mut(), "SELECT value FROM §users__tags ORDER BY value");
        assert_eq!(tags, vec![Some("a".into()), Some("c".into()), Some("e".into())]);
    });
}
