//! The PostgreSQL backend (a metastore several seam workers could share). Same layout and value
//! representation as the SQLite backend; one connection, each call one transaction or statement.

use crate::crypto::{Credentials, SecretCipher};
use crate::error::{touched, MetastoreError};
use crate::model::*;
use crate::rows::*;
use crate::{Leadership, Metastore, Result};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use seam_core::{Catalog, State};
use seam_postgres::ConnectOptions;
use std::sync::{Arc, Mutex as StdMutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::AbortHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};

/// Migrations in order; `seam_migrations` records which ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_init.sql"),
    include_str!("../migrations/postgres/0002_token_revocation.sql"),
    include_str!("../migrations/postgres/0003_job_warnings.sql"),
    include_str!("../migrations/postgres/0004_job_queue.sql"),
    include_str!("../migrations/postgres/0005_sessions.sql"),
];

/// The PostgreSQL metastore.
#[derive(Debug)]
pub struct PostgresMetastore {
    client: Mutex<Client>,
    /// Where it is (its `Debug` hides the password).
    server: ConnectOptions,
    /// The schema holding seam's tables.
    schema: String,
    /// What the watchdog ([`watchdog`]) watches: the call under way and the connection's task.
    watch: Arc<StdMutex<Watch>>,
}

/// How long one call to the metastore may go unanswered before its connection is dropped: the
/// call then fails (`Transient`: the scheduler and the jobs try again) and the next one connects
/// anew. Every call is a few small statements, and lock waits end after the session's
/// `lock_timeout` (30 s); a minute without an answer is a server that stopped answering (a hung
/// process, a disk that does not return), which TCP keepalives cannot see: its host still answers.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The call under way on the metastore's connection, and that connection's task.
#[derive(Debug)]
struct Watch {
    /// When the call under way began.
    busy_since: Option<Instant>,
    /// Aborting it closes the connection: the call under way fails at once.
    task: Option<AbortHandle>,
    /// How long a call may take ([`CALL_TIMEOUT`] unless set).
    timeout: Duration,
}

fn lock_watch(watch: &StdMutex<Watch>) -> std::sync::MutexGuard<'_, Watch> {
    watch.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drops the connection of a call that has gone unanswered past its timeout; ends with the
/// metastore.
async fn watchdog(watch: Weak<StdMutex<Watch>>, server: String) {
    loop {
        let pause = match watch.upgrade() {
            Some(w) => (lock_watch(&w).timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
            None => return,
        };
        tokio::time::sleep(pause).await;
        let Some(w) = watch.upgrade() else { return };
        let mut w = lock_watch(&w);
        let overdue = w.busy_since.is_some_and(|since| since.elapsed() > w.timeout);
        if overdue {
            if let Some(task) = w.task.take() {
                task.abort();
            }
            w.busy_since = None;
            tracing::warn!(server = %server, timeout_secs = w.timeout.as_secs_f64(),
                "the postgres metastore did not answer in time: its connection was dropped; the next call connects anew");
        }
    }
}

/// The metastore's connection for one call: counted as under way, for the watchdog, until dropped.
struct Call<'a> {
    client: MutexGuard<'a, Client>,
    watch: &'a StdMutex<Watch>,
}

impl std::ops::Deref for Call<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Call<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        lock_watch(self.watch).busy_since = None;
    }
}

/// True when `e` is the violation of the one-active-job-per-integration index.
fn is_job_active_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && e.as_db_error().and_then(|d| d.constraint()) == Some("jobs_one_active")
}

/// The advisory-lock key of `role` for the metastore in `schema` (one per schema, so metastores sharing
/// a database do not share a scheduler).
fn leader_key(schema: &str, role: &str) -> String {
    format!("seam {role} {schema}")
}

/// Leadership held as a session-level advisory lock on a connection of its own: it ends when the
/// connection does (the process died, the network failed) or when dropped.
#[derive(Debug)]
struct PgLeader {
    client: Client,
}

/// How long a leadership check may take before it counts as lost.
const LEADER_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[async_trait]
impl Leadership for PgLeader {
    async fn holds(&self) -> bool {
        if self.client.is_closed() {
            return false;
        }
        matches!(
            tokio::time::timeout(LEADER_CHECK_TIMEOUT, self.client.simple_query("SELECT 1")).await,
            Ok(Ok(_))
        )
    }
}

