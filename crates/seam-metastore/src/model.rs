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
}
