//! `seam serve [--data-dir DIR] [--listen 127.0.0.1:8080] [--warehouse duckdb:PATH|postgres://…]`: the
//! service — integrations, the scheduler, replication jobs and the REST API, in one process.
//!
//! With a PostgreSQL metastore (`--metastore-url`) any number of processes share the work, each with
//! some of the roles (`--roles api,scheduler,worker`; `seam worker` is `--roles worker`): jobs go
//! through the metastore's queue (see `seam_runtime::scheduler::queue`).

use super::store::{StoreArgs, POSTGRES_SCHEMA};
use anyhow::Context;
use seam_runtime::clock::TokioClock;
use seam_runtime::scheduler::{Dispatch, QueueConfig, SchedulerConfig};
use seam_server::connectors::{validate_zendesk_base_url, DefaultFactory};
use seam_server::notify::WebhookPolicy;
use seam_server::{SecurityConfig, Service, ServiceConfig};
use seam_singer::{TapLimits, TapProgram};
use seam_warehouse::DestinationSpec;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the process gives blocking work (a warehouse call that does not return) after the service
/// stopped, before it exits anyway.
const RUNTIME_EXIT_GRACE: Duration = Duration::from_secs(2);

/// Arguments of `seam serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `--data-dir` and `--metastore-url` (shared with `seam token` and `seam admin`).
    #[command(flatten)]
    store: StoreArgs,
    /// Address of the REST API and dashboard.
    #[arg(long, env = "SEAM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Warehouse: `duckdb:PATH` or a `postgres://` URL. Default: `duckdb:<data-dir>/warehouse.duckdb`.
    #[arg(long, env = "SEAM_WAREHOUSE")]
    warehouse: Option<String>,
    /// Point every Zendesk integration at this loopback URL (the simulator), for tests and demos; or,
    /// as `SUBDOMAIN=URL,SUBDOMAIN=URL`, each account's integrations at their own simulator.
    #[arg(long, env = "SEAM_ZENDESK_BASE_URL")]
    zendesk_base_url: Option<String>,
    /// Refuse notification webhooks to loopback, private and link-local addresses (checked on the
    /// addresses the host resolves to).
    #[arg(long, env = "SEAM_WEBHOOK_REFUSE_PRIVATE_ADDRESSES")]
    webhook_refuse_private_addresses: bool,
    /// A reverse proxy in front of seam (`ADDR` or a network `ADDR/BITS`; repeatable, or
    /// comma-separated in the environment): a request from it is counted against the client that
    /// `X-Forwarded-For` names, for the sign-in throttle. Without one the header is ignored.
    #[arg(long = "trusted-proxy", env = "SEAM_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<seam_server::ui::proxy::ProxyNet>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// On SIGTERM or Ctrl-C, seconds to wait for running jobs to stop at a safe point (committed work
    /// is kept) and for requests to finish; then seam exits anyway. A second signal exits at once.
    #[arg(long, env = "SEAM_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    shutdown_timeout: u64,
    /// Register a Singer tap as a connector (`NAME=/absolute/path/to/tap[,SECRET_KEY...][,spec=FILE]`,
    /// repeatable; in the environment, registrations separated by `;`): integrations of type
    /// `singer.NAME` run it. The listed config keys are secret: sealed with the credentials, never
    /// shown back. A spec file (JSON Schema of the tap's config) declares its settings and types.
    #[arg(long = "singer-tap", env = "SEAM_SINGER_TAPS", value_delimiter = ';', value_parser = parse_tap)]
    singer_taps: Vec<TapProgram>,
    /// Jobs commit (rows and bookmarks together) at least every this many records.
    #[arg(long, default_value_t = 20_000)]
    max_batch_records: usize,
    /// Commit after this many bytes of record JSON [default: the warehouse's own: 8 MB].
    #[arg(long)]
    max_batch_bytes: Option<usize>,
    /// What this process does: any of `api` (REST API and dashboard), `scheduler` (queues due jobs; one
    /// process at a time is the active one) and `worker` (runs jobs). Other than all three needs a
    /// PostgreSQL metastore (`--metastore-url`), which the processes share.
    #[arg(
        long,
        env = "SEAM_ROLES",
        value_enum,
        value_delimiter = ',',
        default_value = "api,scheduler,worker"
    )]
    roles: Vec<Role>,
    /// Jobs a worker runs at once (with a PostgreSQL metastore).
    #[arg(long, env = "SEAM_MAX_JOBS", default_value_t = 4)]
    max_jobs: usize,
    /// This worker's name in the job records (with a PostgreSQL metastore); unique per process.
    /// Default: `<host name>-<process id>`.
    #[arg(long, env = "SEAM_WORKER_NAME")]
    worker_name: Option<String>,
}

