//! The scheduler under paused tokio time: frequencies, overruns, backoff, pause, restart, shutdown.

use crate::fakes::{catalog, FakeFactory};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use seam_metastore::*;
use seam_runtime::clock::TokioClock;
use seam_runtime::job::JobContext;
use seam_runtime::notify::InAppNotifier;
use seam_runtime::scheduler::{Scheduler, SchedulerConfig};
use seam_runtime::telemetry::Telemetry;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).single().unwrap()
}

pub(crate) fn cipher() -> SecretCipher {
    SecretCipher::from_key([3; 32])
}

#[allow(dead_code)]
pub(crate) struct World {
    pub(crate) metastore: Arc<dyn Metastore>,
    pub(crate) factory: FakeFactory,
    pub(crate) scheduler: Scheduler,
}

pub(crate) async fn start(metastore: Arc<dyn Metastore>, factory: FakeFactory, now: DateTime<Utc>) -> World {
    let notifier = Arc::new(InAppNotifier {
        metastore: Arc::clone(&metastore),
    });
    start_with(metastore, factory, now, notifier).await
}

/// [`start`] with a chosen notifier.
pub(crate) async fn start_with(
    metastore: Arc<dyn Metastore>,
    factory: FakeFactory,
    now: DateTime<Utc>,
    notifier: Arc<dyn seam_runtime::notify::Notifier>,
) -> World {
    let ctx = JobContext {
        metastore: Arc::clone(&metastore),
        cipher: cipher(),
        factory: Arc::new(factory.clone()),
        notifier,
        telemetry: Arc::new(Telemetry::default()),
        clock: Arc::new(TokioClock::starting_at(now)),
    };
    let scheduler = Scheduler::start(
        ctx,
        SchedulerConfig {
            max_sleep: Duration::from_secs(60),
            ..SchedulerConfig::default()
        },
    )
    .await
    .unwrap();
    World {
        metastore,
        factory,
        scheduler,
    }
}

pub(crate) async fn integration(
    m: &dyn Metastore,
    name: &str,
    subdomain: &str,
    props: impl FnOnce(&mut IntegrationProperties),
) -> i64 {
    let mut p = IntegrationProperties {
        start_date: t0() - ChronoDuration::days(365),
        frequency_in_minutes: 30,
        anchor_time: None,
        cron_expression: None,
        config: serde_json::json!({"subdomain": subdomain, "email": "a@b.co"})
            .as_object()
            .cloned()
            .unwrap(),
    };
    props(&mut p);
    let creds = Credentials::default().with("api_token", "t");
    let i = m
        .create_integration_sealed(
            NewIntegration {
                display_name: name.into(),
                name: name.into(),
                kind: seam_zendesk::spec::TYPE.into(),
                properties: p,
                sealed_credentials: Vec::new(),
                created_at: t0(),
            },
            &cipher(),
            &creds,
        )
        .await
        .unwrap();
    let mut c = catalog();
    c.get_mut("tickets").unwrap().set_selected(true);
    m.set_catalog(i.id, &c).await.unwrap();
    i.id
}

/// Job start times, oldest first, as minutes after t0.
pub(crate) async fn starts(m: &dyn Metastore, id: i64) -> Vec<i64> {
    let mut jobs = m.list_jobs(id, 1000).await.unwrap();
    jobs.reverse();
    jobs.iter().map(|j| (j.start_time - t0()).num_minutes()).collect()
}

pub(crate) async fn sleep_minutes(m: u64) {
    tokio::time::sleep(Duration::from_secs(m * 60)).await;
}

