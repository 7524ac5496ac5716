//! One replication job, and one connection check, for one integration.
//!
//! A job is discovery → extraction → loading:
//!
//! ```text
//! source.discover()  -> catalog (the user's selection carried over) -> metastore
//! pipeline::run(source, catalog, destination)    (the driver `seam sync` runs too)
//!        | every commit (PipelineHooks): CommitReport + the committed STATE
//!        v
//! metastore: bookmarks, loads per table, usage per day; extraction log lines
//! ```
//!
//! The moving parts that talk to the outside (the Zendesk source, the warehouse) come from a
//! [`ConnectorFactory`], so the scheduler, the API and the metastore are tested with fakes.
//!
//! Durability: the destination makes rows and their STATE durable together; the job then stores
//! that STATE as the integration's bookmarks. A crash between the two re-reads from the older bookmark
//! on the next run, and the upserting destination absorbs the duplicates (at-least-once, no loss).
//!
//! A job cannot wedge (the pipeline's guarantees, see [`crate::pipeline`], plus the job's own):
//! - a panic in the source (building it, `discover`, `read`), in the loader or the warehouse, or in
//!   the runner ends the job `failed` with the panic's message (CRITICAL log line, notification);
//! - a stop ([`PipelineConfig::stop_grace`]): the source is told (its token) and gets the grace to
//!   return at a safe point while what it sends is still loaded; the commit-retry wait ends at once; a
//!   warehouse call gets what is left of the grace (a whole one when begun after the stop). Whatever
//!   is still running then is abandoned (the source's task aborted, a blocking call left to finish
//!   on its own thread) and the job ends `cancelled`: what was not committed is read again by the
//!   next job from the last bookmark;
//! - streams the source skipped (`ReadSummary::skipped`) end the job `succeeded_with_warnings`, with a
//!   `warning_message` naming them and a Warning notification.
//!
//! Credentials: opened from the metastore's sealed blob only to build the source; never logged, never
//! written to the extraction log (errors are logged with their message, which the source guarantees

mod bookkeeper;
mod check;
mod log;

pub use check::{describe_check_error, run_check};

use crate::clock::Clock;
use crate::connector::{ConnectorFactory, SourceSpec};
use crate::error::{JobError, PART_JOB};
use crate::notify::Notifier;
use crate::pipeline::{
    self, panic_message, Phase, PipelineConfig, PipelineError, PipelineRun, Progress, Stop, PART_SOURCE,
};
use crate::telemetry::Telemetry;
use bookkeeper::Bookkeeper;
use futures::FutureExt as _;
use log::JobLog;
use seam_core::{Catalog, Classify, DestinationError, Source, State};
use seam_metastore::{
    Integration, IntegrationId, Job, JobFinish, JobStatus, LoadDelta, LogLevel, LogLocation, Metastore,
    NewNotification, NotificationLevel, SecretCipher,
};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// How jobs run: the pipeline's settings (batching, commit retries, channel size, and
/// [`PipelineConfig::stop_grace`]: after Stop Extraction or shutdown, how long the job waits for the
/// source to return at a safe point and for an in-flight warehouse call to end before it abandons
/// them and ends `cancelled`). `reset_state` is decided per job: an integration without bookmarks
/// in the metastore starts from scratch.
pub type JobConfig = PipelineConfig;

/// Lines of a source's own log a job holds before the source drops further ones.
const SOURCE_LOG_LINES: usize = 1_000;

/// How long a finished job waits for the source's last log lines.
const SOURCE_LOG_DRAIN: Duration = Duration::from_secs(2);

/// How long a job waits before it tries again to record its end in a metastore that refused the
/// write (a full disk, SQLite's write lock held by another process past its busy timeout, a
/// PostgreSQL metastore that went away), doubling from the first wait up to the last.
const FINISH_RETRY_FIRST: Duration = Duration::from_secs(1);
const FINISH_RETRY_MAX: Duration = Duration::from_secs(30);

/// True for the errors that only mean "the stop cut this short".
fn ended_by_stop(stop: &Stop, e: &JobError) -> bool {
    stop.is_stopped() && matches!(e, JobError::StopTimedOut { .. } | JobError::Stopped(_))
}

