//! ACTIVATE_VERSION replaces the table's old version atomically.

use crate::harness::{both, col, rec, schema};
use serde_json::json;

#[test]
fn activate_version_drops_rows_of_other_versions() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema("tags", &["name"], json!({"type": "object"})))
            .unwrap();
        let v = |name: &str, version: i64| {
            let mut r = rec("tags", json!({"name": name, "count": 1, "ids": [1, 2]}));
            r.version = Some(version);
            r
        };
        d.write_batch("tags", &[v("a", 1), v("b", 1), v("c", 1)]).unwrap();
        d.activate_version("tags", 1).unwrap();
        d.commit(None).unwrap();
        // The next full sync no longer has "b".
        d.write_batch("tags", &[v("a", 2), v("c", 2)]).unwrap();
        d.commit(None).unwrap();
        let before = col(d.as_mut(), "SELECT name FROM §tags ORDER BY name");
        assert_eq!(
            before.len(),
            3,
            "rows of the old version stay until the new one is activated"
        );
        d.activate_version("tags", 2).unwrap();
        d.commit(None).unwrap();
        let after = col(d.as_mut(), "SELECT name FROM §tags ORDER BY name");
        assert_eq!(after, vec![Some("a".into()), Some("c".into())]);
        let sub = col(d.as_mut(), "SELECT COUNT(*) FROM §tags__ids");
        assert_eq!(sub, vec![Some("4".into())]);
        let versions = col(d.as_mut(), "SELECT DISTINCT _sdc_table_version FROM §tags");
        assert_eq!(versions, vec![Some("2".into())]);
    });
}
