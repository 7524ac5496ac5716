//! `seam target duckdb|postgres`: a Singer target. Reads any tap's messages on stdin, loads them with
//! Stitch's semantics, writes each STATE to stdout once the rows before it are committed (together with
//! the state, in one transaction), and prints a per-table summary to stderr at the end.
//!
//! ```text
//! tap-jsonl --config c.json | seam target duckdb --database warehouse.duckdb --schema my_tap > state.jsonl
//! ```

use anyhow::Context;
use seam_core::{Classify, DestinationError, RetryDecision, RetryPolicy};
use seam_runtime::feed::LinesFeed;
use seam_runtime::loader::{Commit, LoadError, LoaderConfig};
use seam_runtime::pipeline::{self, PipelineConfig, PipelineHooks, Progress, Stop};
use seam_warehouse::duckdb::DuckDbMemoryLimit;
use seam_warehouse::DestinationSpec;
use std::collections::HashSet;
use std::io::{self, Write};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Arguments of `seam target`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    warehouse: Warehouse,
    /// Commit after this many records (target-stitch's default).
    #[arg(long, global = true, default_value_t = 20_000)]
    max_batch_records: usize,
    /// Commit after this many bytes of record JSON [default: 16 MB; `seam sync` commits 8 MB].
    #[arg(long, global = true)]
    max_batch_bytes: Option<usize>,
    /// Load this stream append-only even though it has key properties (repeatable). Streams without
    /// key properties are always append-only.
    #[arg(long = "append-only", global = true, value_name = "STREAM")]
    append_only: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Warehouse {
    /// Load into a DuckDB database file (created when missing).
    Duckdb {
        /// The database file.
        #[arg(long)]
        database: PathBuf,
        /// The schema to load into (lowercase letters, digits, underscores).
        #[arg(long)]
        schema: String,
        /// DuckDB's buffer pool limit, e.g. 192MB, 512MiB, 1GB (at least 64MB). Larger: less
        /// spilled to temporary files, less CPU, more memory. [`seam sync` and the service: 128MB]
        #[arg(long, default_value_t = DuckDbMemoryLimit::TARGET)]
        memory_limit: DuckDbMemoryLimit,
    },
    /// Load into PostgreSQL.
    Postgres {
        /// `postgres://user:password@host:port/database`.
        #[arg(long, env = "SEAM_POSTGRES_URL")]
        url: String,
        /// The schema to load into (lowercase letters, digits, underscores).
        #[arg(long)]
        schema: String,
    },
}

/// Opens a destination, retrying transient failures (an unreachable server) under the one policy.
fn open_with_retry<D>(mut open: impl FnMut() -> Result<D, DestinationError>) -> Result<D, DestinationError> {
    let policy = RetryPolicy::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match open() {
            Ok(d) => return Ok(d),
            Err(e) => match policy.decide(e.kind(), attempt) {
                RetryDecision::RetryAfter(wait) => {
                    eprintln!("warehouse not reachable (attempt {attempt}): {e}; retrying in {wait:?}");
                    std::thread::sleep(wait);
                }
                RetryDecision::GiveUp => return Err(e),
            },
        }
    }
}

/// Bytes of record JSON a batch gathers before it commits, unless `--max-batch-bytes` says otherwise:
/// twice what `seam sync` commits (the warehouses' own [`seam_core::Destination::batch_bytes`]). Every
/// commit costs each warehouse something per table it writes to (DuckDB a write to its log per
/// column, PostgreSQL a `COPY` per table whose cost grows with its rows up to 1,000), so fewer,
/// larger batches load faster; the price is memory. `seam sync` runs the source in the same process
/// and keeps its whole peak under 100 MB with 8 MB batches; here the tap is another process. On a
/// 20k-ticket Zendesk stream (six interleaved pairs, 2026-12-05): into DuckDB 0.92× the CPU at 227 MB
/// instead of 210; into PostgreSQL 0.93× the wall time at 83 MB instead of 57.
const TARGET_BATCH_BYTES: usize = 16_000_000;

/// The loader's settings from the command line.
fn loader_config(args: &Args) -> LoaderConfig {
    LoaderConfig {
        max_batch_records: args.max_batch_records.max(1),
        max_batch_bytes: Some(args.max_batch_bytes.unwrap_or(TARGET_BATCH_BYTES).max(1)),
        ..LoaderConfig::default()
    }
}

/// Prints each committed STATE to stdout, once its rows are committed. A write that fails (stdout
/// closed) stops the run: nothing more is read, what was read is committed, and the target fails.
struct StatesToStdout {
    failed: Option<io::Error>,
    stop: CancellationToken,
}

#[async_trait::async_trait]
impl PipelineHooks for StatesToStdout {
    async fn committed(&mut self, commit: Commit<'_>) {
        let (Some(state), None) = (commit.state, &self.failed) else {
            return;
        };
        let mut out = io::stdout().lock();
        let written = serde_json::to_writer(&mut out, state)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            self.failed = Some(e);
            self.stop.cancel();
        }
    }
}

