//! The records the metastore keeps. Plain data: no IO, no validation beyond types (the API validates
//! raw input before anything reaches here).

use chrono::{DateTime, NaiveDate, Utc};
use seam_core::{Catalog, State};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// An integration's id (Stitch's `source_id`).
pub type IntegrationId = i64;
/// A replication job's id.
pub type JobId = i64;

/// Non-secret settings of an integration (Stitch's `properties`): the schedule and start date every
/// integration has, and the connector's own settings as its spec describes them.
///
/// Stored as one JSON object: the connector's settings sit beside the schedule's keys, which is also
/// how releases before the connector registry stored Zendesk's `subdomain` and `email`: their rows
/// read unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationProperties {
    /// Historical start date: incremental streams replicate rows updated at or after it.
    pub start_date: DateTime<Utc>,
    /// Replication frequency in minutes: 30, 60, 180, 360, 720 or 1440.
    pub frequency_in_minutes: u32,
    /// Anchor for frequencies of an hour or more: runs fall on `anchor + k * frequency`.
    #[serde(default)]
    pub anchor_time: Option<DateTime<Utc>>,
    /// Quartz cron (6 or 7 fields, UTC); wins over frequency and anchor.
    #[serde(default)]
    pub cron_expression: Option<String>,
    /// The connector's settings (for Zendesk: `subdomain`, and `email` for API-token sign-in).
    #[serde(flatten)]
    pub config: Map<String, Value>,
}

impl IntegrationProperties {
    /// The connector setting `key` when it is a string.
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }
}

/// An integration as stored. Credentials are an opaque sealed blob (see [`crate::crypto`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    /// Id.
    pub id: IntegrationId,
    /// The name shown on the dashboard.
    pub display_name: String,
    /// The warehouse schema name; immutable; unique among integrations that are not deleted.
    pub name: String,
    /// Connector type, as the connector's spec names it (`platform.zendesk`).
    pub kind: String,
    /// Settings.
    pub properties: IntegrationProperties,
    /// Sealed credentials (nonce + ciphertext); never plaintext.
    pub sealed_credentials: Vec<u8>,
    /// Paused since (no scheduled jobs while set).
    pub paused_at: Option<DateTime<Utc>>,
    /// Deleted at (the row stays for history; the name is free again).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last settings change.
    pub updated_at: DateTime<Utc>,
    /// The last discovered catalog, with the user's selection.
    pub catalog: Option<Catalog>,
    /// Bookmarks committed so far (what the next job resumes from).
    pub state: Option<State>,
}

impl Integration {
    /// True when at least one stream is selected (else Stitch shows "Not Configured").
    pub fn is_configured(&self) -> bool {
        self.catalog
            .as_ref()
            .is_some_and(|c| c.selected().next().is_some())
    }
}

/// What creating an integration needs.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIntegration {
    /// The name shown on the dashboard.
    pub display_name: String,
    /// The schema name (already derived and validated).
    pub name: String,
    /// Connector type.
    pub kind: String,
    /// Settings.
    pub properties: IntegrationProperties,
    /// Sealed credentials.
    pub sealed_credentials: Vec<u8>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// The settings a user may change after creation (Stitch's PUT: `display_name`, `properties`,
/// `paused_at`). The schema name is not among them.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationUpdate {
    /// The name shown on the dashboard.
    pub display_name: String,
    /// Settings.
    pub properties: IntegrationProperties,
    /// Sealed credentials.
    pub sealed_credentials: Vec<u8>,
    /// Paused since, or `None` to run on schedule.
    pub paused_at: Option<DateTime<Utc>>,
    /// Change time.
    pub updated_at: DateTime<Utc>,
}

/// A connection check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Check or discovery under way.
    Running,
    /// Both passed.
    Succeeded,
    /// One failed; see the messages.
    Failed,
}