/// Logs how the stop cut the job short; the job then ends `cancelled`.
async fn stopped_at(log: &JobLog, e: JobError) -> Result<(), (LogLocation, JobError)> {
    warn!(job_id = log.job_id, error = %e, "stopped job did not end at a safe point");
    log.line(LogLocation::Main, LogLevel::Warning, e.to_string())
        .await;
    Ok(())
}

/// Everything a job or a check needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The store.
    pub metastore: Arc<dyn Metastore>,
    /// Opens sealed credentials.
    pub cipher: SecretCipher,
    /// Builds sources and destinations.
    pub factory: Arc<dyn ConnectorFactory>,
    /// Receives notifications.
    pub notifier: Arc<dyn Notifier>,
    /// Counters.
    pub telemetry: Arc<Telemetry>,
    /// The time source (virtual in tests).
    pub clock: Arc<dyn Clock>,
}

impl JobContext {
    pub(crate) fn spec(&self, integration: &Integration) -> Result<SourceSpec, JobError> {
        Ok(SourceSpec {
            integration_id: integration.id,
            schema_name: integration.name.clone(),
            kind: integration.kind.clone(),
            properties: integration.properties.clone(),
            credentials: self
                .cipher
                .open(integration.id, &integration.sealed_credentials)?,
        })
    }
}

/// The outcome of [`run_job`].
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// The finished job as stored.
    pub job: Job,
    /// Rows loaded.
    pub rows_loaded: u64,
}

/// Stitch's words for a job that replicated data but needs the user to look at something.
pub const WARNING_SUBJECT: &str = "Data has been replicated, but something may require your attention.";

/// Runs one job to the end (or to the first safe point after `cancel`), recording everything in the
/// metastore. The caller then runs [`check_usage_thresholds`](crate::usage::check_usage_thresholds).
/// Extraction and loading run through [`pipeline::run`], the driver `seam sync` uses; `progress` is
/// that run's [`Progress`].
///
/// Never returns an error and never unwinds: failures — panics in the source, the warehouse or the
/// job itself included — end the job as `failed` with the error's message, a CRITICAL log line and a
/// notification. A job whose source skipped selected streams ends `succeeded_with_warnings`, naming
/// them. After `cancel`, the job ends `cancelled` within twice [`PipelineConfig::stop_grace`] (plus
/// its bookkeeping), whatever the source or the warehouse is waiting on.
pub async fn run_job(
    ctx: &JobContext,
    integration: Integration,
    job: Job,
    cancel: CancellationToken,
    progress: Progress,
    config: &JobConfig,
) -> JobOutcome {
    let log = JobLog::of(ctx, job.id);
    info!(source_id = integration.id, job = %job.job_name, "job started");
    log.line(
        LogLocation::Main,
        LogLevel::Info,
        format!(
            "Starting job {} for integration {} ({})",
            job.job_name, integration.display_name, integration.name
        ),
    )
    .await;
    let mut finish = unfinished(&job);
    let mut rows_total = 0u64;
    let stop = Stop::new(cancel.clone(), config.stop_grace);
    // What the source says as it runs (a Singer tap's stderr) goes to the extraction log, in order.
    let (source_log, mut said) = mpsc::channel::<String>(SOURCE_LOG_LINES);
    let mut writer = {
        let log = log.clone();
        tokio::spawn(async move {
            while let Some(line) = said.recv().await {
                log.line(LogLocation::Tap, LogLevel::Info, line).await;
            }
        })
    };
    let phases = run_phases(
        ctx,
        &integration,
        &job,
        &stop,
        config,
        &progress,
        &log,
        &mut finish,
        &mut rows_total,
        source_log,
    );
    // A panic anywhere in the job ends it like any other critical error (the source's read task and
    // the loader's blocking hops report theirs through the pipeline).
    let result = match AssertUnwindSafe(phases).catch_unwind().await {
        Ok(r) => r,
        Err(payload) => Err((
            LogLocation::Main,
            JobError::Panicked {
                part: PART_JOB,
                message: panic_message(payload.as_ref()),
            },
        )),
    };
    // The source is gone: its last lines come before the job's end in the log (the wait is bounded:
    // a tap's orphaned child could hold its stderr open).
    if tokio::time::timeout(SOURCE_LOG_DRAIN, &mut writer).await.is_err() {
        writer.abort();
    }
    if let Err((location, err)) = result {
        let notification = record_failure(
            &log,
            integration.id,
            &integration.display_name,
            location,
            &err,
            &mut finish,
        )
        .await;
        ctx.notifier.notify(notification).await;
    } else if cancel.is_cancelled() {
        finish.status = JobStatus::Cancelled;
        log.line(
            LogLocation::Main,
            LogLevel::Info,
            "Extraction stopped; data committed before the stop is kept",
        )
        .await;
    } else if let Some(warning) = finish.warning_message.clone() {
        finish.status = JobStatus::SucceededWithWarnings;
        log.line(
            LogLocation::Main,
            LogLevel::Warning,
            format!("Job finished with warnings: {rows_total} rows loaded; {warning}"),
        )
        .await;
        ctx.notifier
            .notify(NewNotification {
                level: NotificationLevel::Warning,
                code: "extraction-warnings".to_owned(),
                integration_id: Some(integration.id),
                subject: WARNING_SUBJECT.to_owned(),
                message: format!("{}: {warning}", integration.display_name),
                created_at: ctx.clock.now(),
            })
            .await;
    } else {
        log.line(
            LogLocation::Main,
            LogLevel::Info,
            format!("Job finished: {rows_total} rows loaded"),
        )
        .await;
    }
    let stored = store_finish(ctx, &job, &mut finish).await;
    info!(source_id = integration.id, job = %stored.job_name, status = stored.status.as_str(), rows = rows_total, "job ended");
    JobOutcome {
        job: stored,
        rows_loaded: rows_total,
    }
}

