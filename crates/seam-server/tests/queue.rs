//! The job queue under paused tokio time: several schedulers in one test stand for the processes of a
//! cluster (each with its roles), sharing one metastore.

use crate::fakes::FakeFactory;
use crate::scheduler::{cipher, integration, sleep_minutes, t0};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use seam_metastore::*;
use seam_runtime::clock::TokioClock;
use seam_runtime::job::JobContext;
use seam_runtime::notify::InAppNotifier;
use seam_runtime::scheduler::{Dispatch, QueueConfig, Scheduler, SchedulerConfig};
use seam_runtime::telemetry::Telemetry;
use std::sync::Arc;
use std::time::Duration;

/// A process with `roles` (`s`: scheduler, `w`: worker; neither: API only) named `name`.
async fn process(
    m: &Arc<dyn Metastore>,
    factory: &FakeFactory,
    now: DateTime<Utc>,
    name: &str,
    roles: &str,
) -> Scheduler {
    let ctx = JobContext {
        metastore: Arc::clone(m),
        cipher: cipher(),
        factory: Arc::new(factory.clone()),
        notifier: Arc::new(InAppNotifier {
            metastore: Arc::clone(m),
        }),
        telemetry: Arc::new(Telemetry::default()),
        clock: Arc::new(TokioClock::starting_at(now)),
    };
    let mut queue = QueueConfig::new(name);
    queue.scheduler = roles.contains('s');
    queue.worker = roles.contains('w');
    Scheduler::start(
        ctx,
        SchedulerConfig {
            dispatch: Dispatch::Queue(queue),
            ..SchedulerConfig::default()
        },
    )
    .await
    .unwrap()
}

fn memory() -> Arc<dyn Metastore> {
    Arc::new(SqliteMetastore::open_in_memory().unwrap())
}