/// Runs the target until stdin ends.
///
/// The same driver as `seam sync` and the service's jobs ([`pipeline::run_feed`]): stdin is read on
/// a thread of its own while the loader stages and commits, every warehouse call is bounded
/// ([`PipelineConfig::warehouse_call_limit`]) and interrupted when the run gives up on it, and
/// Ctrl-C stops reading, commits what was read and prints its state.
pub fn run(args: Args) -> anyhow::Result<()> {
    let append_only: HashSet<String> = args.append_only.iter().cloned().collect();
    let (destination, duckdb_memory, schema) = match &args.warehouse {
        Warehouse::Duckdb {
            database,
            schema,
            memory_limit,
        } => (DestinationSpec::DuckDb(database.clone()), *memory_limit, schema),
        // No DuckDB: the limit goes unused.
        Warehouse::Postgres { url, schema } => {
            (DestinationSpec::postgres(url)?, DuckDbMemoryLimit::TARGET, schema)
        }
    };
    let schema = seam_core::naming::validate_schema_name(schema)?;
    let config = PipelineConfig {
        loader: loader_config(&args),
        stop_grace: super::STOP_GRACE,
        ..PipelineConfig::default()
    };
    let feed = LinesFeed::new(io::stdin());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let cancel = CancellationToken::new();
    let mut hooks = StatesToStdout {
        failed: None,
        stop: cancel.clone(),
    };
    let run = rt.block_on(async {
        super::stop_on_signals(
            cancel.clone(),
            "seam target",
            "what was read is committed, then its state printed",
        );
        let stop = Stop::new(cancel, config.stop_grace);
        let open =
            move || open_with_retry(|| destination.open_limited(&schema, append_only.clone(), duckdb_memory));
        pipeline::run_feed(feed, open, &mut hooks, &Progress::default(), &stop, &config).await
    });
    if let Some(e) = hooks.failed {
        return Err(LoadError::Sink(e).into());
    }
    let summary = run.into_result()?.load;
    let mut err = io::stderr().lock();
    writeln!(
        err,
        "{:<40} {:>12} {:>14} {:>10}",
        "table", "rows", "subtable rows", "rejected"
    )?;
    for (table, t) in summary.per_table() {
        writeln!(
            err,
            "{table:<40} {:>12} {:>14} {:>10}",
            t.rows, t.subtable_rows, t.rejected
        )?;
    }
    writeln!(
        err,
        "{} commits, {} rows loaded in all",
        summary.commits,
        summary.report.total_rows()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    /// DuckDB's buffer pool is 192 MB unless the command line says otherwise; a limit DuckDB cannot
    /// use is refused with what to write instead.
    #[test]
    fn duckdbs_pool_is_192_mb_unless_the_command_line_says() {
        let limit = |line: &str| match Cli::try_parse_from(line.split(' ')).map(|c| c.args.warehouse) {
            Ok(Warehouse::Duckdb { memory_limit, .. }) => Ok(memory_limit.bytes()),
            Ok(Warehouse::Postgres { .. }) => Err("postgres".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        let duckdb = "seam duckdb --database x.duckdb --schema s";
        assert_eq!(limit(duckdb), Ok(192_000_000));
        assert_eq!(limit(&format!("{duckdb} --memory-limit 1GiB")), Ok(1 << 30));
        let e = limit(&format!("{duckdb} --memory-limit 32MB")).unwrap_err();
        assert!(e.contains("under 64MB"), "{e}");
        let e = limit(&format!("{duckdb} --memory-limit lots")).unwrap_err();
        assert!(e.contains("192MB, 512MiB or 1.5GB"), "{e}");
    }

    /// Batches are 16 MB of record JSON unless the command line says otherwise, before or after the
    /// warehouse; a limit of 0 is taken as 1, as the record limit is.
    #[test]
    fn batches_are_16_mb_unless_the_command_line_says() {
        let duckdb = "duckdb --database x.duckdb --schema s";
        let postgres = "postgres --url postgres://h/db --schema s";
        let cases = [
            (format!("seam {duckdb}"), 16_000_000, 20_000),
            (format!("seam {postgres}"), 16_000_000, 20_000),
            (
                format!("seam --max-batch-bytes 4000000 {postgres}"),
                4_000_000,
                20_000,
            ),
            (format!("seam {duckdb} --max-batch-bytes 0"), 1, 20_000),
            (format!("seam --max-batch-records 0 {duckdb}"), 16_000_000, 1),
        ];
        for (line, bytes, records) in cases {
            let cli = Cli::try_parse_from(line.split(' ')).unwrap();
            let config = loader_config(&cli.args);
            assert_eq!(
                (config.max_batch_bytes, config.max_batch_records),
                (Some(bytes), records),
                "{line}"
            );
        }
    }
}