/// A part of the service a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The REST API and the dashboard.
    Api,
    /// Queues due jobs (one active scheduler at a time).
    Scheduler,
    /// Runs jobs.
    Worker,
}

/// The advisory role a worker loading into a DuckDB warehouse holds: one such process at a time.
const DUCKDB_WORKER_ROLE: &str = "duckdb worker";

/// How jobs are dispatched for these arguments (checked without IO).
fn dispatch(args: &Args) -> anyhow::Result<Dispatch> {
    let has = |r| args.roles.contains(&r);
    if args.roles.is_empty() {
        anyhow::bail!("--roles: give at least one of api, scheduler, worker");
    }
    if args.max_jobs == 0 {
        anyhow::bail!("--max-jobs must be at least 1");
    }
    if args.store.metastore_url.is_none() {
        if has(Role::Api) && has(Role::Scheduler) && has(Role::Worker) {
            return Ok(Dispatch::Local);
        }
        anyhow::bail!(
            "--roles other than api,scheduler,worker need a PostgreSQL metastore (--metastore-url) that the \
             processes share: the default SQLite metastore is one process's file, so that process does everything"
        );
    }
    let mut queue = QueueConfig::new(args.worker_name.clone().unwrap_or_else(default_worker_name));
    queue.scheduler = has(Role::Scheduler);
    queue.worker = has(Role::Worker);
    queue.max_jobs = args.max_jobs;
    Ok(Dispatch::Queue(queue))
}

/// `<host name>-<process id>`.
fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "seam".to_owned());
    format!("{host}-{}", std::process::id())
}

/// `seam worker`: `seam serve --roles worker`. Other roles given to it (`--roles`, `SEAM_ROLES`) are an
/// error, not silently dropped.
pub fn run_worker(mut args: Args) -> anyhow::Result<()> {
    let all = [Role::Api, Role::Scheduler, Role::Worker];
    if args.roles != all && args.roles != [Role::Worker] {
        anyhow::bail!(
            "seam worker runs the worker role only: drop --roles (or SEAM_ROLES), or use seam serve --roles …"
        );
    }
    args.roles = vec![Role::Worker];
    run(args)
}

