//! `seam tap CONNECTOR --config CONFIG.json [--discover | --catalog CATALOG.json] [--state STATE.json]`:
//! a Singer tap. Messages go to stdout (buffered, flushed at every STATE and at the end), logs to
//! stderr; the exit code is 0 only when the run succeeded.

use anyhow::Context;
use seam_core::singer::Message;
use seam_core::{Catalog, State};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `seam tap`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The connector, e.g. `zendesk`.
    connector: String,
    /// The connector's JSON config file (for zendesk: tap-zendesk's keys plus seam's).
    #[arg(short, long)]
    config: PathBuf,
    /// Print the catalog of every stream and exit.
    #[arg(short, long, conflicts_with_all = ["catalog", "state"])]
    discover: bool,
    /// The catalog selecting streams and fields; without it every stream the account can read is synced.
    #[arg(long, visible_alias = "properties", short = 'p')]
    catalog: Option<PathBuf>,
    /// State to resume from (Singer's `{"bookmarks": ...}`; tap-zendesk's state files work).
    #[arg(short, long)]
    state: Option<PathBuf>,
}

fn read_file(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} file {}", path.display()))
}

/// Runs the tap.
pub fn run(args: Args) -> anyhow::Result<()> {
    // Logs go to stderr; stdout carries only Singer messages.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let config = read_file(&args.config, "config")?;
    let source = seam_zendesk::registry::build_source(&args.connector, &config)?;
    let catalog: Option<Catalog> = match &args.catalog {
        Some(p) => Some(
            serde_json::from_str(&read_file(p, "catalog")?)
                .with_context(|| format!("the catalog file {} is not a Singer catalog", p.display()))?,
        ),
        None => None,
    };
    let state = match &args.state {
        Some(p) => {
            let text = read_file(p, "state")?;
            let v: serde_json::Value = if text.trim().is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_str(&text)
                    .with_context(|| format!("the state file {} is not JSON", p.display()))?
            };
            State::from_value(v)
                .with_context(|| format!("the state file {} is not a Singer state", p.display()))?
        }
        None => State::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.discover {
        let catalog = rt.block_on(source.discover())?;
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &catalog)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    rt.block_on(async move {
        let catalog = match catalog {
            Some(c) => c,
            None => {
                let mut c = source.discover().await?;
                c.select_all();
                c
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(1024);
        // Writing to stdout blocks: it gets its own thread, fed by the bounded channel.
        let writer = std::thread::spawn(move || -> std::io::Result<u64> {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let mut n = 0u64;
            while let Some(msg) = rx.blocking_recv() {
                msg.write_line(&mut out)?;
                n += 1;
                if matches!(msg, Message::State { .. }) {
                    out.flush()?;
                }
            }
            out.flush()?;
            Ok(n)
        });
        let cancel = tokio_util::sync::CancellationToken::new();
        let result = source.read(&catalog, state, tx, cancel).await;
        let written = tokio::task::spawn_blocking(move || writer.join())
            .await
            .context("the stdout writer did not finish")?
            .map_err(|_| anyhow::anyhow!("the stdout writer panicked"))?
            .context("cannot write to stdout")?;
        let summary = result?;
        tracing::info!(messages = written, requests = summary.requests, records = ?summary.records, skipped = ?summary.skipped, "tap finished");
        Ok(())
    })
}