impl CheckStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Running => "running",
            CheckStatus::Succeeded => "succeeded",
            CheckStatus::Failed => "failed",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => CheckStatus::Running,
            "succeeded" => CheckStatus::Succeeded,
            "failed" => CheckStatus::Failed,
            _ => return None,
        })
    }
}

/// A connection check + discovery run (Stitch's connection-check object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionCheck {
    /// Id.
    pub id: i64,
    /// The integration checked.
    pub integration_id: IntegrationId,
    /// Status.
    pub status: CheckStatus,
    /// Started at.
    pub start_time: DateTime<Utc>,
    /// Finished at.
    pub completion_time: Option<DateTime<Utc>>,
    /// `None` while running, 0 ok, 1 failed.
    pub check_exit_status: Option<i32>,
    /// Why the check failed, in words.
    pub check_error_message: Option<String>,
    /// `None` while running (or when the check failed first), 0 ok, 1 failed.
    pub discovery_exit_status: Option<i32>,
    /// Why discovery failed.
    pub discovery_error_message: Option<String>,
}

/// How a job was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobTrigger {
    /// By the schedule.
    Scheduled,
    /// By "Run Extraction Now".
    Manual,
}

impl JobTrigger {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobTrigger::Scheduled => "scheduled",
            JobTrigger::Manual => "manual",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => JobTrigger::Scheduled,
            "manual" => JobTrigger::Manual,
            _ => return None,
        })
    }
}

/// A job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Queued: waiting for a worker to lease it (only where jobs go through the queue, see
    /// [`crate::Metastore::enqueue_job`]).
    Pending,
    /// Running now.
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished, but part of the selection was not replicated (streams the source skipped, e.g. a
    /// 403 for a feature the account's plan lacks); [`Job::warning_message`] says which and why. Counts
    /// as a success for scheduling, backoff and the integration's status.
    SucceededWithWarnings,
    /// Ended by a critical error.
    Failed,
    /// Stopped by the user or by shutdown; committed work kept.
    Cancelled,
}

impl JobStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::SucceededWithWarnings => "succeeded_with_warnings",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "succeeded_with_warnings" => JobStatus::SucceededWithWarnings,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    /// True for the statuses that count as a successful job (with or without warnings).
    pub fn is_success(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::SucceededWithWarnings)
    }

    /// True while the job is queued or running (at most one such job per integration).
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Pending | JobStatus::Running)
    }
}

/// A replication job (Stitch's extraction object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// The integration.
    pub integration_id: IntegrationId,
    /// `<integration>.<job>.sync`, as Stitch names jobs.
    pub job_name: String,
    /// How it started.
    pub trigger: JobTrigger,
    /// Status.
    pub status: JobStatus,
    /// Started at.
    pub start_time: DateTime<Utc>,
    /// Finished at.
    pub completion_time: Option<DateTime<Utc>>,
    /// Discovery: 0 ok, 1 failed, `None` not run.
    pub discovery_exit_status: Option<i32>,
    /// Extraction: 0 ok, 1 failed, `None` not run.
    pub tap_exit_status: Option<i32>,
    /// Loading: 0 ok, 1 failed, `None` not run.
    pub target_exit_status: Option<i32>,
    /// The critical error, in words.
    pub error_message: Option<String>,
    /// What needs the user's attention in a job that succeeded with warnings (e.g. the streams the
    /// source skipped and why), in words.
    pub warning_message: Option<String>,
    /// Rows loaded (subtables counted).
    pub rows_loaded: i64,
    /// Queued jobs: when the job was due (its scheduled slot, or when it was asked for).
    pub due_time: Option<DateTime<Utc>>,
    /// The worker that runs (or ran) it, for queued jobs.
    pub worker: Option<String>,
    /// Queued jobs, while running: until when the worker's lease holds unless renewed.
    pub lease_until: Option<DateTime<Utc>>,
    /// A stop was asked for (the worker sees it at its next lease renewal).
    pub stop_requested: bool,
    /// The worker's latest progress report (JSON of the runtime's job progress), while running.
    pub progress: Option<String>,
}

