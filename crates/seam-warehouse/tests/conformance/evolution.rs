//! Schema evolution and type splits.

use crate::harness::{both, columns, rec, rows, schema};
use serde_json::json;

#[test]
fn new_columns_are_added_removed_ones_stay_null() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("users", &["id"], json!({"type": "object"})))
            .unwrap();
        d.write_batch("users", &[rec("users", json!({"id": 1, "a": "x", "b": null}))])
            .unwrap();
        d.commit(None).unwrap();
        assert!(
            !columns(d.as_mut(), "users").contains(&"b".to_owned()),
            "an all-NULL field creates no column"
        );
        d.write_batch("users", &[rec("users", json!({"id": 2, "c": true}))])
            .unwrap();
        d.commit(None).unwrap();
        let cols = columns(d.as_mut(), "users");
        assert!(
            cols.contains(&"a".to_owned()) && cols.contains(&"c".to_owned()),
            "{cols:?}"
        );
        let got = rows(d.as_mut(), "SELECT id, a, c FROM §users ORDER BY id");
        assert_eq!(
            got,
            vec![
                vec![Some("1".into()), Some("x".into()), None],
                vec![Some("2".into()), None, Some("t".into())]
            ]
        );
        // Upserting a record without `a` writes NULL there (the row is replaced whole).
        d.write_batch("users", &[rec("users", json!({"id": 1, "c": false}))])
            .unwrap();
        d.commit(None).unwrap();
        let got = rows(d.as_mut(), "SELECT a, c FROM §users WHERE id = 1");
        assert_eq!(got, vec![vec![None, Some("f".into())]]);
        // Reopening reads the layout back.
        drop(d);
        let mut d = p.open();
        d.ensure_table(&schema("users", &["id"], json!({"type": "object"})))
            .unwrap();
        d.write_batch("users", &[rec("users", json!({"id": 3, "a": "y", "d": 1}))])
            .unwrap();
        d.commit(None).unwrap();
        assert_eq!(
            columns(d.as_mut(), "users").iter().filter(|c| *c == "a").count(),
            1
        );
    });
}

#[test]
fn type_conflicts_split_and_rename_the_original() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("t", &["id"], json!({"type": "object"})))
            .unwrap();
        d.write_batch("t", &[rec("t", json!({"id": 1, "age": 30}))])
            .unwrap();
        d.commit(None).unwrap();
        d.write_batch(
            "t",
            &[
                rec("t", json!({"id": 2, "age": "thirty"})),
                rec("t", json!({"id": 3, "age": 30.5})),
            ],
        )
        .unwrap();
        d.commit(None).unwrap();
        let cols = columns(d.as_mut(), "t");
        assert!(!cols.contains(&"age".to_owned()), "{cols:?}");
        for c in ["age__bi", "age__st", "age__do"] {
            assert!(cols.contains(&c.to_owned()), "{c} in {cols:?}");
        }
        let got = rows(
            d.as_mut(),
            "SELECT id, age__bi, age__st, age__do FROM §t ORDER BY id",
        );
        assert_eq!(got[0], vec![Some("1".into()), Some("30".into()), None, None]);
        assert_eq!(got[1], vec![Some("2".into()), None, Some("thirty".into()), None]);
        assert_eq!(got[2], vec![Some("3".into()), None, None, Some("30.5".into())]);
        // The split survives a reopen.
        drop(d);
        let mut d = p.open();
        d.ensure_table(&schema("t", &["id"], json!({"type": "object"})))
            .unwrap();
        d.write_batch("t", &[rec("t", json!({"id": 4, "age": 4}))])
            .unwrap();
        d.commit(None).unwrap();
        let v = rows(d.as_mut(), "SELECT age__bi FROM §t WHERE id = 4");
        assert_eq!(v, vec![vec![Some("4".into())]]);
    });
}
