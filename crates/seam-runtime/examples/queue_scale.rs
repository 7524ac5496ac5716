//! How far the job queue goes on one PostgreSQL: `N` integrations whose jobs are all due at once, a
//! fast fake source (25 records per stream, an in-memory warehouse), one scheduler and `W` workers,
//! each with its own metastore connection as separate processes have. Reports jobs per second,
//! metastore transactions per job, and the CPU PostgreSQL spent, for each `W`.
//!
//! ```text
//! SEAM_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release -p seam-runtime --example queue_scale -- 1000 1,2,4,8
//! ```
//! Arguments: integrations (default 1000), worker counts (default `1,2,4`), jobs per worker at once
//! (default 4). PostgreSQL's CPU is read from `/proc` (its processes must run on this machine).

use chrono::Utc;
use seam_metastore::{
    Credentials, IntegrationProperties, JobStatus, Metastore, NewIntegration, PostgresMetastore, SecretCipher,
};
use seam_runtime::clock::TokioClock;
use seam_runtime::job::JobContext;
use seam_runtime::notify::InAppNotifier;
use seam_runtime::scheduler::{Dispatch, QueueConfig, Scheduler, SchedulerConfig};
use seam_runtime::telemetry::Telemetry;
use seam_test_support::fakes::{catalog, FakeFactory};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long the idle phase after the jobs is measured.
const IDLE_SECONDS: u64 = 45;

/// CPU seconds spent so far by the processes named `postgres` on this machine.
fn postgres_cpu_seconds() -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.split_once(" (postgres) ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
        let field = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        total += field(14) + field(15);
    }
    total as f64 / ticks
}

async fn transactions(m: &tokio_postgres::Client) -> Result<i64, Error> {
    Ok(m.query_one(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        &[],
    )
    .await?
    .try_get(0)?)
}

fn cipher() -> SecretCipher {
    SecretCipher::from_key([7; 32])
}

fn context(metastore: Arc<dyn Metastore>, factory: &FakeFactory) -> JobContext {
    JobContext {
        metastore: Arc::clone(&metastore),
        cipher: cipher(),
        factory: Arc::new(factory.clone()),
        notifier: Arc::new(InAppNotifier { metastore }),
        telemetry: Arc::new(Telemetry::default()),
        clock: Arc::new(TokioClock::new()),
    }
}