/// The job queue at a glance, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Jobs waiting for a worker.
    pub pending: u64,
    /// When the oldest waiting job was due.
    pub oldest_pending_due: Option<DateTime<Utc>>,
    /// Running jobs per worker (`""` for jobs that run outside the queue), by worker name.
    pub running_by_worker: Vec<(String, u64)>,
    /// The soonest a running job's lease runs out.
    pub soonest_lease_end: Option<DateTime<Utc>>,
    /// How late the latest queued jobs started (start minus due), newest first, at most
    /// [`QueueStats::LATENESS_SAMPLE`] of them.
    pub start_lateness: Vec<chrono::Duration>,
}

impl QueueStats {
    /// Most started jobs [`QueueStats::start_lateness`] looks at.
    pub const LATENESS_SAMPLE: u32 = 1000;
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFinish {
    /// Final status (not `Running`).
    pub status: JobStatus,
    /// Finished at.
    pub completion_time: DateTime<Utc>,
    /// Discovery exit status.
    pub discovery_exit_status: Option<i32>,
    /// Extraction exit status.
    pub tap_exit_status: Option<i32>,
    /// Loading exit status.
    pub target_exit_status: Option<i32>,
    /// The critical error, in words.
    pub error_message: Option<String>,
    /// What needs attention (with [`JobStatus::SucceededWithWarnings`]), in words.
    pub warning_message: Option<String>,
}

/// Where a log line comes from (Stitch: `main`, `tap`, `target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLocation {
    /// The job runner.
    Main,
    /// The source.
    Tap,
    /// The loader.
    Target,
}

impl LogLocation {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLocation::Main => "main",
            LogLocation::Tap => "tap",
            LogLocation::Target => "target",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "main" => LogLocation::Main,
            "tap" => LogLocation::Tap,
            "target" => LogLocation::Target,
            _ => return None,
        })
    }
}

/// A log line's level; `Critical` ends the extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// DEBUG.
    Debug,
    /// INFO.
    Info,
    /// WARNING.
    Warning,
    /// ERROR.
    Error,
    /// CRITICAL: the extraction terminated.
    Critical,
}

impl LogLevel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "DEBUG" => LogLevel::Debug,
            "INFO" => LogLevel::Info,
            "WARNING" => LogLevel::Warning,
            "ERROR" => LogLevel::Error,
            "CRITICAL" => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// One extraction-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When.
    pub at: DateTime<Utc>,
    /// Where from.
    pub location: LogLocation,
    /// Level.
    pub level: LogLevel,
    /// The text (never a credential).
    pub message: String,
}

impl fmt::Display for LogLine {
    /// Stitch's format: `2026-11-17 16:44:41,159Z tap - INFO message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}Z {} - {} {}",
            self.at.format("%Y-%m-%d %H:%M:%S,%3f"),
            self.location.as_str(),
            self.level.as_str(),
            self.message
        )
    }
}

/// Rows a commit loaded into one table during one job. Recording the same table of the same job again
/// adds the rows and moves `last_batch_loaded_at` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadDelta {
    /// The table (subtables are their own tables: `tickets__tags`).
    pub table_name: String,
    /// Rows loaded by this commit.
    pub rows: i64,
    /// The table's max replication bookmark after the commit, as `column: value`.
    pub max_bookmark: Option<String>,
    /// A load error for this table, if one.
    pub error: Option<String>,
}

/// One table's load report for one job (Stitch's load object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLoad {
    /// The job.
    pub job_id: JobId,
    /// The integration.
    pub integration_id: IntegrationId,
    /// The table.
    pub table_name: String,
    /// Rows loaded (subtables are reported as their own tables).
    pub rows: i64,
    /// The last successful batch, `None` when the table only failed.
    pub last_batch_loaded_at: Option<DateTime<Utc>>,
    /// Max replication bookmark, `column: value`.
    pub max_bookmark: Option<String>,
    /// The load error, if one.
    pub error: Option<String>,
}