/// The finish record of a job that has not ended yet.
fn unfinished(job: &Job) -> JobFinish {
    JobFinish {
        status: JobStatus::Succeeded,
        completion_time: job.start_time,
        discovery_exit_status: None,
        tap_exit_status: None,
        target_exit_status: None,
        error_message: None,
        warning_message: None,
    }
}

/// Records a failed job in its log and in `finish`, and returns the notification to raise: the one
/// place a job failure is described, for a failure of its phases and for a panic of the job runner.
async fn record_failure(
    log: &JobLog,
    integration_id: IntegrationId,
    display_name: &str,
    location: LogLocation,
    err: &JobError,
    finish: &mut JobFinish,
) -> NewNotification {
    let message = err.to_string();
    if matches!(err, JobError::Panicked { .. }) {
        error!(source_id = integration_id, job_id = log.job_id, error = %message, "job panicked");
    }
    log.line(location, LogLevel::Critical, message.clone()).await;
    finish.status = JobStatus::Failed;
    finish.error_message = Some(message.clone());
    let (code, subject) = if location == LogLocation::Target {
        (
            "loading-error",
            "We're having trouble writing to your data warehouse".to_owned(),
        )
    } else {
        (
            "platform.exit_status",
            format!("We're encountering some errors with your {display_name} integration"),
        )
    };
    NewNotification {
        level: NotificationLevel::Critical,
        code: code.to_owned(),
        integration_id: Some(integration_id),
        subject,
        message,
        created_at: log.clock.now(),
    }
}

