//! PostgreSQL: a real server, one schema per integration.
//!
//! Each commit is one transaction: DDL, the rows (binary `COPY` straight into the tables when no staged
//! row loses to a warehouse row, else into temporary staging tables merged with `INSERT … ON CONFLICT`
//! on the table's primary key, `<table>_pkey` as Stitch creates it; see `load.rs`), `_sdc_rejected`,
//! version activations and `_sdc_state`. The blocking `postgres` crate
//! drives the connection (it runs its own private current-thread runtime); a closed connection is
//! re-opened on the next commit, so a retried commit after a network failure works. The URL's
//! `sslmode` and `sslrootcert` are honoured (see [`seam_postgres`]); the password never shows in
//! messages or `Debug`.

mod load;

use crate::error::WarehouseError;
use crate::flatten::{quote_ident, ColumnType, Layout, NameRules, TableLayout, REJECTED_TABLE, STATE_TABLE};
use crate::sql::{self, qualified, Dialect};
use crate::stage::Stager;
use postgres::Client;
use seam_core::{
    CommitReport, Destination, DestinationError, ErrorKind, RecordMessage, SchemaMessage, SequencedRecord,
    State,
};
use seam_postgres::{ConnectError, ConnectOptions};
use std::collections::{BTreeMap, HashSet};

/// PostgreSQL's SQL types for seam's column types (timestamps without time zone hold UTC, as in
/// Stitch's PostgreSQL v1).
pub fn type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::BigInt => "bigint",
        ColumnType::Double => "double precision",
        ColumnType::Boolean => "boolean",
        ColumnType::Timestamp => "timestamp",
        ColumnType::Text => "text",
    }
}

fn parse_type(name: &str) -> Option<ColumnType> {
    Some(match name {
        "bigint" => ColumnType::BigInt,
        "double precision" => ColumnType::Double,
        "boolean" => ColumnType::Boolean,
        "timestamp without time zone" => ColumnType::Timestamp,
        "text" => ColumnType::Text,
        _ => return None,
    })
}

pub(crate) const DIALECT: Dialect = Dialect {
    type_name,
    on_conflict: true,
};

/// A PostgreSQL schema as a [`Destination`].
pub struct PostgresDestination {
    client: Client,
    options: ConnectOptions,
    schema: String,
    stager: Stager,
    layout: Layout,
    /// The fencing token this destination claimed, checked by every commit.
    fence: Option<i64>,
}

impl std::fmt::Debug for PostgresDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDestination")
            .field("url", &self.options.redacted())
            .field("schema", &self.schema)
            .finish()
    }
}

/// The URL without its password, for messages.
pub use seam_postgres::redact_url;

/// The kind of a driver error: connection trouble and contention are transient; bad credentials
/// are auth; TLS refused or a certificate that does not verify, and a missing database, are config;
/// the rest internal.
pub fn classify(e: &postgres::Error) -> ErrorKind {
    if seam_postgres::is_tls_failure(e) {
        return ErrorKind::Config;
    }
    if e.is_closed() {
        return ErrorKind::Transient;
    }
    match e.code().map(|c| c.code()) {
        None => ErrorKind::Transient, // io and connection errors carry no SQLSTATE
        Some(c) if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => ErrorKind::Transient,
        Some("40001" | "40P01" | "55P03") => ErrorKind::Transient,
        Some(c) if c.starts_with("28") => ErrorKind::Auth,
        Some("3D000") => ErrorKind::Config,
        Some(_) => ErrorKind::Internal,
    }
}

impl PostgresDestination {
    /// Connects, creates the schema with `_sdc_rejected` and `_sdc_state`, and reads the layout.
    pub fn connect(url: &str, schema: &str) -> Result<Self, DestinationError> {
        Self::connect_with(url, schema, HashSet::new())
    }

    /// Like [`PostgresDestination::connect`], with streams forced append-only.
    pub fn connect_with(
        url: &str,
        schema: &str,
        append_only: HashSet<String>,
    ) -> Result<Self, DestinationError> {
        let options = ConnectOptions::parse(url).map_err(|e| {
            DestinationError::new(ErrorKind::Config, WarehouseError::from(ConnectError::from(e)))
        })?;
        Self::connect_options(&options, schema, append_only)
    }

    /// Like [`PostgresDestination::connect_with`], with settings already parsed.
    pub fn connect_options(
        options: &ConnectOptions,
        schema: &str,
        append_only: HashSet<String>,
    ) -> Result<Self, DestinationError> {
        let client = open(options)?;
        let mut d = PostgresDestination {
            client,
            options: options.clone(),
            schema: schema.to_owned(),
            stager: Stager::new(NameRules::POSTGRES, append_only),
            layout: Layout::default(),
            fence: None,
        };
        let ddl = sql::system_tables(&quote_ident(schema), &DIALECT);
        d.client
            .batch_execute(&ddl)
            .map_err(|e| d.err(e, "creating the schema"))?;
        d.layout = d.read_layout()?;
        Ok(d)
    }