/// Replicated rows of one table of one integration on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The integration.
    pub integration_id: IntegrationId,
    /// The UTC day.
    pub day: NaiveDate,
    /// The table.
    pub table_name: String,
    /// Rows.
    pub rows: i64,
}

/// Notification level, as Stitch names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationLevel {
    /// Everything is working.
    Info,
    /// Data was replicated, but something may need attention.
    Warning,
    /// Data can't be replicated.
    Critical,
}

impl NotificationLevel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationLevel::Info => "info",
            NotificationLevel::Warning => "warning",
            NotificationLevel::Critical => "critical",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => NotificationLevel::Info,
            "warning" => NotificationLevel::Warning,
            "critical" => NotificationLevel::Critical,
            _ => return None,
        })
    }
}

/// A notification to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// Level.
    pub level: NotificationLevel,
    /// Stitch's id: `platform.exit_status`, `loading-error`, `usage-nearing-limit`, `usage-reached-limit`.
    pub code: String,
    /// The integration concerned, if one.
    pub integration_id: Option<IntegrationId>,
    /// Subject line.
    pub subject: String,
    /// Body.
    pub message: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A stored in-app notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Id.
    pub id: i64,
    /// Level.
    pub level: NotificationLevel,
    /// Code.
    pub code: String,
    /// The integration, if one.
    pub integration_id: Option<IntegrationId>,
    /// Subject.
    pub subject: String,
    /// Body.
    pub message: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Dismissed at.
    pub dismissed_at: Option<DateTime<Utc>>,
}

/// An API token (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Id.
    pub id: i64,
    /// A label.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Revoked at: the API refuses the token from then on.
    pub revoked_at: Option<DateTime<Utc>>,
}

// -- dashboard sessions and sign-in throttling -----------------------------------------------------

/// A dashboard session as the metastore keeps it: the SHA-256 of its id, never the id (the cookie
/// value) itself. `Debug` shows neither the hash nor the CSRF token.
#[derive(Clone, PartialEq, Eq)]
pub struct DashboardSession {
    /// Hex SHA-256 of the session id.
    pub id_hash: String,
    /// The token state-changing requests must echo.
    pub csrf_token: String,
    /// Who signed in.
    pub username: String,
    /// Hex SHA-256 of the admin password hash this session signed in against: once the stored hash
    /// is another, the session is over.
    pub password_fingerprint: String,
    /// Signed in at.
    pub created_at: DateTime<Utc>,
    /// Its latest request (the idle timeout counts from here).
    pub last_seen: DateTime<Utc>,
}

impl fmt::Debug for DashboardSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardSession")
            .field("id_hash", &"***")
            .field("csrf_token", &"***")
            .field("username", &self.username)
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .finish()
    }
}

/// One token bucket: `capacity` attempts in a row, then one more every `refill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBudget {
    /// Attempts in a row from a full bucket.
    pub capacity: u32,
    /// One more attempt per this long.
    pub refill: std::time::Duration,
}

/// The budgets of dashboard sign-in attempts: one per client, one for all clients together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInBudgets {
    /// Each client's budget.
    pub per_client: TokenBudget,
    /// All clients' budget together.
    pub overall: TokenBudget,
    /// Most clients whose spent budget is remembered at once. Past that, clients whose budget has
    /// refilled are forgotten, and new clients meet only the overall budget.
    pub max_clients: usize,
}

/// What [`crate::Metastore::begin_sign_in`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInVerdict {
    /// One attempt was taken from the client's and from the overall budget: check the password.
    Allowed,
    /// The client's budget is spent; one attempt is back after this long. Nothing was taken.
    ClientSpent(std::time::Duration),
    /// The overall budget is spent; one attempt is back after this long. Nothing was taken.
    OverallSpent(std::time::Duration),
}

