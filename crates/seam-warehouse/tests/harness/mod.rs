//! Opens each destination on a fresh schema and reads tables back as text.

use seam_core::{Destination, RecordMessage, SchemaMessage, SequencedRecord};
use seam_warehouse::{DuckDbDestination, PostgresDestination};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

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
        let msgs = self.client().simple_query(sql).unwrap();
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
        self.client().batch_execute(sql).unwrap();
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

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Place {
    /// A fresh DuckDB file, or a fresh PostgreSQL schema; `None` (with a SKIP line) when PostgreSQL
    /// is unavailable.
    pub fn new(kind: Kind) -> Option<Place> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let schema = format!("conf_{}_{n}", std::process::id());
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

/// `SEAM_TEST_POSTGRES_URL`, or a throwaway cluster started with initdb/pg_ctl in
/// `$TMPDIR/seam-pg-conformance` (on a free loopback port, trust auth, reused by later runs), or
/// `None` after printing SKIP.
pub fn postgres_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("SEAM_TEST_POSTGRES_URL") {
            return Some(url);
        }
        let bin = [
            "/usr/lib/postgresql/15/bin",
            "/usr/lib/postgresql/16/bin",
            "/usr/lib/postgresql/17/bin",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("initdb").exists());
        let Some(bin) = bin else {
            eprintln!("SKIP postgres conformance: SEAM_TEST_POSTGRES_URL unset and no initdb found");
            return None;
        };
        // One shared throwaway cluster, reused by later runs (so none is left behind per run).
        let dir = std::env::temp_dir().join("seam-pg-conformance");
        let data = dir.join("data");
        let port_file = dir.join("port");
        std::fs::create_dir_all(&dir).unwrap();
        // initdb refuses to run as root; run as the `postgres` user when we are root.
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
        let run = |args: &[&str]| -> bool {
            let mut c = if as_root {
                let mut c = Command::new("su");
                let line = args
                    .iter()
                    .map(|a| format!("'{a}'"))
                    .collect::<Vec<_>>()
                    .join(" ");
                c.args(["postgres", "-s", "/bin/sh", "-c", &line]);
                c
            } else {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]);
                c
            };
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let pg_ctl = bin.join("pg_ctl");
        // Test processes (nextest runs one per test) start the cluster one at a time.
        let lock = dir.join("lock");
        for _ in 0..300 {
            if std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
                .is_ok()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let url = start_or_reuse(&run, &pg_ctl, &bin, &dir, &data, &port_file, as_root);
        let _ = std::fs::remove_file(&lock);
        url
    })
    .clone()
}

#[allow(clippy::too_many_arguments)]
fn start_or_reuse(
    run: &dyn Fn(&[&str]) -> bool,
    pg_ctl: &std::path::Path,
    bin: &std::path::Path,
    dir: &std::path::Path,
    data: &std::path::Path,
    port_file: &std::path::Path,
    as_root: bool,
) -> Option<String> {
    {
        let running = run(&[pg_ctl.to_str().unwrap(), "-D", data.to_str().unwrap(), "status"]);
        if let (true, Ok(port)) = (running, std::fs::read_to_string(port_file)) {
            return Some(format!("postgres://seam@127.0.0.1:{}/postgres", port.trim()));
        }
        let _ = std::fs::remove_dir_all(data);
        if as_root {
            let _ = Command::new("chown")
                .args(["-R", "postgres", dir.to_str().unwrap()])
                .status();
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let initdb = bin.join("initdb");
        if !run(&[
            initdb.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "seam",
            "--auth=trust",
        ]) {
            eprintln!("SKIP postgres conformance: initdb failed");
            return None;
        }
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.display()
        );
        if !run(&[
            pg_ctl.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-w",
            "-l",
            dir.join("log").to_str().unwrap(),
            "start",
        ]) {
            eprintln!("SKIP postgres conformance: pg_ctl start failed");
            return None;
        }
        std::fs::write(port_file, port.to_string()).unwrap();
        Some(format!("postgres://seam@127.0.0.1:{port}/postgres"))
    }
}

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
