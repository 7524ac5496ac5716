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
//! free of secrets).

use crate::loader::{Commit, LoadError};
use crate::pipeline::{
    self, Phase, PipelineConfig, PipelineError, PipelineHooks, PipelineRun, Progress, Stop,
};
use crate::scheduler::Clock;
use async_trait::async_trait;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use futures::FutureExt as _;
use seam_core::{
    Catalog, Classify, CommitReport, Destination, DestinationError, ErrorKind, Source, SourceError, State,
};
use seam_metastore::crypto::CryptoError;
use seam_metastore::{
    CheckStatus, ConnectionCheck, Credentials, Integration, IntegrationId, IntegrationProperties, Job,
    JobFinish, JobStatus, LoadDelta, LogLevel, LogLine, LogLocation, Metastore, MetastoreError,
    NewNotification, NotificationLevel, SecretCipher,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Setting key: the row limit of a billing period.
pub const SETTING_ROW_LIMIT: &str = "row_limit";
/// Setting key: `true` to stop scheduled jobs once the limit is reached (manual runs still allowed).
pub const SETTING_STOP_AT_LIMIT: &str = "stop_replication_at_limit";
/// Setting key: URL that receives every notification as a JSON POST.
pub const SETTING_WEBHOOK_URL: &str = "notification_webhook_url";
/// Setting key: the first day of the first billing period (`YYYY-MM-DD`), set on first use.
pub const SETTING_BILLING_ANCHOR: &str = "billing_anchor";
/// Row limit when none is configured.
pub const DEFAULT_ROW_LIMIT: i64 = 5_000_000;
/// A billing period is 30 days.
pub const BILLING_PERIOD_DAYS: i64 = 30;
/// Usage thresholds that notify, in percent.
pub const USAGE_THRESHOLDS: [u32; 3] = [70, 90, 100];

/// What a source is built from: the integration's settings and its opened credentials.
/// `Debug` shows credentials as `***`.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The integration.
    pub integration_id: IntegrationId,
    /// Its warehouse schema name.
    pub schema_name: String,
    /// Connector type (`platform.zendesk`).
    pub kind: String,
    /// Settings.
    pub properties: IntegrationProperties,
    /// Credentials in clear (memory only).
    pub credentials: Credentials,
}

/// Builds the parts of a job that talk to the outside world. One per process.
pub trait ConnectorFactory: Send + Sync + fmt::Debug {
    /// The source for an integration. Validates configuration without IO; an unknown `kind` is an
    /// error naming the known ones.
    fn source(&self, spec: &SourceSpec) -> Result<Box<dyn Source>, JobError>;

    /// The destination for a warehouse schema (created when missing). Blocking: called on a blocking
    /// thread.
    fn destination(&self, schema_name: &str) -> Result<Box<dyn Destination>, JobError>;

    /// The destination for a job over `catalog` (e.g. to tell append-only streams). Blocking. Defaults
    /// to [`ConnectorFactory::destination`].
    fn destination_for(
        &self,
        schema_name: &str,
        catalog: &Catalog,
    ) -> Result<Box<dyn Destination>, JobError> {
        let _ = catalog;
        self.destination(schema_name)
    }
}

/// A job or check could not run.
#[derive(Debug, Error)]
pub enum JobError {
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The destination failed.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The metastore failed.
    #[error(transparent)]
    Metastore(#[from] MetastoreError),
    /// Credentials could not be opened.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// No connector for this type.
    #[error("unknown integration type {kind}: seam knows {known}")]
    UnknownType {
        /// The type asked for.
        kind: String,
        /// The known types.
        known: String,
    },
    /// The connector's configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The loader failed outside the warehouse (bad input from the source, a lost connection).
    #[error("the loader stopped unexpectedly: {0}")]
    Loader(String),
    /// A part of the job panicked (a bug); the job ended instead of hanging.
    #[error(
        "the {part} panicked: {message}; this is a bug in seam, please report it with this extraction's \
         log (work committed before it is kept)"
    )]
    Panicked {
        /// What panicked: [`PART_SOURCE`], [`PART_LOADER`] or [`PART_JOB`].
        part: &'static str,
        /// The panic's message.
        message: String,
    },
    /// After a stop, a part of the job did not return within the grace period and was abandoned.
    #[error(
        "the {part} did not stop within {} s of the stop; seam abandoned it: what was not committed \
         is read again by the next job",
        grace.as_secs_f64()
    )]
    StopTimedOut {
        /// What was abandoned: [`PART_SOURCE`] or [`PART_WAREHOUSE`].
        part: &'static str,
        /// The grace it had.
        grace: Duration,
    },
    /// A stop came while the loader waited to retry a failed commit.
    #[error(transparent)]
    Stopped(LoadError),
}

