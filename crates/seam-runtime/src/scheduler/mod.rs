//! The scheduler: decides when each integration's next replication job starts, starts it, and keeps
//! at most one job per integration running.
//!
//! Rules (Stitch's):
//! - a schedule is a frequency (30, 60, 180, 360, 720 or 1440 minutes), a frequency of an hour or more
//!   with an anchor time (runs on `anchor + k * frequency`), or a Quartz cron expression (UTC), which
//!   wins over the other two;
//! - the next run counts from the previous job's start; a job that overruns its slot makes the
//!   scheduler skip that slot (no catch-up burst); slots missed while seam was down give one run at
//!   start-up;
//! - a new integration runs as soon as something is selected (frequency) or at the next anchor/cron
//!   occurrence after it was created;
//! - paused and not-configured integrations get no scheduled jobs; "Run Extraction Now" still works on
//!   a paused one;
//! - an integration that keeps failing backs off: after `n` consecutive failed jobs the next run waits
//!   `min(2^(n-1), 16)` slots (at most a day for frequency schedules);
//! - everything the rules read lives in the metastore (jobs and their times), so the schedule survives
//!   restarts; jobs left `running` by a dead process are marked failed at start-up, and their
//!   integrations start a job at once (it resumes from the committed bookmarks) unless they keep
//!   failing.
//!
//! Jobs run in this process ([`Dispatch::Local`], the default, with the SQLite metastore), or go
//! through the metastore's job queue ([`Dispatch::Queue`], PostgreSQL) so that any number of
//! processes share the work: one active scheduler queues due jobs, workers lease them (see
//! [`queue`]).
//!
//! Time comes from the jobs' [`Clock`](crate::clock::Clock); [`TokioClock`](crate::clock::TokioClock)
//! follows tokio's clock, so tests drive the scheduler with paused time.

use crate::job::{fail_after_panic, run_check, run_job, JobConfig, JobContext};
use crate::pipeline::{panic_message, Progress};
use crate::progress::JobProgress;
use crate::usage::{check_usage_thresholds, usage_summary};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::FutureExt as _;
use seam_metastore::{
    CheckStatus, ConnectionCheck, Integration, IntegrationId, IntegrationProperties, Job, JobStatus,
    JobTrigger, MetastoreError,
};
use serde::Serialize;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub mod queue;
pub use queue::{QueueConfig, SCHEDULER_ROLE};

/// Replication frequencies seam offers, in minutes (default first).
pub const FREQUENCIES: [u32; 6] = [30, 60, 180, 360, 720, 1440];
/// The default frequency.
pub const DEFAULT_FREQUENCY_MINUTES: u32 = 30;
/// Most slots a failing integration skips.
pub const MAX_BACKOFF_SLOTS: u32 = 16;
/// Jobs read per integration to decide its schedule and status.
const RECENT_JOBS: u32 = 20;
/// An interrupted job is resumed at start-up only while its integration has at most this many
/// consecutive failed jobs (the interrupted one counts).
pub const RESUME_AFTER_FAILURES: u32 = 2;

/// Why a schedule is invalid. Messages name the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    /// Not one of [`FREQUENCIES`].
    #[error("frequency_in_minutes {value} is not offered: use one of 30, 60, 180, 360, 720, 1440")]
    Frequency {
        /// The value given.
        value: String,
    },
    /// Anchor with a frequency under an hour.
    #[error("anchor_time needs frequency_in_minutes of 60 or more (got {frequency})")]
    AnchorTooFrequent {
        /// The frequency.
        frequency: u32,
    },
    /// A cron expression Quartz would refuse.
    #[error("cron_expression {expression:?} is invalid: {reason}")]
    Cron {
        /// The expression.
        expression: String,
        /// The rule it breaks.
        reason: String,
    },
}

/// When an integration runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every `every`, counted from the previous job's start.
    Frequency {
        /// Interval.
        every: ChronoDuration,
    },
    /// On `anchor + k * every`.
    Anchored {
        /// Interval (an hour or more).
        every: ChronoDuration,
        /// Any occurrence.
        anchor: DateTime<Utc>,
    },
    /// Quartz cron, UTC.
    Cron {
        /// The parsed expression.
        cron: Box<croner::Cron>,
        /// As written.
        expression: String,
    },
}

/// Checks a frequency value.
pub fn validate_frequency(minutes: u32) -> Result<u32, ScheduleError> {
    if FREQUENCIES.contains(&minutes) {
        Ok(minutes)
    } else {
        Err(ScheduleError::Frequency {
            value: minutes.to_string(),
        })
    }
}

