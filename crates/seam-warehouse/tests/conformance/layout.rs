//! Table layout: flattening, subtables, system columns, hostile names.

use crate::harness::{both, col, columns, rec, rows, schema, tables};
use serde_json::json;

fn ticket_schema() -> seam_core::SchemaMessage {
    schema(
        "tickets",
        &["id"],
        json!({"type": "object", "properties": {
            "id": {"type": "integer"},
            "updated_at": {"type": ["null", "string"], "format": "date-time"},
            "tags": {"type": ["null", "array"], "items": {"type": "string"}}}}),
    )
}

#[test]
fn objects_flatten_arrays_become_subtables_with_stitch_columns() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&ticket_schema()).unwrap();
        d.write_batch(
            "tickets",
            &[rec(
                "tickets",
                json!({"id": 1, "subject": "hi", "via": {"channel": "web", "source": {"from": {"name": "x"}}},
                       "tags": ["a", "b"], "custom_fields": [{"id": 10, "value": "v", "opts": [1, 2]}],
                       "updated_at": "2024-01-02T03:04:05Z", "never": null}),
            )],
        )
        .unwrap();
        let report = d.commit(None).unwrap();
        assert_eq!(report.rows.get("tickets"), Some(&1));
        assert_eq!(report.rows.get("tickets__tags"), Some(&2));
        assert_eq!(report.rows.get("tickets__custom_fields"), Some(&1));
        assert_eq!(report.rows.get("tickets__custom_fields__opts"), Some(&2));
        assert_eq!(report.total_rows(), 6, "subtable rows count as replicated rows");
        let names = tables(d.as_mut());
        for expected in [
            "_sdc_rejected",
            "_sdc_state",
            "tickets",
            "tickets__custom_fields",
            "tickets__custom_fields__opts",
            "tickets__tags",
        ] {
            assert!(
                names.contains(&expected.to_owned()),
                "{expected} in {names:?} ({:?})",
                p.kind
            );
        }
        assert_eq!(names.len(), 6, "{names:?}");
        let cols = columns(d.as_mut(), "tickets");
        for c in [
            "id",
            "subject",
            "via__channel",
            "via__source__from__name",
            "updated_at",
            "_sdc_extracted_at",
            "_sdc_received_at",
            "_sdc_batched_at",
            "_sdc_sequence",
            "_sdc_table_version",
        ] {
            assert!(cols.contains(&c.to_owned()), "{c} in {cols:?}");
        }
        assert!(
            !cols
                .iter()
                .any(|c| c == "never" || c == "tags" || c == "__sdc_primary_key"),
            "{cols:?}"
        );
        let tag_cols = columns(d.as_mut(), "tickets__tags");
        for c in ["_sdc_source_key_id", "_sdc_level_0_id", "value"] {
            assert!(tag_cols.contains(&c.to_owned()), "{c} in {tag_cols:?}");
        }
        let tags = rows(
            d.as_mut(),
            "SELECT _sdc_source_key_id, _sdc_level_0_id, value FROM §tickets__tags ORDER BY 2",
        );
        assert_eq!(
            tags,
            vec![
                vec![Some("1".into()), Some("0".into()), Some("a".into())],
                vec![Some("1".into()), Some("1".into()), Some("b".into())]
            ]
        );
        let opts = rows(
            d.as_mut(),
            "SELECT _sdc_level_0_id, _sdc_level_1_id, value FROM §tickets__custom_fields__opts ORDER BY 2",
        );
        assert_eq!(
            opts[1],
            vec![Some("0".into()), Some("1".into()), Some("2".into())]
        );
        let ts = col(d.as_mut(), "SELECT CAST(updated_at AS VARCHAR) FROM §tickets");
        assert_eq!(ts, vec![Some("2024-01-02 03:04:05".into())]);
    });
}

#[test]
fn no_key_means_append_only_with_sdc_primary_key() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("events", &[], json!({"type": "object"})))
            .unwrap();
        let a = rec("events", json!({"kind": "open", "items": [1]}));
        let b = rec("events", json!({"kind": "open", "items": [2]}));
        d.write_batch("events", &[a.clone(), b]).unwrap();
        d.commit(None).unwrap();
        // The same record again (a replay after a crash, an inclusive bookmark) adds nothing.
        d.write_batch("events", &[a]).unwrap();
        d.commit(None).unwrap();
        let n = col(d.as_mut(), "SELECT COUNT(*) FROM §events");
        assert_eq!(n, vec![Some("2".into())]);
        assert!(columns(d.as_mut(), "events").contains(&"__sdc_primary_key".to_owned()));
        let sub = col(d.as_mut(), "SELECT COUNT(*) FROM §events__items");
        assert_eq!(sub, vec![Some("2".into())]);
        assert!(
            columns(d.as_mut(), "events__items").contains(&"_sdc_source_key___sdc_primary_key".to_owned())
        );
    });
}

#[test]
fn hostile_names_become_columns_and_nothing_more() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("users", &["id"], json!({"type": "object"})))
            .unwrap();
        d.write_batch(
            "users",
            &[rec(
                "users",
                json!({"id": 1, "user_fields": {"x\"; DROP TABLE users; --": "boom", "it's": "q'uote"}}),
            )],
        )
        .unwrap();
        d.commit(None).unwrap();
        let cols = columns(d.as_mut(), "users");
        let hostile = cols
            .iter()
            .find(|c| c.starts_with("user_fields__x"))
            .unwrap()
            .clone();
        assert!(
            hostile.eq_ignore_ascii_case("user_fields__xDROPTABLEusers"),
            "{hostile}"
        );
        assert!(cols.contains(&"user_fields__its".to_owned()));
        let v = rows(
            d.as_mut(),
            &format!("SELECT \"{hostile}\", user_fields__its FROM §users"),
        );
        assert_eq!(v, vec![vec![Some("boom".into()), Some("q'uote".into())]]);
        assert!(tables(d.as_mut()).contains(&"users".to_owned()));
    });
}
