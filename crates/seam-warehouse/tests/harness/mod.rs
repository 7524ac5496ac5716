//! Opens each destination on a fresh schema and reads tables back as text.

use seam_core::{Destination, RecordMessage, SchemaMessage, SequencedRecord};
use seam_warehouse::{DuckDbDestination, PostgresDestination};
use serde_json::Value;
use std::path::PathBuf;

/// A destination under test, plus raw SQL access for assertions.
pub trait TestDest: Destination {
    /// Rows of a query, every value as PostgreSQL's text form (`None` for NULL).
    fn query(&mut self, sql: &str) -> Vec<Vec<Option<String>>>;
    /// Runs statements.
    fn exec(&mut self, sql: &str);
    /// Stages records with given sequences.
    fn write_seq(&mut self, stream: &str, records: &[SequencedRecord]);
    /// The schema.
    fn schema_name(&self) -> String;
}

impl TestDest for DuckDbDestination {
    fn query(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        use duckdb::types::{TimeUnit, Value as V};
        let conn = self.connection();
        let mut stmt = conn.prepare(sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let n = row.as_ref().column_count();
            let mut r = Vec::new();
            for i in 0..n {
                let v: V = row.get(i).unwrap();
                r.push(match v {
                    V::Null => None,
                    V::Boolean(b) => Some(if b { "t" } else { "f" }.to_owned()),
                    V::BigInt(i) => Some(i.to_string()),
                    V::Int(i) => Some(i.to_string()),
                    V::HugeInt(i) => Some(i.to_string()),
                    V::Double(f) => Some(f.to_string()),
                    V::Text(s) => Some(s),
                    V::Timestamp(TimeUnit::Microsecond, us) => {
                        let t = chrono::DateTime::from_timestamp_micros(us).unwrap();
                        Some(t.format("%Y-%m-%d %H:%M:%S").to_string())
                    }
                    other => Some(format!("{other:?}")),
                });
            }
            out.push(r);
        }
        out
    }
    fn exec(&mut self, sql: &str) {
        self.connection().execute_batch(sql).unwrap();
    }
    fn write_seq(&mut self, stream: &str, records: &[SequencedRecord]) {
        self.write_sequenced(stream, records).unwrap();
    }
    fn schema_name(&self) -> String {
        self.schema().to_owned()
    }
}

impl TestDest for PostgresDestination {
    fn query(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let msgs = self.client().expect("client").simple_query(sql).unwrap();
        let mut out = Vec::new();
        for m in msgs {
            if let postgres::SimpleQueryMessage::Row(row) = m {
                out.push(
                    (0..row.len())
                        .map(|i| {
                            row.get(i).map(|s| {
                                // Drop fractional zeros so both destinations print timestamps alike.
                                s.to_owned()
                            })
                        })
                        .collect(),
                );
            }
        }
        out
    }
    fn exec(&mut self, sql: &str) {
        self.client().expect("client").batch_execute(sql).unwrap();
    }
    fn write_seq(&mut self, stream: &str, records: &[SequencedRecord]) {
        self.write_sequenced(stream, records).unwrap();
    }
    fn schema_name(&self) -> String {
        self.schema().to_owned()
    }
}

/// Which destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    DuckDb,
    Postgres,
}

/// A fresh place to load into; `open` may be called again to reopen the same place.
pub struct Place {
    pub kind: Kind,
    pub schema: String,
    path: PathBuf,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Place {
    /// A fresh DuckDB file, or a fresh PostgreSQL schema; `None` (with a SKIP line, a failure under
    /// CI) when PostgreSQL is unavailable.
    pub fn new(kind: Kind) -> Option<Place> {
        // Unique across processes and runs: the PostgreSQL server may be shared and long-lived.
        let schema = seam_test_support::unique_name("conf");
        match kind {
            Kind::DuckDb => {
                let dir = tempfile::tempdir().unwrap();
                Some(Place {
                    kind,
                    schema,
                    path: dir.path().join("w.duckdb"),
                    url: String::new(),
                    _dir: Some(dir),
                })
            }
            Kind::Postgres => {
                let url = postgres_url()?;
                Some(Place {
                    kind,
                    schema,
                    path: PathBuf::new(),
                    url,
                    _dir: None,
                })
            }
        }
    }

    pub fn open(&self) -> Box<dyn TestDest> {
        match self.kind {
            Kind::DuckDb => Box::new(DuckDbDestination::open(&self.path, &self.schema).unwrap()),
            Kind::Postgres => Box::new(PostgresDestination::connect(&self.url, &self.schema).unwrap()),
        }
    }

    #[allow(dead_code)]
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The PostgreSQL server of the test run: `SEAM_TEST_POSTGRES_URL`, or the throwaway cluster
/// seam-test-support starts; `None` after a SKIP line (a failure under CI and `scripts/test`).
pub use seam_test_support::postgres_url;

pub fn schema(stream: &str, keys: &[&str], schema: Value) -> SchemaMessage {
    SchemaMessage {
        stream: stream.into(),
        schema: serde_json::from_value(schema).unwrap(),
        key_properties: keys.iter().map(|k| (*k).to_owned()).collect(),
        bookmark_properties: None,
    }
}

pub fn rec(stream: &str, v: Value) -> RecordMessage {
    RecordMessage::from_value(stream, &v).unwrap()
}

pub fn seq(sequence: i64, stream: &str, v: Value) -> SequencedRecord {
    SequencedRecord {
        sequence,
        message: rec(stream, v),
    }
}

/// Runs `test` against both destinations.
pub fn both(test: impl Fn(&Place)) {
    for kind in [Kind::DuckDb, Kind::Postgres] {
        if let Some(place) = Place::new(kind) {
            test(&place);
        }
    }
}

/// Rows of a query in which `§name` stands for the schema-qualified table `name`.
pub fn rows(d: &mut dyn TestDest, sql: &str) -> Vec<Vec<Option<String>>> {
    let schema = d.schema_name();
    let mut out = String::new();
    let mut rest = sql;
    while let Some(i) = rest.find('§') {
        out.push_str(&rest[..i]);
        let after = &rest[i + '§'.len_utf8()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        out.push_str(&format!("\"{schema}\".\"{}\"", &after[..end]));
        rest = &after[end..];
    }
    out.push_str(rest);
    d.query(&out)
}

/// One column of a query (see [`rows`]), as strings.
pub fn col(d: &mut dyn TestDest, sql: &str) -> Vec<Option<String>> {
    rows(d, sql).into_iter().map(|mut r| r.remove(0)).collect()
}

/// `"schema".table` for SQL in tests.
pub fn t(d: &dyn TestDest, table: &str) -> String {
    format!("\"{}\".\"{}\"", d.schema_name(), table.replace('"', "\"\""))
}

/// The columns of a table, in order.
pub fn columns(d: &mut dyn TestDest, table: &str) -> Vec<String> {
    let s = d.schema_name();
    col(d, &format!(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = '{s}' AND table_name = '{table}' ORDER BY ordinal_position"
    ))
    .into_iter()
    .map(Option::unwrap)
    .collect()
}

/// Tables of the schema, sorted.
pub fn tables(d: &mut dyn TestDest) -> Vec<String> {
    let s = d.schema_name();
    col(
        d,
        &format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{s}' ORDER BY table_name"
        ),
    )
    .into_iter()
    .map(Option::unwrap)
    .collect()
}