async fn round(url: &str, integrations: usize, workers: usize, max_jobs: usize) -> Result<(), Error> {
    let schema = seam_test_support::unique_name("seam_scale");
    let admin: Arc<dyn Metastore> = Arc::new(PostgresMetastore::connect(url, &schema).await?);
    let (stats, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    for i in 0..integrations {
        let created = admin
            .create_integration_sealed(
                NewIntegration {
                    kind: "platform.zendesk".into(),
                    name: format!("scale_{i}"),
                    display_name: format!("Scale {i}"),
                    properties: IntegrationProperties {
                        start_date: Utc::now() - chrono::Duration::days(30),
                        frequency_in_minutes: 1440,
                        anchor_time: None,
                        cron_expression: None,
                        config: serde_json::json!({"subdomain": "acme", "email": "a@b.co"})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    },
                    sealed_credentials: Vec::new(),
                    created_at: Utc::now(),
                },
                &cipher(),
                &Credentials::default().with("api_token", "t"),
            )
            .await?;
        let mut selected = catalog();
        if let Some(tickets) = selected.get_mut("tickets") {
            tickets.set_selected(true);
        }
        admin.set_catalog(created.id, &selected).await?;
    }
    let factory = FakeFactory::default();
    let (cpu0, tx0, t0) = (
        postgres_cpu_seconds(),
        transactions(&stats).await?,
        Instant::now(),
    );
    let mut started = Vec::new();
    for w in 0..=workers {
        // One scheduler-only process, then the workers; each with a connection of its own.
        let metastore: Arc<dyn Metastore> = Arc::new(PostgresMetastore::connect(url, &schema).await?);
        let mut queue = QueueConfig::new(format!("w{w}"));
        queue.scheduler = w == 0;
        queue.worker = w > 0;
        queue.max_jobs = max_jobs;
        let config = SchedulerConfig {
            dispatch: Dispatch::Queue(queue),
            ..SchedulerConfig::default()
        };
        started.push(Scheduler::start(context(metastore, &factory), config).await?);
    }
    let expected = i64::try_from(integrations)?;
    let mut done = 0;
    while done < expected {
        tokio::time::sleep(Duration::from_millis(250)).await;
        done = stats
            .query_one(
                &format!("SELECT count(*) FROM \"{schema}\".jobs WHERE status = 'succeeded'"),
                &[],
            )
            .await?
            .try_get(0)?;
        if t0.elapsed() > Duration::from_secs(1800) {
            return Err(format!("only {done} of {expected} jobs done after 30 minutes").into());
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, tx) = (postgres_cpu_seconds() - cpu0, transactions(&stats).await? - tx0);
    // Then nothing is due for a day: what the schedule alone costs (its looks at every integration).
    let (idle_cpu0, idle_tx0) = (postgres_cpu_seconds(), transactions(&stats).await?);
    let idle = Duration::from_secs(IDLE_SECONDS);
    tokio::time::sleep(idle).await;
    let idle_cpu = postgres_cpu_seconds() - idle_cpu0;
    let idle_tx = transactions(&stats).await? - idle_tx0;
    for s in started {
        s.shutdown().await;
    }
    let jobs: Vec<_> = latest_jobs(admin.as_ref(), integrations).await?;
    let total: i64 = stats
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".jobs"), &[])
        .await?
        .try_get(0)?;
    // How long each job waited in the queue: its start (lease) minus when it was due.
    let mut late: Vec<f64> = stats
        .query(
            &format!(
                "SELECT EXTRACT(EPOCH FROM (start_time::timestamptz - due_time::timestamptz))::float8 \
                 FROM \"{schema}\".jobs WHERE due_time IS NOT NULL"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|r| r.try_get::<_, f64>(0))
        .collect::<Result<_, _>>()?;
    late.sort_by(f64::total_cmp);
    let at = |q: f64| {
        late.get(((late.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let bad = jobs.iter().filter(|s| **s != JobStatus::Succeeded).count();
    println!(
        "{integrations} integrations, 1 scheduler + {workers} workers x {max_jobs} jobs: {:.0} jobs/s \
         ({wall:.1} s), {:.1} metastore transactions per job, PostgreSQL {:.2} CPU-ms per job ({:.0}% of one core); \
         {total} jobs in all, {bad} integrations whose job did not succeed",
        expected as f64 / wall,
        tx as f64 / expected as f64,
        cpu * 1000.0 / expected as f64,
        cpu / wall * 100.0,
    );
    println!(
        "  all {integrations} due at once: waited in the queue p50 {:.1} s, p99 {:.1} s, max {:.1} s",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!(
        "  then idle ({IDLE_SECONDS} s, nothing due): {:.0} metastore transactions/s, PostgreSQL {:.1}% of one core",
        idle_tx as f64 / idle.as_secs_f64(),
        idle_cpu / idle.as_secs_f64() * 100.0,
    );
    stats
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    Ok(())
}

/// The status of every integration's latest job.
async fn latest_jobs(m: &dyn Metastore, integrations: usize) -> Result<Vec<JobStatus>, Error> {
    let mut out = Vec::with_capacity(integrations);
    for i in m.list_integrations(false).await? {
        if let Some(job) = m.list_jobs(i.id, 1).await?.into_iter().next() {
            out.push(job.status);
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::var("SEAM_TEST_POSTGRES_URL")
        .map_err(|_| "set SEAM_TEST_POSTGRES_URL to a PostgreSQL server on this machine")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let integrations: usize = args.first().map_or(Ok(1000), |a| a.parse())?;
    let workers: Vec<usize> = args
        .get(1)
        .map_or("1,2,4", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let max_jobs: usize = args.get(2).map_or(Ok(4), |a| a.parse())?;
    for w in workers {
        round(&url, integrations, w, max_jobs).await?;
    }
    Ok(())
}
