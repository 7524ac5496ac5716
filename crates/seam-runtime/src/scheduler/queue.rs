//! The job queue, for processes that share one PostgreSQL metastore ([`super::Dispatch::Queue`]).
//!
//! - **Scheduler** (role `scheduler`): one process at a time is active, by holding the metastore's
//!   leadership ([`seam_metastore::Metastore::try_lead`]); the others stand by and take over when its
//!   connection ends. The active one queues due jobs (`pending`, due at their slot), and fails the
//!   running jobs whose lease ran out, queueing them again at once: they resume from the bookmarks
//!   committed in the warehouse. Two schedulers active at once would do no harm: the metastore keeps
//!   one pending or running job per integration whoever queues it.
//! - **Worker** (role `worker`): leases due jobs, oldest due first, up to [`QueueConfig::max_jobs`]
//!   at once, and runs each as a job of this process. While a job runs, its lease is renewed every
//!   third of [`QueueConfig::lease`], with the job's progress (the API shows it) and a stop request
//!   (the API sets it) riding along. A worker that loses its lease stops the job; the warehouse's
//!   fence ([`seam_core::Destination::fence`]) refuses whatever it would still commit. A job that a
//!   shutdown of its worker stopped is queued again at once, for whichever worker is up.

use super::{Scheduler, SchedulerError};
use crate::job::JobContext;
use crate::pipeline::Progress;
use crate::progress::JobProgress;
use chrono::{DateTime, Utc};
use seam_metastore::{IntegrationId, Job, JobFinish, JobStatus, JobTrigger};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The leadership role of the active scheduler.
pub const SCHEDULER_ROLE: &str = "scheduler";

/// The error of a job whose worker stopped renewing its lease.
const LEASE_LOST: &str = "the worker running this job stopped renewing its lease (it died, or lost the \
                          metastore); the job resumes on another worker from the last committed bookmarks";

/// How this process takes part in the queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// This process may be the active scheduler.
    pub scheduler: bool,
    /// This process runs jobs.
    pub worker: bool,
    /// This worker's name in the job records: unique among the processes (default `host-pid`).
    pub worker_name: String,
    /// Jobs this worker runs at once.
    pub max_jobs: usize,
    /// How long a lease holds unless renewed (renewed every third of it). A dead worker's job is
    /// resumed elsewhere about this long after its last renewal.
    pub lease: Duration,
    /// How often an idle worker looks for due jobs, and a standby scheduler for the leadership.
    pub poll: Duration,
}

impl QueueConfig {
    /// Both roles, 4 jobs at once, 30-second leases, a look every 2 seconds.
    pub fn new(worker_name: impl Into<String>) -> QueueConfig {
        QueueConfig {
            scheduler: true,
            worker: true,
            worker_name: worker_name.into(),
            max_jobs: 4,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(2),
        }
    }

    fn lease_from(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(30))
    }
}

/// Starts this process's loops.
pub(super) fn start(s: Scheduler, q: QueueConfig) -> Scheduler {
    info!(
        worker = %q.worker_name,
        scheduler = q.scheduler,
        runs_jobs = q.worker,
        max_jobs = q.max_jobs,
        "jobs go through the metastore's queue"
    );
    if q.scheduler {
        let (me, q) = (s.clone(), q.clone());
        s.inner.tasks.spawn(async move { lead(me, q).await });
    }
    if q.worker {
        let me = s.clone();
        s.inner.tasks.spawn(async move { work(me, q).await });
    }
    s
}

impl Scheduler {
    /// Queues a job for a worker.
    pub(super) async fn enqueue(
        &self,
        id: IntegrationId,
        trigger: JobTrigger,
        due: DateTime<Utc>,
    ) -> Result<Job, SchedulerError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(SchedulerError::ShuttingDown);
        }
        match self.inner.ctx.metastore.enqueue_job(id, trigger, due).await? {
            Some(job) => {
                info!(source_id = id, job = %job.job_name, trigger = trigger.as_str(), "job queued");
                self.inner.work.notify_one();
                Ok(job)
            }
            None => Err(self.already_active(id).await),
        }
    }

    /// Fails the jobs whose lease ran out and queues their integrations again.
    async fn expire_leases(&self) {
        let ctx = &self.inner.ctx;
        match ctx.metastore.expire_leases(ctx.clock.now(), LEASE_LOST).await {
            Ok(jobs) => {
                for job in &jobs {
                    warn!(
                        source_id = job.integration_id,
                        job = %job.job_name,
                        worker = job.worker.as_deref().unwrap_or(""),
                        "a worker stopped renewing its lease: its job failed and resumes on another worker"
                    );
                }
                let ids: Vec<IntegrationId> = jobs.iter().map(|j| j.integration_id).collect();
                self.resume_interrupted(&ids).await;
            }
            Err(e) => warn!(error = %e, "could not look for expired leases"),
        }
    }

    /// Runs a leased job here, unless its integration was deleted meanwhile.
    async fn run_leased(&self, job: Job, q: &QueueConfig) {
        match self.live_integration(job.integration_id).await {
            Ok(integration) => self.spawn_job(integration, job, Some(q.clone())),
            Err(e) => {
                let ctx = &self.inner.ctx;
                let finish = JobFinish {
                    status: JobStatus::Cancelled,
                    completion_time: ctx.clock.now(),
                    discovery_exit_status: None,
                    tap_exit_status: None,
                    target_exit_status: None,
                    error_message: Some(format!("not run: {e}")),
                    warning_message: None,
                };
                if let Err(e) = ctx.metastore.finish_job(job.id, &finish).await {
                    warn!(job = %job.job_name, error = %e, "could not end a job whose integration is gone");
                }
            }
        }
    }
}

