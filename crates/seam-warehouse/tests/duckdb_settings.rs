//! The settings a DuckDB destination loads with are the ones in effect: DuckDB ignores some when
//! they come with a connection's configuration instead of a `SET`.

use crate::harness::{rec, schema};
use seam_core::Destination;
use seam_warehouse::duckdb::{DuckDbMemoryLimit, DUCKDB_CHECKPOINT_THRESHOLD, DUCKDB_DISABLED_COMPRESSION};
use seam_warehouse::DuckDbDestination;
use serde_json::json;

fn setting(d: &DuckDbDestination, name: &str) -> String {
    d.connection()
        .query_row(&format!("SELECT current_setting('{name}')::VARCHAR"), [], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn checkpoints_skip_the_disabled_compressions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let mut d = DuckDbDestination::open(&path, "zendesk").unwrap();
    let disabled = setting(&d, "disabled_compression_methods").to_lowercase();
    for method in DUCKDB_DISABLED_COMPRESSION.split(',') {
        assert!(
            disabled.contains(method),
            "{method} is not disabled: '{disabled}'"
        );
    }
    assert_eq!(setting(&d, "threads"), "1");
    // DuckDB shows sizes in MiB: 128 MB is 122.07 MiB.
    assert_eq!(DuckDbMemoryLimit::LOADER.to_string(), "128MB");
    assert_eq!(setting(&d, "memory_limit"), "122.0 MiB");
    assert_eq!(DUCKDB_CHECKPOINT_THRESHOLD, "128MB");
    assert_eq!(setting(&d, "checkpoint_threshold"), "122.0 MiB");

    // Long texts that share most of their words: FSST's kind of column (it wins it when enabled).
    d.ensure_table(&schema(
        "comments",
        &["id"],
        json!({"type": "object", "properties": {"id": {"type": "integer"}, "body": {"type": "string"}}}),
    ))
    .unwrap();
    let records: Vec<_> = (0..20_000)
        .map(|id| {
            rec(
                "comments",
                json!({"id": id, "body": format!("Hello, thanks for reaching out about order {}: we are looking into it {id}", id % 977)}),
            )
        })
        .collect();
    d.write_batch("comments", &records).unwrap();
    d.commit(None).unwrap();
    d.connection().execute_batch("CHECKPOINT").unwrap();
    let methods: Vec<String> = d
        .connection()
        .prepare("SELECT DISTINCT lower(compression) FROM pragma_storage_info('zendesk.comments') WHERE column_name = 'body'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!methods.is_empty(), "no storage for comments.body");
    for method in DUCKDB_DISABLED_COMPRESSION.split(',') {
        assert!(
            !methods.iter().any(|m| m == method),
            "body stored with {method}: {methods:?}"
        );
    }
}

#[test]
fn a_destination_opened_with_a_memory_limit_has_that_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let d = DuckDbDestination::open_limited(&path, "zendesk", Default::default(), DuckDbMemoryLimit::TARGET)
        .unwrap();
    // 192 MB is 183.1 MiB.
    assert_eq!(DuckDbMemoryLimit::TARGET.to_string(), "192MB");
    assert_eq!(setting(&d, "memory_limit"), "183.1 MiB");
    drop(d);
    let limit: DuckDbMemoryLimit = "1GiB".parse().unwrap();
    let d =
        DuckDbDestination::open_limited(&dir.path().join("x.duckdb"), "zendesk", Default::default(), limit)
            .unwrap();
    assert_eq!(setting(&d, "memory_limit"), "1.0 GiB");
}