#[tokio::test(start_paused = true)]
async fn runs_every_30_minutes_from_the_previous_start() {
    let m: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open_in_memory().unwrap());
    let id = integration(m.as_ref(), "zendesk", "acme", |_| {}).await;
    let w = start(Arc::clone(&m), FakeFactory::default(), t0()).await;
    sleep_minutes(125).await;
    assert_eq!(starts(m.as_ref(), id).await, vec![0, 30, 60, 90, 120]);
    let jobs = m.list_jobs(id, 10).await.unwrap();
    assert!(jobs
        .iter()
        .all(|j| j.status == JobStatus::Succeeded && j.trigger == JobTrigger::Scheduled));
    assert_eq!(w.factory.rows("zendesk", "tickets"), 25);
    w.scheduler.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn hourly_anchor_and_cron_schedules() {
    let m: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open_in_memory().unwrap());
    let anchored = integration(m.as_ref(), "anchored", "acme", |p| {
        p.frequency_in_minutes = 180;
        p.anchor_time = Some(t0() + ChronoDuration::minutes(45) - ChronoDuration::days(10));
    })
    .await;
    let cron = integration(m.as_ref(), "cron", "acme", |p| {
        p.cron_expression = Some("0 15 * ? * *".into())
    })
    .await;
    let w = start(Arc::clone(&m), FakeFactory::default(), t0()).await;
    sleep_minutes(7 * 60).await;
    assert_eq!(
        starts(m.as_ref(), anchored).await,
        vec![45, 225, 405],
        "10:45, 13:45, 16:45"
    );
    assert_eq!(
        starts(m.as_ref(), cron).await,
        vec![15, 75, 135, 195, 255, 315, 375],
        "every hour at :15"
    );
    w.scheduler.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_overrunning_job_skips_its_slot() {
    let m: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open_in_memory().unwrap());
    // One job at a time: a slow job (3 pages, a minute each) blocks a manual start.
    let id = integration(m.as_ref(), "slow", "slow", |_| {}).await;
    let w = start(Arc::clone(&m), FakeFactory::default(), t0()).await;
    sleep_minutes(1).await;
    assert_eq!(starts(m.as_ref(), id).await, vec![0]);
    assert!(w.scheduler.is_running(id).await);
    let err = w.scheduler.run_now(id).await.unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
    sleep_minutes(5).await;
    let jobs = m.list_jobs(id, 10).await.unwrap();
    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    assert_eq!(
        (jobs[0].completion_time.unwrap() - jobs[0].start_time).num_minutes(),
        3,
        "three slow pages"
    );
    w.scheduler.shutdown().await;

    // Now a slot overrun, with the rules fed a job that ran 40 minutes of a 30-minute schedule.
    let m2: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open_in_memory().unwrap());
    let id2 = integration(m2.as_ref(), "overrun", "acme", |_| {}).await;
    let job = m2.create_job(id2, JobTrigger::Scheduled, t0()).await.unwrap();
    m2.finish_job(
        job.id,
        &JobFinish {
            status: JobStatus::Succeeded,
            completion_time: t0() + ChronoDuration::minutes(40),
            discovery_exit_status: Some(0),
            tap_exit_status: Some(0),
            target_exit_status: Some(0),
            error_message: None,
            warning_message: None,
        },
    )
    .await
    .unwrap();
    let w2 = start(
        Arc::clone(&m2),
        FakeFactory::default(),
        t0() + ChronoDuration::minutes(40),
    )
    .await;
    sleep_minutes(25).await;
    assert_eq!(
        starts(m2.as_ref(), id2).await,
        vec![0, 60],
        "the 00:30 slot was skipped"
    );
    w2.scheduler.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failing_integrations_back_off_and_paused_ones_wait() {
    let m: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open_in_memory().unwrap());
    let failing = integration(m.as_ref(), "failing", "failing", |_| {}).await;
    let paused = integration(m.as_ref(), "paused", "acme", |_| {}).await;
    let i = m.get_integration(paused).await.unwrap().unwrap();
    m.update_integration(
        paused,
        IntegrationUpdate {
            display_name: i.display_name,
            properties: i.properties,
            sealed_credentials: i.sealed_credentials,
            paused_at: Some(t0()),
            updated_at: t0(),
        },
    )
    .await
    .unwrap();
    let w = start(Arc::clone(&m), FakeFactory::default(), t0()).await;
    sleep_minutes(4 * 60 + 5).await;
    // Failures at 0; +30 (1 failure); +60 more (2); +120 more (3) → 0, 30, 90, 210.
    assert_eq!(starts(m.as_ref(), failing).await, vec![0, 30, 90, 210]);
    let jobs = m.list_jobs(failing, 10).await.unwrap();
    assert!(jobs.iter().all(|j| j.status == JobStatus::Failed));
    let notes = m.list_notifications(false, 100).await.unwrap();
    assert_eq!(
        notes.iter().filter(|n| n.code == "platform.exit_status").count(),
        4
    );
    assert!(
        starts(m.as_ref(), paused).await.is_empty(),
        "paused: no scheduled job"
    );
    let manual = w.scheduler.run_now(paused).await.unwrap();
    assert_eq!(manual.trigger, JobTrigger::Manual);
    sleep_minutes(1).await;
    assert_eq!(
        m.get_job(manual.id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
    w.scheduler.shutdown().await;
}

/// Shutdown mid-job keeps committed work; a restart resumes the schedule from the metastore.
#[tokio::test(start_paused = true)]
async fn graceful_shutdown_and_restart_resume_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    let m: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open(&path).unwrap());
    let slow = integration(m.as_ref(), "slow", "slow", |_| {}).await;
    let quick = integration(m.as_ref(), "quick", "acme", |_| {}).await;
    let factory = FakeFactory::default();
    let w = start(Arc::clone(&m), factory.clone(), t0()).await;
    // The slow job commits one page a minute; stop after two pages.
    tokio::time::sleep(Duration::from_secs(150)).await;
    assert!(w.scheduler.is_running(slow).await);
    let progress = w.scheduler.progress(slow).await.unwrap();
    assert_eq!(progress.current_stream.as_deref(), Some("tickets"));
    assert_eq!(progress.records_extracted, 20);
    w.scheduler.shutdown().await;
    let jobs = m.list_jobs(slow, 10).await.unwrap();
    assert_eq!(jobs[0].status, JobStatus::Cancelled, "stopped at a safe point");
    assert_eq!(factory.rows("slow", "tickets"), 20, "committed pages are kept");
    let state = m.get_integration(slow).await.unwrap().unwrap().state.unwrap();
    assert_eq!(
        state.bookmark("tickets", "id"),
        Some(&serde_json::json!(20)),
        "bookmark of the last commit"
    );
    assert_eq!(starts(m.as_ref(), quick).await, vec![0]);
    drop(w);

    // Restart 10 minutes later (virtual): nothing runs until 30 minutes after the previous starts.
    let m: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open(&path).unwrap());
    let now = t0() + ChronoDuration::minutes(12);
    let w = start(Arc::clone(&m), factory.clone(), now).await;
    sleep_minutes(10).await;
    assert_eq!(
        starts(m.as_ref(), quick).await,
        vec![0],
        "restart does not run early"
    );
    sleep_minutes(10).await;
    assert_eq!(starts(m.as_ref(), quick).await, vec![0, 30]);
    assert_eq!(starts(m.as_ref(), slow).await, vec![0, 30]);
    sleep_minutes(5).await;
    let jobs = m.list_jobs(slow, 10).await.unwrap();
    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    assert_eq!(
        factory.rows("slow", "tickets"),
        25,
        "resumed from the bookmark and finished"
    );
    w.scheduler.shutdown().await;

    // A process that died mid-job (started at minute 50): its job is marked failed at the next
    // start (minute 55), and a new one starts at once instead of at the next slot (minute 80).
    let before = starts(m.as_ref(), quick).await;
    let job = m
        .create_job(quick, JobTrigger::Manual, t0() + ChronoDuration::minutes(50))
        .await
        .unwrap();
    let w = start(
        Arc::clone(&m),
        factory.clone(),
        t0() + ChronoDuration::minutes(55),
    )
    .await;
    let stale = m.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(stale.status, JobStatus::Failed);
    assert!(stale.error_message.unwrap().contains("seam stopped"));
    sleep_minutes(1).await;
    let mut want = before.clone();
    want.extend([50, 55]);
    assert_eq!(starts(m.as_ref(), quick).await, want, "resumed at once");
    let resumed = &m.list_jobs(quick, 1).await.unwrap()[0];
    assert_eq!(resumed.status, JobStatus::Succeeded, "{resumed:?}");
    w.scheduler.shutdown().await;

    // One that keeps failing is left to its schedule's backoff: no resume loop.
    for minute in [60, 61] {
        let j = m
            .create_job(
                quick,
                JobTrigger::Scheduled,
                t0() + ChronoDuration::minutes(minute),
            )
            .await
            .unwrap();
        let finish = seam_metastore::JobFinish {
            status: JobStatus::Failed,
            completion_time: t0() + ChronoDuration::minutes(minute),
            discovery_exit_status: None,
            tap_exit_status: Some(1),
            target_exit_status: None,
            error_message: Some("zendesk answered 500".into()),
            warning_message: None,
        };
        m.finish_job(j.id, &finish).await.unwrap();
    }
    m.create_job(quick, JobTrigger::Manual, t0() + ChronoDuration::minutes(62))
        .await
        .unwrap();
    let w = start(Arc::clone(&m), factory, t0() + ChronoDuration::minutes(63)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        starts(m.as_ref(), quick).await.last(),
        Some(&62),
        "three failures in a row: not resumed at once"
    );
    w.scheduler.shutdown().await;
}

