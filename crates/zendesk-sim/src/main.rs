//! `zendesk-sim` binary: parses flags, starts the simulator, prints one line with the URL.

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use zendesk_sim::{FaultConfig, Plan, Role, SimConfig};

// Generation makes millions of small allocations; mimalloc roughly halves start-up time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A simulator of Zendesk Support's REST API.
#[derive(Debug, Parser)]
#[command(name = "zendesk-sim", version)]
struct Args {
    /// Port to listen on (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Number of tickets to generate.
    #[arg(long, default_value_t = 100)]
    tickets: usize,
    /// Data seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Plan: team, growth, professional, enterprise or high-volume.
    #[arg(long, default_value = "professional", value_parser = parse_plan)]
    plan: Plan,
    /// Account subdomain.
    #[arg(long, default_value = "acme")]
    subdomain: String,
    /// API user's email.
    #[arg(long, default_value = "admin@acme.test")]
    email: String,
    /// API token.
    #[arg(long, default_value = "sim-token")]
    api_token: String,
    /// OAuth access token to accept as Bearer.
    #[arg(long)]
    oauth_token: Option<String>,
    /// Role of the API user: admin or agent.
    #[arg(long, default_value = "admin", value_parser = ["admin", "agent"])]
    role: String,
    /// Compress rate-limit minutes (60 → one-second windows).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Endpoint groups answering 403, comma separated (sla_policies,ticket_forms,talk,custom_fields,...).
    #[arg(long, value_delimiter = ',')]
    gate: Vec<String>,
    /// Probability of a fault per API request.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Fault seed.
    #[arg(long, default_value_t = 1)]
    fault_seed: u64,
    /// Delay every API answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    slow_ms: u64,
    /// Send 429s without Retry-After (edge protection).
    #[arg(long)]
    edge_429: bool,
    /// Turn rate limits off (benchmarks).
    #[arg(long)]
    no_rate_limit: bool,
    /// Apply mutations every N seconds.
    #[arg(long)]
    mutate_every_secs: Option<u64>,
    /// Mutations applied each time (with --mutate-every-secs).
    #[arg(long, default_value_t = 10)]
    mutate_count: usize,
}

fn parse_plan(s: &str) -> Result<Plan, String> {
    Plan::parse(s).ok_or_else(|| {
        format!("unknown plan {s:?}: use team, growth, professional, enterprise or high-volume")
    })
}

#[tokio::main]
async fn main() -> anyhow_free::Result {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = SimConfig {
        tickets: args.tickets,
        seed: args.seed,
        plan: args.plan,
        subdomain: args.subdomain.clone(),
        email: args.email.clone(),
        api_token: args.api_token.clone(),
        oauth_token: args.oauth_token.clone(),
        role: if args.role == "agent" {
            Role::Agent
        } else {
            Role::Admin
        },
        time_scale: args.time_scale,
        gated: args
            .gate
            .iter()
            .map(|g| g.trim().to_owned())
            .filter(|g| !g.is_empty())
            .collect(),
        faults: FaultConfig {
            rate: args.fault_rate,
            seed: args.fault_seed,
            slow_ms: args.slow_ms,
            ..FaultConfig::default()
        },
        edge_429_without_retry_after: args.edge_429,
        rate_limits: !args.no_rate_limit,
        ..SimConfig::default()
    };
    let addr = SocketAddr::new(args.bind, args.port);
    let sim = match zendesk_sim::start(config, addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return anyhow_free::Result::Failed;
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "zendesk-sim listening on {} (subdomain {}, email {}, token {})",
        sim.base_url(),
        args.subdomain,
        args.email,
        args.api_token
    );
    let _ = out.flush();
    if let Some(every) = args.mutate_every_secs.filter(|s| *s > 0) {
        let count = args.mutate_count;
        let sim_ref = &sim;
        let ticker = async move {
            let mut iv = tokio::time::interval(std::time::Duration::from_secs(every));
            iv.tick().await;
            loop {
                iv.tick().await;
                let s = sim_ref.mutate(count);
                tracing::info!(summary = %s, "mutated");
            }
        };
        tokio::select! {
            _ = ticker => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    } else {
        let _ = tokio::signal::ctrl_c().await;
    }
    sim.shutdown().await;
    anyhow_free::Result::Ok
}

/// A tiny exit-code type so the binary needs no extra error crate.
mod anyhow_free {
    /// Process outcome.
    #[derive(Debug)]
    pub enum Result {
        /// Exit 0.
        Ok,
        /// Exit 1.
        Failed,
    }

    impl std::process::Termination for Result {
        fn report(self) -> std::process::ExitCode {
            match self {
                Result::Ok => std::process::ExitCode::SUCCESS,
                Result::Failed => std::process::ExitCode::FAILURE,
            }
        }
    }
}