/// Parses a Quartz cron expression: 6 fields (`sec min hour day-of-month month day-of-week`) or 7 with a
/// year; seconds must be `0`; exactly one of day-of-month and day-of-week is `?`; evaluated in UTC.
pub fn parse_quartz_cron(expression: &str) -> Result<croner::Cron, ScheduleError> {
    let bad = |reason: &str| ScheduleError::Cron {
        expression: expression.to_owned(),
        reason: reason.to_owned(),
    };
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != 6 && fields.len() != 7 {
        return Err(bad(&format!(
            "expected 6 fields (seconds minutes hours day-of-month month day-of-week) or 7 with a year, got {}",
            fields.len()
        )));
    }
    if fields[0] != "0" {
        return Err(bad("the seconds field must be 0"));
    }
    match (fields[3] == "?", fields[5] == "?") {
        (false, false) => {
            return Err(bad(
                "Support for specifying both a day-of-week AND a day-of-month parameter is not implemented: \
                 put ? in one of them",
            ))
        }
        (true, true) => return Err(bad("only one of day-of-month and day-of-week may be ?")),
        _ => {}
    }
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .year(croner::parser::Year::Optional)
        .alternative_weekdays(true)
        .build();
    let cron = parser.parse(expression).map_err(|e| bad(&e.to_string()))?;
    cron.find_next_occurrence(&Utc::now(), false)
        .map_err(|_| bad("it never matches a future time"))?;
    Ok(cron)
}

impl Schedule {
    /// The schedule an integration's properties describe (validated).
    pub fn from_properties(p: &IntegrationProperties) -> Result<Schedule, ScheduleError> {
        if let Some(expression) = p.cron_expression.as_deref().filter(|s| !s.trim().is_empty()) {
            let cron = parse_quartz_cron(expression)?;
            return Ok(Schedule::Cron {
                cron: Box::new(cron),
                expression: expression.to_owned(),
            });
        }
        let minutes = validate_frequency(p.frequency_in_minutes)?;
        let every = ChronoDuration::minutes(i64::from(minutes));
        match p.anchor_time {
            Some(anchor) if minutes < 60 => {
                let _ = anchor;
                Err(ScheduleError::AnchorTooFrequent { frequency: minutes })
            }
            Some(anchor) => Ok(Schedule::Anchored { every, anchor }),
            None => Ok(Schedule::Frequency { every }),
        }
    }

    /// `frequency`, `anchor` or `cron`.
    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Frequency { .. } => "frequency",
            Schedule::Anchored { .. } => "anchor",
            Schedule::Cron { .. } => "cron",
        }
    }

    /// The next time a job should start, or `None` when nothing is scheduled. A time in the past
    /// means "now" (a slot missed while seam was down).
    pub fn next_fire_time(&self, inputs: &ScheduleInputs) -> Option<DateTime<Utc>> {
        let slots = backoff_slots(inputs.consecutive_failures);
        match self {
            Schedule::Frequency { every } => {
                let Some(last_start) = inputs.last_start else {
                    return Some(inputs.first_run_at);
                };
                // Backoff stretches the step, but never beyond a day (or the frequency itself).
                let step = (*every * slots as i32).min(ChronoDuration::days(1).max(*every));
                let mut next = last_start + step;
                if let Some(end) = inputs.last_end.filter(|end| *end > next) {
                    // Overran: skip the slots the job was still running in.
                    let behind = (end - last_start).num_milliseconds();
                    let k = (behind + step.num_milliseconds() - 1) / step.num_milliseconds();
                    next = last_start + step * k.max(1) as i32;
                }
                Some(next)
            }
            Schedule::Anchored { every, anchor } => {
                let after = inputs.last_start.unwrap_or(inputs.created_at);
                let ms = every.num_milliseconds();
                let slot = |m: i64| *anchor + ChronoDuration::milliseconds(m * ms);
                // First slot strictly after `after`.
                let mut m = (after - *anchor).num_milliseconds().div_euclid(ms) + 1;
                if let Some(end) = inputs.last_end {
                    // First slot at or after the end of the last job.
                    let m_end = ((end - *anchor).num_milliseconds() + ms - 1).div_euclid(ms);
                    m = m.max(m_end);
                }
                Some(slot(m + i64::from(slots) - 1))
            }
            Schedule::Cron { cron, .. } => {
                let mut t = inputs.last_start.unwrap_or(inputs.created_at);
                t = cron.find_next_occurrence(&t, false).ok()?;
                let mut guard = 0;
                while inputs.last_end.is_some_and(|end| t < end) && guard < 10_000 {
                    t = cron.find_next_occurrence(&t, false).ok()?;
                    guard += 1;
                }
                for _ in 1..slots {
                    t = cron.find_next_occurrence(&t, false).ok()?;
                }
                Some(t)
            }
        }
    }
}

