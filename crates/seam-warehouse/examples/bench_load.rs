//! The "plain bulk load" baseline of `scripts/bench_load.sh`: the same flattened rows seam loaded,
//! bulk-loaded again into fresh plain tables (no keys, no merge, no staging, no state), the floor a
//! loader cannot beat.
//!
//! ```text
//! bench_load duckdb   SEAM_DATABASE SCHEMA PLAIN_DATABASE   # DuckDB appender, one transaction
//! bench_load postgres URL SCHEMA PLAIN_SCHEMA               # PostgreSQL binary COPY, one transaction
//! bench_load postgres-keyed URL SCHEMA PLAIN_SCHEMA         # the same, into tables with seam's keys
//! ```
//!
//! The rows are the tables `seam target` wrote into SCHEMA (every table but seam's own `_sdc_state`
//! and `_sdc_rejected`), so the baseline loads exactly what seam loaded — same tables, columns, types
//! and rows — without depending on how seam-warehouse flattens or stages them. Each table is read
//! into memory first (not timed); only the load is timed: for DuckDB, appending the rows with the
//! appender; for PostgreSQL, `COPY … FROM STDIN (FORMAT binary)` of the rows as PostgreSQL's own
//! `COPY … TO STDOUT (FORMAT binary)` encoded them. The new tables are created with the source
//! tables' column types inside the timed transaction; with `postgres-keyed`, with the source
//! tables' indexes too (`LIKE … INCLUDING INDEXES`: the primary keys seam keeps for its upserts, which
//! the server maintains row by row during the `COPY`).
//!
//! Prints one line: `tables=N rows=N cpu_s=S wall_s=S` — the CPU (user+sys of this process, all
//! threads, from /proc/self/stat) and the wall time of the timed part only. Peak RSS measured from
//! outside includes the largest table held in memory.
//!
//! `cargo run --release -p seam-warehouse --example bench_load -- duckdb seam.duckdb zendesk plain.duckdb`

use std::error::Error;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Tables seam keeps for itself: not rows of the stream.
const SEAM_TABLES: [&str; 2] = ["_sdc_state", "_sdc_rejected"];

