//! Where seam loads, as a user writes it: `duckdb:PATH` or a `postgres://` (`postgresql://`) URL.
//!
//! This is the one parser of destination strings: `seam sync --destination`, `seam serve
//! --warehouse` and `seam target` all go through [`DestinationSpec`]. Parsing does no IO (a file is
//! not opened, a server not contacted); [`DestinationSpec::open`] connects. `Debug` and `Display`
//! never show a PostgreSQL password.

use crate::duckdb::DuckDbMemoryLimit;
use crate::{DuckDbDestination, PostgresDestination};
use seam_core::{Destination, DestinationError};
use seam_postgres::ConnectOptions;
use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use thiserror::Error;

/// The prefix of a DuckDB destination.
pub const DUCKDB_PREFIX: &str = "duckdb:";

/// A parsed destination: a DuckDB file or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationSpec {
    /// A DuckDB database file (created when missing).
    DuckDb(PathBuf),
    /// A PostgreSQL database: URL and TLS settings (`Debug` and `Display` hide the password).
    Postgres(Box<ConnectOptions>),
}

/// A destination string seam cannot use. Messages never hold a password.
#[derive(Debug, Error)]
pub enum DestinationSpecError {
    /// Nothing was given.
    #[error("the destination is empty: use duckdb:PATH (a DuckDB file) or a postgres://user:password@host/database URL")]
    Empty,
    /// `duckdb:` with no path after it.
    #[error("duckdb: needs a file path after it, e.g. duckdb:./warehouse.duckdb")]
    DuckDbPath,
    /// A PostgreSQL URL that cannot be used (bad `sslmode`, unsupported parameter, malformed).
    #[error(transparent)]
    Postgres(#[from] seam_postgres::ConfigError),
    /// Neither form.
    #[error("destination {shown:?} is not understood: use duckdb:PATH (a DuckDB file) or a postgres://user:password@host/database URL{hint}")]
    Unknown {
        /// The text, with anything that looks like a password hidden.
        shown: String,
        /// A suggestion, when the text looks like a bare file path.
        hint: String,
    },
}

impl DestinationSpec {
    /// Parses `duckdb:PATH` or a `postgres://` / `postgresql://` URL (with `sslmode`,
    /// `sslrootcert`), without IO.
    pub fn parse(text: &str) -> Result<DestinationSpec, DestinationSpecError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(DestinationSpecError::Empty);
        }
        if let Some(path) = text.strip_prefix(DUCKDB_PREFIX) {
            if path.is_empty() {
                return Err(DestinationSpecError::DuckDbPath);
            }
            return Ok(DestinationSpec::DuckDb(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Self::postgres(text);
        }
        let hint = if !text.contains("://") && (text.ends_with(".duckdb") || text.ends_with(".db")) {
            format!(" (for this file: duckdb:{text})")
        } else {
            String::new()
        };
        Err(DestinationSpecError::Unknown {
            shown: redact_any(text),
            hint,
        })
    }

    /// A PostgreSQL destination from its URL (e.g. `seam target postgres --url`), without IO.
    pub fn postgres(url: &str) -> Result<DestinationSpec, DestinationSpecError> {
        Ok(DestinationSpec::Postgres(Box::new(ConnectOptions::parse(url)?)))
    }

    /// Opens the destination for the warehouse schema `schema` (created when missing); streams in
    /// `append_only` are loaded append-only. Blocking: DuckDB opens its file, PostgreSQL connects.
    /// DuckDB gets the buffer pool of a loader that shares its process
    /// ([`DuckDbMemoryLimit::LOADER`]).
    pub fn open(
        &self,
        schema: &str,
        append_only: HashSet<String>,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        self.open_limited(schema, append_only, DuckDbMemoryLimit::LOADER)
    }

    /// Like [`DestinationSpec::open`], a DuckDB destination's buffer pool limited to
    /// `duckdb_memory` (a PostgreSQL destination has no use for it).
    pub fn open_limited(
        &self,
        schema: &str,
        append_only: HashSet<String>,
        duckdb_memory: DuckDbMemoryLimit,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        Ok(match self {
            DestinationSpec::DuckDb(path) => Box::new(DuckDbDestination::open_limited(
                path,
                schema,
                append_only,
                duckdb_memory,
            )?),
            DestinationSpec::Postgres(options) => Box::new(PostgresDestination::connect_options(
                options,
                schema,
                append_only,
            )?),
        })
    }
}

/// `duckdb:PATH`, or the PostgreSQL URL with its password hidden.
impl fmt::Display for DestinationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestinationSpec::DuckDb(path) => write!(f, "{DUCKDB_PREFIX}{}", path.display()),
            DestinationSpec::Postgres(options) => f.write_str(options.redacted()),
        }
    }
}

