//! What both backends read back: each table's column list and how a result row becomes the model,
//! written once over [`Cols`], which each backend implements for its driver's row. Times are stored
//! as RFC 3339 text and JSON as text in both, so a row reads the same from either.

use crate::error::MetastoreError;
use crate::model::*;
use chrono::{DateTime, SecondsFormat, Utc};
use seam_core::{Catalog, State};

/// A column value both drivers read.
pub(crate) trait Value: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> {}

impl<T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a>> Value for T {}

/// A result row, read by column number. `Error` is the driver's error, which a row mapper hands
/// back to the driver's own calls (`rusqlite`'s `query_row` takes a mapper that returns its error).
pub(crate) trait Cols {
    /// The driver's error.
    type Error;

    /// Column `i`, as `T`.
    fn get<T: Value>(&self, i: usize) -> Result<T, Self::Error>;

    /// A value the row holds that seam cannot read (an unknown status, a time or JSON that does not
    /// parse), as the driver's error.
    fn unreadable(e: MetastoreError) -> Self::Error;

    /// Column `i`, a time.
    fn time(&self, i: usize) -> Result<DateTime<Utc>, Self::Error> {
        parse_ts(&self.get::<String>(i)?).map_err(Self::unreadable)
    }

    /// Column `i`, a time or NULL.
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, Self::Error> {
        opt_ts(self.get(i)?).map_err(Self::unreadable)
    }

    /// Column `i`, JSON text (`what` names it in an error) or NULL.
    fn json<T: serde::de::DeserializeOwned>(
        &self,
        i: usize,
        what: &'static str,
    ) -> Result<Option<T>, Self::Error> {
        let s: Option<String> = self.get(i)?;
        s.map(|s| serde_json::from_str(&s).map_err(|source| MetastoreError::Json { what, source }))
            .transpose()
            .map_err(Self::unreadable)
    }

    /// Column `i`, a name `parse` knows (`what` names it in an error).
    fn named<T>(&self, i: usize, what: &'static str, parse: fn(&str) -> Option<T>) -> Result<T, Self::Error> {
        let s: String = self.get(i)?;
        parse(&s).ok_or_else(|| Self::unreadable(corrupt(what, format!("{s:?}"))))
    }
}

impl Cols for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn get<T: Value>(&self, i: usize) -> rusqlite::Result<T> {
        rusqlite::Row::get(self, i)
    }

    fn unreadable(e: MetastoreError) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    }
}

impl Cols for tokio_postgres::Row {
    type Error = MetastoreError;

    fn get<T: Value>(&self, i: usize) -> Result<T, MetastoreError> {
        Ok(self.try_get(i)?)
    }

    fn unreadable(e: MetastoreError) -> MetastoreError {
        e
    }
}

/// A time as both backends store it.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A stored time.
pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>, MetastoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt("time", e))
}

/// A stored time, or NULL.
pub(crate) fn opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>, MetastoreError> {
    s.as_deref().map(parse_ts).transpose()
}

