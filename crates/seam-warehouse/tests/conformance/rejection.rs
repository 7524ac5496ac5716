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