impl FromStr for DestinationSpec {
    type Err = DestinationSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DestinationSpec::parse(text)
    }
}

/// `text` with the part between `scheme://user:` and `@` hidden, whatever the scheme (a MySQL URL
/// given by mistake still carries a password).
fn redact_any(text: &str) -> String {
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let rest = &text[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return text.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &text[..scheme_end], &rest[at..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        DestinationSpec::parse(text)
            .expect_err("a bad destination")
            .to_string()
    }

    #[test]
    fn duckdb_and_postgres_destinations_parse_without_io() {
        assert_eq!(
            "duckdb:/tmp/w.duckdb".parse::<DestinationSpec>().expect("duckdb"),
            DestinationSpec::DuckDb("/tmp/w.duckdb".into())
        );
        assert_eq!(
            DestinationSpec::parse("duckdb:./rel/w.duckdb")
                .expect("relative")
                .to_string(),
            "duckdb:./rel/w.duckdb"
        );
        // No server runs there: parsing does not connect.
        for url in [
            "postgres://seam@127.0.0.1:1/warehouse",
            "postgresql://seam:pw@db.internal/warehouse?sslmode=require",
        ] {
            let spec = DestinationSpec::parse(url).expect("a postgres url");
            assert!(matches!(spec, DestinationSpec::Postgres(_)), "{spec:?}");
        }
        let spec =
            DestinationSpec::parse("postgres://h/db?sslmode=verify-full&sslrootcert=system").expect("tls");
        let DestinationSpec::Postgres(options) = spec else {
            panic!("not postgres")
        };
        assert_eq!(options.ssl_mode(), seam_postgres::SslMode::VerifyFull);
    }

    #[test]
    fn bad_destinations_say_what_to_write() {
        assert!(err("").contains("the destination is empty"), "{}", err(""));
        assert!(err("   ").contains("the destination is empty"));
        let e = err("duckdb:");
        assert!(e.contains("needs a file path") && e.contains("duckdb:./"), "{e}");
        let e = err("mysql://u:secret@h/db");
        assert!(
            e.contains("is not understood") && e.contains("duckdb:PATH") && e.contains("postgres://"),
            "{e}"
        );
        assert!(!e.contains("secret") && e.contains("u:***@h/db"), "{e}");
        let e = err("./warehouse.duckdb");
        assert!(
            e.contains("duckdb:./warehouse.duckdb"),
            "a bare file path gets a suggestion: {e}"
        );
        let e = err("postgres:/h/db");
        assert!(e.contains("is not understood"), "{e}");
        let e = err("postgres://u:secret@h/db?sslmode=verify");
        assert!(e.contains("sslmode=verify") && e.contains("verify-full"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = err("postgres://u:secret@h/db?sslcert=/c.pem");
        assert!(e.contains("sslcert") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn a_postgres_password_is_never_shown() {
        for url in [
            "postgres://seam:hunter2@db.internal:5432/warehouse?sslmode=require",
            "postgresql://seam@db.internal/warehouse?password=hunter2",
        ] {
            let spec = DestinationSpec::parse(url).expect("a postgres url");
            for shown in [format!("{spec:?}"), spec.to_string()] {
                assert!(!shown.contains("hunter2"), "{shown}");
                assert!(shown.contains("db.internal"), "{shown}");
            }
        }
    }
}