/// CPU seconds (user + system, every thread) this process has used so far.
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which is in parentheses and may hold spaces): state is
    // field 3, utime field 14, stime field 15.
    let after = stat
        .rsplit_once(')')
        .ok_or("/proc/self/stat has no command name")?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i - 3)
            .ok_or("/proc/self/stat is too short")?
            .parse::<f64>()?)
    };
    Ok((ticks(14)? + ticks(15)?) / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Sums the CPU and wall time of the timed parts.
#[derive(Default)]
struct Timer {
    cpu: f64,
    wall: Duration,
}

impl Timer {
    fn time<T>(&mut self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let (cpu, wall) = (cpu_seconds()?, Instant::now());
        let out = f()?;
        self.wall += wall.elapsed();
        self.cpu += cpu_seconds()? - cpu;
        Ok(out)
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn duckdb_plain(seam_db: &str, schema: &str, plain_db: &str, timer: &mut Timer) -> Result<(usize, u64)> {
    use duckdb::types::Value;
    let conn = duckdb::Connection::open(plain_db)?;
    conn.execute_batch(&format!(
        "ATTACH '{}' AS src (READ_ONLY)",
        seam_db.replace('\'', "''")
    ))?;
    let tables: Vec<String> = conn
        .prepare(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_catalog = 'src' AND table_schema = ? ORDER BY table_name",
        )?
        .query_map([schema], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    let tables: Vec<String> = tables
        .into_iter()
        .filter(|t| !SEAM_TABLES.contains(&t.as_str()))
        .collect();
    if tables.is_empty() {
        return Err(format!(
            "{seam_db} has no tables in schema {schema}: load it with `seam target duckdb` first"
        )
        .into());
    }
    let mut rows_loaded = 0u64;
    timer.time(|| Ok(conn.execute_batch("BEGIN")?))?;
    for table in &tables {
        let src = format!("src.{}.{}", quote(schema), quote(table));
        let mut stmt = conn.prepare(&format!("SELECT * FROM {src}"))?;
        let mut result = stmt.query([])?;
        let columns = result.as_ref().ok_or("query has no statement")?.column_count();
        let mut rows: Vec<Vec<Value>> = Vec::new();
        while let Some(row) = result.next()? {
            rows.push(
                (0..columns)
                    .map(|i| row.get::<_, Value>(i))
                    .collect::<std::result::Result<_, _>>()?,
            );
        }
        drop(result);
        drop(stmt);
        timer.time(|| {
            conn.execute_batch(&format!(
                "CREATE TABLE main.{} AS FROM {src} LIMIT 0",
                quote(table)
            ))?;
            let mut app = conn.appender(table)?;
            for row in &rows {
                app.append_row(duckdb::appender_params_from_iter(row))?;
            }
            app.flush()?;
            Ok(())
        })?;
        rows_loaded += rows.len() as u64;
    }
    timer.time(|| Ok(conn.execute_batch("COMMIT")?))?;
    Ok((tables.len(), rows_loaded))
}

fn postgres_plain(
    url: &str,
    schema: &str,
    plain_schema: &str,
    keyed: bool,
    timer: &mut Timer,
) -> Result<(usize, u64)> {
    let mut source = postgres::Client::connect(url, postgres::NoTls)?;
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    let tables: Vec<String> = source
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name",
            &[&schema],
        )?
        .iter()
        .map(|r| r.get(0))
        .filter(|t: &String| !SEAM_TABLES.contains(&t.as_str()))
        .collect();
    if tables.is_empty() {
        return Err(
            format!("schema {schema} has no tables: load it with `seam target postgres` first").into(),
        );
    }
    let mut tx = timer.time(|| {
        let mut tx = client.transaction()?;
        tx.batch_execute(&format!("CREATE SCHEMA {}", quote(plain_schema)))?;
        Ok(tx)
    })?;
    let mut rows_loaded = 0u64;
    for table in &tables {
        let src = format!("{}.{}", quote(schema), quote(table));
        let dst = format!("{}.{}", quote(plain_schema), quote(table));
        let count: i64 = source
            .query_one(&format!("SELECT count(*) FROM {src}"), &[])?
            .get(0);
        let mut encoded = Vec::new();
        source
            .copy_out(&format!("COPY (SELECT * FROM {src}) TO STDOUT (FORMAT binary)"))?
            .read_to_end(&mut encoded)?;
        timer.time(|| {
            let indexes = if keyed { " INCLUDING INDEXES" } else { "" };
            tx.batch_execute(&format!("CREATE TABLE {dst} (LIKE {src}{indexes})"))?;
            let mut w = tx.copy_in(&format!("COPY {dst} FROM STDIN (FORMAT binary)"))?;
            w.write_all(&encoded)?;
            w.finish()?;
            Ok(())
        })?;
        rows_loaded += u64::try_from(count)?;
    }
    timer.time(|| Ok(tx.commit()?))?;
    Ok((tables.len(), rows_loaded))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_load duckdb SEAM_DATABASE SCHEMA PLAIN_DATABASE | bench_load postgres[-keyed] URL SCHEMA PLAIN_SCHEMA";
    let [dest, source, schema, plain] = args.as_slice() else {
        return Err(usage.into());
    };
    let mut timer = Timer::default();
    let (tables, rows) = match dest.as_str() {
        "duckdb" => duckdb_plain(source, schema, plain, &mut timer)?,
        "postgres" => postgres_plain(source, schema, plain, false, &mut timer)?,
        "postgres-keyed" => postgres_plain(source, schema, plain, true, &mut timer)?,
        _ => return Err(usage.into()),
    };
    println!(
        "tables={tables} rows={rows} cpu_s={:.2} wall_s={:.2}",
        timer.cpu,
        timer.wall.as_secs_f64()
    );
    Ok(())
}
