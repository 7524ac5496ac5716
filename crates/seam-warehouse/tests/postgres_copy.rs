//! PostgreSQL loading: every column type arrives exactly as flattened (binary `COPY`), and the
//! merge paths (direct load into tables without the batch's keys, staged merge otherwise) agree.

use crate::harness::{postgres_url, rec, schema, seq};
use seam_core::Destination;
use seam_warehouse::postgres::LoadCounters;
use seam_warehouse::PostgresDestination;
use serde_json::json;

fn open() -> Option<PostgresDestination> {
    let url = postgres_url()?;
    let name = seam_test_support::unique_name("pgcopy");
    Some(PostgresDestination::connect(&url, &name).unwrap())
}

fn typed_schema() -> seam_core::SchemaMessage {
    schema(
        "values",
        &["id"],
        json!({"type": "object", "properties": {
            "id": {"type": "integer"},
            "n": {"type": ["null", "integer"]},
            "d": {"type": ["null", "number"]},
            "b": {"type": ["null", "boolean"]},
            "t": {"type": ["null", "string"], "format": "date-time"},
            "s": {"type": ["null", "string"]}}}),
    )
}

#[test]
fn every_column_type_round_trips_exactly() {
    let Some(mut d) = open() else { return };
    d.ensure_table(&typed_schema()).unwrap();
    let texts = [
        "plain",
        "tab\there, newline\nthere, return\r, backslash \\ and \\N",
        "\\N",
        "",
        "unicode: été, 東京, emoji \u{1F600}",
        "'quoted' \"double\" ,;|",
    ];
    let mut records = Vec::new();
    for (i, s) in texts.iter().enumerate() {
        records.push(rec(
            "values",
            json!({"id": i, "n": i64::MIN + i as i64, "d": 0.1 * i as f64, "b": i % 2 == 0, "s": s,
                   "t": "2024-02-29T23:59:59.123456Z"}),
        ));
    }
    let extremes: [(i64, i64, f64, &str); 5] = [
        (100, i64::MAX, 5e-324, "0001-01-01T00:00:00Z"),
        (
            101,
            i64::MIN,
            -1.7976931348623157e308,
            "9999-12-31T23:59:59.999999Z",
        ),
        (102, 0, -0.0, "1970-01-01T00:00:00.000001Z"),
        (103, -1, 1.0 / 3.0, "1969-12-31T23:59:59.999999Z"),
        (104, 1, 123_456_789.123_456_78, "2000-01-01T00:00:00Z"),
    ];
    for (id, n, d, t) in extremes {
        records.push(rec(
            "values",
            json!({"id": id, "n": n, "d": d, "b": false, "t": t}),
        ));
    }
    records.push(rec(
        "values",
        json!({"id": 200, "n": null, "d": null, "b": null, "t": null, "s": null}),
    ));
    d.write_batch("values", &records).unwrap();
    d.commit(None).unwrap();

    let sql = format!(
        "SELECT id, n, d, b, t, s FROM \"{}\".\"values\" ORDER BY id",
        d.schema()
    );
    let got = d.client().expect("client").query(&sql, &[]).unwrap();
    assert_eq!(got.len(), records.len());
    for row in &got {
        let id: i64 = row.get(0);
        let n: Option<i64> = row.get(1);
        let dv: Option<f64> = row.get(2);
        let b: Option<bool> = row.get(3);
        let t: Option<chrono::NaiveDateTime> = row.get(4);
        let s: Option<String> = row.get(5);
        let micros = t.map(|t| t.and_utc().timestamp_micros());
        let at = |text: &str| {
            Some(
                chrono::DateTime::parse_from_rfc3339(text)
                    .unwrap()
                    .timestamp_micros(),
            )
        };
        if let Ok(i) = usize::try_from(id) {
            if i < texts.len() {
                assert_eq!(n, Some(i64::MIN + id), "bigint of row {id}");
                assert_eq!(
                    dv.map(f64::to_bits),
                    Some((0.1 * i as f64).to_bits()),
                    "double of row {id}"
                );
                assert_eq!(b, Some(i % 2 == 0), "boolean of row {id}");
                assert_eq!(micros, at("2024-02-29T23:59:59.123456Z"), "timestamp of row {id}");
                assert_eq!(s.as_deref(), Some(texts[i]), "text of row {id}");
                continue;
            }
        }
        if id == 200 {
            assert_eq!(
                (n, dv, b, micros, s),
                (None, None, None, None, None),
                "nulls of row {id}"
            );
            continue;
        }
        let (_, want_n, want_d, want_t) = extremes.iter().find(|e| e.0 == id).unwrap();
        assert_eq!(n, Some(*want_n), "bigint of row {id}");
        assert_eq!(dv.map(f64::to_bits), Some(want_d.to_bits()), "double of row {id}");
        assert_eq!(b, Some(false), "boolean of row {id}");
        assert_eq!(micros, at(want_t), "timestamp of row {id}");
        assert_eq!(s, None, "text of row {id}");
    }
}

