//! The metastore's error.

use seam_core::{Classify, ErrorKind};
use thiserror::Error;

/// A metastore call failed.
#[derive(Debug, Error)]
pub enum MetastoreError {
    /// Another integration that is not deleted already uses this schema name.
    #[error("non-unique name ({name})")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// No such record (or it is deleted, where that matters).
    #[error("{what} {id} not found")]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// Its id.
        id: i64,
    },
    /// The integration already has a pending or running job (one at a time, cluster-wide).
    #[error("integration {integration} already has a job queued or running")]
    JobActive {
        /// The integration.
        integration: i64,
    },
    /// The SQLite database failed.
    #[error("sqlite metastore: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL database failed (the driver's message with its causes: its own `Display`
    /// says only "db error").
    #[error("postgres metastore: {}", seam_postgres::error_chain(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The PostgreSQL metastore's URL, TLS settings or server refused the connection.
    #[error("postgres metastore: {0}")]
    PostgresConnect(#[from] seam_postgres::ConnectError),
    /// The PostgreSQL metastore did not answer within the call timeout: its connection was dropped,
    /// and the next call connects anew.
    #[error("postgres metastore: no answer within {} s; its connection was dropped", timeout.as_secs_f64())]
    Unanswered {
        /// How long the call waited.
        timeout: std::time::Duration,
    },
    /// A stored value does not parse (written by a newer seam, or edited by hand).
    #[error("metastore holds an unreadable {what}: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// A JSON column could not be written or read.
    #[error("metastore json for {what}: {source}")]
    Json {
        /// Which value.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The blocking task running the query panicked or was cancelled.
    #[error("metastore task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Sealing or opening credentials failed.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
}

impl Classify for MetastoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            MetastoreError::NameTaken { .. }
            | MetastoreError::NotFound { .. }
            | MetastoreError::JobActive { .. } => ErrorKind::Config,
            // Another connection holds the lock past the busy timeout, the disk is full, or the
            // operating system failed a read or a write: conditions that clear.
            MetastoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                ) =>
            {
                ErrorKind::Transient
            }
            MetastoreError::Crypto(_) => ErrorKind::Config,
            MetastoreError::Unanswered { .. } => ErrorKind::Transient,
            MetastoreError::Postgres(e) if e.is_closed() || e.code().is_none() || is_restart(e) => {
                ErrorKind::Transient
            }
            MetastoreError::PostgresConnect(e) => match e.driver_error() {
                Some(d) if !seam_postgres::is_tls_failure(d) && (d.code().is_none() || is_restart(d)) => {
                    ErrorKind::Transient
                }
                _ => ErrorKind::Config,
            },
            _ => ErrorKind::Internal,
        }
    }
}

/// The server is shutting down, restarting or starting up (SQLSTATE class 57P: `admin_shutdown`,
/// `crash_shutdown`, `cannot_connect_now`): the next attempt, on a new connection, may well work.
fn is_restart(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("57P"))
}

/// `Ok` when a statement touched a row, else [`MetastoreError::NotFound`] for `what` `id`: the one
/// check after an `UPDATE … WHERE id = …`, in both backends.
pub(crate) fn touched<N: TryInto<u64>>(rows: N, what: &'static str, id: i64) -> Result<(), MetastoreError> {
    match rows.try_into() {
        Ok(0) | Err(_) => Err(MetastoreError::NotFound { what, id }),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::os::raw::c_int) -> MetastoreError {
        MetastoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    #[test]
    fn conditions_that_clear_are_transient_and_the_rest_are_not() {
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR,
        ] {
            assert_eq!(sqlite(code).kind(), ErrorKind::Transient, "{}", sqlite(code));
        }
        for code in [rusqlite::ffi::SQLITE_CORRUPT, rusqlite::ffi::SQLITE_CONSTRAINT] {
            assert_eq!(sqlite(code).kind(), ErrorKind::Internal, "{}", sqlite(code));
        }
        let corrupt = MetastoreError::Corrupt {
            what: "job status",
            detail: "x".into(),
        };
        assert_eq!(corrupt.kind(), ErrorKind::Internal);
        assert_eq!(
            MetastoreError::NotFound { what: "job", id: 1 }.kind(),
            ErrorKind::Config
        );
    }
}
