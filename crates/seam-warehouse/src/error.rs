//! The warehouse crate's error causes; wrapped in [`seam_core::DestinationError`] with a kind.

use thiserror::Error;

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
        source: duckdb::Error,
    },
    /// PostgreSQL refused an operation or could not be reached.
    #[error("postgresql at {url}: {action}: {source}")]
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
