//! Load benchmark (driven by `scripts/bench_load.sh`): loads N generated records into DuckDB or
//! PostgreSQL, either through seam's destination (`--mode seam`: flatten, stage, merge, state, in
//! 20,000-record commits like the loader) or as a plain bulk load of the same pre-flattened rows
//! (`--mode plain`: DuckDB appender / PostgreSQL COPY into plain tables, no merge; flattening is not
//! timed) — the floor seam cannot beat. Prints one line:
//! `dest shape mode records rows seconds rows_per_s`.
//!
//! `cargo run --release -p seam-warehouse --example bench_load -- duckdb tickets seam 100000 [URL]`
#![allow(clippy::unwrap_used)]

use seam_core::{Destination, RecordMessage, SchemaMessage, State};
use seam_warehouse::flatten::{quote_ident, Cell, Layout, NameRules, TableRows};
use seam_warehouse::stage::Stager;
use seam_warehouse::{DuckDbDestination, PostgresDestination};
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

const BATCH: u64 = 20_000;
const STATUSES: [&str; 4] = ["new", "open", "pending", "solved"];

fn record(shape: &str, i: u64) -> RecordMessage {
    let v = if shape == "flat" {
        json!({"id": i, "name": format!("user {i}"), "email": format!("user{i}@example.com"),
               "created_at": "2024-01-02T03:04:05Z", "score": (i % 1000) as f64 / 7.0, "active": i.is_multiple_of(2),
               "organization_id": i % 100})
    } else {
        json!({"id": i, "subject": format!("printer {i} is on fire"),
               "description": "The printer in the third floor corridor has been making a strange noise since Monday and now smells of smoke. Please send someone.",
               "status": STATUSES[(i % 4) as usize], "priority": "high",
               "requester_id": i * 7, "assignee_id": i % 50, "organization_id": i % 100,
               "via": {"channel": "email", "source": {"from": {"address": format!("c{i}@example.com"), "name": "Customer"},
                                                      "to": {"address": "support@example.com", "name": "Support"}}},
               "tags": ["printer", "fire", format!("t{}", i % 10)],
               "custom_fields": [{"id": 1, "value": "a"}, {"id": 2, "value": null}, {"id": 3, "value": "c"}, {"id": 4, "value": i}],
               "collaborator_ids": [i + 1, i + 2],
               "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-01-03T03:04:05Z"})
    };
    let mut r = RecordMessage::from_value("bench", &v).unwrap();
    r.time_extracted = Some(chrono::Utc::now());
    r
}

