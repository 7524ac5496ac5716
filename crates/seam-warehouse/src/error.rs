//! The warehouse crate's error causes; wrapped in [`seam_core::DestinationError`] with a kind.

use thiserror::Error;

/// DuckDB's error as a cause: its message, without the C API's status code behind it when a
/// message came with it (DuckDB's C API answers every failure with the same code, so the cause chain
/// ended in "Error code 1: Unknown error code", which tells the reader nothing).
#[derive(Debug)]
pub struct DuckDbError(pub duckdb::Error);

impl std::fmt::Display for DuckDbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DuckDbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            duckdb::Error::DuckDBFailure(_, Some(_)) => None,
            other => other.source(),
        }
    }
}

impl From<duckdb::Error> for DuckDbError {
    fn from(e: duckdb::Error) -> Self {
        DuckDbError(e)
    }
}

/// Why a warehouse operation failed.
#[derive(Debug, Error)]
pub enum WarehouseError {
    /// DuckDB refused an operation.
    #[error("duckdb database {path}: {action}: {source}")]
    DuckDb {
        /// The database file.
        path: String,
        /// What seam was doing.
        action: String,
        /// DuckDB's error.
        #[source]
        source: DuckDbError,
    },
    /// PostgreSQL refused an operation or could not be reached (the driver's message with its
    /// causes: its own `Display` says only "db error").
    #[error("postgresql at {url}: {action}: {}", postgres_message(source))]
    Postgres {
        /// The server, without credentials.
        url: String,
        /// What seam was doing.
        action: String,
        /// The driver's error.
        #[source]
        source: postgres::Error,
    },
    /// The PostgreSQL URL or its TLS settings cannot be used, or the server refused the connection.
    #[error(transparent)]
    PostgresConnect(#[from] seam_postgres::ConnectError),
    /// A newer job claimed the destination (see [`seam_core::Destination::fence`]).
    #[error(
        "another job (token {holder}) took over this integration's warehouse schema; this job (token {token}) \
         no longer commits (its worker's lease ran out)"
    )]
    Fenced {
        /// This writer's token.
        token: i64,
        /// The token that holds the destination now.
        holder: String,
    },
    /// Input the destination cannot accept (a record before its SCHEMA, say).
    #[error("{0}")]
    Input(String),
    /// The stored state is not valid JSON state.
    #[error("the state stored in {table} is not valid Singer state: {source}; fix or delete that row")]
    BadState {
        /// The state table.
        table: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A row could not be written to a COPY stream.
    #[error("writing rows to postgresql: {0}")]
    Io(#[from] std::io::Error),
}

/// A PostgreSQL driver error as seam shows it: the message with its causes, and what to do about a
/// lock another session held too long.
fn postgres_message(e: &postgres::Error) -> String {
    let mut out = seam_postgres::error_chain(e);
    if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
        out.push_str(&format!(
            " (another session holds a lock on the table, see pg_locks; seam waits lock_timeout for \
             a lock, {} unless the URL's options or the server set it, then tries the commit again)",
            seam_postgres::LOCK_TIMEOUT
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_duckdb_failure_is_its_message_without_the_status_code_behind_it() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let failure = conn.execute_batch("SELECT * FROM no_such_table").unwrap_err();
        assert!(
            failure.source().is_some(),
            "the driver's error names its status code"
        );
        let e = WarehouseError::DuckDb {
            path: "w.duckdb".into(),
            action: "reading".into(),
            source: failure.into(),
        };
        let text = e.to_string();
        assert!(text.starts_with("duckdb database w.duckdb: reading: "), "{text}");
        assert!(text.contains("no_such_table"), "{text}");
        let cause = e.source().unwrap();
        assert!(text.ends_with(&cause.to_string()), "{text}");
        assert!(
            cause.source().is_none(),
            "{:?}",
            cause.source().map(|s| s.to_string())
        );
    }
}
