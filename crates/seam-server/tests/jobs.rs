//! Jobs that cannot wedge: a panic anywhere ends the job as failed (and Run Extraction Now works
//! right after), a stop ends a job within seconds whatever it waits on, shutdown is bounded, and
//! streams the source skipped end the job "succeeded with warnings".

use crate::fakes::{FakeFactory, GATED_REASON, PANIC_TEXT};
use crate::scheduler::{integration, sleep_minutes, start, start_with, starts, t0};
use crate::Harness;
use async_trait::async_trait;
use chrono::Utc;
use reqwest::StatusCode;
use seam_metastore::*;
use seam_runtime::job::WARNING_SUBJECT;
use seam_runtime::notify::Notifier;
use seam_runtime::scheduler::{consecutive_failures, integration_status, IntegrationStatus};
use seam_test_support::{wait_for_async, wait_until_async};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn memory() -> Arc<dyn Metastore> {
    Arc::new(SqliteMetastore::open_in_memory().unwrap())
}

/// The job once the metastore holds its end (at most a minute from now; `what` names the wait).
async fn ended(m: &dyn Metastore, job_id: i64, what: &str) -> Job {
    wait_for_async(Duration::from_secs(60), what, async || {
        m.get_job(job_id)
            .await
            .unwrap()
            .filter(|j| j.status != JobStatus::Running)
    })
    .await
}

