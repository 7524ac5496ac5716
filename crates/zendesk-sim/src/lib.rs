//! `zendesk-sim`: a simulator of Zendesk Support's REST API, faithful to Zendesk's documented
//! behaviour rather than to what any client expects. Every seam test, the demo and the benchmarks
//! talk to it. It shares no code with the client crate (`seam-zendesk`): two independent readings
//! of the documentation catch each other's mistakes.
//!
//! # What it serves, and where the behaviour comes from
//! - deterministic account data for `(tickets, seed)` ([`data::gen`]): tickets with custom fields
//!   of every type, ~3 audits per ticket (the first carries the first comment), metric sets, metric
//!   events, users and identities, organizations, groups, memberships, fields, forms, brands, tags,
//!   macros, SLA policies, roles, schedules, automations, triggers, views, satisfaction ratings,
//!   Talk phone numbers; some tickets deleted, some archived; many records share one second,
//!   including runs longer than an export page;
//! - authentication (API token / OAuth), plan gates and unknown subdomains ([`auth`], [`error`]);
//! - cursor-based and time-based incremental exports with the one-minute rules ([`routes::exports`]);
//! - list endpoints with cursor and offset pagination ([`pagination`], [`routes::lists`]);
//! - per-ticket audits, comments and metrics, and the account-wide audit list ([`routes::tickets`]);
//! - rate limits by plan, on exports and on per-ticket audits ([`rate_limit`]);
//! - injected faults, random or per endpoint ([`faults`]); a virtual clock ([`clock`]); change over time ([`data::mutate`]);
//! - ground truth and request stats for tests ([`data::truth`], [`stats`], [`admin`]).
//!
//! # Time
//! Sim-now is real time plus an offset that only moves forward ([`SimHandle::advance_clock`],
//! `POST /__sim/clock/advance?seconds=N`). Mutations are stamped with sim-now and the export rules
//! ("changed in the last minute: not yet", "`start_time` under a minute old: 422") use sim-now, so a
//! test mutates, advances 61 s and syncs. `time_scale` does **not** touch the clock: it only
//! compresses the rate-limit minute (60 → one-second windows). `Retry-After` is then the real
//! number of seconds until the window resets, rounded up and never below 1.
//!
//! # Truth
//! `GET /__sim/truth` ([`SimHandle::truth`]) returns `{"<stream>": {"count": n, "ids": [...],
//! "updated": {"<id>": value}}}` for every stream in [`data::truth::TRUTH_STREAMS`]; the table in
//! [`data::truth`] says exactly what each stream includes.
//!
//! # Binary
//! `zendesk-sim --port 0 --tickets 20000 --seed 1 [--plan team|growth|professional|enterprise|high-volume]
//! [--subdomain acme] [--email ..] [--api-token ..] [--oauth-token ..] [--role admin|agent]
//! [--time-scale 60] [--gate sla_policies,ticket_forms,talk,custom_fields] [--fault-rate 0.05]
//! [--fault-seed 1] [--slow-ms 200] [--edge-429] [--no-rate-limit] [--mutate-every-secs 30
//! [--mutate-count 10]]` prints one line,
//! `zendesk-sim listening on http://127.0.0.1:PORT (subdomain acme, email admin@acme.test, token sim-token)`,
//! and serves until Ctrl-C. `scripts/sim_walk.py` walks every endpoint against the truth;
//! `scripts/sim_bench.sh` measures export throughput.
//!
//! ```no_run
//! # async fn demo() -> Result<(), zendesk_sim::SimError> {
//! let sim = zendesk_sim::start(zendesk_sim::SimConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("{}", sim.base_url());
//! sim.mutate(20);
//! sim.advance_clock(61);
//! let truth = sim.truth();
//! # let _ = truth;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

#![recursion_limit = "512"]

pub mod admin;
pub mod auth;
pub mod clock;
pub mod data;
pub mod error;
pub mod faults;
pub mod pagination;
pub mod rate_limit;
pub mod routes;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::{FaultConfig, FaultKind, PathFault};
pub use rate_limit::Plan;
use routes::Sim;

