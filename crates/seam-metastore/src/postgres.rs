//! The PostgreSQL backend (a metastore several seam workers could share). Same layout and value
//! representation as the SQLite backend; one connection, each call one transaction or statement.

use crate::crypto::{Credentials, SecretCipher};
use crate::error::{touched, MetastoreError};
use crate::model::*;
use crate::{Metastore, Result};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use seam_core::{Catalog, State};
use seam_postgres::ConnectOptions;
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};

/// Migrations in order; `seam_migrations` records which ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_init.sql"),
    include_str!("../migrations/postgres/0002_token_revocation.sql"),
    include_str!("../migrations/postgres/0003_job_warnings.sql"),
];

/// The PostgreSQL metastore.
#[derive(Debug)]
pub struct PostgresMetastore {
    client: Mutex<Client>,
    /// Where it is (its `Debug` hides the password).
    server: ConnectOptions,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> MetastoreError {
    MetastoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt("time", e))
}

fn opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

fn json_col<T: serde::de::DeserializeOwned>(what: &'static str, s: Option<String>) -> Result<Option<T>> {
    s.map(|s| serde_json::from_str(&s).map_err(|source| MetastoreError::Json { what, source }))
        .transpose()
}

fn to_json<T: serde::Serialize>(what: &'static str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|source| MetastoreError::Json { what, source })
}

const INTEGRATION_COLS: &str =
    "id, display_name, name, kind, properties, sealed_credentials, paused_at, deleted_at, \
                                created_at, updated_at, catalog, state";

fn integration_row(r: &Row) -> Result<Integration> {
    Ok(Integration {
        id: r.try_get(0)?,
        display_name: r.try_get(1)?,
        name: r.try_get(2)?,
        kind: r.try_get(3)?,
        properties: json_col("properties", Some(r.try_get::<_, String>(4)?))?
            .ok_or_else(|| corrupt("properties", "missing"))?,
        sealed_credentials: r.try_get(5)?,
        paused_at: opt_ts(r.try_get(6)?)?,
        deleted_at: opt_ts(r.try_get(7)?)?,
        created_at: parse_ts(&r.try_get::<_, String>(8)?)?,
        updated_at: parse_ts(&r.try_get::<_, String>(9)?)?,
        catalog: json_col::<Catalog>("catalog", r.try_get(10)?)?,
        state: json_col::<State>("state", r.try_get(11)?)?,
    })
}

const CHECK_COLS: &str = "id, integration_id, status, start_time, completion_time, check_exit_status, \
                          check_error_message, discovery_exit_status, discovery_error_message";

fn check_row(r: &Row) -> Result<ConnectionCheck> {
    let status: String = r.try_get(2)?;
    Ok(ConnectionCheck {
        id: r.try_get(0)?,
        integration_id: r.try_get(1)?,
        status: CheckStatus::parse(&status).ok_or_else(|| corrupt("check status", &status))?,
        start_time: parse_ts(&r.try_get::<_, String>(3)?)?,
        completion_time: opt_ts(r.try_get(4)?)?,
        check_exit_status: r.try_get(5)?,
        check_error_message: r.try_get(6)?,
        discovery_exit_status: r.try_get(7)?,
        discovery_error_message: r.try_get(8)?,
    })
}

const JOB_COLS: &str =
    "id, integration_id, trigger, status, start_time, completion_time, discovery_exit_status, \
                        tap_exit_status, target_exit_status, error_message, rows_loaded, warning_message";

fn job_row(r: &Row) -> Result<Job> {
    let id: i64 = r.try_get(0)?;
    let integration_id: i64 = r.try_get(1)?;
    let trigger: String = r.try_get(2)?;
    let status: String = r.try_get(3)?;
    Ok(Job {
        id,
        integration_id,
        job_name: format!("{integration_id}.{id}.sync"),
        trigger: JobTrigger::parse(&trigger).ok_or_else(|| corrupt("job trigger", &trigger))?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?,
        start_time: parse_ts(&r.try_get::<_, String>(4)?)?,
        completion_time: opt_ts(r.try_get(5)?)?,
        discovery_exit_status: r.try_get(6)?,
        tap_exit_status: r.try_get(7)?,
        target_exit_status: r.try_get(8)?,
        error_message: r.try_get(9)?,
        rows_loaded: r.try_get(10)?,
        warning_message: r.try_get(11)?,
    })
}