/// The scheduler's loop: stand by until this process leads, then queue due jobs and expire leases
/// until the leadership is lost or seam stops.
async fn lead(s: Scheduler, q: QueueConfig) {
    let shutdown = s.inner.shutdown.clone();
    loop {
        let held = match s.inner.ctx.metastore.try_lead(SCHEDULER_ROLE).await {
            Ok(held) => held,
            Err(e) => {
                warn!(error = %e, "could not ask the metastore for the scheduler's leadership");
                None
            }
        };
        let Some(lead) = held else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(q.poll) => continue,
            }
        };
        info!(worker = %q.worker_name, "this process is now the active scheduler");
        loop {
            if !lead.holds().await {
                warn!("this process lost the scheduler's leadership (its metastore connection ended); standing by");
                break;
            }
            s.expire_leases().await;
            let wait = match s.tick().await {
                Ok(wait) => wait,
                Err(e) => {
                    warn!(error = %e, "scheduler could not read the metastore; retrying");
                    s.inner.config.max_sleep
                }
            };
            // Expired leases are looked for at least twice per lease.
            let wait = wait.min(q.lease / 2);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = s.inner.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The worker's loop: lease due jobs while there is room, then wait for a wake-up or the next look.
async fn work(s: Scheduler, q: QueueConfig) {
    let shutdown = s.inner.shutdown.clone();
    let metastore = Arc::clone(&s.inner.ctx.metastore);
    loop {
        while !shutdown.is_cancelled() && s.running().len() < q.max_jobs {
            let now = s.inner.ctx.clock.now();
            match metastore.lease_job(&q.worker_name, now, q.lease_from(now)).await {
                Ok(Some(job)) => s.run_leased(job, &q).await,
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "could not lease a job from the metastore");
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = s.inner.work.notified() => {}
            () = tokio::time::sleep(q.poll) => {}
        }
    }
}

/// Renews a running job's lease until the task is aborted (the job ended), reporting its progress.
/// A stop request stops the job; a lost lease (or one not renewed in time) stops it too.
pub(super) async fn keep_lease(
    ctx: JobContext,
    job: Job,
    q: QueueConfig,
    cancel: CancellationToken,
    progress: Progress,
    stopped_by_user: Arc<AtomicBool>,
) {
    let mut lease_end = job.lease_until.unwrap_or_else(|| q.lease_from(ctx.clock.now()));
    loop {
        tokio::time::sleep(q.lease / 3).await;
        let now = ctx.clock.now();
        let report = serde_json::to_string(&JobProgress::of(&job, &progress)).ok();
        match ctx
            .metastore
            .renew_lease(job.id, &q.worker_name, q.lease_from(now), report.as_deref())
            .await
        {
            Ok(Some(stop)) => {
                lease_end = q.lease_from(now);
                if stop && !cancel.is_cancelled() {
                    info!(job = %job.job_name, "stop requested");
                    stopped_by_user.store(true, Ordering::SeqCst);
                    progress.set_stopping();
                    cancel.cancel();
                }
            }
            Ok(None) => {
                warn!(job = %job.job_name, "this worker lost the job's lease; stopping it (another worker resumes it)");
                cancel.cancel();
                return;
            }
            Err(e) if now >= lease_end => {
                warn!(job = %job.job_name, error = %e, "the job's lease ran out before it could be renewed; stopping it");
                cancel.cancel();
                return;
            }
            Err(e) => warn!(job = %job.job_name, error = %e, "could not renew the job's lease; retrying"),
        }
    }
}

/// After a queued job ended here: one that a shutdown of this process stopped is queued again at
/// once, so whichever worker is up resumes it.
pub(super) async fn after_job(s: &Scheduler, job: &Job, stopped_by_user: &AtomicBool) {
    s.inner.work.notify_one();
    if !s.inner.shutdown.is_cancelled() || stopped_by_user.load(Ordering::SeqCst) {
        return;
    }
    let ctx = &s.inner.ctx;
    let ended = match ctx.metastore.get_job(job.id).await {
        Ok(Some(ended)) => ended,
        _ => return,
    };
    if ended.status != JobStatus::Cancelled {
        return;
    }
    match ctx
        .metastore
        .enqueue_job(job.integration_id, JobTrigger::Scheduled, ctx.clock.now())
        .await
    {
        Ok(Some(next)) => info!(
            source_id = job.integration_id,
            job = %next.job_name,
            "this worker is stopping: the job it stopped is queued again for another worker"
        ),
        Ok(None) => {}
        Err(e) => warn!(source_id = job.integration_id, error = %e, "could not queue the stopped job again"),
    }
}