fn strings(d: &mut PostgresDestination, sql: &str) -> Vec<String> {
    let sql = sql.replace('§', &format!("\"{}\".", d.schema()));
    d.client()
        .expect("client")
        .query(&sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// `tickets` (`id:v`) and its `tags` subtable (`parent id:tag`), as `strings` reads them.
const TICKETS: &str = "SELECT id || ':' || v FROM §tickets ORDER BY id";
const TICKET_TAGS: &str = "SELECT _sdc_source_key_id || ':' || value FROM §tickets__tags ORDER BY 1";

/// A destination with the `tickets` stream (key `id`) registered.
fn open_tickets() -> Option<PostgresDestination> {
    let mut d = open()?;
    d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
        .unwrap();
    Some(d)
}

/// A `tickets` record with a value and tags, at `sequence`.
fn ticket(sequence: i64, id: i64, v: &str, tags: &[&str]) -> seam_core::SequencedRecord {
    seq(sequence, "tickets", json!({"id": id, "v": v, "tags": tags}))
}

#[test]
fn direct_loads_and_staged_merges_keep_the_merge_rules() {
    let Some(mut d) = open_tickets() else { return };
    let (t, state, tags) = (ticket, TICKETS, TICKET_TAGS);
    // Into empty tables.
    d.write_sequenced(
        "tickets",
        &[
            t(100, 1, "a", &["a1", "a2"]),
            t(100, 2, "b", &["b1"]),
            t(100, 3, "c", &["c1"]),
        ],
    )
    .unwrap();
    d.commit(None).unwrap();
    // A newer version of 1 (its subtable rows go), 3 again with the same sequence and no tags, a new 4.
    d.write_sequenced(
        "tickets",
        &[
            t(200, 1, "a'", &["a3"]),
            t(100, 3, "c", &[]),
            t(200, 4, "d", &["d1"]),
        ],
    )
    .unwrap();
    d.commit(None).unwrap();
    assert_eq!(strings(&mut d, state), ["1:a'", "2:b", "3:c", "4:d"]);
    assert_eq!(strings(&mut d, tags), ["1:a3", "2:b1", "4:d1"]);
    // An older version of 2 in the same batch as a new 5: 2 keeps its row and its subtable rows.
    d.write_sequenced("tickets", &[t(50, 2, "old", &["old"]), t(300, 5, "e", &["e1"])])
        .unwrap();
    d.commit(None).unwrap();
    assert_eq!(strings(&mut d, state), ["1:a'", "2:b", "3:c", "4:d", "5:e"]);
    assert_eq!(strings(&mut d, tags), ["1:a3", "2:b1", "4:d1", "5:e1"]);

    // Append-only: a replayed record is kept once, as first loaded (never replaced), next to a new one.
    d.ensure_table(&schema("events", &[], json!({"type": "object"})))
        .unwrap();
    let e = |s: i64, id: i64| seq(s, "events", json!({"id": id, "tags": [format!("t{id}")]}));
    d.write_sequenced("events", &[e(10, 1), e(10, 2)]).unwrap();
    d.commit(None).unwrap();
    d.write_sequenced("events", &[e(20, 2), e(20, 3)]).unwrap();
    d.commit(None).unwrap();
    let ids = "SELECT id || ':' || _sdc_sequence FROM §events ORDER BY id";
    assert_eq!(strings(&mut d, ids), ["1:10", "2:10", "3:20"]);
    let sub = "SELECT value || ':' || _sdc_sequence FROM §events__tags ORDER BY 1";
    assert_eq!(strings(&mut d, sub), ["t1:10", "t2:10", "t3:20"]);
}

/// The subtable indexes on `_sdc_source_key_*`: how many, and which columns each covers.
fn source_key_indexes(d: &mut PostgresDestination, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = '{}' AND tablename = '{table}' \
         AND indexdef LIKE '%_sdc_source_key_id%' ORDER BY 1",
        d.schema()
    );
    strings(d, &sql)
}

/// A first load writes subtables without an index; the first commit that replaces a parent already
/// in the warehouse indexes each of its subtables on the parent's key, once, and later commits
/// delete through it. A commit that fails after creating one rolls it back, and the destination
/// does not take it for granted on the retry.
#[test]
fn replacing_a_parent_indexes_its_subtables_once() {
    let Some(mut d) = open() else { return };
    d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
        .unwrap();
    d.ensure_table(&schema("others", &["id"], json!({"type": "object"})))
        .unwrap();
    let t = |s: i64, id: i64, tags: &[&str]| seq(s, "tickets", json!({"id": id, "tags": tags}));
    let tags = TICKET_TAGS;
    d.write_sequenced("tickets", &[t(1, 1, &["a"]), t(1, 2, &["b"])])
        .unwrap();
    d.write_sequenced("others", &[seq(1, "others", json!({"id": 1, "v": "x"}))])
        .unwrap();
    d.commit(None).unwrap();
    assert!(
        source_key_indexes(&mut d, "tickets__tags").is_empty(),
        "a first load adds no index"
    );

    // The commit replaces ticket 1 (its subtable gets an index), then fails on `others`, whose
    // column was changed behind the destination's back: the index goes with the transaction.
    let others = format!("\"{}\".others", d.schema());
    d.client()
        .expect("client")
        .batch_execute(&format!(
            "ALTER TABLE {others} ALTER COLUMN v TYPE bigint USING 0"
        ))
        .unwrap();
    d.write_sequenced("tickets", &[t(2, 1, &["a2"])]).unwrap();
    d.write_sequenced("others", &[seq(2, "others", json!({"id": 2, "v": "y"}))])
        .unwrap();
    assert!(d.commit(None).is_err(), "text copied into a bigint column");
    assert!(
        source_key_indexes(&mut d, "tickets__tags").is_empty(),
        "rolled back"
    );
    assert_eq!(strings(&mut d, tags), ["1:a", "2:b"]);

    // The retry (the same batch) creates it again.
    d.client()
        .expect("client")
        .batch_execute(&format!("ALTER TABLE {others} ALTER COLUMN v TYPE text"))
        .unwrap();
    d.commit(None).unwrap();
    let indexes = source_key_indexes(&mut d, "tickets__tags");
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert!(indexes[0].contains("(_sdc_source_key_id)"), "{indexes:?}");
    assert_eq!(strings(&mut d, tags), ["1:a2", "2:b"]);

    // Later replacements use it and add none.
    d.write_sequenced("tickets", &[t(3, 2, &["b2", "b3"]), t(3, 1, &[])])
        .unwrap();
    d.commit(None).unwrap();
    assert_eq!(source_key_indexes(&mut d, "tickets__tags").len(), 1);
    assert_eq!(strings(&mut d, tags), ["2:b2", "2:b3"]);
}

/// After a table's first batch, a batch whose keys are all new to it is copied in without a lookup.
/// A batch holding a key the table has is refused by the table's primary key: nothing of the
/// attempt stays, the keys are looked up as usual (the newer row replaces the older with its
/// subtable rows, an older one loses), and that table is looked up first from then on.
#[test]
fn new_keys_skip_the_lookup_until_the_table_refuses_one() {
    let Some(mut d) = open_tickets() else { return };
    let (t, state, tags) = (ticket, TICKETS, TICKET_TAGS);
    let counts = |lookups, loads, refusals| LoadCounters {
        key_lookups: lookups,
        new_key_loads: loads,
        new_key_refusals: refusals,
    };

    // The commit that creates the table looks nothing up.
    d.write_sequenced("tickets", &[t(1, 1, "a", &["a1"]), t(1, 2, "b", &["b1", "b2"])])
        .unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.counters(), counts(0, 0, 0));

    // New keys only: copied in.
    d.write_sequenced("tickets", &[t(2, 3, "c", &["c1"]), t(2, 4, "d", &[])])
        .unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.counters(), counts(0, 1, 0));
    assert_eq!(strings(&mut d, state), ["1:a", "2:b", "3:c", "4:d"]);
    assert_eq!(strings(&mut d, tags), ["1:a1", "2:b1", "2:b2", "3:c1"]);

    // A new 5 ahead of a newer 2: the copy is refused at 2 and rolled back (5 is not left behind
    // twice), then the lookup replaces 2 and its subtable rows.
    d.write_sequenced("tickets", &[t(3, 5, "e", &["e1"]), t(3, 2, "b'", &["b3"])])
        .unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.counters(), counts(1, 1, 1));
    assert_eq!(strings(&mut d, state), ["1:a", "2:b'", "3:c", "4:d", "5:e"]);
    assert_eq!(strings(&mut d, tags), ["1:a1", "2:b3", "3:c1", "5:e1"]);

    // Refused once: looked up first, even for new keys.
    d.write_sequenced("tickets", &[t(4, 6, "f", &[])]).unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.counters(), counts(2, 1, 1));
    assert_eq!(
        strings(&mut d, state),
        ["1:a", "2:b'", "3:c", "4:d", "5:e", "6:f"]
    );

    // Another table: an older version of a key it has is refused, looked up and merged: the
    // warehouse row and its subtable rows stay, the new key lands.
    d.ensure_table(&schema("users", &["id"], json!({"type": "object"})))
        .unwrap();
    let u = |s: i64, id: i64, v: &str| seq(s, "users", json!({"id": id, "v": v, "tags": [v]}));
    d.write_sequenced("users", &[u(10, 1, "a"), u(10, 2, "b")])
        .unwrap();
    d.commit(None).unwrap();
    d.write_sequenced("users", &[u(5, 2, "old"), u(10, 3, "c")])
        .unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.counters(), counts(3, 1, 2));
    let users = "SELECT id || ':' || v FROM §users ORDER BY id";
    assert_eq!(strings(&mut d, users), ["1:a", "2:b", "3:c"]);
    let user_tags = "SELECT _sdc_source_key_id || ':' || value FROM §users__tags ORDER BY 1";
    assert_eq!(strings(&mut d, user_tags), ["1:a", "2:b", "3:c"]);
}

