//! The `seam` binary: parses arguments and calls the libraries. No logic lives here.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;

/// seam allocates with jemalloc, from one arena (`JEMALLOC_SYS_WITH_MALLOC_CONF` in
/// `.cargo/config.toml`, built into the binary; `_RJEM_MALLOC_CONF` overrides it at run time). glibc's malloc
/// was the largest single cost of `seam sync`: its one arena's lock, shared by the source's and the
/// loader's threads, and the putting back together of freed chunks (docs/LOADING.md, "jemalloc").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// seam replicates data from SaaS APIs (Zendesk Support first) into your own warehouse, on a schedule,
/// incrementally.
#[derive(Debug, Parser)]
#[command(name = "seam", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the warehouse schema name an integration name creates ("Stitch Zendesk" -> stitch_zendesk).
    SchemaName(cmd::schema_name::Args),
    /// Run a connector as a Singer tap: `seam tap zendesk --config CONFIG.json [--discover | --catalog CATALOG.json] [--state STATE.json]`.
    Tap(cmd::tap::Args),
    /// Replicate Zendesk into a warehouse in one process: `seam sync --config zendesk.json --destination duckdb:PATH|postgres://… --schema NAME`.
    Sync(cmd::sync::Args),
    /// A Singer target: `seam target duckdb --database FILE --schema NAME` or `seam target postgres --url URL --schema NAME`.
    Target(cmd::target::Args),
    /// Run the service: integrations, scheduled replication jobs and the REST API (`seam serve --data-dir DIR --listen ADDR`).
    Serve(cmd::serve::Args),
    /// A worker of a seam cluster: `seam serve --roles worker` (needs `--metastore-url`, shared with the other processes).
    Worker(cmd::serve::Args),
    /// A first look without a Zendesk account: a simulated Zendesk plus the service and dashboard, with the sign-in printed.
    Demo(cmd::demo::Args),
    /// API tokens of `seam serve`: `seam token create [--name NAME]`, `seam token list`, `seam token revoke ID|NAME`.
    Token(cmd::token::Args),
    /// The dashboard's admin account: `seam admin reset-password` prints a new password once.
    Admin(cmd::admin::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before anything is created: the files seam writes hold credentials and Zendesk data.
    cmd::restrict_umask();
    let result = match cli.command {
        Command::SchemaName(args) => cmd::schema_name::run(args),
        Command::Tap(args) => cmd::tap::run(args),
        Command::Sync(args) => cmd::sync::run(args),
        Command::Target(args) => cmd::target::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Worker(args) => cmd::serve::run_worker(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::Admin(args) => cmd::admin::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line (each cause once), without a backtrace.
            eprintln!("error: {}", cmd::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