fn rows<T>(rows: &[Row], f: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

impl PostgresMetastore {
    /// The server and database (the URL with its password hidden, in `Display` and `Debug`).
    pub fn server(&self) -> &ConnectOptions {
        &self.server
    }

    /// Connects to `url` (honouring its `sslmode` and `sslrootcert`, see [`seam_postgres`]), uses
    /// `schema` (created when missing) and applies pending migrations.
    pub async fn connect(url: &str, schema: &str) -> Result<Self> {
        let valid = schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(corrupt(
                "schema name",
                format!("{schema:?} must match [a-z_][a-z0-9_]*"),
            ));
        }
        let server = ConnectOptions::parse(url).map_err(seam_postgres::ConnectError::from)?;
        let (client, task) = server.connect_abortable().await?;
        // Processes starting together: one creates the schema and migrates, the others wait for it.
        client
            .execute(
                "SELECT pg_advisory_lock(hashtext($1))",
                &[&format!("seam migrations {schema}")],
            )
            .await?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\""
            ))
            .await?;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS seam_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            .await?;
        let mut client = client;
        let done: i32 = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM seam_migrations", &[])
            .await?
            .try_get(0)?;
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(done).unwrap_or(0))
        {
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await?;
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO seam_migrations (version, applied_at) VALUES ($1, $2)",
                &[&version, &ts(Utc::now())],
            )
            .await?;
            tx.commit().await?;
        }
        client
            .execute(
                "SELECT pg_advisory_unlock(hashtext($1))",
                &[&format!("seam migrations {schema}")],
            )
            .await?;
        let watch = Arc::new(StdMutex::new(Watch {
            busy_since: None,
            task: Some(task),
            timeout: CALL_TIMEOUT,
        }));
        tokio::spawn(watchdog(Arc::downgrade(&watch), server.to_string()));
        Ok(PostgresMetastore {
            client: Mutex::new(client),
            server,
            schema: schema.to_owned(),
            watch,
        })
    }

    /// Sets how long a call may go unanswered before its connection is dropped ([`CALL_TIMEOUT`]
    /// by default).
    pub fn set_call_timeout(&self, timeout: Duration) {
        lock_watch(&self.watch).timeout = timeout;
    }

    /// The metastore's connection, made again first when the last one ended (the server restarted,
    /// or ended it; the network dropped it): a call under way when it ends fails (an error of kind
    /// `Transient`, which the scheduler and the jobs try again), and the next call reconnects, so a
    /// restart of the server does not leave the process answering "connection closed" for good.
    ///
    /// A call that goes unanswered past the call timeout ([`CALL_TIMEOUT`]) has its connection
    /// dropped by the watchdog and fails; a reconnection that takes longer fails
    /// ([`MetastoreError::Unanswered`]).
    async fn client(&self) -> Result<Call<'_>> {
        let client = self.client.lock().await;
        lock_watch(&self.watch).busy_since = Some(Instant::now());
        let mut call = Call {
            client,
            watch: &self.watch,
        };
        if call.is_closed() {
            let timeout = lock_watch(&self.watch).timeout;
            let (fresh, task) = tokio::time::timeout(timeout, self.server.connect_abortable())
                .await
                .map_err(|_| MetastoreError::Unanswered { timeout })??;
            lock_watch(&self.watch).task = Some(task);
            fresh
                .batch_execute(&format!("SET search_path TO \"{}\"", self.schema))
                .await?;
            *call.client = fresh;
            tracing::info!(server = %self.server, "reconnected to the postgres metastore");
        }
        Ok(call)
    }

    /// The server process of the metastore's connection (`pg_backend_pid()`), for diagnostics and
    /// tests.
    pub async fn backend_pid(&self) -> Result<i32> {
        let c = self.client().await?;
        Ok(c.query_one("SELECT pg_backend_pid()", &[]).await?.try_get(0)?)
    }

    async fn live(client: &Client, id: IntegrationId) -> Result<Integration> {
        let row = client
            .query_opt(
                &format!("SELECT {INTEGRATION_COLS} FROM integrations WHERE id = $1"),
                &[&id],
            )
            .await?;
        match row.map(|r| integration_row(&r)).transpose()? {
            Some(i) if i.deleted_at.is_none() => Ok(i),
            _ => Err(MetastoreError::NotFound {
                what: "integration",
                id,
            }),
        }
    }
}