/// How many slots the next run waits after `failures` consecutive failed jobs.
pub fn backoff_slots(failures: u32) -> u32 {
    if failures <= 1 {
        1
    } else {
        2u32.saturating_pow(failures - 1).min(MAX_BACKOFF_SLOTS)
    }
}

/// What the schedule rules read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInputs {
    /// When the integration was created (anchor and cron schedules start after it).
    pub created_at: DateTime<Utc>,
    /// When a never-run frequency schedule fires (now).
    pub first_run_at: DateTime<Utc>,
    /// The previous job's start.
    pub last_start: Option<DateTime<Utc>>,
    /// The previous job's end.
    pub last_end: Option<DateTime<Utc>>,
    /// Consecutive failed jobs, newest backwards.
    pub consecutive_failures: u32,
}

/// Failed jobs in a row, newest first; running and cancelled jobs are passed over. A job that
/// succeeded with warnings ends the run like any success.
pub fn consecutive_failures(jobs_newest_first: &[Job]) -> u32 {
    let mut n = 0;
    for j in jobs_newest_first {
        match j.status {
            JobStatus::Failed => n += 1,
            JobStatus::Succeeded | JobStatus::SucceededWithWarnings => break,
            JobStatus::Pending | JobStatus::Running | JobStatus::Cancelled => {}
        }
    }
    n
}

/// The status Stitch shows for an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IntegrationStatus {
    /// Configured, no job finished yet.
    Pending,
    /// Nothing selected.
    #[serde(rename = "Not Configured")]
    NotConfigured,
    /// Replicating on schedule.
    Active,
    /// Paused by the user.
    Paused,
    /// The latest job(s) failed.
    Failing,
}

impl IntegrationStatus {
    /// As Stitch writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationStatus::Pending => "Pending",
            IntegrationStatus::NotConfigured => "Not Configured",
            IntegrationStatus::Active => "Active",
            IntegrationStatus::Paused => "Paused",
            IntegrationStatus::Failing => "Failing",
        }
    }
}

/// An integration's status from its record and recent jobs (newest first).
pub fn integration_status(integration: &Integration, jobs_newest_first: &[Job]) -> IntegrationStatus {
    if integration.paused_at.is_some() {
        IntegrationStatus::Paused
    } else if !integration.is_configured() {
        IntegrationStatus::NotConfigured
    } else if consecutive_failures(jobs_newest_first) > 0 {
        IntegrationStatus::Failing
    } else if !jobs_newest_first.iter().any(|j| j.status.is_success()) {
        IntegrationStatus::Pending
    } else {
        IntegrationStatus::Active
    }
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Longest sleep between two looks at the metastore (changes made elsewhere are seen at least this
    /// often; changes through the API wake the scheduler at once).
    pub max_sleep: Duration,
    /// How jobs run (loader batching, the grace a stopped job gives the source and the warehouse).
    pub job: JobConfig,
    /// Where jobs run.
    pub dispatch: Dispatch,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_sleep: Duration::from_secs(60),
            job: JobConfig::default(),
            dispatch: Dispatch::Local,
        }
    }
}

/// Where jobs run.
#[derive(Debug, Clone)]
pub enum Dispatch {
    /// In this process, started as soon as due: the one process that owns the metastore.
    Local,
    /// Through the metastore's job queue, shared by every process on the same metastore.
    Queue(QueueConfig),
}

/// Why a job could not be started or stopped.
#[derive(Debug, Error)]
pub enum SchedulerError {
    /// No such integration (or deleted).
    #[error("integration {0} not found")]
    NotFound(IntegrationId),
    /// One job per integration at a time.
    #[error("an extraction is already running for integration {integration} (job {job_name})")]
    AlreadyRunning {
        /// The integration.
        integration: IntegrationId,
        /// The running job.
        job_name: String,
    },
    /// Nothing is selected.
    #[error("integration {0} has no table selected: select at least one table and field first")]
    NotConfigured(IntegrationId),
    /// The scheduler is shutting down.
    #[error("seam is shutting down")]
    ShuttingDown,
    /// The metastore failed.
    #[error(transparent)]
    Metastore(#[from] MetastoreError),
}

#[derive(Debug)]
struct RunningJob {
    job: Job,
    cancel: CancellationToken,
    progress: Progress,
    /// Set when the user (not a shutdown, not a lost lease) asked the job to stop.
    stopped_by_user: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug)]
