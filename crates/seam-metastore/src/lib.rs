//! seam's metastore: everything the service remembers — integrations (with sealed credentials, the
//! discovered catalog and committed bookmarks), connection checks, replication jobs and their logs,
//! per-table loads, row usage per day, notifications, API tokens and settings.
//!
//! One async trait, [`Metastore`], with one backend per database. SQLite ([`SqliteMetastore`]) is the
//! embedded default; [`PostgresMetastore`] is the one several workers can share. The trait uses only
//! what both provide (row ids chosen by the database, a partial unique index for names, one
//! transaction per call), so callers never know which backend they talk to. Every backend passes the same conformance suite
//! (`tests/main.rs`). Migrations live in `migrations/<backend>/NNNN_*.sql` and are applied in order on
//! open.

pub mod crypto;
pub mod error;
pub mod model;
pub mod postgres;
pub mod sqlite;

pub use crypto::{reseal_legacy_credentials, Credentials, SecretCipher};
pub use error::MetastoreError;
pub use model::*;
pub use postgres::PostgresMetastore;
pub use sqlite::SqliteMetastore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use seam_core::{Catalog, State};

/// Result of a metastore call.
pub type Result<T, E = MetastoreError> = std::result::Result<T, E>;

/// The store behind the service.
///
/// Contract, for every backend:
/// - each call is atomic (one transaction); nothing is half written;
/// - ids are assigned by the store and increase;
/// - an integration's `name` is unique among integrations that are not deleted
///   ([`MetastoreError::NameTaken`] otherwise); a deleted integration's name can be reused;
/// - times round-trip with at least millisecond precision;
/// - lists come newest first unless stated otherwise.
#[async_trait]
pub trait Metastore: Send + Sync + std::fmt::Debug {
    // -- integrations ------------------------------------------------------------------------------

    /// Creates an integration.
    async fn create_integration(&self, new: NewIntegration) -> Result<Integration>;
    /// Creates an integration whose credentials are sealed for its new id (see [`crypto`]): the row
    /// is inserted, `credentials` are sealed with `cipher` bound to the id it got, and stored, in one
    /// transaction. `new.sealed_credentials` is ignored.
    async fn create_integration_sealed(
        &self,
        new: NewIntegration,
        cipher: &SecretCipher,
        credentials: &Credentials,
    ) -> Result<Integration>;
    /// Replaces only the sealed credentials of an integration, deleted or not (re-sealing in a new
    /// format; `updated_at` is kept). [`MetastoreError::NotFound`] for an unknown id.
    async fn set_sealed_credentials(&self, id: IntegrationId, sealed: &[u8]) -> Result<()>;
    /// An integration, deleted or not.
    async fn get_integration(&self, id: IntegrationId) -> Result<Option<Integration>>;
    /// Integrations in id order; deleted ones only when asked.
    async fn list_integrations(&self, include_deleted: bool) -> Result<Vec<Integration>>;
    /// Changes the user-settable fields. [`MetastoreError::NotFound`] for unknown or deleted ids.
    async fn update_integration(&self, id: IntegrationId, update: IntegrationUpdate) -> Result<Integration>;
    /// Marks the integration deleted (its data and warehouse schema stay).
    async fn delete_integration(&self, id: IntegrationId, at: DateTime<Utc>) -> Result<Integration>;
    /// Stores the catalog (discovery result with the user's selection).
    async fn set_catalog(&self, id: IntegrationId, catalog: &Catalog) -> Result<()>;
    /// Stores the committed bookmarks; `None` resets them (full re-replication).
    async fn set_state(&self, id: IntegrationId, state: Option<&State>) -> Result<()>;

    // -- connection checks -------------------------------------------------------------------------

    /// Starts a check in status `running`.
    async fn create_check(&self, integration_id: IntegrationId, at: DateTime<Utc>)
        -> Result<ConnectionCheck>;
    /// Stores a check's final fields (matched by id).
    async fn finish_check(&self, check: &ConnectionCheck) -> Result<()>;
    /// The integration's latest check.
    async fn last_check(&self, integration_id: IntegrationId) -> Result<Option<ConnectionCheck>>;

    // -- jobs --------------------------------------------------------------------------------------

    /// Starts a job in status `running`.
    async fn create_job(
        &self,
        integration_id: IntegrationId,
        trigger: JobTrigger,
        at: DateTime<Utc>,
    ) -> Result<Job>;
    /// Ends a job.
    async fn finish_job(&self, id: JobId, finish: &JobFinish) -> Result<Job>;
    /// A job.
    async fn get_job(&self, id: JobId) -> Result<Option<Job>>;
    /// An integration's jobs, newest first, at most `limit`.
    async fn list_jobs(&self, integration_id: IntegrationId, limit: u32) -> Result<Vec<Job>>;
    /// Marks every job still `running` as failed with `message` (a process that died mid-job);
    /// returns the integrations they belonged to (each once).
    async fn fail_running_jobs(&self, at: DateTime<Utc>, message: &str) -> Result<Vec<IntegrationId>>;

    // -- logs --------------------------------------------------------------------------------------

    /// Appends lines to a job's log.
    async fn append_logs(&self, job_id: JobId, lines: &[LogLine]) -> Result<()>;
    /// A job's log in order.
    async fn job_logs(&self, job_id: JobId) -> Result<Vec<LogLine>>;

    // -- loads and usage ---------------------------------------------------------------------------

    /// Records what one commit loaded: per-table rows are added to the job's load report and to the
    /// integration's usage for `at`'s UTC day, in one transaction.
    async fn record_loads(
        &self,
        integration_id: IntegrationId,
        job_id: JobId,
        at: DateTime<Utc>,
        deltas: &[LoadDelta],
    ) -> Result<()>;
    /// Load reports of an integration's jobs started at or after `since`, newest job first.
    async fn list_loads(&self, integration_id: IntegrationId, since: DateTime<Utc>)
        -> Result<Vec<TableLoad>>;
    /// Usage rows for days in `[from, to]`, every integration.
    async fn usage(&self, from: chrono::NaiveDate, to: chrono::NaiveDate) -> Result<Vec<UsageRow>>;

    // -- notifications -----------------------------------------------------------------------------

    /// Adds an in-app notification.
    async fn add_notification(&self, new: NewNotification) -> Result<Notification>;
    /// Notifications, newest first, at most `limit`; dismissed ones only when asked.
    async fn list_notifications(&self, include_dismissed: bool, limit: u32) -> Result<Vec<Notification>>;
    /// Dismisses one.
    async fn dismiss_notification(&self, id: i64, at: DateTime<Utc>) -> Result<()>;

    // -- API tokens --------------------------------------------------------------------------------

    /// Stores a token hash.
    async fn add_token(&self, name: &str, token_hash: &str, at: DateTime<Utc>) -> Result<ApiToken>;
    /// The token with this hash, unless it is revoked.
    async fn find_token(&self, token_hash: &str) -> Result<Option<ApiToken>>;
    /// How many tokens were ever created, revoked ones included (the service creates one only when
    /// none ever existed).
    async fn count_tokens(&self) -> Result<u64>;
    /// Every token, revoked ones too, in id order.
    async fn list_tokens(&self) -> Result<Vec<ApiToken>>;
    /// Revokes a token: [`Metastore::find_token`] no longer returns it. Revoking a revoked token keeps
    /// its first revocation time. [`MetastoreError::NotFound`] for an unknown id.
    async fn revoke_token(&self, id: i64, at: DateTime<Utc>) -> Result<ApiToken>;

    // -- settings ----------------------------------------------------------------------------------

    /// A setting.
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    /// Sets a setting.
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;
}