/// How an attempt [`crate::Metastore::begin_sign_in`] allowed gives its tokens back (a wrong
/// password keeps them spent, and needs no call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInOutcome {
    /// The password was right: the client's budget is whole again and the overall budget gets its
    /// token back.
    Succeeded,
    /// The password was never checked (no check slot, a failing store): both tokens go back.
    NotChecked,
}

/// The latest time a bucket is stored with: RFC 3339 keeps its fixed width (and so its text order)
/// up to year 9999.
const LAST_BUCKET_MICROS: i128 = 253_402_300_799_999_999;

fn duration_micros(d: std::time::Duration) -> i128 {
    i128::try_from(d.as_micros()).unwrap_or(i128::MAX / 4)
}

fn time_from_micros(micros: i128) -> DateTime<Utc> {
    let clamped = i64::try_from(micros.clamp(0, LAST_BUCKET_MICROS)).unwrap_or(0);
    DateTime::from_timestamp_micros(clamped).unwrap_or(DateTime::UNIX_EPOCH)
}

impl TokenBudget {
    // A bucket is stored as the time it is full again (the "generic cell rate algorithm"): at `now`
    // it holds `capacity - (full_at - now) / refill` tokens, and a bucket whose time has passed is
    // full: the same as no bucket at all, so such rows can be deleted. One timestamp per bucket and
    // integer microseconds, so waits come out exact; the same arithmetic as a bucket of fractional
    // tokens refilled on every use.

    /// How long until a token is there in the bucket full at `full_at` (`None`: no bucket, full);
    /// `None` when one is there now.
    fn wait(&self, full_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<std::time::Duration> {
        let now_us = i128::from(now.timestamp_micros());
        let ahead = full_at.map_or(0, |t| (i128::from(t.timestamp_micros()) - now_us).max(0));
        let wait = ahead - (i128::from(self.capacity) - 1) * duration_micros(self.refill);
        (wait > 0 || self.capacity == 0)
            .then(|| std::time::Duration::from_micros(u64::try_from(wait.max(0)).unwrap_or(u64::MAX)))
    }

    /// Takes a token (the caller checked [`Self::wait`]): the bucket's new full time.
    fn take(&self, full_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
        let from = full_at.map_or(now, |t| t.max(now));
        time_from_micros(i128::from(from.timestamp_micros()) + duration_micros(self.refill))
    }

    /// Gives a token back: the bucket's new full time.
    fn give_back(&self, full_at: DateTime<Utc>) -> DateTime<Utc> {
        time_from_micros(i128::from(full_at.timestamp_micros()) - duration_micros(self.refill))
    }
}

/// The stored name of the overall sign-in bucket.
pub(crate) const OVERALL_BUCKET: &str = "overall";

/// The stored name of a client's sign-in bucket (never [`OVERALL_BUCKET`], whatever the client).
pub(crate) fn client_bucket(client: &str) -> String {
    format!("client/{client}")
}

/// The two buckets one sign-in attempt touches, as stored (`None`: no row, a full bucket), and the
/// rules every backend applies to them while it holds them locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SignInBuckets {
    /// The client's bucket.
    pub(crate) client: Option<DateTime<Utc>>,
    /// All clients' bucket.
    pub(crate) overall: Option<DateTime<Utc>>,
}

impl SignInBuckets {
    /// [`crate::Metastore::begin_sign_in`]: the client's budget first, then the overall one; both
    /// tokens are taken or neither.
    pub(crate) fn begin(&mut self, budgets: &SignInBudgets, now: DateTime<Utc>) -> SignInVerdict {
        if let Some(wait) = budgets.per_client.wait(self.client, now) {
            return SignInVerdict::ClientSpent(wait);
        }
        if let Some(wait) = budgets.overall.wait(self.overall, now) {
            return SignInVerdict::OverallSpent(wait);
        }
        self.client = Some(budgets.per_client.take(self.client, now));
        self.overall = Some(budgets.overall.take(self.overall, now));
        SignInVerdict::Allowed
    }