struct Inner {
    ctx: JobContext,
    config: SchedulerConfig,
    running: Mutex<HashMap<IntegrationId, RunningJob>>,
    start_lock: tokio::sync::Mutex<()>,
    wake: Notify,
    /// Wakes this process's worker: a job was queued here.
    work: Notify,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The scheduler: a handle that is cheap to clone; the loop runs on the tokio runtime.
#[derive(Debug, Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    /// Marks jobs a dead process left `running` as failed, starts the scheduling loop, and starts
    /// again at once the integrations whose job was interrupted, unless paused, not configured, or
    /// failing again and again ([`RESUME_AFTER_FAILURES`]).
    pub async fn start(ctx: JobContext, config: SchedulerConfig) -> Result<Scheduler, SchedulerError> {
        if let Dispatch::Queue(queue) = config.dispatch.clone() {
            return Ok(queue::start(Self::new(ctx, config), queue));
        }
        let now = ctx.clock.now();
        let stale = ctx
            .metastore
            .fail_running_jobs(
                now,
                "seam stopped while this job ran; the next job resumes from the last committed bookmarks",
            )
            .await?;
        if !stale.is_empty() {
            warn!(
                integrations = stale.len(),
                "marked jobs interrupted by a previous stop as failed"
            );
        }
        let scheduler = Self::new(ctx, config);
        let looping = scheduler.clone();
        scheduler
            .inner
            .tasks
            .spawn(async move { looping.run_loop().await });
        scheduler.resume_interrupted(&stale).await;
        Ok(scheduler)
    }

    fn new(ctx: JobContext, config: SchedulerConfig) -> Scheduler {
        Scheduler {
            inner: Arc::new(Inner {
                ctx,
                config,
                running: Mutex::new(HashMap::new()),
                start_lock: tokio::sync::Mutex::new(()),
                wake: Notify::new(),
                work: Notify::new(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    fn queue(&self) -> Option<&QueueConfig> {
        match &self.inner.config.dispatch {
            Dispatch::Queue(q) => Some(q),
            Dispatch::Local => None,
        }
    }

    /// Starts a job at once for each integration whose job a stop of seam interrupted (it resumes
    /// from the committed bookmarks), rather than waiting for its next slot. Not for an integration
    /// that is paused, deleted or not configured, nor for one failing again and again
    /// ([`RESUME_AFTER_FAILURES`]): its schedule's backoff decides, so a job that brings seam down
    /// cannot do so in a loop.
    async fn resume_interrupted(&self, integrations: &[IntegrationId]) {
        for &id in integrations {
            let Ok(integration) = self.live_integration(id).await else {
                continue;
            };
            if integration.paused_at.is_some() || !integration.is_configured() {
                continue;
            }
            let recent = match self.inner.ctx.metastore.list_jobs(id, RECENT_JOBS).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    warn!(source_id = id, error = %e, "could not read jobs to resume an interrupted one");
                    continue;
                }
            };
            if consecutive_failures(&recent) > RESUME_AFTER_FAILURES {
                info!(
                    source_id = id,
                    "not resuming at once: its jobs keep failing, the schedule's backoff decides"
                );
                continue;
            }
            match self
                .start_job(integration, JobTrigger::Scheduled, self.inner.ctx.clock.now())
                .await
            {
                Ok(job) => {
                    info!(source_id = id, job = %job.job_name, "resuming the job a stop of seam interrupted")
                }
                Err(e) => warn!(source_id = id, error = %e, "could not resume an interrupted job"),
            }
        }
    }

    /// The job context (metastore, cipher, clock, ...).
    pub fn context(&self) -> &JobContext {
        &self.inner.ctx
    }

    /// Tells the scheduler that integrations changed (created, selection, settings, pause).
    pub fn changed(&self) {
        self.inner.wake.notify_one();
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<IntegrationId, RunningJob>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True while a job of the integration runs (or, with the queue, is queued), in any process.
    pub async fn is_running(&self, id: IntegrationId) -> bool {
        if self.running().contains_key(&id) {
            return true;
        }
        if self.queue().is_none() {
            return false;
        }
        matches!(self.inner.ctx.metastore.active_job(id).await, Ok(Some(_)))
    }

    /// Live progress of the integration's running job: counted here when it runs in this process,
    /// else its worker's latest report.
    pub async fn progress(&self, id: IntegrationId) -> Option<JobProgress> {
        {
            let running = self.running();
            if let Some(job) = running.get(&id) {
                return Some(JobProgress::of(&job.job, &job.progress));
            }
        }
        self.queue()?;
        let job = self.inner.ctx.metastore.active_job(id).await.ok()??;
        let mut progress: JobProgress = serde_json::from_str(job.progress.as_deref()?).ok()?;
        progress.stopping |= job.stop_requested;
        Some(progress)
    }

    /// Run Extraction Now: starts a job unless one runs (allowed while paused).
    pub async fn run_now(&self, id: IntegrationId) -> Result<Job, SchedulerError> {
        let integration = self.live_integration(id).await?;
        if !integration.is_configured() {
            return Err(SchedulerError::NotConfigured(id));
        }
        self.start_job(integration, JobTrigger::Manual, self.inner.ctx.clock.now())
            .await
    }

    /// Stop Extraction: asks the running job to stop at its next safe point (a queued one is cancelled
    /// at once); returns its id.
    pub async fn stop(&self, id: IntegrationId) -> Option<i64> {
        {
            let running = self.running();
            if let Some(job) = running.get(&id) {
                job.stopped_by_user
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                job.cancel.cancel();
                job.progress.set_stopping();
                if self.queue().is_none() {
                    return Some(job.job.id);
                }
            }
        }
        self.queue()?;
        match self
            .inner
            .ctx
            .metastore
            .request_stop(id, self.inner.ctx.clock.now())
            .await
        {
            Ok(job) => job.map(|j| j.id),
            Err(e) => {
                warn!(source_id = id, error = %e, "could not ask the job to stop");
                None
            }
        }
    }

    /// Starts a connection check + discovery in the background; returns the `running` check record.
    pub async fn start_check(&self, id: IntegrationId) -> Result<ConnectionCheck, SchedulerError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(SchedulerError::ShuttingDown);
        }
        let integration = self.live_integration(id).await?;
        let ctx = self.inner.ctx.clone();
        let check = ctx.metastore.create_check(id, ctx.clock.now()).await?;
        let returned = check.clone();
        let me = self.clone();
        let shutdown = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            // A check only reads: shutdown does not wait for it, and a panic ends it as failed.
            let ran = tokio::select! {
                biased;
                ran = AssertUnwindSafe(run_check(&ctx, integration, check.clone())).catch_unwind() => {
                    ran.map(|_| ()).map_err(|payload| panic_message(payload.as_ref()))
                }
                () = shutdown.cancelled() => {
                    Err("seam stopped during the connection check: run it again".to_owned())
                }
            };
            if let Err(message) = ran {
                warn!(source_id = id, error = %message, "connection check did not finish");
                let failed = ConnectionCheck {
                    status: CheckStatus::Failed,
                    completion_time: Some(ctx.clock.now()),
                    check_exit_status: Some(check.check_exit_status.unwrap_or(1)),
                    check_error_message: Some(message),
                    ..check
                };
                if let Err(e) = ctx.metastore.finish_check(&failed).await {
                    warn!(source_id = id, error = %e, "could not store the connection check result");
                }
            }
            me.changed();
        });
        Ok(returned)
    }