/// Stores the end of a job (completed now) and counts its outcome; returns the job as stored.
///
/// A job that could not record its end would stay `running` in the metastore, which refuses the
/// integration another job (Run Extraction Now answers 409, the schedule skips it) until seam
/// restarts. So while the metastore refuses the write, the job keeps trying, waiting
/// [`FINISH_RETRY_FIRST`] doubling up to [`FINISH_RETRY_MAX`] between attempts (each wait bounded; a
/// shutdown leaves the job behind, and the next start marks it failed), as long as its errors are
/// of kind `Transient` (a lock held elsewhere, a full disk, a lost connection). Any other error is
/// not tried again (trying would fail the same way): the job is returned as it should have been
/// stored, and the next start marks it failed.
async fn store_finish(ctx: &JobContext, job: &Job, finish: &mut JobFinish) -> Job {
    finish.completion_time = ctx.clock.now();
    ctx.telemetry.job_finished(job.integration_id, finish.status);
    let mut wait = FINISH_RETRY_FIRST;
    let mut attempt = 1u32;
    loop {
        match ctx.metastore.finish_job(job.id, finish).await {
            Ok(j) => {
                if attempt > 1 {
                    info!(job = %job.job_name, attempt, "recorded the end of the job");
                }
                return j;
            }
            Err(e) if e.kind() == seam_core::ErrorKind::Transient => {
                warn!(
                    job = %job.job_name,
                    error = %e,
                    attempt,
                    retry_in_s = wait.as_secs(),
                    "could not record the end of a job; trying again (it shows as running until then)"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(FINISH_RETRY_MAX);
                attempt += 1;
            }
            Err(e) => {
                warn!(job = %job.job_name, error = %e, "could not record the end of a job; the next start marks it failed");
                return Job {
                    status: finish.status,
                    completion_time: Some(finish.completion_time),
                    error_message: finish.error_message.clone(),
                    warning_message: finish.warning_message.clone(),
                    ..job.clone()
                };
            }
        }
    }
}

/// Ends a job whose runner panicked outside its phases (in its own bookkeeping: the metastore, the
/// notifier) as failed, best effort, with the same records as any failed job: a CRITICAL log line,
/// the job's status, a notification. Each of them may be what panicked; a second panic is only
/// logged.
pub(crate) async fn fail_after_panic(ctx: &JobContext, job: &Job, display_name: &str, panic: String) {
    let recorded = AssertUnwindSafe(async {
        let log = JobLog::of(ctx, job.id);
        let err = JobError::Panicked {
            part: PART_JOB,
            message: panic,
        };
        let mut finish = unfinished(job);
        let notification = record_failure(
            &log,
            job.integration_id,
            display_name,
            LogLocation::Main,
            &err,
            &mut finish,
        )
        .await;
        store_finish(ctx, job, &mut finish).await;
        ctx.notifier.notify(notification).await;
    })
    .catch_unwind()
    .await;
    if let Err(payload) = recorded {
        error!(job = %job.job_name, panic = %panic_message(payload.as_ref()), "recording a panicked job panicked too");
    }
}

/// The warning of a job whose source skipped selected streams: which, and why.
fn skipped_warning(skipped: &BTreeMap<String, String>) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let list: Vec<String> = skipped
        .iter()
        .map(|(stream, reason)| format!("{stream} ({reason})"))
        .collect();
    Some(format!(
        "{} selected table(s) were not replicated: {}",
        skipped.len(),
        list.join("; ")
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run_phases(
    ctx: &JobContext,
    integration: &Integration,
    job: &Job,
    stop: &Stop,
    config: &JobConfig,
    progress: &Progress,
    log: &JobLog,
    finish: &mut JobFinish,
    rows_total: &mut u64,
    source_log: mpsc::Sender<String>,
) -> Result<(), (LogLocation, JobError)> {
    let main_err = |e: JobError| (LogLocation::Main, e);
    let tap_err = |e: JobError| (LogLocation::Tap, e);
    let spec = ctx.spec(integration).map_err(main_err)?;
    let built =
        std::panic::catch_unwind(AssertUnwindSafe(|| ctx.factory.source(&spec))).map_err(|payload| {
            tap_err(JobError::Panicked {
                part: PART_SOURCE,
                message: panic_message(payload.as_ref()),
            })
        })?;
    let source: Arc<dyn Source> = Arc::from(built.map_err(tap_err)?);
    source.log_to(source_log);

    // Discovery (structure sync). It only reads, so a stop abandons it at once.
    progress.set_phase(Phase::Discovery);
    log.line(LogLocation::Tap, LogLevel::Info, "Running discovery")
        .await;
    let discovered = tokio::select! {
        biased;
        d = AssertUnwindSafe(source.discover()).catch_unwind() => d,
        () = stop.token().cancelled() => return Ok(()),
    };
    let mut catalog = match discovered {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            finish.discovery_exit_status = Some(1);
            return Err(tap_err(e.into()));
        }
        Err(payload) => {
            finish.discovery_exit_status = Some(1);
            return Err(tap_err(JobError::Panicked {
                part: PART_SOURCE,
                message: panic_message(payload.as_ref()),
            }));
        }
    };
    finish.discovery_exit_status = Some(0);
    // Carry over the selection as it is now (the user may have changed it since the job started).
    if let Some(previous) = latest_catalog(ctx, integration).await {
        catalog.carry_selection_from(&previous);
    }
    ctx.metastore
        .set_catalog(integration.id, &catalog)
        .await
        .map_err(|e| main_err(e.into()))?;
    let selected: Vec<String> = catalog.selected().map(|s| s.tap_stream_id.clone()).collect();
    log.line(
        LogLocation::Tap,
        LogLevel::Info,
        format!(
            "Discovered {} streams; selected: {}",
            catalog.streams.len(),
            selected.join(", ")
        ),
    )
    .await;
    if selected.is_empty() {
        log.line(
            LogLocation::Main,
            LogLevel::Warning,
            "No table is selected; nothing to replicate",
        )
        .await;
        finish.tap_exit_status = Some(0);
        finish.target_exit_status = Some(0);
        return Ok(());
    }
    if stop.is_stopped() {
        return Ok(());
    }

    // Extraction and loading: the pipeline, as `seam sync` runs it. The destination's committed state
    // is where the job resumes: it was made durable with the rows it covers (exactly once,
    // append-only streams included). An integration without bookmarks in the metastore (new, or
    // reset by a new start date) starts from scratch, and that empty state is committed first so a
    // crash right after still starts from scratch.
    let mut config = config.clone();
    config.reset_state = integration.state.is_none();
    // The job claims the schema before it reads its bookmarks (see `Destination::fence`): a later
    // job has a later start, so a worker whose job another took over can no longer commit. The start
    // time rather than the id: ids restart with a new metastore, time does not.
    let token = job.start_time.timestamp_micros();
    let open = {
        let (factory, schema, catalog) = (
            Arc::clone(&ctx.factory),
            integration.name.clone(),
            catalog.clone(),
        );
        move || {
            let mut destination = factory.destination_for(&schema, &catalog).map_err(|e| match e {
                JobError::Destination(e) => e,
                other => DestinationError::new(other.kind(), other),
            })?;
            destination.fence(token)?;
            Ok(destination)
        }
    };
    let mut book = Bookkeeper {
        ctx,
        integration,
        job,
        log,
        selected: &selected,
        committed: State::default(),
        labels: BTreeMap::new(),
        rows_total: 0,
    };
    let run = pipeline::run(source, catalog, open, &mut book, progress, stop, &config).await;
    *rows_total = book.rows_total;
    let PipelineRun { read, load, .. } = run;
    if let Err(e) = load {
        let e = JobError::from(e);
        if ended_by_stop(stop, &e) {
            return stopped_at(log, e).await;
        }
        finish.target_exit_status = Some(1);
        // The source stops on its own once loading fails; its error, if any, is a consequence.
        finish.tap_exit_status = read.as_ref().map(|r| if r.is_ok() { 0 } else { 1 });
        if let Some(table) = error_table(&e) {
            let delta = LoadDelta {
                table_name: table,
                rows: 0,
                max_bookmark: None,
                error: Some(e.to_string()),
            };
            let _ = ctx
                .metastore
                .record_loads(integration.id, job.id, ctx.clock.now(), &[delta])
                .await;
        }
        return Err((LogLocation::Target, e));
    }
    finish.target_exit_status = Some(0);
    let summary = match read {
        Some(Ok(summary)) => summary,
        Some(Err(e)) => {
            let e = JobError::from(e);
            if ended_by_stop(stop, &e) {
                return stopped_at(log, e).await;
            }
            finish.tap_exit_status = Some(1);
            return Err(tap_err(e));
        }
        None => {
            finish.tap_exit_status = Some(1);
            return Err(tap_err(PipelineError::Cancelled(PART_SOURCE).into()));
        }
    };
    finish.tap_exit_status = Some(0);
    ctx.telemetry.source_requests(integration.id, summary.requests, 0);
    for (stream, reason) in &summary.skipped {
        log.line(
            LogLocation::Tap,
            LogLevel::Warning,
            format!("skipped {stream}: {reason}"),
        )
        .await;
    }
    finish.warning_message = skipped_warning(&summary.skipped);
    for (stream, n) in &summary.records {
        log.line(
            LogLocation::Tap,
            LogLevel::Info,
            format!("{stream}: {n} records extracted"),
        )
        .await;
    }
    Ok(())
}

/// The integration's stored catalog as of now, falling back to the snapshot the job started with.
pub(crate) async fn latest_catalog(ctx: &JobContext, integration: &Integration) -> Option<Catalog> {
    match ctx.metastore.get_integration(integration.id).await {
        Ok(Some(i)) => i.catalog,
        _ => integration.catalog.clone(),
    }
}

fn error_table(e: &JobError) -> Option<String> {
    match e {
        JobError::Destination(d) => d.table.clone(),
        _ => None,
    }
}