#[async_trait]
impl Metastore for PostgresMetastore {
    async fn create_integration(&self, new: NewIntegration) -> Result<Integration> {
        let properties = to_json("properties", &new.properties)?;
        let c = self.client().await?;
        let res = c
            .query_one(
                &format!(
                    "INSERT INTO integrations (display_name, name, kind, properties, sealed_credentials, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {INTEGRATION_COLS}"
                ),
                &[&new.display_name, &new.name, &new.kind, &properties, &new.sealed_credentials, &ts(new.created_at)],
            )
            .await;
        match res {
            Ok(row) => integration_row(&row),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Err(MetastoreError::NameTaken { name: new.name })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn create_integration_sealed(
        &self,
        new: NewIntegration,
        cipher: &SecretCipher,
        credentials: &Credentials,
    ) -> Result<Integration> {
        let properties = to_json("properties", &new.properties)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let res = tx
            .query_one(
                "INSERT INTO integrations (display_name, name, kind, properties, sealed_credentials, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                &[&new.display_name, &new.name, &new.kind, &properties, &Vec::<u8>::new(), &ts(new.created_at)],
            )
            .await;
        let id: IntegrationId = match res {
            Ok(row) => row.try_get(0)?,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(MetastoreError::NameTaken { name: new.name })
            }
            Err(e) => return Err(e.into()),
        };
        let sealed = cipher.seal(id, credentials)?;
        let row = tx
            .query_one(
                &format!(
                    "UPDATE integrations SET sealed_credentials = $2 WHERE id = $1 RETURNING {INTEGRATION_COLS}"
                ),
                &[&id, &sealed],
            )
            .await?;
        let created = integration_row(&row)?;
        tx.commit().await?;
        Ok(created)
    }

    async fn set_sealed_credentials(&self, id: IntegrationId, sealed: &[u8]) -> Result<()> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE integrations SET sealed_credentials = $2 WHERE id = $1",
                &[&id, &sealed],
            )
            .await?;
        touched(n, "integration", id)
    }

    async fn get_integration(&self, id: IntegrationId) -> Result<Option<Integration>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!("SELECT {INTEGRATION_COLS} FROM integrations WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.map(|r| integration_row(&r)).transpose()
    }

    async fn list_integrations(&self, include_deleted: bool) -> Result<Vec<Integration>> {
        let filter = if include_deleted {
            ""
        } else {
            "WHERE deleted_at IS NULL"
        };
        let c = self.client().await?;
        let r = c
            .query(
                &format!("SELECT {INTEGRATION_COLS} FROM integrations {filter} ORDER BY id"),
                &[],
            )
            .await?;
        rows(&r, integration_row)
    }

    async fn update_integration(&self, id: IntegrationId, u: IntegrationUpdate) -> Result<Integration> {
        let properties = to_json("properties", &u.properties)?;
        let c = self.client().await?;
        Self::live(&c, id).await?;
        c.execute(
            "UPDATE integrations SET display_name = $2, properties = $3, sealed_credentials = $4, paused_at = $5, \
             updated_at = $6 WHERE id = $1",
            &[&id, &u.display_name, &properties, &u.sealed_credentials, &u.paused_at.map(ts), &ts(u.updated_at)],
        )
        .await?;
        Self::live(&c, id).await
    }

    async fn delete_integration(&self, id: IntegrationId, at: DateTime<Utc>) -> Result<Integration> {
        let c = self.client().await?;
        Self::live(&c, id).await?;
        let row = c
            .query_one(
                &format!(
                    "UPDATE integrations SET deleted_at = $2 WHERE id = $1 RETURNING {INTEGRATION_COLS}"
                ),
                &[&id, &ts(at)],
            )
            .await?;
        integration_row(&row)
    }

    async fn set_catalog(&self, id: IntegrationId, catalog: &Catalog) -> Result<()> {
        let catalog = to_json("catalog", catalog)?;
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE integrations SET catalog = $2 WHERE id = $1",
                &[&id, &catalog],
            )
            .await?;
        touched(n, "integration", id)
    }

    async fn set_state(&self, id: IntegrationId, state: Option<&State>) -> Result<()> {
        let state = state.map(|s| to_json("state", s)).transpose()?;
        let c = self.client().await?;
        let n = c
            .execute("UPDATE integrations SET state = $2 WHERE id = $1", &[&id, &state])
            .await?;
        touched(n, "integration", id)
    }

    async fn create_check(
        &self,
        integration_id: IntegrationId,
        at: DateTime<Utc>,
    ) -> Result<ConnectionCheck> {
        let c = self.client().await?;
        let row = c
            .query_one(
                &format!(
                    "INSERT INTO connection_checks (integration_id, status, start_time) VALUES ($1, 'running', $2) \
                     RETURNING {CHECK_COLS}"
                ),
                &[&integration_id, &ts(at)],
            )
            .await?;
        check_row(&row)
    }

    async fn finish_check(&self, k: &ConnectionCheck) -> Result<()> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE connection_checks SET status = $2, completion_time = $3, check_exit_status = $4, \
                 check_error_message = $5, discovery_exit_status = $6, discovery_error_message = $7 WHERE id = $1",
                &[
                    &k.id,
                    &k.status.as_str(),
                    &k.completion_time.map(ts),
                    &k.check_exit_status,
                    &k.check_error_message,
                    &k.discovery_exit_status,
                    &k.discovery_error_message,
                ],
            )
            .await?;
        touched(n, "connection check", k.id)
    }

    async fn last_check(&self, integration_id: IntegrationId) -> Result<Option<ConnectionCheck>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!("SELECT {CHECK_COLS} FROM connection_checks WHERE integration_id = $1 ORDER BY id DESC LIMIT 1"),
                &[&integration_id],
            )
            .await?;
        row.map(|r| check_row(&r)).transpose()
    }

    async fn create_job(
        &self,
        integration_id: IntegrationId,
        trigger: JobTrigger,
        at: DateTime<Utc>,
    ) -> Result<Job> {
        let c = self.client().await?;
        let row = c
            .query_one(
                &format!(
                    "INSERT INTO jobs (integration_id, trigger, status, start_time) VALUES ($1, $2, 'running', $3) \
                     RETURNING {JOB_COLS}"
                ),
                &[&integration_id, &trigger.as_str(), &ts(at)],
            )
            .await
            .map_err(|e| {
                if is_job_active_violation(&e) {
                    MetastoreError::JobActive {
                        integration: integration_id,
                    }
                } else {
                    e.into()
                }
            })?;
        job_row(&row)
    }

    async fn finish_job(&self, id: JobId, f: &JobFinish) -> Result<Job> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!(
                    "UPDATE jobs SET status = $2, completion_time = $3, discovery_exit_status = $4, tap_exit_status = $5, \
                     target_exit_status = $6, error_message = $7, warning_message = $8, lease_until = NULL, \
                     progress = NULL WHERE id = $1 AND status IN ('pending', 'running') RETURNING {JOB_COLS}"
                ),
                &[
                    &id,
                    &f.status.as_str(),
                    &ts(f.completion_time),
                    &f.discovery_exit_status,
                    &f.tap_exit_status,
                    &f.target_exit_status,
                    &f.error_message,
                    &f.warning_message,
                ],
            )
            .await?;
        if let Some(r) = row {
            return job_row(&r);
        }
        // A job that is no longer active (its lease ran out) keeps how it ended then.
        c.query_opt(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"), &[&id])
            .await?
            .map(|r| job_row(&r))
            .transpose()?
            .ok_or(MetastoreError::NotFound { what: "job", id })
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        let c = self.client().await?;
        let row = c
            .query_opt(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"), &[&id])
            .await?;
        row.map(|r| job_row(&r)).transpose()
    }

    async fn list_jobs(&self, integration_id: IntegrationId, limit: u32) -> Result<Vec<Job>> {
        let c = self.client().await?;
        let r = c
            .query(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE integration_id = $1 ORDER BY id DESC LIMIT $2"),
                &[&integration_id, &i64::from(limit)],
            )
            .await?;
        rows(&r, job_row)
    }

    async fn fail_running_jobs(&self, at: DateTime<Utc>, message: &str) -> Result<Vec<IntegrationId>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "UPDATE jobs SET status = 'failed', completion_time = $1, error_message = $2, lease_until = NULL, \
                 progress = NULL WHERE status = 'running' RETURNING integration_id",
                &[&ts(at), &message],
            )
            .await?;
        let mut ids: Vec<IntegrationId> = rows.iter().map(|r| r.get(0)).collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn enqueue_job(
        &self,
        integration_id: IntegrationId,
        trigger: JobTrigger,
        due: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!(
                    "INSERT INTO jobs (integration_id, trigger, status, start_time, due_time) \
                     VALUES ($1, $2, 'pending', $3, $3) ON CONFLICT DO NOTHING RETURNING {JOB_COLS}"
                ),
                &[&integration_id, &trigger.as_str(), &ts(due)],
            )
            .await?;
        row.map(|r| job_row(&r)).transpose()
    }

    async fn lease_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        let c = self.client().await?;
        // SKIP LOCKED: workers leasing at the same moment each take a different job, none waits.
        let row = c
            .query_opt(
                &format!(
                    "UPDATE jobs SET status = 'running', worker = $1, start_time = $2, lease_until = $3 \
                     WHERE id = (SELECT id FROM jobs WHERE status = 'pending' AND due_time <= $2 \
                                 ORDER BY due_time, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     RETURNING {JOB_COLS}"
                ),
                &[&worker, &ts(now), &ts(lease_until)],
            )
            .await?;
        row.map(|r| job_row(&r)).transpose()
    }

    async fn renew_lease(
        &self,
        job_id: JobId,
        worker: &str,
        lease_until: DateTime<Utc>,
        progress: Option<&str>,
    ) -> Result<Option<bool>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "UPDATE jobs SET lease_until = $3, progress = $4 WHERE id = $1 AND worker = $2 AND status = 'running' \
                 RETURNING stop_requested",
                &[&job_id, &worker, &ts(lease_until), &progress],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn expire_leases(&self, now: DateTime<Utc>, message: &str) -> Result<Vec<Job>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "UPDATE jobs SET status = 'failed', completion_time = $1, error_message = $2, lease_until = NULL, \
                     progress = NULL WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $1) \
                     RETURNING {JOB_COLS}"
                ),
                &[&ts(now), &message],
            )
            .await?;
        rows.iter().map(job_row).collect()
    }

    async fn active_job(&self, integration_id: IntegrationId) -> Result<Option<Job>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE integration_id = $1 AND status IN ('pending', 'running')"
                ),
                &[&integration_id],
            )
            .await?;
        row.map(|r| job_row(&r)).transpose()
    }

    async fn request_stop(&self, integration_id: IntegrationId, at: DateTime<Utc>) -> Result<Option<Job>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!(
                    "UPDATE jobs SET \
                       status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END, \
                       completion_time = CASE WHEN status = 'pending' THEN $2 ELSE completion_time END, \
                       stop_requested = TRUE \
                     WHERE integration_id = $1 AND status IN ('pending', 'running') RETURNING {JOB_COLS}"
                ),
                &[&integration_id, &ts(at)],
            )
            .await?;
        row.map(|r| job_row(&r)).transpose()
    }

    async fn queue_stats(&self) -> Result<QueueStats> {
        let c = self.client().await?;
        let head = c
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE status = 'pending'), \
                        MIN(due_time) FILTER (WHERE status = 'pending'), \
                        MIN(lease_until) FILTER (WHERE status = 'running') \
                 FROM jobs WHERE status IN ('pending', 'running')",
                &[],
            )
            .await?;
        let pending: i64 = head.try_get(0)?;
        let running_by_worker = c
            .query(
                "SELECT COALESCE(worker, ''), COUNT(*) FROM jobs WHERE status = 'running' \
                 GROUP BY 1 ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                let n: i64 = r.try_get(1)?;
                Ok((r.try_get::<_, String>(0)?, u64::try_from(n).unwrap_or(0)))
            })
            .collect::<Result<Vec<_>>>()?;
        let start_lateness = c
            .query(
                "SELECT start_time, due_time FROM jobs WHERE due_time IS NOT NULL AND status <> 'pending' \
                 ORDER BY id DESC LIMIT $1",
                &[&i64::from(QueueStats::LATENESS_SAMPLE)],
            )
            .await?
            .iter()
            .map(|r| Ok(r.time(0)? - r.time(1)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(QueueStats {
            pending: u64::try_from(pending).unwrap_or(0),
            oldest_pending_due: head.opt_time(1)?,
            running_by_worker,
            soonest_lease_end: head.opt_time(2)?,
            start_lateness,
        })
    }

    async fn try_lead(&self, role: &str) -> Result<Option<Box<dyn Leadership>>> {
        let client = self.server.connect().await?;
        let held: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext($1))",
                &[&leader_key(&self.schema, role)],
            )
            .await?
            .try_get(0)?;
        Ok(held.then(|| Box::new(PgLeader { client }) as Box<dyn Leadership>))
    }

    async fn append_logs(&self, job_id: JobId, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let next: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) FROM job_logs WHERE job_id = $1",
                &[&job_id],
            )
            .await?
            .try_get(0)?;
        let stmt = tx
            .prepare("INSERT INTO job_logs (job_id, seq, at, location, level, message) VALUES ($1, $2, $3, $4, $5, $6)")
            .await?;
        for (i, l) in lines.iter().enumerate() {
            let seq = next + 1 + i64::try_from(i).unwrap_or(i64::MAX);
            tx.execute(
                &stmt,
                &[
                    &job_id,
                    &seq,
                    &ts(l.at),
                    &l.location.as_str(),
                    &l.level.as_str(),
                    &l.message,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn job_logs(&self, job_id: JobId) -> Result<Vec<LogLine>> {
        let c = self.client().await?;
        let r = c
            .query(
                &format!("SELECT {LOG_COLS} FROM job_logs WHERE job_id = $1 ORDER BY seq"),
                &[&job_id],
            )
            .await?;
        rows(&r, log_row)
    }

    async fn record_loads(
        &self,
        integration_id: IntegrationId,
        job_id: JobId,
        at: DateTime<Utc>,
        deltas: &[LoadDelta],
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let day = at.date_naive().to_string();
        let mut total = 0i64;
        for d in deltas {
            let loaded_at = (d.error.is_none() || d.rows > 0).then(|| ts(at));
            tx.execute(
                "INSERT INTO table_loads (job_id, integration_id, table_name, rows, last_batch_loaded_at, max_bookmark, \
                 error) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (job_id, table_name) DO UPDATE SET rows = table_loads.rows + excluded.rows,
                   last_batch_loaded_at = COALESCE(excluded.last_batch_loaded_at, table_loads.last_batch_loaded_at),
                   max_bookmark = COALESCE(excluded.max_bookmark, table_loads.max_bookmark),
                   error = COALESCE(excluded.error, table_loads.error)",
                &[&job_id, &integration_id, &d.table_name, &d.rows, &loaded_at, &d.max_bookmark, &d.error],
            )
            .await?;
            if d.rows > 0 {
                tx.execute(
                    "INSERT INTO usage_daily (integration_id, day, table_name, rows) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (integration_id, day, table_name) DO UPDATE SET rows = usage_daily.rows + excluded.rows",
                    &[&integration_id, &day, &d.table_name, &d.rows],
                )
                .await?;
            }
            total += d.rows;
        }
        tx.execute(
            "UPDATE jobs SET rows_loaded = rows_loaded + $2 WHERE id = $1",
            &[&job_id, &total],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_loads(
        &self,
        integration_id: IntegrationId,
        since: DateTime<Utc>,
    ) -> Result<Vec<TableLoad>> {
        let c = self.client().await?;
        let r = c
            .query(
                &format!(
                    "SELECT {LOAD_COLS} FROM table_loads l JOIN jobs j ON j.id = l.job_id
                     WHERE l.integration_id = $1 AND j.start_time >= $2 ORDER BY l.job_id DESC, l.table_name"
                ),
                &[&integration_id, &ts(since)],
            )
            .await?;
        rows(&r, load_row)
    }

    async fn usage(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageRow>> {
        let c = self.client().await?;
        let r = c
            .query(
                &format!(
                    "SELECT {USAGE_COLS} FROM usage_daily WHERE day >= $1 AND day <= $2
                     ORDER BY day, integration_id, table_name"
                ),
                &[&from.to_string(), &to.to_string()],
            )
            .await?;
        rows(&r, usage_row)
    }

    async fn add_notification(&self, n: NewNotification) -> Result<Notification> {
        let c = self.client().await?;
        let row = c
            .query_one(
                &format!(
                    "INSERT INTO notifications (level, code, integration_id, subject, message, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {NOTIFICATION_COLS}"
                ),
                &[
                    &n.level.as_str(),
                    &n.code,
                    &n.integration_id,
                    &n.subject,
                    &n.message,
                    &ts(n.created_at),
                ],
            )
            .await?;
        notification_row(&row)
    }

    async fn list_notifications(&self, include_dismissed: bool, limit: u32) -> Result<Vec<Notification>> {
        let filter = if include_dismissed {
            ""
        } else {
            "WHERE dismissed_at IS NULL"
        };
        let c = self.client().await?;
        let r = c
            .query(
                &format!("SELECT {NOTIFICATION_COLS} FROM notifications {filter} ORDER BY id DESC LIMIT $1"),
                &[&i64::from(limit)],
            )
            .await?;
        rows(&r, notification_row)
    }

    async fn dismiss_notification(&self, id: i64, at: DateTime<Utc>) -> Result<()> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE notifications SET dismissed_at = COALESCE(dismissed_at, $2) WHERE id = $1",
                &[&id, &ts(at)],
            )
            .await?;
        touched(n, "notification", id)
    }

    async fn add_token(&self, name: &str, token_hash: &str, at: DateTime<Utc>) -> Result<ApiToken> {
        let c = self.client().await?;
        let row = c
            .query_one(
                &format!(
                    "INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3) RETURNING {TOKEN_COLS}"
                ),
                &[&name, &token_hash, &ts(at)],
            )
            .await?;
        token_row(&row)
    }

    async fn find_token(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"),
                &[&token_hash],
            )
            .await?;
        row.map(|r| token_row(&r)).transpose()
    }

    async fn count_tokens(&self) -> Result<u64> {
        let c = self.client().await?;
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM api_tokens", &[])
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        let c = self.client().await?;
        let r = c
            .query(&format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY id"), &[])
            .await?;
        rows(&r, token_row)
    }

    async fn revoke_token(&self, id: i64, at: DateTime<Utc>) -> Result<ApiToken> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!(
                    "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING {TOKEN_COLS}"
                ),
                &[&id, &ts(at)],
            )
            .await?
            .ok_or(MetastoreError::NotFound { what: "API token", id })?;
        token_row(&row)
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        Ok(c.query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await?;
        Ok(())
    }

    // -- dashboard sessions and sign-in throttling -------------------------------------------------

    async fn create_session(&self, session: &DashboardSession, idle_cutoff: DateTime<Utc>) -> Result<()> {
        let s = session;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "DELETE FROM ui_sessions WHERE last_seen <= $1",
            &[&ts(idle_cutoff)],
        )
        .await?;
        tx.execute(
            &format!("INSERT INTO ui_sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[
                &s.id_hash,
                &s.csrf_token,
                &s.username,
                &s.password_fingerprint,
                &ts(s.created_at),
                &ts(s.last_seen),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn touch_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<Option<DashboardSession>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "DELETE FROM ui_sessions WHERE id_hash = $1 AND last_seen <= $2",
            &[&id_hash, &ts(idle_cutoff)],
        )
        .await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE ui_sessions SET last_seen = GREATEST(last_seen, $2) WHERE id_hash = $1 \
                     RETURNING {SESSION_COLS}"
                ),
                &[&id_hash, &ts(now)],
            )
            .await?;
        tx.commit().await?;
        row.map(|r| session_row(&r)).transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute("DELETE FROM ui_sessions WHERE id_hash = $1", &[&id_hash])
            .await?;
        Ok(())
    }

    async fn begin_sign_in(
        &self,
        client: &str,
        now: DateTime<Utc>,
        budgets: &SignInBudgets,
    ) -> Result<SignInVerdict> {
        let client = client_bucket(client);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let overall = lock_overall_bucket(&tx).await?;
        let mut buckets = SignInBuckets {
            client: read_bucket(&tx, &client).await?,
            overall,
        };
        let tracked = if buckets.client.is_some() {
            true
        } else {
            tx.execute(
                "DELETE FROM ui_sign_in_buckets WHERE bucket <> $1 AND full_at <= $2",
                &[&OVERALL_BUCKET, &ts(now)],
            )
            .await?;
            let clients: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM ui_sign_in_buckets WHERE bucket <> $1",
                    &[&OVERALL_BUCKET],
                )
                .await?
                .try_get(0)?;
            usize::try_from(clients).unwrap_or(usize::MAX) < budgets.max_clients
        };
        let verdict = buckets.begin(budgets, now);
        if verdict == SignInVerdict::Allowed {
            if tracked {
                write_bucket(&tx, &client, buckets.client).await?;
            }
            write_bucket(&tx, OVERALL_BUCKET, buckets.overall).await?;
        }
        tx.commit().await?;
        Ok(verdict)
    }

    async fn end_sign_in(&self, client: &str, outcome: SignInOutcome, budgets: &SignInBudgets) -> Result<()> {
        let client = client_bucket(client);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let overall = lock_overall_bucket(&tx).await?;
        let mut buckets = SignInBuckets {
            client: read_bucket(&tx, &client).await?,
            overall,
        };
        buckets.end(budgets, outcome);
        write_bucket(&tx, &client, buckets.client).await?;
        write_bucket(&tx, OVERALL_BUCKET, buckets.overall).await?;
        tx.commit().await?;
        Ok(())
    }
}