/// A stored value that does not parse.
pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> MetastoreError {
    MetastoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

/// `v` as JSON text (`what` names it in an error).
pub(crate) fn to_json<T: serde::Serialize>(what: &'static str, v: &T) -> Result<String, MetastoreError> {
    serde_json::to_string(v).map_err(|source| MetastoreError::Json { what, source })
}

pub(crate) const INTEGRATION_COLS: &str =
    "id, display_name, name, kind, properties, sealed_credentials, paused_at, deleted_at, \
     created_at, updated_at, catalog, state";

pub(crate) fn integration_row<R: Cols>(r: &R) -> Result<Integration, R::Error> {
    Ok(Integration {
        id: r.get(0)?,
        display_name: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        properties: r
            .json(4, "properties")?
            .ok_or_else(|| R::unreadable(corrupt("properties", "missing")))?,
        sealed_credentials: r.get(5)?,
        paused_at: r.opt_time(6)?,
        deleted_at: r.opt_time(7)?,
        created_at: r.time(8)?,
        updated_at: r.time(9)?,
        catalog: r.json::<Catalog>(10, "catalog")?,
        state: r.json::<State>(11, "state")?,
    })
}

pub(crate) const CHECK_COLS: &str =
    "id, integration_id, status, start_time, completion_time, check_exit_status, \
     check_error_message, discovery_exit_status, discovery_error_message";

pub(crate) fn check_row<R: Cols>(r: &R) -> Result<ConnectionCheck, R::Error> {
    Ok(ConnectionCheck {
        id: r.get(0)?,
        integration_id: r.get(1)?,
        status: r.named(2, "check status", CheckStatus::parse)?,
        start_time: r.time(3)?,
        completion_time: r.opt_time(4)?,
        check_exit_status: r.get(5)?,
        check_error_message: r.get(6)?,
        discovery_exit_status: r.get(7)?,
        discovery_error_message: r.get(8)?,
    })
}

pub(crate) const JOB_COLS: &str =
    "id, integration_id, trigger, status, start_time, completion_time, discovery_exit_status, \
     tap_exit_status, target_exit_status, error_message, rows_loaded, warning_message, \
     due_time, worker, lease_until, stop_requested, progress";

pub(crate) fn job_row<R: Cols>(r: &R) -> Result<Job, R::Error> {
    let id: i64 = r.get(0)?;
    let integration_id: i64 = r.get(1)?;
    Ok(Job {
        id,
        integration_id,
        job_name: format!("{integration_id}.{id}.sync"),
        trigger: r.named(2, "job trigger", JobTrigger::parse)?,
        status: r.named(3, "job status", JobStatus::parse)?,
        start_time: r.time(4)?,
        completion_time: r.opt_time(5)?,
        discovery_exit_status: r.get(6)?,
        tap_exit_status: r.get(7)?,
        target_exit_status: r.get(8)?,
        error_message: r.get(9)?,
        rows_loaded: r.get(10)?,
        warning_message: r.get(11)?,
        due_time: r.opt_time(12)?,
        worker: r.get(13)?,
        lease_until: r.opt_time(14)?,
        stop_requested: r.get(15)?,
        progress: r.get(16)?,
    })
}

pub(crate) const NOTIFICATION_COLS: &str =
    "id, level, code, integration_id, subject, message, created_at, dismissed_at";

pub(crate) fn notification_row<R: Cols>(r: &R) -> Result<Notification, R::Error> {
    Ok(Notification {
        id: r.get(0)?,
        level: r.named(1, "notification level", NotificationLevel::parse)?,
        code: r.get(2)?,
        integration_id: r.get(3)?,
        subject: r.get(4)?,
        message: r.get(5)?,
        created_at: r.time(6)?,
        dismissed_at: r.opt_time(7)?,
    })
}

pub(crate) const TOKEN_COLS: &str = "id, name, token_hash, created_at, revoked_at";

pub(crate) fn token_row<R: Cols>(r: &R) -> Result<ApiToken, R::Error> {
    Ok(ApiToken {
        id: r.get(0)?,
        name: r.get(1)?,
        token_hash: r.get(2)?,
        created_at: r.time(3)?,
        revoked_at: r.opt_time(4)?,
    })
}

pub(crate) const SESSION_COLS: &str =
    "id_hash, csrf_token, username, password_fingerprint, created_at, last_seen";

pub(crate) fn session_row<R: Cols>(r: &R) -> Result<DashboardSession, R::Error> {
    Ok(DashboardSession {
        id_hash: r.get(0)?,
        csrf_token: r.get(1)?,
        username: r.get(2)?,
        password_fingerprint: r.get(3)?,
        created_at: r.time(4)?,
        last_seen: r.time(5)?,
    })
}

pub(crate) const LOG_COLS: &str = "at, location, level, message";

pub(crate) fn log_row<R: Cols>(r: &R) -> Result<LogLine, R::Error> {
    Ok(LogLine {
        at: r.time(0)?,
        location: r.named(1, "log location", LogLocation::parse)?,
        level: r.named(2, "log level", LogLevel::parse)?,
        message: r.get(3)?,
    })
}

/// A table's loads, joined with their jobs as `l`.
pub(crate) const LOAD_COLS: &str =
    "l.job_id, l.integration_id, l.table_name, l.rows, l.last_batch_loaded_at, l.max_bookmark, l.error";

pub(crate) fn load_row<R: Cols>(r: &R) -> Result<TableLoad, R::Error> {
    Ok(TableLoad {
        job_id: r.get(0)?,
        integration_id: r.get(1)?,
        table_name: r.get(2)?,
        rows: r.get(3)?,
        last_batch_loaded_at: r.opt_time(4)?,
        max_bookmark: r.get(5)?,
        error: r.get(6)?,
    })
}

pub(crate) const USAGE_COLS: &str = "integration_id, day, table_name, rows";

pub(crate) fn usage_row<R: Cols>(r: &R) -> Result<UsageRow, R::Error> {
    Ok(UsageRow {
        integration_id: r.get(0)?,
        day: r.named(1, "usage day", |d| d.parse().ok())?,
        table_name: r.get(2)?,
        rows: r.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row SQLite hands back reads into the model, and a value seam cannot read is the driver's
    /// error naming what it is (the PostgreSQL side runs in the conformance suite).
    #[test]
    fn sqlite_rows_read_into_the_model_and_refuse_what_does_not_parse() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let token = conn
            .query_row(
                "SELECT 7, 'ci', 'h', '2026-12-06T10:00:00.000000Z', NULL",
                [],
                |r| token_row(r),
            )
            .unwrap();
        assert_eq!((token.id, token.name.as_str(), token.revoked_at), (7, "ci", None));
        assert_eq!(token.created_at, parse_ts("2026-12-06T10:00:00Z").unwrap());

        let bad_time = conn
            .query_row("SELECT 7, 'ci', 'h', 'yesterday', NULL", [], |r| token_row(r))
            .unwrap_err();
        assert!(bad_time.to_string().contains("unreadable time"), "{bad_time}");
        let bad_level = conn
            .query_row(
                "SELECT 1, 'loud', 'c', NULL, 's', 'm', '2026-12-06T10:00:00Z', NULL",
                [],
                |r| notification_row(r),
            )
            .unwrap_err();
        assert!(
            bad_level.to_string().contains("notification level: \"loud\""),
            "{bad_level}"
        );
    }
}