    /// The integration's schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection (for tests and inspection; do not write through it).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Stages records with sequences chosen by the caller.
    pub fn write_sequenced(
        &mut self,
        stream: &str,
        records: &[SequencedRecord],
    ) -> Result<(), DestinationError> {
        self.stager.stage_sequenced(stream, records)
    }

    pub(crate) fn err(&self, source: postgres::Error, action: &str) -> DestinationError {
        DestinationError::new(
            classify(&source),
            WarehouseError::Postgres {
                url: self.options.redacted().to_owned(),
                action: action.to_owned(),
                source,
            },
        )
    }

    fn reconnect_if_closed(&mut self) -> Result<(), DestinationError> {
        if self.client.is_closed() {
            self.client = open(&self.options)?;
        }
        Ok(())
    }

    fn read_layout(&mut self) -> Result<Layout, DestinationError> {
        let rows = self
            .client
            .query(
                "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
                &[&self.schema],
            )
            .map_err(|e| self.err(e, "reading the table layout"))?;
        let mut tables: BTreeMap<String, Vec<(String, ColumnType)>> = BTreeMap::new();
        for row in rows {
            let (table, column, ty): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            if table == REJECTED_TABLE || table == STATE_TABLE {
                continue;
            }
            let Some(ty) = parse_type(&ty) else { continue };
            tables.entry(table).or_default().push((column, ty));
        }
        Ok(Layout {
            tables: tables
                .into_iter()
                .map(|(t, cols)| (t, TableLayout::from_physical(cols)))
                .collect(),
        })
    }
}

/// Connects with the URL's TLS settings; errors say which sslmode was used and what to check.
fn open(options: &ConnectOptions) -> Result<Client, DestinationError> {
    options.connect_blocking().map_err(|e| {
        let kind = e.driver_error().map_or(ErrorKind::Config, classify);
        DestinationError::new(kind, WarehouseError::PostgresConnect(e))
    })
}

impl Destination for PostgresDestination {
    fn check(&mut self) -> Result<(), DestinationError> {
        self.reconnect_if_closed()?;
        self.client
            .batch_execute("SELECT 1")
            .map_err(|e| self.err(e, "checking the connection"))
    }

    fn committed_state(&mut self) -> Result<Option<State>, DestinationError> {
        self.reconnect_if_closed()?;
        let row = self
            .client
            .query_opt(&sql::select_state(&quote_ident(&self.schema)), &[])
            .map_err(|e| self.err(e, "reading the committed state"))?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.get(0);
        let bad = |source| {
            DestinationError::new(
                ErrorKind::Internal,
                WarehouseError::BadState {
                    table: format!("{}.{STATE_TABLE}", self.schema),
                    source,
                },
            )
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
        State::from_value(value).map(Some).map_err(bad)
    }

    fn ensure_table(&mut self, schema: &SchemaMessage) -> Result<(), DestinationError> {
        self.stager.register(schema);
        Ok(())
    }

    fn write_batch(&mut self, stream: &str, records: &[RecordMessage]) -> Result<(), DestinationError> {
        self.stager.stage(stream, records)
    }

    fn activate_version(&mut self, stream: &str, version: i64) -> Result<(), DestinationError> {
        self.stager.activate(stream, version)
    }

    fn commit(&mut self, state: Option<&State>) -> Result<CommitReport, DestinationError> {
        self.reconnect_if_closed()?;
        let mut layout = self.layout.clone();
        // The plan borrows the staged rows while `apply` needs the connection: the stager steps
        // out for the commit and comes back whatever happens.
        let stager = std::mem::replace(&mut self.stager, Stager::new(NameRules::POSTGRES, HashSet::new()));
        let mut plan = stager.plan(&mut layout);
        let applied = load::apply(self, &plan, &layout, state);
        let report = std::mem::take(&mut plan.report);
        drop(plan);
        self.stager = stager;
        applied?;
        self.layout = layout;
        self.stager.clear();
        Ok(report)
    }

    fn discard(&mut self) {
        self.stager.clear();
    }

    fn fence(&mut self, token: i64) -> Result<(), DestinationError> {
        self.reconnect_if_closed()?;
        let schema = quote_ident(&self.schema);
        // The claim waits for a commit of the previous holder that is under way (it holds the row),
        // so what this writer reads next includes it; a larger token already there refuses it.
        let claimed = self
            .client
            .query_opt(
                &format!(
                    "INSERT INTO {st} (id, state, committed_at) VALUES ($1, $2, now() AT TIME ZONE 'UTC') \
                     ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, committed_at = EXCLUDED.committed_at \
                     WHERE CAST({st}.state AS BIGINT) <= CAST(EXCLUDED.state AS BIGINT) RETURNING state",
                    st = qualified(&schema, STATE_TABLE)
                ),
                &[&sql::FENCE_ROW, &token.to_string()],
            )
            .map_err(|e| self.err(e, "claiming the schema for this job"))?;
        if claimed.is_none() {
            let holder = load::fence_holder(&mut self.client, &schema)
                .map_err(|e| self.err(e, "reading who holds the schema"))?;
            return Err(load::fenced(token, holder));
        }
        self.fence = Some(token);
        Ok(())
    }
}