const NOTIFICATION_COLS: &str = "id, level, code, integration_id, subject, message, created_at, dismissed_at";

fn notification_row(r: &Row) -> Result<Notification> {
    let level: String = r.try_get(1)?;
    Ok(Notification {
        id: r.try_get(0)?,
        level: NotificationLevel::parse(&level).ok_or_else(|| corrupt("notification level", &level))?,
        code: r.try_get(2)?,
        integration_id: r.try_get(3)?,
        subject: r.try_get(4)?,
        message: r.try_get(5)?,
        created_at: parse_ts(&r.try_get::<_, String>(6)?)?,
        dismissed_at: opt_ts(r.try_get(7)?)?,
    })
}

const TOKEN_COLS: &str = "id, name, token_hash, created_at, revoked_at";

fn token_row(r: &Row) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        token_hash: r.try_get(2)?,
        created_at: parse_ts(&r.try_get::<_, String>(3)?)?,
        revoked_at: opt_ts(r.try_get(4)?)?,
    })
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
        let client = server.connect().await?;
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
        Ok(PostgresMetastore {
            client: Mutex::new(client),
            server,
        })
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
        let c = self.client.lock().await;
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
        let mut c = self.client.lock().await;
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
        let c = self.client.lock().await;
        let n = c
            .execute(
                "UPDATE integrations SET sealed_credentials = $2 WHERE id = $1",
                &[&id, &sealed],
            )
            .await?;
        touched(n, "integration", id)
    }

    async fn get_integration(&self, id: IntegrationId) -> Result<Option<Integration>> {
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
        let row = c
            .query_one(
                &format!(
                    "INSERT INTO jobs (integration_id, trigger, status, start_time) VALUES ($1, $2, 'running', $3) \
                     RETURNING {JOB_COLS}"
                ),
                &[&integration_id, &trigger.as_str(), &ts(at)],
            )
            .await?;
        job_row(&row)
    }

    async fn finish_job(&self, id: JobId, f: &JobFinish) -> Result<Job> {
        let c = self.client.lock().await;
        let row = c
            .query_opt(
                &format!(
                    "UPDATE jobs SET status = $2, completion_time = $3, discovery_exit_status = $4, tap_exit_status = $5, \
                     target_exit_status = $6, error_message = $7, warning_message = $8 WHERE id = $1 \
                     RETURNING {JOB_COLS}"
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
        row.map(|r| job_row(&r))
            .transpose()?
            .ok_or(MetastoreError::NotFound { what: "job", id })
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        let c = self.client.lock().await;
        let row = c
            .query_opt(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"), &[&id])
            .await?;
        row.map(|r| job_row(&r)).transpose()
    }

    async fn list_jobs(&self, integration_id: IntegrationId, limit: u32) -> Result<Vec<Job>> {
        let c = self.client.lock().await;
        let r = c
            .query(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE integration_id = $1 ORDER BY id DESC LIMIT $2"),
                &[&integration_id, &i64::from(limit)],
            )
            .await?;
        rows(&r, job_row)
    }

    async fn fail_running_jobs(&self, at: DateTime<Utc>, message: &str) -> Result<Vec<IntegrationId>> {
        let c = self.client.lock().await;
        let rows = c
            .query(
                "UPDATE jobs SET status = 'failed', completion_time = $1, error_message = $2 WHERE status = 'running' \
                 RETURNING integration_id",
                &[&ts(at), &message],
            )
            .await?;
        let mut ids: Vec<IntegrationId> = rows.iter().map(|r| r.get(0)).collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn append_logs(&self, job_id: JobId, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut c = self.client.lock().await;
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
        let c = self.client.lock().await;
        let r = c
            .query(
                "SELECT at, location, level, message FROM job_logs WHERE job_id = $1 ORDER BY seq",
                &[&job_id],
            )
            .await?;
        r.iter()
            .map(|row| {
                let location: String = row.try_get(1)?;
                let level: String = row.try_get(2)?;
                Ok(LogLine {
                    at: parse_ts(&row.try_get::<_, String>(0)?)?,
                    location: LogLocation::parse(&location)
                        .ok_or_else(|| corrupt("log location", &location))?,
                    level: LogLevel::parse(&level).ok_or_else(|| corrupt("log level", &level))?,
                    message: row.try_get(3)?,
                })
            })
            .collect()
    }

    async fn record_loads(
        &self,
        integration_id: IntegrationId,
        job_id: JobId,
        at: DateTime<Utc>,
        deltas: &[LoadDelta],
    ) -> Result<()> {
        let mut c = self.client.lock().await;
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
        let c = self.client.lock().await;
        let r = c
            .query(
                "SELECT l.job_id, l.integration_id, l.table_name, l.rows, l.last_batch_loaded_at, l.max_bookmark, l.error \
                 FROM table_loads l JOIN jobs j ON j.id = l.job_id
                 WHERE l.integration_id = $1 AND j.start_time >= $2 ORDER BY l.job_id DESC, l.table_name",
                &[&integration_id, &ts(since)],
            )
            .await?;
        r.iter()
            .map(|row| {
                Ok(TableLoad {
                    job_id: row.try_get(0)?,
                    integration_id: row.try_get(1)?,
                    table_name: row.try_get(2)?,
                    rows: row.try_get(3)?,
                    last_batch_loaded_at: opt_ts(row.try_get(4)?)?,
                    max_bookmark: row.try_get(5)?,
                    error: row.try_get(6)?,
                })
            })
            .collect()
    }

    async fn usage(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageRow>> {
        let c = self.client.lock().await;
        let r = c
            .query(
                "SELECT integration_id, day, table_name, rows FROM usage_daily WHERE day >= $1 AND day <= $2
                 ORDER BY day, integration_id, table_name",
                &[&from.to_string(), &to.to_string()],
            )
            .await?;
        r.iter()
            .map(|row| {
                let day: String = row.try_get(1)?;
                Ok(UsageRow {
                    integration_id: row.try_get(0)?,
                    day: day.parse().map_err(|e| corrupt("usage day", e))?,
                    table_name: row.try_get(2)?,
                    rows: row.try_get(3)?,
                })
            })
            .collect()
    }

    async fn add_notification(&self, n: NewNotification) -> Result<Notification> {
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
        let r = c
            .query(
                &format!("SELECT {NOTIFICATION_COLS} FROM notifications {filter} ORDER BY id DESC LIMIT $1"),
                &[&i64::from(limit)],
            )
            .await?;
        rows(&r, notification_row)
    }

    async fn dismiss_notification(&self, id: i64, at: DateTime<Utc>) -> Result<()> {
        let c = self.client.lock().await;
        let n = c
            .execute(
                "UPDATE notifications SET dismissed_at = COALESCE(dismissed_at, $2) WHERE id = $1",
                &[&id, &ts(at)],
            )
            .await?;
        touched(n, "notification", id)
    }

    async fn add_token(&self, name: &str, token_hash: &str, at: DateTime<Utc>) -> Result<ApiToken> {
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
        let row = c
            .query_opt(
                &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"),
                &[&token_hash],
            )
            .await?;
        row.map(|r| token_row(&r)).transpose()
    }

    async fn count_tokens(&self) -> Result<u64> {
        let c = self.client.lock().await;
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM api_tokens", &[])
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        let c = self.client.lock().await;
        let r = c
            .query(&format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY id"), &[])
            .await?;
        rows(&r, token_row)
    }

    async fn revoke_token(&self, id: i64, at: DateTime<Utc>) -> Result<ApiToken> {
        let c = self.client.lock().await;
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
        let c = self.client.lock().await;
        Ok(c.query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let c = self.client.lock().await;
        c.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await?;
        Ok(())
    }
}
