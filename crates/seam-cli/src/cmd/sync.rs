//! `seam sync --config zendesk.json --destination duckdb:PATH|postgres://… --schema NAME`:
//! Zendesk → warehouse in one process, resuming from the bookmarks committed in the destination.

use anyhow::Context;
use seam_core::Catalog;
use seam_runtime::loader::TableTotals;
use seam_runtime::pipeline::{self, NoHooks, PipelineConfig, Progress, Stop};
use seam_warehouse::DestinationSpec;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Arguments of `seam sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The connector's JSON config file (tap-zendesk's keys plus seam's).
    #[arg(short, long)]
    config: PathBuf,
    /// Where to load: `duckdb:PATH` (a DuckDB file) or a `postgres://…` URL.
    #[arg(short, long)]
    destination: String,
    /// The warehouse schema (e.g. `stitch_zendesk`; see `seam schema-name`).
    #[arg(short, long)]
    schema: String,
    /// A Singer catalog selecting streams and fields; without it every stream the account can read is synced.
    #[arg(long, visible_alias = "properties")]
    catalog: Option<PathBuf>,
    /// The connector (only `zendesk` today).
    #[arg(long, default_value = "zendesk")]
    connector: String,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    plain: bool,
    /// Commit (rows and bookmarks together) at least every this many records.
    #[arg(long, default_value_t = 20_000)]
    max_batch_records: usize,
    /// Commit after this many bytes of record JSON [default: the warehouse's own: 8 MB].
    #[arg(long)]
    max_batch_bytes: Option<usize>,
}

/// Runs the sync.
pub fn run(args: Args) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let schema = seam_core::naming::validate_schema_name(&args.schema).context("--schema")?;
    let destination = DestinationSpec::parse(&args.destination).context("--destination")?;
    let config = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read the config file {}", args.config.display()))?;
    let source: Arc<dyn seam_core::Source> =
        Arc::from(seam_zendesk::registry::build_source(&args.connector, &config)?);
    let chosen: Option<Catalog> = match &args.catalog {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the catalog file {}", p.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a Singer catalog", p.display()))?,
            )
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        source.check().await?;
        let mut catalog = source.discover().await?;
        match &chosen {
            Some(c) => catalog.carry_selection_from(c),
            None => catalog.select_all(),
        }
        let selected: Vec<String> = catalog.selected().map(|s| s.stream.clone()).collect();
        anyhow::ensure!(
            !selected.is_empty(),
            "the catalog selects no stream: select at least one"
        );
        eprintln!(
            "seam sync: {} streams into {} ({})",
            selected.len(),
            schema,
            destination
        );
        let append_only = pipeline::append_only_streams(&catalog);
        let cancel = CancellationToken::new();
        super::stop_on_signals(
            cancel.clone(),
            "seam sync",
            "at the next safe point; committed work is kept",
        );
        let progress = Progress::default();
        let reporter = tokio::spawn(report_progress(
            progress.clone(),
            !args.plain && std::io::stderr().is_terminal(),
        ));
        let open_schema = schema.clone();
        let mut config = PipelineConfig {
            stop_grace: super::STOP_GRACE,
            ..PipelineConfig::default()
        };
        config.loader.max_batch_records = args.max_batch_records.max(1);
        config.loader.max_batch_bytes = args.max_batch_bytes.map(|b| b.max(1));
        // The same driver as the service's jobs: a source that ignores Ctrl-C is abandoned after the
        // stop's grace, and a panic ends the run with an error naming the part.
        let stop = Stop::new(cancel, config.stop_grace);
        let started = Instant::now();
        let run = pipeline::run(
            source,
            catalog,
            move || destination.open(&open_schema, append_only),
            &mut NoHooks,
            &progress,
            &stop,
            &config,
        )
        .await;
        reporter.abort();
        let report = run.into_result()?;
        let elapsed = started.elapsed().as_secs_f64();
        let totals = report.load.per_table();
        print_summary(&totals, report.load.commits, report.read.requests, elapsed);
        for (stream, reason) in &report.read.skipped {
            eprintln!("warning: skipped {stream}: {reason}");
        }
        if let Some(state) = &report.load.last_state {
            tracing::debug!(state = %state, "committed state");
        }
        Ok(())
    })
}

async fn report_progress(progress: Progress, terminal: bool) {
    let started = Instant::now();
    let period = if terminal {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    };
    let bar = terminal.then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    loop {
        tokio::time::sleep(period).await;
        let s = progress.snapshot();
        let records = s.records_total;
        let rate = records as f64 / started.elapsed().as_secs_f64().max(0.001);
        let mut line = format!(
            "{}: {} records read ({:.0}/s), {} rows committed",
            s.current_stream.as_deref().unwrap_or("starting"),
            records,
            rate,
            s.rows_committed
        );
        // A commit that takes long (a lock in the warehouse, a retry) is said, rather than a read
        // rate that drops for no shown reason.
        if let Some(waited) = s.waiting_on_warehouse() {
            line.push_str(&format!(", waiting on the warehouse for {} s", waited.as_secs()));
        }
        match &bar {
            Some(b) => b.set_message(line),
            None => eprintln!("seam sync: {line}"),
        }
    }
}

fn print_summary(
    totals: &std::collections::BTreeMap<String, TableTotals>,
    commits: u64,
    requests: u64,
    seconds: f64,
) {
    let width = totals.keys().map(String::len).max().unwrap_or(5).max(5);
    eprintln!(
        "\n{:<width$}  {:>12}  {:>14}  {:>9}",
        "table", "rows", "subtable rows", "rejected"
    );
    let mut all = TableTotals::default();
    for (table, t) in totals {
        eprintln!(
            "{table:<width$}  {:>12}  {:>14}  {:>9}",
            t.rows, t.subtable_rows, t.rejected
        );
        all.rows += t.rows;
        all.subtable_rows += t.subtable_rows;
        all.rejected += t.rejected;
    }
    eprintln!(
        "{:<width$}  {:>12}  {:>14}  {:>9}",
        "total", all.rows, all.subtable_rows, all.rejected
    );
    eprintln!("{commits} commits, {requests} API requests, {seconds:.1}s");
}