impl Classify for JobError {
    fn kind(&self) -> ErrorKind {
        match self {
            JobError::Source(e) => e.kind(),
            JobError::Destination(e) => e.kind(),
            JobError::Metastore(e) => e.kind(),
            JobError::Stopped(LoadError::Stopped { source, .. }) => source.kind(),
            JobError::Crypto(_) | JobError::UnknownType { .. } | JobError::Config(_) => ErrorKind::Config,
            JobError::Loader(_)
            | JobError::Panicked { .. }
            | JobError::StopTimedOut { .. }
            | JobError::Stopped(_) => ErrorKind::Internal,
        }
    }
}

pub use crate::pipeline::{panic_message, DEFAULT_STOP_GRACE, PART_LOADER, PART_SOURCE, PART_WAREHOUSE};

/// [`JobError::Panicked`]: the job runner itself.
pub const PART_JOB: &str = "job runner";

impl From<PipelineError> for JobError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Source(e) => JobError::Source(e),
            PipelineError::Destination(e) | PipelineError::Load(LoadError::Destination { source: e, .. }) => {
                JobError::Destination(e)
            }
            PipelineError::Load(stopped @ LoadError::Stopped { .. }) => JobError::Stopped(stopped),
            PipelineError::Load(other) => JobError::Loader(other.to_string()),
            PipelineError::Panicked { part, message } => JobError::Panicked { part, message },
            PipelineError::StopTimedOut { part, grace } => JobError::StopTimedOut { part, grace },
            cancelled @ PipelineError::Cancelled(_) => JobError::Loader(cancelled.to_string()),
        }
    }
}

/// How jobs run: the pipeline's settings (batching, commit retries, channel size, and
/// [`PipelineConfig::stop_grace`]: after Stop Extraction or shutdown, how long the job waits for the
/// source to return at a safe point and for an in-flight warehouse call to end before it abandons
/// them and ends `cancelled`). `reset_state` is decided per job: an integration without bookmarks
/// in the metastore starts from scratch.
pub type JobConfig = PipelineConfig;

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

/// Receives every notification the runtime raises (in-app store, webhook, ...). Must not fail the
/// caller: delivery problems are logged by the implementation.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// Delivers one notification.
    async fn notify(&self, notification: NewNotification);
}

/// Stores notifications in the metastore only (no webhook).
#[derive(Debug, Clone)]
pub struct InAppNotifier {
    /// The store.
    pub metastore: Arc<dyn Metastore>,
}

#[async_trait]
impl Notifier for InAppNotifier {
    async fn notify(&self, notification: NewNotification) {
        if let Err(e) = self.metastore.add_notification(notification).await {
            warn!(error = %e, "could not store a notification");
        }
    }
}

/// Counters exported as Prometheus text. Metric names live here and nowhere else.
///
/// Hand-rolled rather than the `metrics` crates: a handful of labelled counters, rendered on request,
/// without a process-global recorder (which would clash between the many servers a test binary starts).
#[derive(Debug, Default)]
pub struct Telemetry {
    inner: Mutex<TelemetryInner>,
}

