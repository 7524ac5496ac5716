//! The SQLite backend: one connection behind a mutex, every call on tokio's blocking pool so the async
//! runtime never waits on disk.

use crate::crypto::{Credentials, SecretCipher};
use crate::error::{touched, MetastoreError};
use crate::model::*;
use crate::{Metastore, Result};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use seam_core::{Catalog, State};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Migrations in order; `user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_token_revocation.sql"),
    include_str!("../migrations/sqlite/0003_job_warnings.sql"),
];

/// The SQLite metastore (embedded default: `<data-dir>/metastore.sqlite`).
#[derive(Debug, Clone)]
pub struct SqliteMetastore {
    conn: Arc<Mutex<Connection>>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn opt_ts(s: Option<String>) -> rusqlite::Result<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

fn bad_enum(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}

fn json_col<T: serde::de::DeserializeOwned>(s: Option<String>) -> rusqlite::Result<Option<T>> {
    s.map(|s| {
        serde_json::from_str(&s).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
    })
    .transpose()
}

fn to_json<T: serde::Serialize>(what: &'static str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|source| MetastoreError::Json { what, source })
}

const INTEGRATION_COLS: &str =
    "id, display_name, name, kind, properties, sealed_credentials, paused_at, deleted_at, \
                                created_at, updated_at, catalog, state";

fn integration_row(r: &Row<'_>) -> rusqlite::Result<Integration> {
    let properties: String = r.get(4)?;
    Ok(Integration {
        id: r.get(0)?,
        display_name: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        properties: json_col(Some(properties))?.ok_or_else(|| bad_enum("properties", ""))?,
        sealed_credentials: r.get(5)?,
        paused_at: opt_ts(r.get(6)?)?,
        deleted_at: opt_ts(r.get(7)?)?,
        created_at: parse_ts(&r.get::<_, String>(8)?)?,
        updated_at: parse_ts(&r.get::<_, String>(9)?)?,
        catalog: json_col::<Catalog>(r.get(10)?)?,
        state: json_col::<State>(r.get(11)?)?,
    })
}

const CHECK_COLS: &str = "id, integration_id, status, start_time, completion_time, check_exit_status, \
                          check_error_message, discovery_exit_status, discovery_error_message";

fn check_row(r: &Row<'_>) -> rusqlite::Result<ConnectionCheck> {
    let status: String = r.get(2)?;
    Ok(ConnectionCheck {
        id: r.get(0)?,
        integration_id: r.get(1)?,
        status: CheckStatus::parse(&status).ok_or_else(|| bad_enum("check status", &status))?,
        start_time: parse_ts(&r.get::<_, String>(3)?)?,
        completion_time: opt_ts(r.get(4)?)?,
        check_exit_status: r.get(5)?,
        check_error_message: r.get(6)?,
        discovery_exit_status: r.get(7)?,
        discovery_error_message: r.get(8)?,
    })
}

const JOB_COLS: &str =
    "id, integration_id, trigger, status, start_time, completion_time, discovery_exit_status, \
                        tap_exit_status, target_exit_status, error_message, rows_loaded, warning_message";

fn job_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let id: i64 = r.get(0)?;
    let integration_id: i64 = r.get(1)?;
    let trigger: String = r.get(2)?;
    let status: String = r.get(3)?;
    Ok(Job {
        id,
        integration_id,
        job_name: format!("{integration_id}.{id}.sync"),
        trigger: JobTrigger::parse(&trigger).ok_or_else(|| bad_enum("job trigger", &trigger))?,
        status: JobStatus::parse(&status).ok_or_else(|| bad_enum("job status", &status))?,
        start_time: parse_ts(&r.get::<_, String>(4)?)?,
        completion_time: opt_ts(r.get(5)?)?,
        discovery_exit_status: r.get(6)?,
        tap_exit_status: r.get(7)?,
        target_exit_status: r.get(8)?,
        error_message: r.get(9)?,
        rows_loaded: r.get(10)?,
        warning_message: r.get(11)?,
    })
}

const NOTIFICATION_COLS: &str = "id, level, code, integration_id, subject, message, created_at, dismissed_at";

fn notification_row(r: &Row<'_>) -> rusqlite::Result<Notification> {
    let level: String = r.get(1)?;
    Ok(Notification {
        id: r.get(0)?,
        level: NotificationLevel::parse(&level).ok_or_else(|| bad_enum("notification level", &level))?,
        code: r.get(2)?,
        integration_id: r.get(3)?,
        subject: r.get(4)?,
        message: r.get(5)?,
        created_at: parse_ts(&r.get::<_, String>(6)?)?,
        dismissed_at: opt_ts(r.get(7)?)?,
    })
}

const TOKEN_COLS: &str = "id, name, token_hash, created_at, revoked_at";

fn token_row(r: &Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        name: r.get(1)?,
        token_hash: r.get(2)?,
        created_at: parse_ts(&r.get::<_, String>(3)?)?,
        revoked_at: opt_ts(r.get(4)?)?,
    })
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn load_integration(conn: &Connection, id: IntegrationId) -> Result<Option<Integration>> {
    Ok(conn
        .query_row(
            &format!("SELECT {INTEGRATION_COLS} FROM integrations WHERE id = ?1"),
            [id],
            integration_row,
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
                .query_map([], integration_row)?
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
            Ok(conn.query_row(&format!("SELECT {CHECK_COLS} FROM connection_checks WHERE id = ?1"), [id], check_row)?)
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
                    check_row,
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
            conn.execute(
                "INSERT INTO jobs (integration_id, trigger, status, start_time) VALUES (?1, ?2, 'running', ?3)",
                params![integration_id, trigger.as_str(), ts(at)],
            )?;
            let id = conn.last_insert_rowid();
            Ok(conn.query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"), [id], job_row)?)
        })
        .await
    }

    async fn finish_job(&self, id: JobId, finish: &JobFinish) -> Result<Job> {
        let f = finish.clone();
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE jobs SET status = ?2, completion_time = ?3, discovery_exit_status = ?4, tap_exit_status = ?5, \
                 target_exit_status = ?6, error_message = ?7, warning_message = ?8 WHERE id = ?1",
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
            touched(n, "job", id)?;
            Ok(conn.query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"), [id], job_row)?)
        })
        .await
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"),
                    [id],
                    job_row,
                )
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
                .query_map(params![integration_id, limit], job_row)?
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
                "UPDATE jobs SET status = 'failed', completion_time = ?1, error_message = ?2 WHERE status = 'running'",
                params![ts(at), message],
            )?;
            tx.commit()?;
            Ok(ids)
        })
        .await
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
            let mut stmt = conn.prepare(
                "SELECT at, location, level, message FROM job_logs WHERE job_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt
                .query_map([job_id], |r| {
                    let location: String = r.get(1)?;
                    let level: String = r.get(2)?;
                    Ok(LogLine {
                        at: parse_ts(&r.get::<_, String>(0)?)?,
                        location: LogLocation::parse(&location)
                            .ok_or_else(|| bad_enum("log location", &location))?,
                        level: LogLevel::parse(&level).ok_or_else(|| bad_enum("log level", &level))?,
                        message: r.get(3)?,
                    })
                })?
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
            let mut stmt = conn.prepare(
                "SELECT l.job_id, l.integration_id, l.table_name, l.rows, l.last_batch_loaded_at, l.max_bookmark, \
                 l.error FROM table_loads l JOIN jobs j ON j.id = l.job_id
                 WHERE l.integration_id = ?1 AND j.start_time >= ?2 ORDER BY l.job_id DESC, l.table_name",
            )?;
            let rows = stmt
                .query_map(params![integration_id, ts(since)], |r| {
                    Ok(TableLoad {
                        job_id: r.get(0)?,
                        integration_id: r.get(1)?,
                        table_name: r.get(2)?,
                        rows: r.get(3)?,
                        last_batch_loaded_at: opt_ts(r.get(4)?)?,
                        max_bookmark: r.get(5)?,
                        error: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn usage(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageRow>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT integration_id, day, table_name, rows FROM usage_daily WHERE day >= ?1 AND day <= ?2
                 ORDER BY day, integration_id, table_name",
            )?;
            let rows = stmt
                .query_map(params![from.to_string(), to.to_string()], |r| {
                    let day: String = r.get(1)?;
                    Ok(UsageRow {
                        integration_id: r.get(0)?,
                        day: day.parse().map_err(|_| bad_enum("usage day", &day))?,
                        table_name: r.get(2)?,
                        rows: r.get(3)?,
                    })
                })?
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
                notification_row,
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
                .query_map([limit], notification_row)?
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
                token_row,
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
                    token_row,
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
                .query_map([], token_row)?
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
                token_row,
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
}