    /// When the integration's next scheduled job starts (`None`: paused, not configured, deleted).
    pub async fn next_fire_time(
        &self,
        integration: &Integration,
    ) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        let jobs = self
            .inner
            .ctx
            .metastore
            .list_jobs(integration.id, RECENT_JOBS)
            .await?;
        Ok(self.next_from_jobs(integration, &jobs, self.inner.ctx.clock.now()))
    }

    fn next_from_jobs(
        &self,
        integration: &Integration,
        jobs: &[Job],
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if integration.deleted_at.is_some() || integration.paused_at.is_some() || !integration.is_configured()
        {
            return None;
        }
        let schedule = Schedule::from_properties(&integration.properties).ok()?;
        let last = jobs.first();
        let inputs = ScheduleInputs {
            created_at: integration.created_at,
            first_run_at: now,
            last_start: last.map(|j| j.start_time),
            last_end: last.and_then(|j| j.completion_time),
            consecutive_failures: consecutive_failures(jobs),
        };
        schedule.next_fire_time(&inputs)
    }

    /// Stops scheduling, asks running jobs to stop at a safe point, and waits for them (committed work
    /// is kept; the schedule resumes on the next start). Each job ends within twice its stop grace
    /// ([`crate::pipeline::PipelineConfig::stop_grace`]) plus its bookkeeping; connection checks are
    /// abandoned at once.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        self.inner.tasks.wait().await;
        info!("scheduler stopped");
    }

    /// [`Scheduler::shutdown`], waiting at most `timeout`; false when something was still running
    /// then (it is left behind: a job still `running` in the metastore is marked failed at the next
    /// start, and resumes from its last committed bookmark).
    pub async fn shutdown_within(&self, timeout: Duration) -> bool {
        self.begin_shutdown();
        if tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_ok()
        {
            info!("scheduler stopped");
            return true;
        }
        let jobs: Vec<i64> = self.running().values().map(|j| j.job.id).collect();
        warn!(
            ?jobs,
            timeout_s = timeout.as_secs_f64(),
            "scheduler did not stop in time; leaving what still runs (jobs left running are marked \
             failed at the next start and resume from their last committed bookmarks)"
        );
        false
    }

    fn begin_shutdown(&self) {
        info!("scheduler stopping");
        self.inner.shutdown.cancel();
        for job in self.running().values() {
            job.progress.set_stopping();
        }
        self.inner.tasks.close();
    }

    async fn live_integration(&self, id: IntegrationId) -> Result<Integration, SchedulerError> {
        match self.inner.ctx.metastore.get_integration(id).await? {
            Some(i) if i.deleted_at.is_none() => Ok(i),
            _ => Err(SchedulerError::NotFound(id)),
        }
    }

    /// Starts a job due at `due` (its scheduled slot, or now): at once in this process, or queued for
    /// a worker.
    async fn start_job(
        &self,
        integration: Integration,
        trigger: JobTrigger,
        due: DateTime<Utc>,
    ) -> Result<Job, SchedulerError> {
        if self.queue().is_some() {
            return self.enqueue(integration.id, trigger, due).await;
        }
        let _serial = self.inner.start_lock.lock().await;
        if self.inner.shutdown.is_cancelled() {
            return Err(SchedulerError::ShuttingDown);
        }
        let running_name = self
            .running()
            .get(&integration.id)
            .map(|j| j.job.job_name.clone());
        if let Some(job_name) = running_name {
            return Err(SchedulerError::AlreadyRunning {
                integration: integration.id,
                job_name,
            });
        }
        // Read the integration again now that no job of it runs: a snapshot taken before the lock
        // may predate the bookmarks the previous job stored, and the job would start from those.
        let integration = self.live_integration(integration.id).await?;
        let ctx = &self.inner.ctx;
        let job = match ctx
            .metastore
            .create_job(integration.id, trigger, ctx.clock.now())
            .await
        {
            Ok(job) => job,
            Err(MetastoreError::JobActive { .. }) => return Err(self.already_active(integration.id).await),
            Err(e) => return Err(e.into()),
        };
        self.spawn_job(integration, job.clone(), None);
        Ok(job)
    }

    /// The error for an integration that has a job queued or running (anywhere).
    async fn already_active(&self, integration: IntegrationId) -> SchedulerError {
        let job_name = match self.inner.ctx.metastore.active_job(integration).await {
            Ok(Some(job)) => job.job_name,
            _ => String::new(),
        };
        SchedulerError::AlreadyRunning {
            integration,
            job_name,
        }
    }

    /// Runs `job` in this process (with its lease kept alive when it came from the queue).
    fn spawn_job(&self, integration: Integration, job: Job, lease: Option<QueueConfig>) {
        let ctx = self.inner.ctx.clone();
        let cancel = self.inner.shutdown.child_token();
        let progress = Progress::default();
        let stopped_by_user = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.running().insert(
            integration.id,
            RunningJob {
                job: job.clone(),
                cancel: cancel.clone(),
                progress: progress.clone(),
                stopped_by_user: stopped_by_user.clone(),
            },
        );
        info!(source_id = integration.id, job = %job.job_name, trigger = job.trigger.as_str(), "starting job");
        // Clears the running entry however the task ends (returned, panicked, aborted).
        let running = RunningGuard {
            scheduler: self.clone(),
            integration: integration.id,
            job_id: job.id,
        };
        let started = job.clone();
        let config = self.inner.config.job.clone();
        let display_name = integration.display_name.clone();
        let me = self.clone();
        self.inner.tasks.spawn(async move {
            let job = started.clone();
            let keeper = lease.as_ref().map(|q| {
                tokio::spawn(queue::keep_lease(
                    ctx.clone(),
                    job.clone(),
                    q.clone(),
                    cancel.clone(),
                    progress.clone(),
                    stopped_by_user.clone(),
                ))
            });
            let ran = AssertUnwindSafe(run_job(&ctx, integration, started, cancel, progress, &config))
                .catch_unwind()
                .await;
            if let Some(keeper) = keeper {
                keeper.abort();
            }
            if let Err(payload) = ran {
                // run_job turns panics of the source, the loader and its phases into failed jobs; this
                // one came from its own bookkeeping (the metastore, the notifier).
                fail_after_panic(&ctx, &job, &display_name, panic_message(payload.as_ref())).await;
            }
            drop(running);
            if lease.is_some() {
                queue::after_job(&me, &job, &stopped_by_user).await;
            }
            check_usage_thresholds(&ctx).await;
        });
    }

    async fn run_loop(&self) {
        loop {
            let wait = match self.tick().await {
                Ok(wait) => wait,
                Err(e) => {
                    warn!(error = %e, "scheduler could not read the metastore; retrying");
                    self.inner.config.max_sleep
                }
            };
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts due jobs; returns how long to sleep before the next look.
    async fn tick(&self) -> Result<Duration, SchedulerError> {
        let ctx = &self.inner.ctx;
        let now = ctx.clock.now();
        let mut wait = self.inner.config.max_sleep;
        let mut usage_blocks: Option<bool> = None;
        for integration in ctx.metastore.list_integrations(false).await? {
            if self.running().contains_key(&integration.id) {
                continue;
            }
            let jobs = ctx.metastore.list_jobs(integration.id, RECENT_JOBS).await?;
            if jobs.first().is_some_and(|j| j.status.is_active()) {
                continue;
            }
            let Some(next) = self.next_from_jobs(&integration, &jobs, now) else {
                continue;
            };
            if next > now {
                let until = (next - now).to_std().unwrap_or(Duration::ZERO);
                wait = wait.min(until);
                continue;
            }
            if usage_blocks.is_none() {
                usage_blocks = Some(
                    usage_summary(ctx.metastore.as_ref(), now)
                        .await?
                        .blocks_scheduled_jobs(),
                );
            }
            if usage_blocks == Some(true) {
                info!(
                    source_id = integration.id,
                    "row limit reached: scheduled job not started, as configured"
                );
                continue;
            }
            match self.start_job(integration, JobTrigger::Scheduled, next).await {
                Ok(_) | Err(SchedulerError::AlreadyRunning { .. }) => {}
                Err(SchedulerError::ShuttingDown) => return Ok(Duration::ZERO),
                Err(e) => warn!(error = %e, "could not start a scheduled job"),
            }
        }
        Ok(wait)
    }
}

/// Removes a job's running entry when dropped, and wakes the scheduler.
struct RunningGuard {
    scheduler: Scheduler,
    integration: IntegrationId,
    job_id: i64,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        {
            let mut running = self.scheduler.running();
            if running
                .get(&self.integration)
                .is_some_and(|j| j.job.id == self.job_id)
            {
                running.remove(&self.integration);
            }
        }
        self.scheduler.changed();
        self.scheduler.inner.work.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0)
            .single()
            .expect("valid time")
    }

    fn inputs(
        last_start: Option<DateTime<Utc>>,
        last_end: Option<DateTime<Utc>>,
        failures: u32,
    ) -> ScheduleInputs {
        ScheduleInputs {
            created_at: at(0, 0),
            first_run_at: at(1, 0),
            last_start,
            last_end,
            consecutive_failures: failures,
        }
    }

    fn every(minutes: i64) -> Schedule {
        Schedule::Frequency {
            every: ChronoDuration::minutes(minutes),
        }
    }

    #[test]
    fn frequency_counts_from_the_previous_start_and_skips_overrun_slots() {
        let s = every(60);
        assert_eq!(
            s.next_fire_time(&inputs(None, None, 0)),
            Some(at(1, 0)),
            "first run right away"
        );
        // Stitch's example: 02:30-03:25 -> 03:30; 03:30-04:38 -> 04:30 skipped -> 05:30.
        assert_eq!(
            s.next_fire_time(&inputs(Some(at(2, 30)), Some(at(3, 25)), 0)),
            Some(at(3, 30))
        );
        assert_eq!(
            s.next_fire_time(&inputs(Some(at(3, 30)), Some(at(4, 38)), 0)),
            Some(at(5, 30))
        );
        assert_eq!(
            s.next_fire_time(&inputs(Some(at(3, 30)), None, 0)),
            Some(at(4, 30))
        );
    }

    #[test]
    fn failing_integrations_back_off() {
        let s = every(30);
        let base = Some(at(2, 0));
        let end = Some(at(2, 1));
        assert_eq!(s.next_fire_time(&inputs(base, end, 1)), Some(at(2, 30)));
        assert_eq!(s.next_fire_time(&inputs(base, end, 2)), Some(at(3, 0)));
        assert_eq!(s.next_fire_time(&inputs(base, end, 3)), Some(at(4, 0)));
        assert_eq!(backoff_slots(10), MAX_BACKOFF_SLOTS);
        let daily = every(1440);
        assert_eq!(
            daily.next_fire_time(&inputs(base, end, 5)),
            Some(at(2, 0) + ChronoDuration::days(1)),
            "capped"
        );
    }

    #[test]
    fn anchored_schedule_runs_on_anchor_multiples() {
        let s = Schedule::Anchored {
            every: ChronoDuration::minutes(360),
            anchor: at(3, 30) - ChronoDuration::days(30),
        };
        // Created at 00:00: the first slot is 03:30, not right away.
        assert_eq!(s.next_fire_time(&inputs(None, None, 0)), Some(at(3, 30)));
        assert_eq!(
            s.next_fire_time(&inputs(Some(at(3, 30)), Some(at(3, 40)), 0)),
            Some(at(9, 30))
        );
        // Overran past 09:30: that slot is skipped.
        assert_eq!(
            s.next_fire_time(&inputs(Some(at(3, 30)), Some(at(9, 45)), 0)),
            Some(at(15, 30))
        );
    }

    #[test]
    fn quartz_cron_is_validated_and_evaluated_in_utc() {
        let cron = parse_quartz_cron("0 0 12 ? * MON-FRI *").expect("stitch's example parses");
        let s = Schedule::Cron {
            cron: Box::new(cron),
            expression: String::new(),
        };
        // 2026-12-01 is a Tuesday.
        assert_eq!(
            s.next_fire_time(&inputs(Some(at(12, 0)), Some(at(12, 5)), 0)),
            Some(at(12, 0) + ChronoDuration::days(1))
        );
        let s = Schedule::Cron {
            cron: Box::new(parse_quartz_cron("0 15 * ? * *").expect("parses")),
            expression: String::new(),
        };
        assert_eq!(
            s.next_fire_time(&inputs(Some(at(2, 15)), Some(at(2, 20)), 0)),
            Some(at(3, 15))
        );
        for bad in [
            "* * * * * *",
            "0 0 12 * * MON",
            "0 0 12 ? * ?",
            "0 0 12 * *",
            "5 0 12 ? * *",
            "0 61 * ? * *",
        ] {
            let err = parse_quartz_cron(bad).expect_err(bad);
            assert!(
                err.to_string()
                    .starts_with(&format!("cron_expression {bad:?} is invalid: ")),
                "{err}"
            );
        }
        assert!(parse_quartz_cron("0 0 12 * * MON")
            .expect_err("both")
            .to_string()
            .contains("day-of-week AND"));
    }

    #[test]
    fn schedule_from_properties_validates() {
        let mut p = IntegrationProperties {
            start_date: at(0, 0),
            frequency_in_minutes: 30,
            anchor_time: None,
            cron_expression: None,
            config: serde_json::Map::new(),
        };
        assert_eq!(Schedule::from_properties(&p).expect("ok").kind(), "frequency");
        p.frequency_in_minutes = 45;
        assert!(matches!(
            Schedule::from_properties(&p),
            Err(ScheduleError::Frequency { .. })
        ));
        p.frequency_in_minutes = 30;
        p.anchor_time = Some(at(3, 0));
        assert!(matches!(
            Schedule::from_properties(&p),
            Err(ScheduleError::AnchorTooFrequent { .. })
        ));
        p.frequency_in_minutes = 180;
        assert_eq!(Schedule::from_properties(&p).expect("ok").kind(), "anchor");
        p.cron_expression = Some("0 0 * ? * *".into());
        assert_eq!(
            Schedule::from_properties(&p).expect("ok").kind(),
            "cron",
            "cron wins"
        );
    }

    fn job(status: JobStatus) -> Job {
        Job {
            id: 1,
            integration_id: 1,
            job_name: "1.1.sync".into(),
            trigger: JobTrigger::Scheduled,
            status,
            start_time: at(1, 0),
            completion_time: Some(at(1, 5)),
            discovery_exit_status: Some(0),
            tap_exit_status: Some(0),
            target_exit_status: Some(0),
            error_message: None,
            warning_message: None,
            rows_loaded: 0,
            due_time: None,
            worker: None,
            lease_until: None,
            stop_requested: false,
            progress: None,
        }
    }

    #[test]
    fn a_job_with_warnings_counts_as_a_success() {
        use JobStatus::*;
        let newest_first = [job(Failed), job(SucceededWithWarnings), job(Failed), job(Failed)];
        assert_eq!(consecutive_failures(&newest_first), 1, "the streak ends at it");
        assert_eq!(consecutive_failures(&newest_first[1..]), 0);
        let integration = Integration {
            id: 1,
            display_name: "Zendesk".into(),
            name: "zendesk".into(),
            kind: "platform.zendesk".into(),
            properties: IntegrationProperties {
                start_date: at(0, 0),
                frequency_in_minutes: 30,
                anchor_time: None,
                cron_expression: None,
                config: serde_json::Map::new(),
            },
            sealed_credentials: Vec::new(),
            paused_at: None,
            deleted_at: None,
            created_at: at(0, 0),
            updated_at: at(0, 0),
            catalog: Some(seam_core::Catalog {
                streams: vec![{
                    let mut e = seam_core::catalog::CatalogEntry::new(
                        "tickets",
                        seam_core::Schema::object(Vec::<(String, seam_core::Schema)>::new()),
                        &["id"],
                        seam_core::ReplicationMethod::Incremental,
                        None,
                    );
                    e.set_selected(true);
                    e
                }],
            }),
            state: None,
        };
        assert_eq!(
            integration_status(&integration, &[job(SucceededWithWarnings)]),
            IntegrationStatus::Active,
            "not Pending: data was replicated"
        );
    }
}