// -- dashboard sessions and sign-in throttling: rows -----------------------------------------------

/// Locks the overall sign-in bucket's row (creating it full) and returns the time it is full again.
/// Every throttling call takes this lock first, so calls from all processes sharing the store take
/// turns: each reads what the one before it wrote.
async fn lock_overall_bucket(tx: &tokio_postgres::Transaction<'_>) -> Result<Option<DateTime<Utc>>> {
    tx.execute(
        "INSERT INTO ui_sign_in_buckets (bucket, full_at) VALUES ($1, $2) ON CONFLICT (bucket) DO NOTHING",
        &[&OVERALL_BUCKET, &ts(DateTime::UNIX_EPOCH)],
    )
    .await?;
    let full_at: String = tx
        .query_one(
            "SELECT full_at FROM ui_sign_in_buckets WHERE bucket = $1 FOR UPDATE",
            &[&OVERALL_BUCKET],
        )
        .await?
        .try_get(0)?;
    parse_ts(&full_at).map(Some)
}

/// The time the sign-in bucket `name` is full again; `None` without a row (a full bucket).
async fn read_bucket(tx: &tokio_postgres::Transaction<'_>, name: &str) -> Result<Option<DateTime<Utc>>> {
    let row = tx
        .query_opt(
            "SELECT full_at FROM ui_sign_in_buckets WHERE bucket = $1",
            &[&name],
        )
        .await?;
    let full_at: Option<String> = row.map(|r| r.try_get(0)).transpose()?;
    opt_ts(full_at)
}

/// Stores the sign-in bucket `name` (`None` deletes its row: a full bucket).
async fn write_bucket(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    full_at: Option<DateTime<Utc>>,
) -> Result<()> {
    match full_at {
        Some(t) => {
            tx.execute(
                "INSERT INTO ui_sign_in_buckets (bucket, full_at) VALUES ($1, $2) \
                 ON CONFLICT (bucket) DO UPDATE SET full_at = excluded.full_at",
                &[&name, &ts(t)],
            )
            .await?
        }
        None => {
            tx.execute("DELETE FROM ui_sign_in_buckets WHERE bucket = $1", &[&name])
                .await?
        }
    };
    Ok(())
}