fn schema_msg(shape: &str) -> SchemaMessage {
    let schema = if shape == "flat" {
        json!({"type": "object", "properties": {"id": {"type": "integer"}, "created_at": {"type": "string", "format": "date-time"}, "score": {"type": "number"}}})
    } else {
        json!({"type": "object", "properties": {"id": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"}}})
    };
    SchemaMessage {
        stream: "bench".into(),
        schema: serde_json::from_value(schema).unwrap(),
        key_properties: vec!["id".into()],
        bookmark_properties: None,
    }
}

fn duck_value(c: &Cell) -> duckdb::types::Value {
    use duckdb::types::{TimeUnit, Value};
    match c {
        Cell::Null => Value::Null,
        Cell::BigInt(v) => Value::BigInt(*v),
        Cell::Double(v) => Value::Double(*v),
        Cell::Boolean(v) => Value::Boolean(*v),
        Cell::Timestamp(v) => Value::Timestamp(TimeUnit::Microsecond, *v),
        Cell::Text(v) => Value::Text(v.clone()),
    }
}

fn copy_text(rows: &TableRows) -> Vec<u8> {
    let mut out = Vec::new();
    for row in &rows.rows {
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            match c {
                Cell::Null => out.extend_from_slice(b"\\N"),
                Cell::BigInt(v) => write!(out, "{v}").unwrap(),
                Cell::Double(v) => write!(out, "{v}").unwrap(),
                Cell::Boolean(v) => out.push(if *v { b't' } else { b'f' }),
                Cell::Timestamp(us) => write!(
                    out,
                    "{}",
                    chrono::DateTime::from_timestamp_micros(*us)
                        .unwrap()
                        .format("%Y-%m-%d %H:%M:%S%.6f")
                )
                .unwrap(),
                Cell::Text(s) => {
                    for b in s.bytes() {
                        match b {
                            b'\\' => out.extend_from_slice(b"\\\\"),
                            b'\t' => out.extend_from_slice(b"\\t"),
                            b'\n' => out.extend_from_slice(b"\\n"),
                            b'\r' => out.extend_from_slice(b"\\r"),
                            _ => out.push(b),
                        }
                    }
                }
            }
        }
        out.push(b'\n');
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dest, shape, mode, n) = (&args[1], &args[2], &args[3], args[4].parse::<u64>().unwrap());
    let url = args.get(5).cloned().unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("bench_{}", std::process::id());
    let mut rows_loaded = 0u64;
    let mut timed = Duration::ZERO;
    let start_all = Instant::now();
    if mode == "seam" {
        let mut d: Box<dyn Destination> = if dest == "duckdb" {
            Box::new(DuckDbDestination::open(&dir.path().join("bench.duckdb"), &schema).unwrap())
        } else {
            Box::new(PostgresDestination::connect(&url, &schema).unwrap())
        };
        d.ensure_table(&schema_msg(shape)).unwrap();
        let mut i = 0;
        while i < n {
            let end = (i + BATCH).min(n);
            let batch: Vec<RecordMessage> = (i..end).map(|k| record(shape, k)).collect();
            let t = Instant::now();
            d.write_batch("bench", &batch).unwrap();
            let state = State::from_value(json!({"bookmarks": {"bench": {"pos": end}}})).unwrap();
            rows_loaded += d.commit(Some(&state)).unwrap().total_rows();
            timed += t.elapsed();
            i = end;
        }
    } else {
        // Plain bulk load of the same rows: flatten untimed, then appender/COPY into plain tables.
        let rules = if dest == "duckdb" {
            NameRules::DUCKDB
        } else {
            NameRules::POSTGRES
        };
        let mut stager = Stager::new(rules, HashSet::new());
        stager.register(&schema_msg(shape));
        let mut layout = Layout::default();
        let duck =
            (dest == "duckdb").then(|| duckdb::Connection::open(dir.path().join("plain.duckdb")).unwrap());
        let mut pg = (dest != "duckdb").then(|| postgres::Client::connect(&url, postgres::NoTls).unwrap());
        let mut created = HashSet::new();
        let mut i = 0;
        while i < n {
            let end = (i + BATCH).min(n);
            let batch: Vec<RecordMessage> = (i..end).map(|k| record(shape, k)).collect();
            stager.stage("bench", &batch).unwrap();
            let plan = stager.plan(&mut layout);
            stager.clear();
            let load = &plan.loads[0];
            let tables: Vec<(&String, &TableRows)> = std::iter::once((&load.table, &load.rows))
                .chain(load.subtables.iter().map(|(t, r)| (t, r)))
                .collect();
            let t = Instant::now();
            if let Some(conn) = &duck {
                conn.execute_batch("BEGIN").unwrap();
                for (table, rows) in &tables {
                    if created.insert((*table).clone()) {
                        let cols: Vec<String> = rows
                            .columns
                            .iter()
                            .map(|(c, ty)| {
                                format!("{} {}", quote_ident(c), seam_warehouse::duckdb::type_name(*ty))
                            })
                            .collect();
                        conn.execute_batch(&format!(
                            "CREATE TABLE {} ({})",
                            quote_ident(table),
                            cols.join(", ")
                        ))
                        .unwrap();
                    }
                    let cols: Vec<&str> = rows.columns.iter().map(|(c, _)| c.as_str()).collect();
                    let mut app = conn.appender_with_columns(table, &cols).unwrap();
                    for row in &rows.rows {
                        let vals: Vec<duckdb::types::Value> = row.iter().map(duck_value).collect();
                        app.append_row(duckdb::appender_params_from_iter(vals)).unwrap();
                    }
                    app.flush().unwrap();
                    rows_loaded += rows.rows.len() as u64;
                }
                conn.execute_batch("COMMIT").unwrap();
            } else if let Some(client) = pg.as_mut() {
                let mut tx = client.transaction().unwrap();
                for (table, rows) in &tables {
                    let name = format!("{}.{}", quote_ident(&schema), quote_ident(table));
                    if created.insert((*table).clone()) {
                        let cols: Vec<String> = rows
                            .columns
                            .iter()
                            .map(|(c, ty)| {
                                format!("{} {}", quote_ident(c), seam_warehouse::postgres::type_name(*ty))
                            })
                            .collect();
                        tx.batch_execute(&format!(
                            "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {name} ({})",
                            quote_ident(&schema),
                            cols.join(", ")
                        ))
                        .unwrap();
                    }
                    let cols: Vec<String> = rows.columns.iter().map(|(c, _)| quote_ident(c)).collect();
                    let mut w = tx
                        .copy_in(&format!("COPY {name} ({}) FROM STDIN", cols.join(", ")))
                        .unwrap();
                    w.write_all(&copy_text(rows)).unwrap();
                    w.finish().unwrap();
                    rows_loaded += rows.rows.len() as u64;
                }
                tx.commit().unwrap();
            }
            timed += t.elapsed();
            i = end;
        }
    }
    if dest != "duckdb" {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(&schema)))
            .unwrap();
    }
    let secs = timed.as_secs_f64();
    println!(
        "{dest} {shape} {mode} {n} {rows_loaded} {secs:.2} {:.0} (wall {:.2}s incl. generation)",
        rows_loaded as f64 / secs,
        start_all.elapsed().as_secs_f64()
    );
}
