//! The warehouse a test loads into — a DuckDB file or a fresh PostgreSQL schema — and reading it
//! back as text.

use super::off_runtime;
use seam_core::Destination as _;
use std::collections::HashSet;
use std::path::PathBuf;

/// Rows of a query, every column read as text (`None` for NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// Where `seam sync` (or `seam serve`) loads, and the schema it loads into.
#[derive(Debug)]
pub enum Warehouse {
    DuckDb { path: PathBuf, schema: String },
    Postgres { url: String, schema: String },
}

impl Warehouse {
    pub fn duckdb(path: PathBuf, schema: &str) -> Warehouse {
        Warehouse::DuckDb {
            path,
            schema: schema.to_owned(),
        }
    }

    /// A schema no other test uses (`<prefix>_<unique>`) on the test run's PostgreSQL server (see
    /// seam-test-support); `None` after a SKIP line (a failure under CI and `scripts/test`).
    pub fn postgres(prefix: &str) -> Option<Warehouse> {
        let url = seam_test_support::postgres_url()?;
        let schema = seam_test_support::unique_name(prefix);
        Some(Warehouse::Postgres { url, schema })
    }

    /// The `--destination` argument of `seam sync`.
    pub fn destination(&self) -> String {
        match self {
            Warehouse::DuckDb { path, .. } => format!("duckdb:{}", path.display()),
            Warehouse::Postgres { url, .. } => url.clone(),
        }
    }

    pub fn schema(&self) -> &str {
        match self {
            Warehouse::DuckDb { schema, .. } | Warehouse::Postgres { schema, .. } => schema,
        }
    }

    /// SQL for a timestamp column as Zendesk writes it (`2026-01-02T03:04:05Z`).
    pub fn iso_seconds(&self, column: &str) -> String {
        match self {
            Warehouse::DuckDb { .. } => format!("strftime(\"{column}\", '%Y-%m-%dT%H:%M:%SZ')"),
            Warehouse::Postgres { .. } => {
                format!("to_char(\"{column}\", 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
            }
        }
    }

    /// Every row of a query (each column must read as text: cast it), or why the query failed
    /// (a table that does not exist yet, say).
    pub fn try_query(&self, sql: &str) -> Result<Rows, String> {
        match self {
            Warehouse::DuckDb { path, .. } => {
                let conn = duckdb::Connection::open(path).unwrap();
                let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
                let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(|e| e.to_string())? {
                    let n = r.as_ref().column_count();
                    out.push((0..n).map(|i| r.get::<_, Option<String>>(i).unwrap()).collect());
                }
                Ok(out)
            }
            // The blocking client runs its own runtime: keep it off the test's async threads.
            Warehouse::Postgres { url, .. } => off_runtime(|| {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                let rows = client.query(sql, &[]).map_err(|e| match e.as_db_error() {
                    Some(db) => db.to_string(),
                    None => e.to_string(),
                })?;
                Ok(rows
                    .iter()
                    .map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i)).collect())
                    .collect())
            }),
        }
    }

    /// Every row of a query; panics when it fails.
    pub fn query(&self, sql: &str) -> Rows {
        self.try_query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Rows of a two-column query, neither NULL; `None` when the query fails (no such table).
    pub fn pairs(&self, sql: &str) -> Option<Vec<(String, String)>> {
        let rows = self.try_query(sql).ok()?;
        Some(
            rows.into_iter()
                .map(|r| match &r[..] {
                    [Some(a), Some(b)] => (a.clone(), b.clone()),
                    other => panic!("{sql}: not two text columns: {other:?}"),
                })
                .collect(),
        )
    }

    /// Whether the schema holds `table`.
    pub fn table_exists(&self, table: &str) -> bool {
        let sql = format!(
            "SELECT CAST(count(*) AS TEXT) FROM information_schema.tables \
             WHERE table_schema = '{}' AND table_name = '{table}'",
            self.schema()
        );
        self.query(&sql)[0][0].as_deref() != Some("0")
    }

    /// The state committed with the rows (`<schema>._sdc_state`).
    pub fn committed_state(&self) -> seam_core::State {
        let schema = self.schema();
        let state = match self {
            Warehouse::DuckDb { path, .. } => seam_warehouse::DuckDbDestination::open(path, schema)
                .unwrap()
                .committed_state()
                .unwrap(),
            Warehouse::Postgres { url, .. } => off_runtime(|| {
                seam_warehouse::PostgresDestination::connect_with(url, schema, HashSet::new())
                    .unwrap()
                    .committed_state()
                    .unwrap()
            }),
        };
        state.unwrap_or_default()
    }
}