/// Role of the API user (`/api/v2/users/me`); agents get 403 on the incremental exports,
/// which are "Allowed for: Admins".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// An account admin.
    #[default]
    Admin,
    /// An agent without admin rights.
    Agent,
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of tickets to generate (users ≈ tickets/2, organizations ≈ tickets/50).
    pub tickets: usize,
    /// Seed for data generation and mutations.
    pub seed: u64,
    /// Plan: sets the account rate limit.
    pub plan: Plan,
    /// Account subdomain (`<subdomain>.zendesk.com`).
    pub subdomain: String,
    /// API user's email.
    pub email: String,
    /// API token accepted with Basic `{email}/token:{api_token}`.
    pub api_token: String,
    /// OAuth access token accepted as `Bearer`, if any.
    pub oauth_token: Option<String>,
    /// Role of the API user.
    pub role: Role,
    /// Compresses rate-limit minutes: 60 → one-second windows.
    pub time_scale: f64,
    /// Endpoint groups that answer 403 (`sla_policies`, `ticket_forms`, `talk`, `custom_fields`,
    /// or any first path segment such as `satisfaction_ratings`).
    pub gated: Vec<String>,
    /// Injected faults.
    pub faults: FaultConfig,
    /// Send 429s without `Retry-After`, with the edge-protection body.
    pub edge_429_without_retry_after: bool,
    /// Enforce rate limits (benchmarks turn this off).
    pub rate_limits: bool,
    /// Records reachable with offset pagination before a 400 (Zendesk: 10,000).
    pub offset_pagination_limit: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tickets: 100,
            seed: 1,
            plan: Plan::Professional,
            subdomain: "acme".to_owned(),
            email: "admin@acme.test".to_owned(),
            api_token: "sim-token".to_owned(),
            oauth_token: None,
            role: Role::Admin,
            time_scale: 1.0,
            gated: Vec::new(),
            faults: FaultConfig::default(),
            edge_429_without_retry_after: false,
            rate_limits: true,
            offset_pagination_limit: pagination::OFFSET_LIMIT,
        }
    }
}

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("zendesk-sim could not listen on {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid zendesk-sim setting {field}: {rule}")]
    Config {
        /// Setting name.
        field: &'static str,
        /// What it must satisfy.
        rule: &'static str,
    },
    /// A per-path fault rule is invalid.
    #[error("invalid zendesk-sim {0}")]
    PathFault(String),
    /// Data generation panicked or was cancelled.
    #[error("zendesk-sim data generation failed: {0}")]
    Generation(String),
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    sim: Arc<Sim>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Generates the data, binds `addr` (port 0 picks a free port) and serves in the background.
pub async fn start(config: SimConfig, addr: SocketAddr) -> Result<SimHandle, SimError> {
    if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
        return Err(SimError::Config {
            field: "time_scale",
            rule: "must be a positive number",
        });
    }
    if config.faults.rate < 0.0 || config.faults.rate > 1.0 {
        return Err(SimError::Config {
            field: "faults.rate",
            rule: "must be between 0 and 1",
        });
    }
    for p in &config.faults.paths {
        p.validate().map_err(SimError::PathFault)?;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| SimError::Bind { addr, source })?;
    let clock = clock::Clock::new();
    let now = clock.now();
    let started = std::time::Instant::now();
    let (tickets, seed, sub, email) = (
        config.tickets,
        config.seed,
        config.subdomain.clone(),
        config.email.clone(),
    );
    let role = if config.role == Role::Agent {
        "agent"
    } else {
        "admin"
    };
    let store =
        tokio::task::spawn_blocking(move || data::gen::generate(tickets, seed, now, &sub, &email, role))
            .await
            .map_err(|e| SimError::Generation(e.to_string()))?;
    tracing::info!(
        tickets,
        seed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "zendesk-sim data generated"
    );
    let sim = Arc::new(Sim {
        limiter: rate_limit::RateLimiter::new(config.plan, config.time_scale, config.rate_limits),
        faults: faults::Faults::new(config.faults.clone()),
        mutation_rng: Mutex::new(ChaCha8Rng::seed_from_u64(
            config.seed.wrapping_add(0x6d75_7461_7465),
        )),
        credentials: auth::Credentials {
            email: config.email.clone(),
            api_token: config.api_token.clone(),
            oauth_token: config.oauth_token.clone(),
        },
        base_url: format!("http://{local}"),
        store: RwLock::new(store),
        stats: stats::Stats::default(),
        clock,
        config,
    });
    let app = axum::Router::new()
        .fallback(routes::dispatch)
        .with_state(sim.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "zendesk-sim server stopped");
        }
    });
    Ok(SimHandle {
        sim,
        addr: local,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// Applies `n` mutations stamped with sim-now; returns a summary by kind.
pub(crate) fn mutate_now(sim: &Sim, n: usize) -> Value {
    let now = sim.clock.now();
    let mut rng = sim.mutation_rng.lock();
    let mut store = sim.store.write();
    let summary = data::mutate::mutate(&mut store, &mut rng, now, n);
    serde_json::json!({"now": now, "mutations": summary.counts})
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.sim.base_url.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `n` mutations stamped with sim-now; returns `{"now": ts, "mutations": {kind: count}}`.
    pub fn mutate(&self, n: usize) -> Value {
        mutate_now(&self.sim, n)
    }

    /// Moves sim-now forward by `secs` seconds.
    pub fn advance_clock(&self, secs: i64) {
        self.sim.clock.advance(secs);
    }

    /// Sim-now in unix seconds.
    pub fn now(&self) -> i64 {
        self.sim.clock.now()
    }

    /// Ground truth for every stream (see [`data::truth`]).
    pub fn truth(&self) -> Value {
        data::truth::truth(&self.sim.store.read())
    }

    /// Ground truth for one stream.
    pub fn truth_of(&self, stream: &str) -> Option<Value> {
        data::truth::stream_truth(&self.sim.store.read(), stream)
    }

    /// Request accounting (see [`stats::Stats::snapshot`]).
    pub fn stats(&self) -> Value {
        self.sim.stats.snapshot()
    }

    /// Clears request accounting.
    pub fn reset_stats(&self) {
        self.sim.stats.reset();
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.sim.faults.set(faults);
    }

    /// Replaces only the per-path fault rules (see [`PathFault`]); the random faults are kept.
    /// An invalid rule is refused with a message naming it.
    pub fn set_path_faults(&self, paths: Vec<PathFault>) -> Result<(), SimError> {
        for p in &paths {
            p.validate().map_err(SimError::PathFault)?;
        }
        self.sim.faults.set_paths(paths);
        Ok(())
    }

    /// Forgets the current rate-limit windows.
    pub fn reset_rate_limits(&self) {
        self.sim.limiter.reset();
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