async fn log_text(m: &dyn Metastore, job_id: i64) -> String {
    m.job_logs(job_id)
        .await
        .unwrap()
        .iter()
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_source_or_the_warehouse_fails_the_job_and_run_now_works_again() {
    // (integration name = warehouse schema, subdomain, what the error must blame)
    let cases = [
        ("discover", "panicdiscover", "the source panicked"),
        ("read", "panicread", "the source panicked"),
        ("panicload", "acme", "the loader panicked"),
    ];
    for (name, subdomain, blame) in cases {
        let m = memory();
        let id = integration(m.as_ref(), name, subdomain, |_| {}).await;
        let w = start(Arc::clone(&m), FakeFactory::default(), t0()).await;
        sleep_minutes(1).await;
        let jobs = m.list_jobs(id, 10).await.unwrap();
        assert_eq!(jobs.len(), 1, "{name}: {jobs:?}");
        let job = &jobs[0];
        assert_eq!(job.status, JobStatus::Failed, "{name}: {job:?}");
        let message = job.error_message.clone().unwrap_or_default();
        assert!(
            message.contains(blame) && message.contains(PANIC_TEXT),
            "{name}: {message}"
        );
        assert!(!w.scheduler.is_running(id).await, "{name}: still marked running");
        let log = log_text(m.as_ref(), job.id).await;
        assert!(
            log.contains(&format!("- CRITICAL {message}")),
            "{name}: no CRITICAL line with the panic: {log}"
        );
        let notes = m.list_notifications(false, 10).await.unwrap();
        assert!(
            notes.iter().any(|n| n.integration_id == Some(id)
                && n.level == NotificationLevel::Critical
                && n.message.contains(PANIC_TEXT)),
            "{name}: {notes:?}"
        );
        // Run Extraction Now is accepted right away (no 409), and fails the same way.
        let again = w
            .scheduler
            .run_now(id)
            .await
            .unwrap_or_else(|e| panic!("{name}: run now after a panic: {e}"));
        sleep_minutes(1).await;
        let again = m.get_job(again.id).await.unwrap().unwrap();
        assert_eq!(again.status, JobStatus::Failed, "{name}: {again:?}");
        w.scheduler.shutdown().await;
    }
}

/// A notifier whose delivery panics (a bug in a webhook client, say).
#[derive(Debug)]
struct PanickingNotifier;

#[async_trait]
impl Notifier for PanickingNotifier {
    async fn notify(&self, _notification: NewNotification) {
        panic!("the webhook client panicked");
    }
}

/// A panic in the job runner's own bookkeeping (here: raising the failure's notification) still
/// ends the job as failed and frees the integration for the next job.
#[tokio::test(start_paused = true)]
async fn a_panic_in_the_job_runner_itself_does_not_leave_the_job_running() {
    let m = memory();
    let id = integration(m.as_ref(), "failing", "failing", |_| {}).await;
    let w = start_with(
        Arc::clone(&m),
        FakeFactory::default(),
        t0(),
        Arc::new(PanickingNotifier),
    )
    .await;
    sleep_minutes(1).await;
    let jobs = m.list_jobs(id, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, JobStatus::Failed, "{:?}", jobs[0]);
    let message = jobs[0].error_message.clone().unwrap_or_default();
    assert!(
        message.contains("the job runner panicked: the webhook client panicked"),
        "{message}"
    );
    assert!(!w.scheduler.is_running(id).await);
    let again = w.scheduler.run_now(id).await.expect("run now after a panic");
    sleep_minutes(1).await;
    assert_eq!(
        m.get_job(again.id).await.unwrap().unwrap().status,
        JobStatus::Failed
    );
    w.scheduler.shutdown().await;
}

/// A source that ignores the stop and never returns: the job still ends `cancelled` within 5 s of
/// Stop Extraction (the source gets a few seconds, then is abandoned), nothing it sent after the
/// last commit is kept, and the next job can start.
#[tokio::test(start_paused = true)]
async fn stop_ends_a_job_whose_source_never_returns() {
    let m = memory();
    let id = integration(m.as_ref(), "stuck", "stuck", |_| {}).await;
    let w = start(Arc::clone(&m), FakeFactory::default(), t0()).await;
    sleep_minutes(1).await;
    assert!(w.scheduler.is_running(id).await);
    assert_eq!(w.scheduler.progress(id).await.unwrap().records_extracted, 10);
    let stopped_at = w.scheduler.context().clock.now();
    let job_id = w.scheduler.stop(id).await.expect("a running job");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let job = m.get_job(job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    let took = job.completion_time.unwrap() - stopped_at;
    assert!(
        took <= chrono::Duration::seconds(5),
        "the job ended {took} after the stop"
    );
    assert!(!w.scheduler.is_running(id).await);
    let log = log_text(m.as_ref(), job_id).await;
    assert!(
        log.contains("WARNING the source did not stop within 3 s of the stop"),
        "{log}"
    );
    assert_eq!(
        w.factory.rows("stuck", "tickets"),
        0,
        "records after the last commit are not kept"
    );

    // The next job starts; shutdown with it stuck is bounded too.
    let next = w.scheduler.run_now(id).await.expect("run now after a stop");
    sleep_minutes(1).await;
    assert!(w.scheduler.is_running(id).await);
    tokio::time::timeout(Duration::from_secs(30), w.scheduler.shutdown())
        .await
        .expect("shutdown waits for a stuck source forever");
    assert_eq!(
        m.get_job(next.id).await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );
}

/// A source that ignores the stop and keeps sending (a paginator that never ends): the job ends
/// `cancelled` within seconds of Stop Extraction, and the log blames the source. (The grace used to
/// run out during one of the loader's warehouse calls, busy with what the source kept sending: the
/// job abandoned that call mid-commit and told the user their warehouse did not stop.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_job_whose_source_keeps_sending() {
    let m = memory();
    let id = integration(m.as_ref(), "flood", "flood", |_| {}).await;
    let w = start(Arc::clone(&m), FakeFactory::default(), Utc::now()).await;
    wait_for_async(
        Duration::from_secs(30),
        "the job to read thousands of records",
        async || {
            w.scheduler
                .progress(id)
                .await
                .filter(|p| p.records_extracted > 5_000)
        },
    )
    .await;
    let stopped = Instant::now();
    let job_id = w.scheduler.stop(id).await.expect("a running job");
    // Generous: the grace is 3 s, and a warehouse call begun after the stop gets 3 s more at most.
    let job = ended(m.as_ref(), job_id, "the job to end after the stop").await;
    let took = stopped.elapsed();
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    assert!(
        took < Duration::from_secs(20),
        "the job ended {took:?} after the stop"
    );
    let log = log_text(m.as_ref(), job_id).await;
    assert!(
        log.contains("WARNING the source did not stop within 3 s of the stop"),
        "{log}"
    );
    assert!(!w.scheduler.is_running(id).await);
    assert!(w.scheduler.shutdown_within(Duration::from_secs(10)).await);
}

/// The metastore refuses the write that ends a job (here another process holds SQLite's write lock
/// past the busy timeout; a full disk refuses it the same way): the job keeps trying, and once the
/// metastore takes writes again it shows how the job ended. Before, the job stayed `running` in the
/// metastore until seam restarted, and Run Extraction Now answered 409 for that integration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_end_the_metastore_refused_records_it_once_the_metastore_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metastore.sqlite");
    let m: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open(&path).unwrap());
    let id = integration(m.as_ref(), "stuck", "stuck", |_| {}).await;
    let w = start(Arc::clone(&m), FakeFactory::default(), Utc::now()).await;
    wait_for_async(
        Duration::from_secs(30),
        "the job to read its first page",
        async || {
            w.scheduler
                .progress(id)
                .await
                .filter(|p| p.records_extracted >= 10)
        },
    )
    .await;
    // Another process takes the metastore's write lock, then the job is stopped: it ends (its source
    // abandoned after the grace) while nothing can be written.
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let job_id = w.scheduler.stop(id).await.expect("a running job");
    tokio::time::sleep(Duration::from_secs(12)).await;
    let held = m.get_job(job_id).await.unwrap().unwrap();
    assert_eq!(
        held.status,
        JobStatus::Running,
        "the lock let a write through: {held:?}"
    );
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    let job = ended(
        m.as_ref(),
        job_id,
        "the job's end to be recorded once the metastore takes writes",
    )
    .await;
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    wait_until_async(
        Duration::from_secs(10),
        "the job to leave the scheduler",
        async || !w.scheduler.is_running(id).await,
    )
    .await;
    let next = w
        .scheduler
        .run_now(id)
        .await
        .expect("run now once the end is recorded");
    assert_ne!(next.id, job_id);
    assert!(w.scheduler.shutdown_within(Duration::from_secs(30)).await);
}

