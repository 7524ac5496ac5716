//! `seam demo`: a first look without a Zendesk account. Starts a simulated Zendesk account
//! (`zendesk-sim`) in this process and the service on the embedded defaults (metastore and DuckDB
//! warehouse in a data directory) pointed at it, then prints the dashboard URL, the sign-in and the
//! demo Zendesk's site prefix, email and API token to type into the Add Integration form.

use anyhow::Context;
use seam_runtime::clock::TokioClock;
use seam_runtime::scheduler::SchedulerConfig;
use seam_server::connectors::DefaultFactory;
use seam_server::{Service, ServiceConfig};
use seam_warehouse::DestinationSpec;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The demo Zendesk account's site prefix (what goes before `.zendesk.com`).
pub const DEMO_SUBDOMAIN: &str = "demo";
/// The demo Zendesk account's admin email.
pub const DEMO_EMAIL: &str = "admin@demo.example";
/// The demo Zendesk account's API token.
pub const DEMO_API_TOKEN: &str = "demo-api-token";

/// Arguments of `seam demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the dashboard and REST API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data directory (metastore, key, DuckDB warehouse). Default: a new temporary directory, deleted
    /// when the demo stops.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Tickets in the simulated Zendesk account (users ≈ half, organizations ≈ a fiftieth).
    #[arg(long, default_value_t = 500)]
    tickets: usize,
}

/// Runs the demo until Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,seam_server=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let (data_dir, temp) = match args.data_dir.clone() {
        Some(dir) => (dir, None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("seam-demo-")
                .tempdir()
                .context("cannot create a data directory")?;
            (t.path().to_owned(), Some(t))
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let sim_config = zendesk_sim::SimConfig {
            tickets: args.tickets,
            subdomain: DEMO_SUBDOMAIN.to_owned(),
            email: DEMO_EMAIL.to_owned(),
            api_token: DEMO_API_TOKEN.to_owned(),
            ..Default::default()
        };
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let sim = zendesk_sim::start(sim_config, loopback)
            .await
            .context("cannot start the demo Zendesk")?;
        let warehouse_path = data_dir.join("warehouse.duckdb");
        let service = Service::start(ServiceConfig {
            data_dir: data_dir.clone(),
            listen: args.listen,
            factory: Arc::new(DefaultFactory::new(
                DestinationSpec::DuckDb(warehouse_path.clone()),
                Some(sim.base_url()),
            )),
            clock: Arc::new(TokioClock::new()),
            scheduler: SchedulerConfig::default(),
            metastore: None,
            security: seam_server::SecurityConfig::default(),
        })
        .await
        .context("seam could not start (is something else listening on --listen?)")?;
        let password = match service.initial_admin_password() {
            Some(p) => p.to_owned(),
            None if std::env::var_os(seam_server::ui::ADMIN_PASSWORD_ENV).is_some() => {
                format!("(the value of {})", seam_server::ui::ADMIN_PASSWORD_ENV)
            }
            None => "(printed when this data directory was first used)".to_owned(),
        };
        println!();
        println!("  seam demo is running: open http://{}/", service.addr());
        println!();
        println!("  Sign in          user admin, password {password}");
        println!();
        println!("  Then follow the Stitch steps: Add an Integration → Zendesk Support, and enter");
        println!("    Integration Name     Stitch Zendesk   (creates the schema stitch_zendesk)");
        println!("    Zendesk Site Prefix  {DEMO_SUBDOMAIN}");
        println!("    Email                {DEMO_EMAIL}");
        println!("    API Token            {DEMO_API_TOKEN}");
        println!(
            "  Save Integration → Success! → select tables → Finalize Your Selections → Run Extraction Now."
        );
        println!();
        println!(
            "  The demo Zendesk ({} tickets) is simulated at {}.",
            args.tickets,
            sim.base_url()
        );
        println!("  Rows land in DuckDB: {}", warehouse_path.display());
        if let Some(token) = service.initial_token() {
            println!(
                "  REST API token:   {token}   (curl -H 'Authorization: Bearer …' http://{}/v4/sources)",
                service.addr()
            );
        }
        println!();
        println!(
            "  Ctrl-C stops the demo{}.",
            if temp.is_some() {
                " and deletes its data directory"
            } else {
                ""
            }
        );
        tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
        service.shutdown().await;
        sim.shutdown().await;
        drop(temp);
        Ok(())
    })
}
