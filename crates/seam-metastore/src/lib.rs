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
mod rows;
pub mod sqlite;

pub use crypto::{reseal_legacy_credentials, Credentials, SecretCipher};
pub use error::MetastoreError;
pub use model::*;
pub use postgres::PostgresMetastore;
pub use sqlite::SqliteMetastore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use seam_core::{Catalog, State};

/// The active scheduler's hold on leadership (see [`Metastore::try_lead`]): released when dropped or
/// when the process dies.
#[async_trait]
pub trait Leadership: Send + Sync + std::fmt::Debug {
    /// True while leadership still holds (checked against the store; false once the hold is lost).
    async fn holds(&self) -> bool;
}

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

    // -- the job queue (several processes) -----------------------------------------------------------
    //
    // Where workers in several processes share the metastore, a job is queued (`pending`), leased by
    // one worker (`running`, under a lease it renews), and ended by that worker. Contract:
    // - an integration has at most one pending or running job, whoever asks ([`Metastore::create_job`]
    //   included): the store enforces it, not the callers;
    // - a lease is given to one worker only, oldest due first;
    // - once a lease runs out ([`Metastore::expire_leases`]) the job is failed and its worker's renewals
    //   and finish no longer change it.

    /// Queues a job due at `due`; `None` when the integration already has a pending or running job.
    async fn enqueue_job(
        &self,
        integration_id: IntegrationId,
        trigger: JobTrigger,
        due: DateTime<Utc>,
    ) -> Result<Option<Job>>;
    /// Leases the pending job due first (at or before `now`) to `worker` until `lease_until`: it is
    /// `running` from `now`. `None` when no job is due.
    async fn lease_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>>;
    /// Renews `worker`'s lease on a running job and stores its progress report. `None` when the lease is
    /// lost (the job is no longer running under `worker`); otherwise whether a stop was asked for.
    async fn renew_lease(
        &self,
        job_id: JobId,
        worker: &str,
        lease_until: DateTime<Utc>,
        progress: Option<&str>,
    ) -> Result<Option<bool>>;
    /// Fails every running job whose lease ended before `now` with `message`, and returns them. A
    /// running job without a lease counts as expired: a process that ran jobs outside the queue (a
    /// release before it, or one that died before the queue) left it behind.
    async fn expire_leases(&self, now: DateTime<Utc>, message: &str) -> Result<Vec<Job>>;
    /// The integration's pending or running job.
    async fn active_job(&self, integration_id: IntegrationId) -> Result<Option<Job>>;
    /// Asks the integration's active job to stop: a pending one is cancelled at once, a running one is
    /// flagged (its worker stops it at its next renewal). Returns the job, as it is now.
    async fn request_stop(&self, integration_id: IntegrationId, at: DateTime<Utc>) -> Result<Option<Job>>;
    /// The queue at a glance.
    async fn queue_stats(&self) -> Result<QueueStats>;
    /// Tries to become the one process holding `role` (`"scheduler"`: the active scheduler) among the
    /// processes sharing this metastore. `None` while another process holds it. Leadership lasts as long as the returned handle and its
    /// [`Leadership::holds`] says yes.
    async fn try_lead(&self, role: &str) -> Result<Option<Box<dyn Leadership>>>;

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

    // -- dashboard sessions and sign-in throttling -------------------------------------------------
    //
    // The dashboard keeps its sessions and its sign-in throttle here, not in a process, so several
    // `seam serve` processes sharing one metastore (behind one load balancer) serve the same
    // browsers, and a restart signs nobody out. Contract:
    // - a session is found by the hash of its id only; the id itself is never stored;
    // - a session last seen at or before the caller's idle cutoff is over: never returned again, and
    //   deleted when met (so are all of them when a session is created);
    // - throttling is atomic across every process sharing the store: N processes together allow no
    //   more attempts than one process does.

    /// Stores a new session, and deletes every session last seen at or before `idle_cutoff`.
    async fn create_session(&self, session: &DashboardSession, idle_cutoff: DateTime<Utc>) -> Result<()>;
    /// The session whose id hashes to `id_hash` when it was last seen after `idle_cutoff`; its
    /// last-seen time moves to `now` (never backwards). An idle session is deleted and `None` returned.
    async fn touch_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<Option<DashboardSession>>;
    /// Ends a session; ending one that is gone is not an error.
    async fn delete_session(&self, id_hash: &str) -> Result<()>;
    /// Takes one sign-in attempt from `client`'s budget and from the overall one (both or neither),
    /// or says which is spent and how long until it has an attempt again. A client is any non-empty
    /// name the caller chooses (its address); past [`SignInBudgets::max_clients`] remembered clients,
    /// those whose budget has refilled are forgotten and a new one meets only the overall budget.
    async fn begin_sign_in(
        &self,
        client: &str,
        now: DateTime<Utc>,
        budgets: &SignInBudgets,
    ) -> Result<SignInVerdict>;
    /// Gives back the tokens of an attempt [`Metastore::begin_sign_in`] allowed (see
    /// [`SignInOutcome`]).
    async fn end_sign_in(&self, client: &str, outcome: SignInOutcome, budgets: &SignInBudgets) -> Result<()>;
}