/// A connection check that never answers does not hold shutdown; it ends failed, saying why.
#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_for_a_hanging_connection_check() {
    let m = memory();
    let id = integration(m.as_ref(), "hangcheck", "hangcheck", |_| {}).await;
    let w = start(Arc::clone(&m), FakeFactory::default(), t0()).await;
    let check = w.scheduler.start_check(id).await.unwrap();
    sleep_minutes(5).await;
    assert_eq!(
        m.last_check(id).await.unwrap().unwrap().status,
        CheckStatus::Running
    );
    tokio::time::timeout(Duration::from_secs(30), w.scheduler.shutdown())
        .await
        .expect("shutdown waits for a hanging check forever");
    let check = m
        .last_check(id)
        .await
        .unwrap()
        .filter(|c| c.id == check.id)
        .unwrap();
    assert_eq!(check.status, CheckStatus::Failed);
    assert!(
        check
            .check_error_message
            .as_deref()
            .is_some_and(|m| m.contains("seam stopped during the connection check")),
        "{check:?}"
    );
}

/// A warehouse that keeps answering "rate limited, retry in a minute": the job waits to retry its
/// commit on a blocking thread; Stop Extraction ends that wait and the job within 5 s (real time),
/// with nothing committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_job_waiting_to_retry_a_commit() {
    let m = memory();
    let id = integration(m.as_ref(), "ratelimitedwh", "acme", |_| {}).await;
    let w = start(Arc::clone(&m), FakeFactory::default(), Utc::now()).await;
    wait_for_async(
        Duration::from_secs(30),
        "the job to read every record",
        async || {
            w.scheduler
                .progress(id)
                .await
                .filter(|p| p.records_extracted == crate::fakes::RECORDS)
        },
    )
    .await;
    // Let the commit fail once and its retry wait begin.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = Instant::now();
    let job_id = w.scheduler.stop(id).await.expect("a running job");
    let job = wait_for_async(Duration::from_secs(90), "the job to end", async || {
        m.get_job(job_id)
            .await
            .unwrap()
            .filter(|j| j.status != JobStatus::Running)
    })
    .await;
    let took = stopped.elapsed();
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    assert!(
        took < Duration::from_secs(5),
        "the job ended {took:?} after the stop"
    );
    let log = log_text(m.as_ref(), job_id).await;
    assert!(log.contains("stopped while retrying a failed commit"), "{log}");
    assert_eq!(w.factory.rows("ratelimitedwh", "tickets"), 0);
    w.scheduler.run_now(id).await.expect("run now after a stop");
    assert!(w.scheduler.shutdown_within(Duration::from_secs(10)).await);
}

async fn select_tickets_and_users(m: &dyn Metastore, id: i64) {
    let mut c = crate::fakes::catalog();
    c.get_mut("tickets").unwrap().set_selected(true);
    c.get_mut("users").unwrap().set_selected(true);
    m.set_catalog(id, &c).await.unwrap();
}

