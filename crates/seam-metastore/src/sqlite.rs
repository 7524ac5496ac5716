//! The SQLite backend: one connection behind a mutex, every call on tokio's blocking pool so the async
//! runtime never waits on disk.

use crate::crypto::{Credentials, SecretCipher};
use crate::error::{touched, MetastoreError};
use crate::model::*;
use crate::rows::{self, *};
use crate::{Leadership, Metastore, Result};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use seam_core::{Catalog, State};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Migrations in order; `user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_token_revocation.sql"),
    include_str!("../migrations/sqlite/0003_job_warnings.sql"),
    include_str!("../migrations/sqlite/0004_job_queue.sql"),
    include_str!("../migrations/sqlite/0005_sessions.sql"),
];

/// The SQLite metastore (embedded default: `<data-dir>/metastore.sqlite`).
#[derive(Debug, Clone)]
pub struct SqliteMetastore {
    conn: Arc<Mutex<Connection>>,
}

fn unreadable(e: MetastoreError) -> rusqlite::Error {
    <Row<'_> as Cols>::unreadable(e)
}

fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    rows::parse_ts(s).map_err(unreadable)
}

fn active_job(conn: &Connection, integration_id: IntegrationId) -> rusqlite::Result<Option<Job>> {
    conn.query_row(
        &format!(
            "SELECT {JOB_COLS} FROM jobs WHERE integration_id = ?1 AND status IN ('pending', 'running')"
        ),
        [integration_id],
        |r| job_row(r),
    )
    .optional()
}

fn get_job(conn: &Connection, id: JobId) -> rusqlite::Result<Job> {
    conn.query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"), [id], |r| {
        job_row(r)
    })
}

/// The single process that opens a SQLite metastore is its only scheduler.
#[derive(Debug)]
struct SoleLeader;

#[async_trait]
impl Leadership for SoleLeader {
    async fn holds(&self) -> bool {
        true
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn load_integration(conn: &Connection, id: IntegrationId) -> Result<Option<Integration>> {
    Ok(conn
        .query_row(
            &format!("SELECT {INTEGRATION_COLS} FROM integrations WHERE id = ?1"),
            [id],
            |r| integration_row(r),
        )
        .optional()?)
}

fn live_integration(conn: &Connection, id: IntegrationId) -> Result<Integration> {
    match load_integration(conn, id)? {
        Some(i) if i.deleted_at.is_none() => Ok(i),
        _ => Err(MetastoreError::NotFound {
            what: "integration",
            id,
        }),
    }
}

impl SqliteMetastore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i64::try_from(i + 1).unwrap_or(i64::MAX))?;
            tx.commit()?;
        }
        Ok(SqliteMetastore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic inside a previous call poisons the mutex; the connection itself is still sound
            // (every call is one transaction), so carry on with it.
            let mut guard = conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await?
    }
}

#[async_trait]
impl Metastore for SqliteMetastore {
    async fn create_integration(&self, new: NewIntegration) -> Result<Integration> {
        let properties = to_json("properties", &new.properties)?;
        self.call(move |conn| {
            let res = conn.execute(
                "INSERT INTO integrations (display_name, name, kind, properties, sealed_credentials, created_at, \
                 updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![new.display_name, new.name, new.kind, properties, new.sealed_credentials, ts(new.created_at)],
            );
            match res {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(MetastoreError::NameTaken { name: new.name }),
                Err(e) => return Err(e.into()),
            }
            let id = conn.last_insert_rowid();
            load_integration(conn, id)?.ok_or(MetastoreError::NotFound { what: "integration", id })
        })
        .await
    }

    async fn create_integration_sealed(
        &self,
        new: NewIntegration,
        cipher: &SecretCipher,
        credentials: &Credentials,
    ) -> Result<Integration> {
        let properties = to_json("properties", &new.properties)?;
        let (cipher, credentials) = (cipher.clone(), credentials.clone());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let res = tx.execute(
                "INSERT INTO integrations (display_name, name, kind, properties, sealed_credentials, created_at, \
                 updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![new.display_name, new.name, new.kind, properties, Vec::<u8>::new(), ts(new.created_at)],
            );
            match res {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(MetastoreError::NameTaken { name: new.name }),
                Err(e) => return Err(e.into()),
            }
            let id = tx.last_insert_rowid();
            let sealed = cipher.seal(id, &credentials)?;
            tx.execute(
                "UPDATE integrations SET sealed_credentials = ?2 WHERE id = ?1",
                params![id, sealed],
            )?;
            let created = load_integration(&tx, id)?.ok_or(MetastoreError::NotFound { what: "integration", id })?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    async fn set_sealed_credentials(&self, id: IntegrationId, sealed: &[u8]) -> Result<()> {
        let sealed = sealed.to_vec();
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE integrations SET sealed_credentials = ?2 WHERE id = ?1",
                params![id, sealed],
            )?;
            touched(n, "integration", id)
        })
        .await
    }

    async fn get_integration(&self, id: IntegrationId) -> Result<Option<Integration>> {
        self.call(move |conn| load_integration(conn, id)).await
    }

    async fn list_integrations(&self, include_deleted: bool) -> Result<Vec<Integration>> {
        self.call(move |conn| {
            let filter = if include_deleted {
                ""
            } else {
                "WHERE deleted_at IS NULL"
            };
            let mut stmt = conn.prepare(&format!(
                "SELECT {INTEGRATION_COLS} FROM integrations {filter} ORDER BY id"
            ))?;
            let rows = stmt
                .query_map([], |r| integration_row(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn update_integration(&self, id: IntegrationId, update: IntegrationUpdate) -> Result<Integration> {
        let properties = to_json("properties", &update.properties)?;
        self.call(move |conn| {
            live_integration(conn, id)?;
            conn.execute(
                "UPDATE integrations SET display_name = ?2, properties = ?3, sealed_credentials = ?4, paused_at = ?5, \
                 updated_at = ?6 WHERE id = ?1",
                params![
                    id,
                    update.display_name,
                    properties,
                    update.sealed_credentials,
                    update.paused_at.map(ts),
                    ts(update.updated_at)
                ],
            )?;
            live_integration(conn, id)
        })
        .await
    }

    async fn delete_integration(&self, id: IntegrationId, at: DateTime<Utc>) -> Result<Integration> {
        self.call(move |conn| {
            live_integration(conn, id)?;
            conn.execute(
                "UPDATE integrations SET deleted_at = ?2 WHERE id = ?1",
                params![id, ts(at)],
            )?;
            load_integration(conn, id)?.ok_or(MetastoreError::NotFound {
                what: "integration",
                id,
            })
        })
        .await
    }

    async fn set_catalog(&self, id: IntegrationId, catalog: &Catalog) -> Result<()> {
        let catalog = to_json("catalog", catalog)?;
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE integrations SET catalog = ?2 WHERE id = ?1",
                params![id, catalog],
            )?;
            touched(n, "integration", id)
        })
        .await
    }

    async fn set_state(&self, id: IntegrationId, state: Option<&State>) -> Result<()> {
        let state = state.map(|s| to_json("state", s)).transpose()?;
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE integrations SET state = ?2 WHERE id = ?1",
                params![id, state],
            )?;
            touched(n, "integration", id)
        })
        .await
    }

    async fn create_check(
        &self,
        integration_id: IntegrationId,
        at: DateTime<Utc>,
    ) -> Result<ConnectionCheck> {
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO connection_checks (integration_id, status, start_time) VALUES (?1, 'running', ?2)",
                params![integration_id, ts(at)],
            )?;
            let id = conn.last_insert_rowid();
            Ok(conn.query_row(&format!("SELECT {CHECK_COLS} FROM connection_checks WHERE id = ?1"), [id], |r| check_row(r))?)
        })
        .await
    }

    async fn finish_check(&self, check: &ConnectionCheck) -> Result<()> {
        let c = check.clone();
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE connection_checks SET status = ?2, completion_time = ?3, check_exit_status = ?4, \
                 check_error_message = ?5, discovery_exit_status = ?6, discovery_error_message = ?7 WHERE id = ?1",
                params![
                    c.id,
                    c.status.as_str(),
                    c.completion_time.map(ts),
                    c.check_exit_status,
                    c.check_error_message,
                    c.discovery_exit_status,
                    c.discovery_error_message
                ],
            )?;
            touched(n, "connection check", c.id)
        })
        .await
    }

    async fn last_check(&self, integration_id: IntegrationId) -> Result<Option<ConnectionCheck>> {
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {CHECK_COLS} FROM connection_checks WHERE integration_id = ?1 ORDER BY id DESC LIMIT 1"
                    ),
                    [integration_id],
                    |r| check_row(r),
                )
                .optional()?)
        })
        .await
    }

    async fn create_job(
        &self,
        integration_id: IntegrationId,
        trigger: JobTrigger,
        at: DateTime<Utc>,
    ) -> Result<Job> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if active_job(&tx, integration_id)?.is_some() {
                return Err(MetastoreError::JobActive {
                    integration: integration_id,
                });
            }
            tx.execute(
                "INSERT INTO jobs (integration_id, trigger, status, start_time) VALUES (?1, ?2, 'running', ?3)",
                params![integration_id, trigger.as_str(), ts(at)],
            )?;
            let job = get_job(&tx, tx.last_insert_rowid())?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    async fn finish_job(&self, id: JobId, finish: &JobFinish) -> Result<Job> {
        let f = finish.clone();
        self.call(move |conn| {
            // A job that is no longer active (its lease ran out) keeps how it ended then.
            let exists = conn
                .query_row("SELECT 1 FROM jobs WHERE id = ?1", [id], |_| Ok(()))
                .optional()?;
            touched(usize::from(exists.is_some()), "job", id)?;
            conn.execute(
                "UPDATE jobs SET status = ?2, completion_time = ?3, discovery_exit_status = ?4, tap_exit_status = ?5, \
                 target_exit_status = ?6, error_message = ?7, warning_message = ?8, lease_until = NULL, \
                 progress = NULL WHERE id = ?1 AND status IN ('pending', 'running')",
                params![
                    id,
                    f.status.as_str(),
                    ts(f.completion_time),
                    f.discovery_exit_status,
                    f.tap_exit_status,
                    f.target_exit_status,
                    f.error_message,
                    f.warning_message
                ],
            )?;
            Ok(get_job(conn, id)?)
        })
        .await
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.call(move |conn| {
            Ok(conn
                .query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"), [id], |r| {
                    job_row(r)
                })
                .optional()?)
        })
        .await
    }

    async fn list_jobs(&self, integration_id: IntegrationId, limit: u32) -> Result<Vec<Job>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {JOB_COLS} FROM jobs WHERE integration_id = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![integration_id, limit], |r| job_row(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn fail_running_jobs(&self, at: DateTime<Utc>, message: &str) -> Result<Vec<IntegrationId>> {
        let message = message.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let ids = tx
                .prepare("SELECT DISTINCT integration_id FROM jobs WHERE status = 'running' ORDER BY integration_id")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<IntegrationId>>>()?;
            tx.execute(
                "UPDATE jobs SET status = 'failed', completion_time = ?1, error_message = ?2, lease_until = NULL, \
                 progress = NULL WHERE status = 'running'",
                params![ts(at), message],
            )?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    async fn enqueue_job(
        &self,
        integration_id: IntegrationId,
        trigger: JobTrigger,
        due: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if active_job(&tx, integration_id)?.is_some() {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO jobs (integration_id, trigger, status, start_time, due_time) \
                 VALUES (?1, ?2, 'pending', ?3, ?3)",
                params![integration_id, trigger.as_str(), ts(due)],
            )?;
            let job = get_job(&tx, tx.last_insert_rowid())?;
            tx.commit()?;
            Ok(Some(job))
        })
        .await
    }

    async fn lease_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        let worker = worker.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let Some(id) = tx
                .query_row(
                    "SELECT id FROM jobs WHERE status = 'pending' AND due_time <= ?1 ORDER BY due_time, id LIMIT 1",
                    [ts(now)],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
            else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE jobs SET status = 'running', worker = ?2, start_time = ?3, lease_until = ?4 WHERE id = ?1",
                params![id, worker, ts(now), ts(lease_until)],
            )?;
            let job = get_job(&tx, id)?;
            tx.commit()?;
            Ok(Some(job))
        })
        .await
    }

    async fn renew_lease(
        &self,
        job_id: JobId,
        worker: &str,
        lease_until: DateTime<Utc>,
        progress: Option<&str>,
    ) -> Result<Option<bool>> {
        let (worker, progress) = (worker.to_owned(), progress.map(str::to_owned));
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE jobs SET lease_until = ?3, progress = ?4 WHERE id = ?1 AND worker = ?2 AND status = 'running'",
                params![job_id, worker, ts(lease_until), progress],
            )?;
            if n == 0 {
                return Ok(None);
            }
            Ok(Some(conn.query_row(
                "SELECT stop_requested FROM jobs WHERE id = ?1",
                [job_id],
                |r| r.get(0),
            )?))
        })
        .await
    }

    async fn expire_leases(&self, now: DateTime<Utc>, message: &str) -> Result<Vec<Job>> {
        let message = message.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let ids = tx
                .prepare("SELECT id FROM jobs WHERE status = 'running' AND (lease_until IS NULL OR lease_until < ?1)")?
                .query_map([ts(now)], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<JobId>>>()?;
            let mut jobs = Vec::with_capacity(ids.len());
            for id in ids {
                tx.execute(
                    "UPDATE jobs SET status = 'failed', completion_time = ?2, error_message = ?3, lease_until = NULL, \
                     progress = NULL WHERE id = ?1",
                    params![id, ts(now), message],
                )?;
                jobs.push(get_job(&tx, id)?);
            }
            tx.commit()?;
            Ok(jobs)
        })
        .await
    }

    async fn active_job(&self, integration_id: IntegrationId) -> Result<Option<Job>> {
        self.call(move |conn| Ok(active_job(conn, integration_id)?)).await
    }

    async fn request_stop(&self, integration_id: IntegrationId, at: DateTime<Utc>) -> Result<Option<Job>> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let Some(job) = active_job(&tx, integration_id)? else {
                return Ok(None);
            };
            if job.status == JobStatus::Pending {
                tx.execute(
                    "UPDATE jobs SET status = 'cancelled', completion_time = ?2 WHERE id = ?1",
                    params![job.id, ts(at)],
                )?;
            } else {
                tx.execute("UPDATE jobs SET stop_requested = TRUE WHERE id = ?1", [job.id])?;
            }
            let job = get_job(&tx, job.id)?;
            tx.commit()?;
            Ok(Some(job))
        })
        .await
    }

    async fn queue_stats(&self) -> Result<QueueStats> {
        self.call(move |conn| {
            let (pending, oldest): (i64, Option<String>) = conn.query_row(
                "SELECT COUNT(*), MIN(due_time) FROM jobs WHERE status = 'pending'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let soonest: Option<String> = conn.query_row(
                "SELECT MIN(lease_until) FROM jobs WHERE status = 'running'",
                [],
                |r| r.get(0),
            )?;
            let running_by_worker = conn
                .prepare(
                    "SELECT COALESCE(worker, ''), COUNT(*) FROM jobs WHERE status = 'running' \
                     GROUP BY COALESCE(worker, '') ORDER BY 1",
                )?
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .map(|r| r.map(|(w, n)| (w, u64::try_from(n).unwrap_or(0))))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let start_lateness = conn
                .prepare(
                    "SELECT start_time, due_time FROM jobs WHERE due_time IS NOT NULL AND status <> 'pending' \
                     ORDER BY id DESC LIMIT ?1",
                )?
                .query_map([QueueStats::LATENESS_SAMPLE], |r| {
                    Ok(r.time(0)? - r.time(1)?)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(QueueStats {
                pending: u64::try_from(pending).unwrap_or(0),
                oldest_pending_due: rows::opt_ts(oldest)?,
                running_by_worker,
                soonest_lease_end: rows::opt_ts(soonest)?,
                start_lateness,
            })
        })
        .await
    }

    async fn try_lead(&self, _role: &str) -> Result<Option<Box<dyn Leadership>>> {
        Ok(Some(Box::new(SoleLeader)))
    }

    async fn append_logs(&self, job_id: JobId, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let lines = lines.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let next: i64 =
                tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM job_logs WHERE job_id = ?1", [job_id], |r| r.get(0))?;
            {
                let mut stmt = tx.prepare(
                    "INSERT INTO job_logs (job_id, seq, at, location, level, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for (i, l) in lines.iter().enumerate() {
                    stmt.execute(params![
                        job_id,
                        next + 1 + i as i64,
                        ts(l.at),
                        l.location.as_str(),
                        l.level.as_str(),
                        l.message
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn job_logs(&self, job_id: JobId) -> Result<Vec<LogLine>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {LOG_COLS} FROM job_logs WHERE job_id = ?1 ORDER BY seq"
            ))?;
            let rows = stmt
                .query_map([job_id], |r| log_row(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn record_loads(
        &self,
        integration_id: IntegrationId,
        job_id: JobId,
        at: DateTime<Utc>,
        deltas: &[LoadDelta],
    ) -> Result<()> {
        let deltas = deltas.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let day = at.date_naive().to_string();
            let mut total = 0i64;
            for d in &deltas {
                let loaded_at = (d.error.is_none() || d.rows > 0).then(|| ts(at));
                tx.execute(
                    "INSERT INTO table_loads (job_id, integration_id, table_name, rows, last_batch_loaded_at, \
                     max_bookmark, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (job_id, table_name) DO UPDATE SET rows = rows + excluded.rows,
                       last_batch_loaded_at = COALESCE(excluded.last_batch_loaded_at, last_batch_loaded_at),
                       max_bookmark = COALESCE(excluded.max_bookmark, max_bookmark),
                       error = COALESCE(excluded.error, error)",
                    params![job_id, integration_id, d.table_name, d.rows, loaded_at, d.max_bookmark, d.error],
                )?;
                if d.rows > 0 {
                    tx.execute(
                        "INSERT INTO usage_daily (integration_id, day, table_name, rows) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (integration_id, day, table_name) DO UPDATE SET rows = rows + excluded.rows",
                        params![integration_id, day, d.table_name, d.rows],
                    )?;
                }
                total += d.rows;
            }
            tx.execute("UPDATE jobs SET rows_loaded = rows_loaded + ?2 WHERE id = ?1", params![job_id, total])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_loads(
        &self,
        integration_id: IntegrationId,
        since: DateTime<Utc>,
    ) -> Result<Vec<TableLoad>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {LOAD_COLS} FROM table_loads l JOIN jobs j ON j.id = l.job_id
                     WHERE l.integration_id = ?1 AND j.start_time >= ?2 ORDER BY l.job_id DESC, l.table_name"
            ))?;
            let rows = stmt
                .query_map(params![integration_id, ts(since)], |r| load_row(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn usage(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageRow>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {USAGE_COLS} FROM usage_daily WHERE day >= ?1 AND day <= ?2
                     ORDER BY day, integration_id, table_name"
            ))?;
            let rows = stmt
                .query_map(params![from.to_string(), to.to_string()], |r| usage_row(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn add_notification(&self, new: NewNotification) -> Result<Notification> {
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO notifications (level, code, integration_id, subject, message, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    new.level.as_str(),
                    new.code,
                    new.integration_id,
                    new.subject,
                    new.message,
                    ts(new.created_at)
                ],
            )?;
            let id = conn.last_insert_rowid();
            Ok(conn.query_row(
                &format!("SELECT {NOTIFICATION_COLS} FROM notifications WHERE id = ?1"),
                [id],
                |r| notification_row(r),
            )?)
        })
        .await
    }

    async fn list_notifications(&self, include_dismissed: bool, limit: u32) -> Result<Vec<Notification>> {
        self.call(move |conn| {
            let filter = if include_dismissed {
                ""
            } else {
                "WHERE dismissed_at IS NULL"
            };
            let mut stmt = conn.prepare(&format!(
                "SELECT {NOTIFICATION_COLS} FROM notifications {filter} ORDER BY id DESC LIMIT ?1"
            ))?;
            let rows = stmt
                .query_map([limit], |r| notification_row(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn dismiss_notification(&self, id: i64, at: DateTime<Utc>) -> Result<()> {
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE notifications SET dismissed_at = COALESCE(dismissed_at, ?2) WHERE id = ?1",
                params![id, ts(at)],
            )?;
            touched(n, "notification", id)
        })
        .await
    }

    async fn add_token(&self, name: &str, token_hash: &str, at: DateTime<Utc>) -> Result<ApiToken> {
        let (name, token_hash) = (name.to_owned(), token_hash.to_owned());
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO api_tokens (name, token_hash, created_at) VALUES (?1, ?2, ?3)",
                params![name, token_hash, ts(at)],
            )?;
            let id = conn.last_insert_rowid();
            Ok(conn.query_row(
                &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = ?1"),
                [id],
                |r| token_row(r),
            )?)
        })
        .await
    }

    async fn find_token(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let token_hash = token_hash.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {TOKEN_COLS} FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL"
                    ),
                    [token_hash],
                    |r| token_row(r),
                )
                .optional()?)
        })
        .await
    }

    async fn count_tokens(&self) -> Result<u64> {
        self.call(|conn| {
            Ok(conn.query_row("SELECT COUNT(*) FROM api_tokens", [], |r| r.get::<_, i64>(0))? as u64)
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        self.call(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY id"))?;
            let rows = stmt
                .query_map([], |r| token_row(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn revoke_token(&self, id: i64, at: DateTime<Utc>) -> Result<ApiToken> {
        self.call(move |conn| {
            conn.execute(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                params![id, ts(at)],
            )?;
            conn.query_row(
                &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = ?1"),
                [id],
                |r| token_row(r),
            )
            .optional()?
            .ok_or(MetastoreError::NotFound {
                what: "API token",
                id,
            })
        })
        .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
        .await
    }

    // -- dashboard sessions and sign-in throttling -------------------------------------------------

    async fn create_session(&self, session: &DashboardSession, idle_cutoff: DateTime<Utc>) -> Result<()> {
        let s = session.clone();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM ui_sessions WHERE last_seen <= ?1", [ts(idle_cutoff)])?;
            tx.execute(
                &format!("INSERT INTO ui_sessions ({SESSION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    s.id_hash,
                    s.csrf_token,
                    s.username,
                    s.password_fingerprint,
                    ts(s.created_at),
                    ts(s.last_seen)
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn touch_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<Option<DashboardSession>> {
        let id_hash = id_hash.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM ui_sessions WHERE id_hash = ?1 AND last_seen <= ?2",
                params![id_hash, ts(idle_cutoff)],
            )?;
            let session = tx
                .query_row(
                    &format!(
                        "UPDATE ui_sessions SET last_seen = MAX(last_seen, ?2) WHERE id_hash = ?1 \
                         RETURNING {SESSION_COLS}"
                    ),
                    params![id_hash, ts(now)],
                    |r| session_row(r),
                )
                .optional()?;
            tx.commit()?;
            Ok(session)
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        let id_hash = id_hash.to_owned();
        self.call(move |conn| {
            conn.execute("DELETE FROM ui_sessions WHERE id_hash = ?1", [id_hash])?;
            Ok(())
        })
        .await
    }

    async fn begin_sign_in(
        &self,
        client: &str,
        now: DateTime<Utc>,
        budgets: &SignInBudgets,
    ) -> Result<SignInVerdict> {
        let (client, budgets) = (client_bucket(client), *budgets);
        self.call(move |conn| {
            // IMMEDIATE: the write lock from the start, so processes sharing the file take turns.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut buckets = SignInBuckets {
                client: read_bucket(&tx, &client)?,
                overall: read_bucket(&tx, OVERALL_BUCKET)?,
            };
            let tracked = if buckets.client.is_some() {
                true
            } else {
                tx.execute(
                    "DELETE FROM ui_sign_in_buckets WHERE bucket <> ?1 AND full_at <= ?2",
                    params![OVERALL_BUCKET, ts(now)],
                )?;
                let clients: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM ui_sign_in_buckets WHERE bucket <> ?1",
                    [OVERALL_BUCKET],
                    |r| r.get(0),
                )?;
                usize::try_from(clients).unwrap_or(usize::MAX) < budgets.max_clients
            };
            let verdict = buckets.begin(&budgets, now);
            if verdict == SignInVerdict::Allowed {
                if tracked {
                    write_bucket(&tx, &client, buckets.client)?;
                }
                write_bucket(&tx, OVERALL_BUCKET, buckets.overall)?;
            }
            tx.commit()?;
            Ok(verdict)
        })
        .await
    }

    async fn end_sign_in(&self, client: &str, outcome: SignInOutcome, budgets: &SignInBudgets) -> Result<()> {
        let (client, budgets) = (client_bucket(client), *budgets);
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut buckets = SignInBuckets {
                client: read_bucket(&tx, &client)?,
                overall: read_bucket(&tx, OVERALL_BUCKET)?,
            };
            buckets.end(&budgets, outcome);
            write_bucket(&tx, &client, buckets.client)?;
            write_bucket(&tx, OVERALL_BUCKET, buckets.overall)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

// -- dashboard sessions and sign-in throttling: rows -----------------------------------------------

/// The time the sign-in bucket `name` is full again; `None` without a row (a full bucket).
fn read_bucket(conn: &Connection, name: &str) -> rusqlite::Result<Option<DateTime<Utc>>> {
    conn.query_row(
        "SELECT full_at FROM ui_sign_in_buckets WHERE bucket = ?1",
        [name],
        |r| r.get::<_, String>(0),
    )
    .optional()?
    .as_deref()
    .map(parse_ts)
    .transpose()
}

/// Stores the sign-in bucket `name` (`None` deletes its row: a full bucket).
fn write_bucket(conn: &Connection, name: &str, full_at: Option<DateTime<Utc>>) -> rusqlite::Result<()> {
    match full_at {
        Some(t) => conn.execute(
            "INSERT INTO ui_sign_in_buckets (bucket, full_at) VALUES (?1, ?2) \
             ON CONFLICT (bucket) DO UPDATE SET full_at = excluded.full_at",
            params![name, ts(t)],
        )?,
        None => conn.execute("DELETE FROM ui_sign_in_buckets WHERE bucket = ?1", [name])?,
    };
    Ok(())
}