/// The destination remembers a table's primary key from its first lookup; a copy without a lookup
/// checks it still stood guard, so a key dropped behind seam's back during a run duplicates no row.
#[test]
fn a_primary_key_dropped_during_a_run_is_not_relied_on() {
    let Some(mut d) = open() else { return };
    d.ensure_table(&schema("tickets", &["id"], json!({"type": "object"})))
        .unwrap();
    let t = |s: i64, id: i64, v: &str| seq(s, "tickets", json!({"id": id, "v": v}));
    d.write_sequenced("tickets", &[t(1, 1, "a"), t(1, 2, "b")])
        .unwrap();
    d.commit(None).unwrap();
    d.write_sequenced("tickets", &[t(2, 3, "c")]).unwrap();
    d.commit(None).unwrap();
    assert_eq!(d.counters().new_key_loads, 1, "the key was known and trusted");

    let tickets = format!("\"{}\".tickets", d.schema());
    d.client()
        .expect("client")
        .batch_execute(&format!("ALTER TABLE {tickets} DROP CONSTRAINT tickets_pkey"))
        .unwrap();
    // Without the key, this copy would go through and leave 1 twice.
    d.write_sequenced("tickets", &[t(3, 4, "d"), t(3, 1, "a'")])
        .unwrap();
    d.commit(None).unwrap();
    let counters = d.counters();
    assert_eq!(
        (counters.new_key_loads, counters.key_lookups),
        (1, 1),
        "{counters:?}"
    );
    assert_eq!(strings(&mut d, TICKETS), ["1:a'", "2:b", "3:c", "4:d"]);
}