/// Streams the source skipped (a 403 for a plan-gated endpoint) end the job
/// `succeeded_with_warnings` naming them and why, with a Warning notification; it counts as a
/// success for the schedule and the integration's status.
#[tokio::test(start_paused = true)]
async fn skipped_streams_end_the_job_with_warnings() {
    let m = memory();
    let id = integration(m.as_ref(), "gated", "gated", |_| {}).await;
    select_tickets_and_users(m.as_ref(), id).await;
    let w = start(Arc::clone(&m), FakeFactory::default(), t0()).await;
    sleep_minutes(1).await;
    let jobs = m.list_jobs(id, 10).await.unwrap();
    let job = &jobs[0];
    assert_eq!(job.status, JobStatus::SucceededWithWarnings, "{job:?}");
    assert_eq!(job.error_message, None);
    let warning = job.warning_message.clone().unwrap_or_default();
    assert!(
        warning.contains("users") && warning.contains(GATED_REASON) && !warning.contains("tickets"),
        "{warning}"
    );
    assert_eq!(w.factory.rows("gated", "tickets"), 25, "the rest was replicated");
    let log = log_text(m.as_ref(), job.id).await;
    assert!(log.contains("tap - WARNING skipped users"), "{log}");
    let notes = m.list_notifications(false, 10).await.unwrap();
    let note = notes
        .iter()
        .find(|n| n.level == NotificationLevel::Warning)
        .unwrap_or_else(|| panic!("no warning notification: {notes:?}"));
    assert_eq!(note.subject, WARNING_SUBJECT);
    assert!(note.message.contains("users"), "{}", note.message);
    let integration = m.get_integration(id).await.unwrap().unwrap();
    assert_eq!(consecutive_failures(&jobs), 0);
    assert_eq!(integration_status(&integration, &jobs), IntegrationStatus::Active);
    sleep_minutes(30).await;
    assert_eq!(
        starts(m.as_ref(), id).await,
        vec![0, 30],
        "no backoff: the next job runs on schedule"
    );
    w.scheduler.shutdown().await;
}

/// The same over HTTP: the Extraction shape carries the status and the warning, the source stays
/// Active, the notification is a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractions_show_succeeded_with_warnings_over_http() {
    let h = Harness::start().await;
    let (source, _) = h.api.create("Gated Zendesk", "gated").await;
    let id = source["id"].as_i64().unwrap();
    h.api.select_all(id).await;
    let jobs = h
        .api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |v| {
            v.as_array()
                .is_some_and(|a| !a.is_empty() && a[0]["status"] != "running")
        })
        .await;
    let job = &jobs[0];
    assert_eq!(job["status"], "succeeded_with_warnings", "{job}");
    assert_eq!(job["error_message"], Value::Null);
    let warning = job["warning_message"].as_str().unwrap_or_default();
    assert!(
        warning.contains("users") && warning.contains(GATED_REASON),
        "{job}"
    );
    let (_, one) = h
        .api
        .get(&format!("/v4/sources/{id}/extractions/{}", job["job_id"]))
        .await;
    assert_eq!(one["status"], "succeeded_with_warnings");
    let (status, source) = h.api.get(&format!("/v4/sources/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(source["status"], "Active", "{source}");
    assert_eq!(source["consecutive_failures"], 0);
    let (_, notes) = h.api.get("/v4/notifications").await;
    assert!(
        notes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["level"] == "warning" && n["subject"] == WARNING_SUBJECT && n["source_id"] == id),
        "{notes}"
    );
    assert!(h.service.shutdown().await);
}

/// `Service::shutdown_within` with a job whose source never returns: the service stops within the
/// bound, and the job is recorded `cancelled`, not left `running`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_shutdown_is_bounded_with_a_stuck_job() {
    let h = Harness::start().await;
    let (source, _) = h.api.create("Stuck", "stuck").await;
    let id = source["id"].as_i64().unwrap();
    h.api.select_all(id).await;
    h.api
        .wait_for(&format!("/v4/sources/{id}/extractions/current"), |p| {
            p["records_extracted"] == 10
        })
        .await;
    let metastore = h.service.state().metastore.clone();
    let started = Instant::now();
    let clean = tokio::time::timeout(
        Duration::from_secs(60),
        h.service.shutdown_within(Duration::from_secs(20)),
    )
    .await
    .expect("shutdown did not return within a minute");
    let took = started.elapsed();
    assert!(clean, "the stuck job was not stopped within the grace");
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    let jobs = metastore.list_jobs(id, 10).await.unwrap();
    assert_eq!(jobs[0].status, JobStatus::Cancelled, "{:?}", jobs[0]);
}