#[derive(Debug, Default)]
struct TelemetryInner {
    jobs: BTreeMap<(IntegrationId, &'static str), u64>,
    rows: BTreeMap<IntegrationId, u64>,
    api_requests: BTreeMap<IntegrationId, u64>,
    api_rate_limited: BTreeMap<IntegrationId, u64>,
    http: BTreeMap<(String, u16), u64>,
}

impl Telemetry {
    fn with<R>(&self, f: impl FnOnce(&mut TelemetryInner) -> R) -> R {
        f(&mut self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// A job ended with `outcome` (`succeeded`, `succeeded_with_warnings`, `failed`, `cancelled`).
    pub fn job_finished(&self, integration: IntegrationId, outcome: JobStatus) {
        self.with(|t| *t.jobs.entry((integration, outcome.as_str())).or_default() += 1);
    }

    /// Rows were loaded.
    pub fn rows_loaded(&self, integration: IntegrationId, rows: u64) {
        self.with(|t| *t.rows.entry(integration).or_default() += rows);
    }

    /// Source API requests made, and how many of them were answered 429.
    pub fn source_requests(&self, integration: IntegrationId, requests: u64, rate_limited: u64) {
        self.with(|t| {
            *t.api_requests.entry(integration).or_default() += requests;
            *t.api_rate_limited.entry(integration).or_default() += rate_limited;
        });
    }

    /// One request served by seam's own API.
    pub fn http_request(&self, route: &str, status: u16) {
        self.with(|t| *t.http.entry((route.to_owned(), status)).or_default() += 1);
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        self.with(|t| {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "# HELP seam_jobs_total Replication jobs finished, by outcome."
            );
            let _ = writeln!(out, "# TYPE seam_jobs_total counter");
            for ((id, outcome), n) in &t.jobs {
                let _ = writeln!(
                    out,
                    "seam_jobs_total{{source_id=\"{id}\",outcome=\"{outcome}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP seam_rows_loaded_total Rows loaded into the warehouse (subtables counted)."
            );
            let _ = writeln!(out, "# TYPE seam_rows_loaded_total counter");
            for (id, n) in &t.rows {
                let _ = writeln!(out, "seam_rows_loaded_total{{source_id=\"{id}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP seam_source_api_requests_total Requests made to the source's API."
            );
            let _ = writeln!(out, "# TYPE seam_source_api_requests_total counter");
            for (id, n) in &t.api_requests {
                let _ = writeln!(out, "seam_source_api_requests_total{{source_id=\"{id}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP seam_source_api_rate_limited_total Source API responses that were 429."
            );
            let _ = writeln!(out, "# TYPE seam_source_api_rate_limited_total counter");
            for (id, n) in &t.api_rate_limited {
                let _ = writeln!(
                    out,
                    "seam_source_api_rate_limited_total{{source_id=\"{id}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP seam_http_requests_total Requests served by seam's API, by route and status."
            );
            let _ = writeln!(out, "# TYPE seam_http_requests_total counter");
            for ((route, status), n) in &t.http {
                let _ = writeln!(
                    out,
                    "seam_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
            out
        })
    }
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
    fn spec(&self, integration: &Integration) -> Result<SourceSpec, JobError> {
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

/// Live progress of a running job, as the dashboard and the API show it: the job, and its
/// [`Progress`] (the pipeline's counters, the same `seam sync` shows).
#[derive(Debug, Clone, Serialize)]
pub struct JobProgress {
    /// The job.
    pub job_id: i64,
    /// Its name.
    pub job_name: String,
    /// Phase.
    pub phase: Phase,
    /// The stream of the latest record.
    pub current_stream: Option<String>,
    /// Records received from the source so far.
    pub records_extracted: u64,
    /// Rows committed to the warehouse so far (subtables counted).
    pub rows_loaded: u64,
    /// Records received per stream.
    pub records_by_stream: BTreeMap<String, u64>,
    /// Started at.
    pub started_at: DateTime<Utc>,
    /// True once a stop was asked for.
    pub stopping: bool,
}

impl JobProgress {
    /// `job`'s progress as `progress` counts it now.
    pub fn of(job: &Job, progress: &Progress) -> JobProgress {
        let p = progress.snapshot();
        JobProgress {
            job_id: job.id,
            job_name: job.job_name.clone(),
            phase: p.phase,
            current_stream: p.current_stream,
            records_extracted: p.records_total,
            rows_loaded: p.rows_committed,
            records_by_stream: p.records,
            started_at: job.start_time,
            stopping: p.stopping,
        }
    }
}

/// Writes extraction-log lines for one job, in Stitch's format.
#[derive(Debug, Clone)]
struct JobLog {
    metastore: Arc<dyn Metastore>,
    clock: Arc<dyn Clock>,
    job_id: i64,
}

impl JobLog {
    fn of(ctx: &JobContext, job_id: i64) -> JobLog {
        JobLog {
            metastore: Arc::clone(&ctx.metastore),
            clock: Arc::clone(&ctx.clock),
            job_id,
        }
    }

    async fn line(&self, location: LogLocation, level: LogLevel, message: impl Into<String>) {
        let line = LogLine {
            at: self.clock.now(),
            location,
            level,
            message: message.into(),
        };
        if let Err(e) = self
            .metastore
            .append_logs(self.job_id, std::slice::from_ref(&line))
            .await
        {
            warn!(job_id = self.job_id, error = %e, "could not store an extraction log line");
        }
    }
}

/// `column: value` for each stream's bookmark in `state` (Stitch's "Max Replication Bookmark Value").
fn bookmark_labels(state: &State) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (stream, marks) in &state.bookmarks {
        if let Some(obj) = marks.as_object() {
            let text: Vec<String> = obj
                .iter()
                // Pagination cursors are opaque and say nothing about how far replication got.
                .filter(|(k, v)| (v.is_string() || v.is_number()) && !k.contains("cursor"))
                .map(|(k, v)| {
                    format!(
                        "{k}: {}",
                        v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
                    )
                })
                .collect();
            if !text.is_empty() {
                out.insert(stream.clone(), text.join(", "));
            }
        }
    }
    out
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
/// metastore. The caller then runs [`check_usage_thresholds`]. Extraction and loading run through
/// [`pipeline::run`], the driver `seam sync` uses; `progress` is that run's [`Progress`].
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

/// Stores the end of a job (completed now) and counts its outcome; returns the job as stored (as it
/// should have been stored, when the metastore failed: the next start then marks it failed).
async fn store_finish(ctx: &JobContext, job: &Job, finish: &mut JobFinish) -> Job {
    finish.completion_time = ctx.clock.now();
    ctx.telemetry.job_finished(job.integration_id, finish.status);
    match ctx.metastore.finish_job(job.id, finish).await {
        Ok(j) => j,
        Err(e) => {
            warn!(job = %job.job_name, error = %e, "could not record the end of a job; the next start marks it failed");
            Job {
                status: finish.status,
                completion_time: Some(finish.completion_time),
                error_message: finish.error_message.clone(),
                warning_message: finish.warning_message.clone(),
                ..job.clone()
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
    let open = {
        let (factory, schema, catalog) = (
            Arc::clone(&ctx.factory),
            integration.name.clone(),
            catalog.clone(),
        );
        move || {
            factory.destination_for(&schema, &catalog).map_err(|e| match e {
                JobError::Destination(e) => e,
                other => DestinationError::new(other.kind(), other),
            })
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

/// A job's side of the pipeline: logs where each stream starts, and records what each commit made
/// durable (bookmarks, loads per table, usage, log lines).
struct Bookkeeper<'a> {
    ctx: &'a JobContext,
    integration: &'a Integration,
    job: &'a Job,
    log: &'a JobLog,
    selected: &'a [String],
    committed: State,
    labels: BTreeMap<String, String>,
    rows_total: u64,
}

#[async_trait]
impl PipelineHooks for Bookkeeper<'_> {
    async fn started(&mut self, state: &State, reset: bool) {
        if reset {
            self.log
                .line(
                    LogLocation::Main,
                    LogLevel::Info,
                    "No bookmarks: full replication from the start date",
                )
                .await;
        }
        for stream in self.selected {
            let line = match state.bookmarks.get(stream) {
                Some(b) => format!("found current bookmark for {stream}: {b}"),
                None => {
                    let start = seam_core::singer::format_time(self.integration.properties.start_date);
                    format!("no bookmark for {stream}; starting from {start}")
                }
            };
            self.log.line(LogLocation::Tap, LogLevel::Info, line).await;
        }
        self.committed = state.clone();
        self.labels = bookmark_labels(state);
    }

    async fn committed(&mut self, commit: Commit<'_>) {
        let state = commit.state.and_then(|v| State::from_value(v.clone()).ok());
        self.committed_batch(commit.report, state).await;
    }
}

impl Bookkeeper<'_> {
    async fn committed_batch(&mut self, report: &CommitReport, state: Option<State>) {
        let (ctx, id) = (self.ctx, self.integration.id);
        let at = ctx.clock.now();
        if let Some(s) = &state {
            self.committed.merge_forward(s);
            if let Err(e) = ctx.metastore.set_state(id, Some(&self.committed)).await {
                warn!(job = %self.job.job_name, error = %e, "could not store bookmarks; the next job re-reads from the older ones");
            }
        }
        let labels = bookmark_labels(&self.committed);
        for (stream, label) in &labels {
            if self.labels.get(stream) != Some(label) {
                self.log
                    .line(
                        LogLocation::Main,
                        LogLevel::Info,
                        format!("State update: bookmarks.{stream} = {label}"),
                    )
                    .await;
            }
        }
        let deltas: Vec<LoadDelta> = report
            .rows
            .iter()
            .map(|(table, rows)| LoadDelta {
                table_name: table.clone(),
                rows: i64::try_from(*rows).unwrap_or(i64::MAX),
                max_bookmark: labels.get(table).cloned(),
                error: None,
            })
            .collect();
        self.labels = labels;
        let rows = report.total_rows();
        self.rows_total += rows;
        ctx.telemetry.rows_loaded(id, rows);
        for (table, n) in &report.rejected {
            self.log
                .line(
                    LogLocation::Target,
                    LogLevel::Warning,
                    format!("{n} records of {table} went to _sdc_rejected"),
                )
                .await;
        }
        if !deltas.is_empty() {
            self.log
                .line(
                    LogLocation::Target,
                    LogLevel::Info,
                    format!("Committed {rows} rows"),
                )
                .await;
            if let Err(e) = ctx.metastore.record_loads(id, self.job.id, at, &deltas).await {
                warn!(job = %self.job.job_name, error = %e, "could not record loads");
            }
        }
    }
}

/// The integration's stored catalog as of now, falling back to the snapshot the job started with.
async fn latest_catalog(ctx: &JobContext, integration: &Integration) -> Option<Catalog> {
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

/// Runs a connection check and a discovery for an integration, updating the `running` check record
/// `check` as it goes. The discovered catalog (with any earlier selection carried over) is stored.
/// Success reads "Success!"; a failure carries the cause in words.
pub async fn run_check(
    ctx: &JobContext,
    integration: Integration,
    mut check: ConnectionCheck,
) -> ConnectionCheck {
    let outcome = async {
        let spec = ctx.spec(&integration).map_err(|e| (true, e))?;
        let source = ctx.factory.source(&spec).map_err(|e| (true, e))?;
        source.check().await.map_err(|e| (true, JobError::from(e)))?;
        check.check_exit_status = Some(0);
        let mut catalog = source.discover().await.map_err(|e| (false, JobError::from(e)))?;
        if let Some(previous) = latest_catalog(ctx, &integration).await {
            catalog.carry_selection_from(&previous);
        }
        ctx.metastore
            .set_catalog(integration.id, &catalog)
            .await
            .map_err(|e| (false, JobError::from(e)))?;
        Ok::<Catalog, (bool, JobError)>(catalog)
    }
    .await;
    check.completion_time = Some(ctx.clock.now());
    match outcome {
        Ok(catalog) => {
            check.status = CheckStatus::Succeeded;
            check.discovery_exit_status = Some(0);
            info!(
                source_id = integration.id,
                streams = catalog.streams.len(),
                "connection check succeeded"
            );
        }
        Err((in_check, e)) => {
            check.status = CheckStatus::Failed;
            let message = describe_check_error(&e);
            warn!(source_id = integration.id, error = %message, "connection check failed");
            if in_check {
                check.check_exit_status = Some(1);
                check.check_error_message = Some(message);
            } else {
                check.discovery_exit_status = Some(1);
                check.discovery_error_message = Some(message);
            }
        }
    }
    if let Err(e) = ctx.metastore.finish_check(&check).await {
        warn!(source_id = integration.id, error = %e, "could not store the connection check result");
    }
    check
}

/// The user-facing cause of a failed check. The source's message names the problem (unknown
/// subdomain, rejected token, not an admin); network-level failures get a prefix saying so.
pub fn describe_check_error(e: &JobError) -> String {
    match e.kind() {
        ErrorKind::Transient => format!("network: {e}"),
        ErrorKind::RateLimited { .. } => format!("rate limited by the source: {e}"),
        _ => e.to_string(),
    }
}

/// Row usage in the current billing period, against the limit.
#[derive(Debug, Clone, Serialize)]
pub struct UsageSummary {
    /// First day of the period.
    pub period_start: NaiveDate,
    /// Last day of the period.
    pub period_end: NaiveDate,
    /// The row limit.
    pub row_limit: i64,
    /// Whether scheduled jobs stop at the limit.
    pub stop_replication_at_limit: bool,
    /// Rows replicated in the period.
    pub rows_used: i64,
}

impl UsageSummary {
    /// Percent of the limit used.
    pub fn percent_used(&self) -> f64 {
        if self.row_limit <= 0 {
            return 0.0;
        }
        self.rows_used as f64 * 100.0 / self.row_limit as f64
    }

    /// True when the user asked scheduled jobs to stop and the limit is reached.
    pub fn blocks_scheduled_jobs(&self) -> bool {
        self.stop_replication_at_limit && self.rows_used >= self.row_limit
    }
}

/// The 30-day billing period containing `today`, counted from `anchor`.
pub fn billing_period(anchor: NaiveDate, today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let days = (today - anchor).num_days().max(0);
    let start = anchor + ChronoDuration::days(days / BILLING_PERIOD_DAYS * BILLING_PERIOD_DAYS);
    (start, start + ChronoDuration::days(BILLING_PERIOD_DAYS - 1))
}

/// Computes [`UsageSummary`] for now; sets the billing anchor to today when none is stored.
pub async fn usage_summary(
    metastore: &dyn Metastore,
    now: DateTime<Utc>,
) -> Result<UsageSummary, MetastoreError> {
    let today = now.date_naive();
    let anchor = match metastore.get_setting(SETTING_BILLING_ANCHOR).await? {
        Some(s) => s.parse().unwrap_or(today),
        None => {
            metastore
                .set_setting(SETTING_BILLING_ANCHOR, &today.to_string())
                .await?;
            today
        }
    };
    let (start, end) = billing_period(anchor, today);
    let row_limit = metastore
        .get_setting(SETTING_ROW_LIMIT)
        .await?
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ROW_LIMIT);
    let stop = metastore
        .get_setting(SETTING_STOP_AT_LIMIT)
        .await?
        .is_some_and(|s| s == "true");
    let rows_used = metastore.usage(start, end).await?.iter().map(|u| u.rows).sum();
    Ok(UsageSummary {
        period_start: start,
        period_end: end,
        row_limit,
        stop_replication_at_limit: stop,
        rows_used,
    })
}

/// Raises the 70 / 90 / 100 % usage notifications, each once per billing period.
pub async fn check_usage_thresholds(ctx: &JobContext) {
    let now = ctx.clock.now();
    let summary = match usage_summary(ctx.metastore.as_ref(), now).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "could not compute row usage");
            return;
        }
    };
    let key = format!("usage_notified.{}", summary.period_start);
    let notified: u32 = ctx
        .metastore
        .get_setting(&key)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let percent = summary.percent_used();
    let Some(&reached) = USAGE_THRESHOLDS.iter().rev().find(|&&t| percent >= f64::from(t)) else {
        return;
    };
    if reached <= notified {
        return;
    }
    let _ = ctx.metastore.set_setting(&key, &reached.to_string()).await;
    let (code, subject) = if reached >= 100 {
        ("usage-reached-limit", "Row Limit Reached")
    } else {
        ("usage-nearing-limit", "Approaching Row Limit")
    };
    let tail = if summary.stop_replication_at_limit {
        "Scheduled replication stops at the limit, as configured; manual runs are still allowed."
    } else {
        "Replication continues; reduce frequencies, de-select tables or raise the limit."
    };
    ctx.notifier
        .notify(NewNotification {
            level: NotificationLevel::Warning,
            code: code.to_owned(),
            integration_id: None,
            subject: subject.to_owned(),
            message: format!(
                "{} of {} rows used ({reached} %) in the billing period {} to {}. {tail}",
                summary.rows_used, summary.row_limit, summary.period_start, summary.period_end
            ),
            created_at: now,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn billing_periods_are_30_days_from_the_anchor() {
        let d = |s: &str| s.parse::<NaiveDate>().expect("date");
        assert_eq!(
            billing_period(d("2026-01-01"), d("2026-01-01")),
            (d("2026-01-01"), d("2026-01-30"))
        );
        assert_eq!(
            billing_period(d("2026-01-01"), d("2026-01-30")),
            (d("2026-01-01"), d("2026-01-30"))
        );
        assert_eq!(
            billing_period(d("2026-01-01"), d("2026-01-31")),
            (d("2026-01-31"), d("2026-03-01"))
        );
    }

    #[test]
    fn bookmark_labels_read_column_and_value() {
        let s = State::from_value(
            json!({"bookmarks": {"tickets": {"generated_timestamp": 1700000000, "after_cursor": "abc"},
            "users": {"updated_at": "2026-01-01T00:00:00Z"}, "odd": {"cursor": null}}}),
        )
        .expect("state");
        let l = bookmark_labels(&s);
        assert_eq!(l["tickets"], "generated_timestamp: 1700000000");
        assert_eq!(l["users"], "updated_at: 2026-01-01T00:00:00Z");
        assert!(!l.contains_key("odd"));
    }

    #[test]
    fn telemetry_renders_prometheus_text() {
        let t = Telemetry::default();
        t.job_finished(1, JobStatus::Succeeded);
        t.rows_loaded(1, 42);
        t.source_requests(1, 10, 2);
        let text = t.render();
        assert!(
            text.contains("seam_jobs_total{source_id=\"1\",outcome=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(text.contains("seam_rows_loaded_total{source_id=\"1\"} 42"));
        assert!(text.contains("seam_source_api_rate_limited_total{source_id=\"1\"} 2"));
    }
}