/// With `stop_replication_at_limit`, scheduled jobs stop once the period's rows reach the limit (after
/// a notification); manual runs still go.
#[tokio::test(start_paused = true)]
async fn stop_at_limit_only_when_asked() {
    let m: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open_in_memory().unwrap());
    let id = integration(m.as_ref(), "limited", "acme", |_| {}).await;
    m.set_setting(seam_runtime::usage::SETTING_ROW_LIMIT, "60")
        .await
        .unwrap();
    m.set_setting(seam_runtime::usage::SETTING_STOP_AT_LIMIT, "true")
        .await
        .unwrap();
    let w = start(Arc::clone(&m), FakeFactory::default(), t0()).await;
    sleep_minutes(95).await;
    // The first job loads 75 rows (tickets + tags) > 60: nothing scheduled after it.
    assert_eq!(starts(m.as_ref(), id).await, vec![0]);
    let notes = m.list_notifications(false, 10).await.unwrap();
    assert_eq!(notes[0].code, "usage-reached-limit");
    assert!(
        notes[0]
            .message
            .contains("Scheduled replication stops at the limit"),
        "{}",
        notes[0].message
    );
    let manual = w.scheduler.run_now(id).await.unwrap();
    sleep_minutes(1).await;
    assert_eq!(
        m.get_job(manual.id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
    // Without the flag, replication goes on past the limit.
    m.set_setting(seam_runtime::usage::SETTING_STOP_AT_LIMIT, "false")
        .await
        .unwrap();
    w.scheduler.changed();
    sleep_minutes(31).await;
    assert_eq!(starts(m.as_ref(), id).await.len(), 3);
    w.scheduler.shutdown().await;
}