    /// [`crate::Metastore::end_sign_in`].
    pub(crate) fn end(&mut self, budgets: &SignInBudgets, outcome: SignInOutcome) {
        self.client = match outcome {
            SignInOutcome::Succeeded => None,
            SignInOutcome::NotChecked => self.client.map(|t| budgets.per_client.give_back(t)),
        };
        self.overall = self.overall.map(|t| budgets.overall.give_back(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn log_line_has_stitch_format() {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 17, 16, 44, 41)
            .single()
            .expect("valid")
            + chrono::Duration::milliseconds(159);
        let l = LogLine {
            at,
            location: LogLocation::Tap,
            level: LogLevel::Info,
            message: "hello".into(),
        };
        assert_eq!(l.to_string(), "2026-11-17 16:44:41,159Z tap - INFO hello");
    }

    fn budgets() -> SignInBudgets {
        SignInBudgets {
            per_client: TokenBudget {
                capacity: 3,
                refill: std::time::Duration::from_secs(10),
            },
            overall: TokenBudget {
                capacity: 5,
                refill: std::time::Duration::from_secs(2),
            },
            max_clients: 8,
        }
    }

    fn secs(s: u64) -> std::time::Duration {
        std::time::Duration::from_secs(s)
    }

    #[test]
    fn sign_in_buckets_spend_refill_and_give_back() {
        let b = budgets();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid");
        let mut s = SignInBuckets {
            client: None,
            overall: None,
        };
        for _ in 0..3 {
            assert_eq!(s.begin(&b, now), SignInVerdict::Allowed);
        }
        assert_eq!(s.begin(&b, now), SignInVerdict::ClientSpent(secs(10)));
        let half = now + chrono::Duration::seconds(5);
        assert_eq!(s.begin(&b, half), SignInVerdict::ClientSpent(secs(5)));
        let later = now + chrono::Duration::seconds(10);
        assert_eq!(s.begin(&b, later), SignInVerdict::Allowed, "one token back");
        // A wrong answer keeps the tokens spent; an unchecked attempt gives both back.
        let before = s;
        assert_eq!(s.begin(&b, later), SignInVerdict::ClientSpent(secs(10)));
        assert_eq!(s, before, "a refused attempt takes nothing");
        s.end(&b, SignInOutcome::NotChecked);
        assert_eq!(s.begin(&b, later), SignInVerdict::Allowed);
        s.end(&b, SignInOutcome::Succeeded);
        assert_eq!(s.client, None, "a success makes the client's budget whole");

        let mut all = SignInBuckets {
            client: None,
            overall: None,
        };
        for _ in 0..5 {
            all.client = None;
            assert_eq!(all.begin(&b, now), SignInVerdict::Allowed);
        }
        all.client = None;
        assert_eq!(all.begin(&b, now), SignInVerdict::OverallSpent(secs(2)));
    }

    #[test]
    fn sign_in_budgets_at_the_edges() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid");
        let none = TokenBudget {
            capacity: 0,
            refill: secs(7),
        };
        assert_eq!(none.wait(None, now), Some(secs(7)), "no budget at all");
        let huge = TokenBudget {
            capacity: u32::MAX,
            refill: secs(3600),
        };
        assert_eq!(huge.wait(None, now), None);
        let far = huge.take(Some(now + chrono::Duration::days(365 * 9000)), now);
        assert_eq!(
            far.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "9999-12-31T23:59:59.999999Z",
            "times stay fixed-width"
        );
        assert_eq!(huge.give_back(DateTime::UNIX_EPOCH), DateTime::UNIX_EPOCH);
        let free = TokenBudget {
            capacity: 1,
            refill: std::time::Duration::ZERO,
        };
        let t = free.take(None, now);
        assert_eq!(free.wait(Some(t), now), None, "a zero refill never runs out");
    }
}