fn parse_tap(arg: &str) -> Result<TapProgram, String> {
    let mut tap = TapProgram::parse(arg)?;
    tap.load_spec()?;
    Ok(tap)
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with structured fields.
    Json,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Runs the service until SIGINT or SIGTERM, then stops gracefully (running jobs stop at a safe point,
/// committed work kept; the schedule resumes on the next start).
pub fn run(args: Args) -> anyhow::Result<()> {
    init_logs(args.log_format);
    let warehouse = match &args.warehouse {
        Some(text) => DestinationSpec::parse(text).context("--warehouse")?,
        None => DestinationSpec::DuckDb(args.store.data_dir.join("warehouse.duckdb")),
    };
    let base_url = args
        .zendesk_base_url
        .as_deref()
        .map(validate_zendesk_base_url)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shutdown_timeout = Duration::from_secs(args.shutdown_timeout);
    let mut scheduler = SchedulerConfig::default();
    scheduler.job.loader.max_batch_records = args.max_batch_records.max(1);
    scheduler.job.loader.max_batch_bytes = args.max_batch_bytes.map(|b| b.max(1));
    scheduler.dispatch = dispatch(&args)?;
    let api = args.roles.contains(&Role::Api);
    let runs_jobs = args.roles.contains(&Role::Worker);
    let duckdb = matches!(warehouse, DestinationSpec::DuckDb(_));
    let served = rt.block_on(async move {
        // Listened for before the service starts: a signal that arrives while it starts (its API may
        // already answer) stops it gracefully too, instead of killing it.
        let mut signals = super::StopSignals::new();
        tracing::info!(warehouse = %warehouse, data_dir = %args.store.data_dir.display(), "starting seam");
        let metastore: Option<Arc<dyn seam_metastore::Metastore>> = match &args.store.metastore_url {
            Some(url) => Some(Arc::new(
                seam_metastore::PostgresMetastore::connect(url, POSTGRES_SCHEMA)
                    .await
                    .context("cannot open the PostgreSQL metastore (--metastore-url)")?,
            )),
            None => None,
        };
        // DuckDB is one file on one machine: of the processes sharing a metastore, one may load into it.
        let _duckdb_worker = match (&metastore, runs_jobs && duckdb) {
            (Some(m), true) => Some(m.try_lead(DUCKDB_WORKER_ROLE).await?.ok_or_else(|| {
                anyhow::anyhow!(
                    "another seam process already runs jobs into a DuckDB warehouse with this metastore: DuckDB is \
                     one file on one machine, so one worker process only; for several workers use a PostgreSQL \
                     warehouse (--warehouse postgres://…)"
                )
            })?),
            _ => None,
        };
        let config = ServiceConfig {
            data_dir: args.store.data_dir.clone(),
            listen: args.listen,
            factory: Arc::new(
                DefaultFactory::new(warehouse, base_url).with_taps(args.singer_taps.clone(), TapLimits::default()),
            ),
            clock: Arc::new(TokioClock::new()),
            scheduler,
            metastore,
            security: SecurityConfig {
                webhooks: WebhookPolicy {
                    refuse_private_addresses: args.webhook_refuse_private_addresses,
                },
                trusted_proxies: seam_server::ui::proxy::TrustedProxies::new(args.trusted_proxies.clone()),
                ..SecurityConfig::default()
            },
        };
        let service = if api {
            Service::start(config).await
        } else {
            Service::start_without_api(config).await
        }
        .context("seam could not start")?;
        if let Some(token) = service.initial_token() {
            // Printed once, on stdout only (never logged): only its hash is stored.
            println!("seam: API token (shown once, store it now): {token}");
        }
        if let Some(password) = service.initial_admin_password() {
            // Printed once, like the token; only an argon2 hash is stored.
            println!("seam: dashboard sign-in (shown once): user admin, password {password}");
        }
        if api {
            println!("seam: listening on http://{}", service.addr());
        } else {
            println!("seam: running without the API (roles: {:?})", args.roles);
        }
        signals.recv().await;
        tracing::info!(
            timeout_s = shutdown_timeout.as_secs(),
            "stopping: running jobs stop at a safe point, committed work is kept"
        );
        tokio::select! {
            _ = service.shutdown_within(shutdown_timeout) => {}
            _ = signals.recv() => {
                tracing::warn!("second stop signal: exiting now; jobs left running are marked failed at the next start");
            }
        }
        Ok::<(), anyhow::Error>(())
    });
    // Blocking work that never returned (a hung warehouse call) must not keep the process alive.
    let exiting = Instant::now();
    rt.shutdown_timeout(RUNTIME_EXIT_GRACE);
    if exiting.elapsed() >= RUNTIME_EXIT_GRACE {
        tracing::warn!("exiting with blocking work still running");
    }
    served
}