#[tokio::test(start_paused = true)]
async fn due_jobs_are_queued_and_run_by_a_worker() {
    let m = memory();
    let id = integration(m.as_ref(), "zendesk", "acme", |_| {}).await;
    let factory = FakeFactory::default();
    let api = process(&m, &factory, t0(), "api", "").await;
    let scheduler = process(&m, &factory, t0(), "scheduler", "s").await;
    sleep_minutes(1).await;
    let jobs = m.list_jobs(id, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::Pending, "no worker yet: queued");
    assert_eq!(
        jobs[0].due_time,
        Some(t0()),
        "due as soon as something is selected"
    );
    assert!(
        api.is_running(id).await,
        "a queued job counts as running for the API"
    );
    assert!(
        api.run_now(id).await.is_err(),
        "one job per integration, queued or running"
    );

    let worker = process(&m, &factory, t0() + ChronoDuration::minutes(1), "w1", "w").await;
    sleep_minutes(1).await;
    let jobs = m.list_jobs(id, 10).await.unwrap();
    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    assert_eq!(jobs[0].worker.as_deref(), Some("w1"));
    assert!(
        jobs[0].start_time >= t0() + ChronoDuration::minutes(1),
        "started when leased"
    );
    assert_eq!(factory.rows("zendesk", "tickets"), 25);

    // Run Extraction Now through the API process: queued, then run by the worker.
    let queued = api.run_now(id).await.unwrap();
    assert_eq!(queued.status, JobStatus::Pending);
    sleep_minutes(1).await;
    let run = m.get_job(queued.id).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.trigger),
        (JobStatus::Succeeded, JobTrigger::Manual)
    );
    for s in [api, scheduler, worker] {
        s.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_api_process_sees_progress_and_stops_a_job_another_process_runs() {
    let m = memory();
    let id = integration(m.as_ref(), "slow", "slow", |_| {}).await;
    let factory = FakeFactory::default();
    let api = process(&m, &factory, t0(), "api", "").await;
    let worker = process(&m, &factory, t0(), "w1", "sw").await;
    // The slow source sends a page a minute; the worker reports progress with each renewal.
    tokio::time::sleep(Duration::from_secs(150)).await;
    let progress = api.progress(id).await.expect("progress from the worker's report");
    assert!(progress.records_extracted >= 10, "{progress:?}");
    assert!(!progress.stopping);
    let job_id = api.stop(id).await.expect("a running job");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let job = m.get_job(job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    sleep_minutes(2).await;
    assert_eq!(
        m.list_jobs(id, 10).await.unwrap().len(),
        1,
        "a job the user stopped is not queued again"
    );
    api.shutdown().await;
    worker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_workers_job_is_failed_at_lease_end_and_resumed_by_another() {
    let m = memory();
    let id = integration(m.as_ref(), "zendesk", "acme", |_| {}).await;
    // A worker leased the job, then died: it never renews.
    m.enqueue_job(id, JobTrigger::Scheduled, t0())
        .await
        .unwrap()
        .unwrap();
    let dead = m
        .lease_job("dead", t0(), t0() + ChronoDuration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    let factory = FakeFactory::default();
    let live = process(&m, &factory, t0(), "w2", "sw").await;
    sleep_minutes(2).await;
    let dead = m.get_job(dead.id).await.unwrap().unwrap();
    assert_eq!(dead.status, JobStatus::Failed);
    assert!(
        dead.error_message.as_deref().unwrap_or("").contains("lease"),
        "{dead:?}"
    );
    let jobs = m.list_jobs(id, 10).await.unwrap();
    let resumed = &jobs[0];
    assert_eq!(
        (resumed.status, resumed.worker.as_deref()),
        (JobStatus::Succeeded, Some("w2"))
    );
    let after = resumed.start_time - dead.completion_time.unwrap();
    assert!(
        after < ChronoDuration::seconds(5),
        "resumed {after} after the lease ended"
    );
    assert!(
        dead.completion_time.unwrap() - t0() <= ChronoDuration::seconds(45),
        "the lease ended within half a lease of its end"
    );
    live.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_loses_its_lease_stops_its_job() {
    let m = memory();
    let id = integration(m.as_ref(), "slow", "slow", |_| {}).await;
    let factory = FakeFactory::default();
    let worker = process(&m, &factory, t0(), "w1", "w").await;
    let scheduler = process(&m, &factory, t0(), "s", "s").await;
    tokio::time::sleep(Duration::from_secs(70)).await;
    let running = m.active_job(id).await.unwrap().unwrap();
    assert_eq!(running.status, JobStatus::Running);
    // Another scheduler's clock says the lease ran out (a pause of this worker, a partition).
    let expired = m
        .expire_leases(t0() + ChronoDuration::hours(1), "lease ran out")
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    scheduler.shutdown().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        worker.progress(id).await.is_none(),
        "the worker stopped the job it no longer holds"
    );
    let rows = factory.rows("slow", "tickets");
    sleep_minutes(3).await;
    assert_eq!(factory.rows("slow", "tickets"), rows, "and commits nothing more");
    let job = m.get_job(running.id).await.unwrap().unwrap();
    assert_eq!(
        job.status,
        JobStatus::Failed,
        "its end does not overwrite the expiry: {job:?}"
    );
    worker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stopping_worker_queues_its_job_for_the_next_worker() {
    let m = memory();
    let id = integration(m.as_ref(), "slow", "slow", |_| {}).await;
    let factory = FakeFactory::default();
    let first = process(&m, &factory, t0(), "w1", "sw").await;
    tokio::time::sleep(Duration::from_secs(150)).await;
    first.shutdown().await;
    let jobs = m.list_jobs(id, 10).await.unwrap();
    assert_eq!(jobs[1].status, JobStatus::Cancelled, "stopped at a safe point");
    assert_eq!(jobs[0].status, JobStatus::Pending, "and queued again at once");
    let committed = factory.rows("slow", "tickets");
    assert!(committed >= 10, "{committed} rows");

    let second = process(&m, &factory, t0() + ChronoDuration::minutes(3), "w2", "sw").await;
    sleep_minutes(5).await;
    let jobs = m.list_jobs(id, 10).await.unwrap();
    assert_eq!(
        (jobs[0].status, jobs[0].worker.as_deref()),
        (JobStatus::Succeeded, Some("w2"))
    );
    assert_eq!(
        factory.rows("slow", "tickets"),
        25,
        "resumed from the bookmark: each row once"
    );
    second.shutdown().await;
}
