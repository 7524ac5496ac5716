//! PostgreSQL: a real server, one schema per integration.
//!
//! Each commit is one transaction: DDL, the rows (binary `COPY` straight into the tables when no staged
//! row loses to a warehouse row, else into temporary staging tables merged with `INSERT … ON CONFLICT`
//! on the table's primary key, `<table>_pkey` as Stitch creates it; a table whose batches have held
//! only new keys is copied into without looking its keys up first, its primary key standing guard;
//! see `load.rs`), `_sdc_rejected`,
//! version activations and `_sdc_state`. The blocking `postgres` crate
//! drives the connection (it runs its own private current-thread runtime); a closed connection is
//! re-opened on the next commit, so a retried commit after a network failure works. A commit the
//! loader starts with [`Destination::commit_start`] runs on a thread of its own, which owns the
//! connection until [`Destination::commit_finish`] takes it back, so the next batch is flattened while
//! PostgreSQL loads this one; a failed one keeps its batch for the retry. The URL's
//! `sslmode` and `sslrootcert` are honoured (see [`seam_postgres`]); the password never shows in
//! messages or `Debug`.

pub(crate) mod copy;
mod load;

pub use load::LoadCounters;

use crate::error::WarehouseError;
use crate::flatten::{quote_ident, ColumnType, Layout, NameRules, TableLayout, REJECTED_TABLE, STATE_TABLE};
use crate::sql::{self, qualified, Dialect};
use crate::stage::Stager;
use postgres::Client;
use seam_core::{
    CommitReport, Destination, DestinationError, ErrorKind, Interrupt, RecordMessage, SchemaMessage,
    SequencedRecord, State,
};
use seam_postgres::{ConnectError, ConnectOptions};
pub use seam_postgres::{IDLE_IN_TRANSACTION_TIMEOUT, LOCK_TIMEOUT};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

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

/// Bytes of record JSON a PostgreSQL batch gathers before it commits, unless the caller says
/// otherwise.
///
/// Each commit runs a `COPY` per table it writes to, and PostgreSQL (15, measured here) pays for each
/// `COPY` of more than 64 rows a cost that grows with the square of its rows up to 1,000 (each row
/// slot its multi-insert buffer makes registers the table's descriptor with the transaction's
/// resource owner, whose lookups degrade when one descriptor is held many times): 14% of the
/// server's CPU on a 20k-ticket load in 4 MB batches (`perf`; ~2,400 `COPY`s). Twice
/// target-stitch's 4 MB halves the commits and the `COPY`s: on that load (`seam target postgres`,
/// four interleaved pairs) the server spent 1.82 CPU-s instead of 2.00 and the load took 2.48 s
/// instead of 2.86. A batch keeps only the JSON of records whose key may be refused
/// ([`Stager::know_layout`]), so the peak stays where 4 MB batches had it (58 MB; 16 MB: 84 MB).
pub const POSTGRES_BATCH_BYTES: usize = 8_000_000;

/// A PostgreSQL schema as a [`Destination`].
pub struct PostgresDestination {
    /// The connection; `None` while a commit runs on its own thread (or after that thread died).
    conn: Option<Conn>,
    options: ConnectOptions,
    schema: String,
    stager: Stager,
    layout: Layout,
    /// The fencing token this destination claimed, checked by every commit.
    fence: Option<i64>,
    /// The commit running on its own thread.
    running: Option<std::thread::JoinHandle<Option<Outcome>>>,
    /// What the last commit that ran on its own thread came to, until `commit_finish` takes it.
    finished: Option<Result<CommitReport, DestinationError>>,
    /// The batch of a commit that failed, kept for its retry.
    failed: Option<Stager>,
    /// The cancel key of the connection in use, for [`Destination::interrupter`].
    cancel: CancelSlot,
}

/// A connection and what a commit needs besides the batch: it moves to the commit's thread.
pub(crate) struct Conn {
    client: Client,
    options: ConnectOptions,
    schema: String,
    fence: Option<i64>,
    /// Per table (quoted and qualified): what commits learnt of its key index and keys (see
    /// `load.rs`).
    tables: HashMap<String, load::TableFacts>,
    counters: LoadCounters,
    /// Where the connection's cancel key goes (shared with the destination's interrupter).
    cancel: CancelSlot,
}

/// What a commit on its own thread hands back.
struct Outcome {
    conn: Conn,
    batch: Stager,
    layout: Layout,
    result: Result<CommitReport, DestinationError>,
}

/// Plans `batch` against `layout` (updated to the layout after its DDL) and commits it with `state`.
fn commit_batch(
    conn: &mut Conn,
    batch: &Stager,
    layout: &mut Layout,
    state: Option<&State>,
) -> Result<CommitReport, DestinationError> {
    if conn.client.is_closed() {
        conn.client = open(&conn.options, &conn.cancel)?;
    }
    let mut plan = batch.plan(layout)?;
    load::apply(conn, &plan, layout, state)?;
    Ok(std::mem::take(&mut plan.report))
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
        let cancel = CancelSlot::default();
        let client = open(options, &cancel)?;
        let mut d = PostgresDestination {
            conn: Some(Conn {
                client,
                options: options.clone(),
                schema: schema.to_owned(),
                fence: None,
                tables: HashMap::new(),
                counters: LoadCounters::default(),
                cancel: cancel.clone(),
            }),
            options: options.clone(),
            schema: schema.to_owned(),
            stager: Stager::new(NameRules::POSTGRES, append_only),
            layout: Layout::default(),
            fence: None,
            running: None,
            finished: None,
            failed: None,
            cancel,
        };
        let ddl = sql::system_tables(&quote_ident(schema), &DIALECT);
        let created = d.conn()?.client.batch_execute(&ddl);
        created.map_err(|e| d.err(e, "creating the schema"))?;
        d.layout = d.read_layout()?;
        d.stager.know_layout(&d.layout);
        Ok(d)
    }

    /// The integration's schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection (for tests and inspection; do not write through it), once a commit running on
    /// its own thread is over.
    pub fn client(&mut self) -> Result<&mut Client, DestinationError> {
        Ok(&mut self.conn()?.client)
    }

    /// How this destination's commits reached their tables so far (once the commit running on its
    /// own thread, if any, is over): key lookups, and batches copied in without one.
    pub fn counters(&mut self) -> LoadCounters {
        self.join_running();
        self.conn.as_ref().map(|c| c.counters).unwrap_or_default()
    }

    /// The connection, once the commit running on its own thread (if any) is over; opened again
    /// when it was closed or lost.
    fn conn(&mut self) -> Result<&mut Conn, DestinationError> {
        self.join_running();
        let usable = matches!(&self.conn, Some(c) if !c.client.is_closed());
        if !usable {
            // A lost connection's counts carry over (a commit thread that panicked took its own with it).
            let counters = self.conn.as_ref().map(|c| c.counters).unwrap_or_default();
            self.conn = Some(Conn {
                client: open(&self.options, &self.cancel)?,
                options: self.options.clone(),
                schema: self.schema.clone(),
                fence: self.fence,
                tables: HashMap::new(),
                counters,
                cancel: self.cancel.clone(),
            });
        }
        self.conn
            .as_mut()
            .ok_or_else(|| DestinationError::new(ErrorKind::Internal, "no PostgreSQL connection"))
    }

    /// Waits for the commit running on its own thread, if any, and keeps what it came to.
    fn join_running(&mut self) {
        let Some(handle) = self.running.take() else {
            return;
        };
        let outcome = match handle.join() {
            Ok(Some(outcome)) => outcome,
            Ok(None) | Err(_) => {
                // The batch went down with the thread: nothing to retry.
                self.finished = Some(Err(DestinationError::new(
                    ErrorKind::Internal,
                    "the commit's thread panicked; its batch was not committed",
                )));
                return;
            }
        };
        self.conn = Some(outcome.conn);
        match outcome.result {
            Ok(report) => {
                self.layout = outcome.layout;
                self.finished = Some(Ok(report));
            }
            Err(e) => {
                self.failed = Some(outcome.batch);
                self.finished = Some(Err(e));
            }
        }
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

    fn read_layout(&mut self) -> Result<Layout, DestinationError> {
        let schema = self.schema.clone();
        let rows = self.conn()?.client.query(
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
            &[&schema],
        );
        let rows = rows.map_err(|e| self.err(e, "reading the table layout"))?;
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

/// Connects with the URL's TLS settings (errors say which sslmode was used and what to check; the
/// session's lock waits are bounded, see [`LOCK_TIMEOUT`]) and puts the connection's cancel key in
/// `cancel`.
fn open(options: &ConnectOptions, cancel: &CancelSlot) -> Result<Client, DestinationError> {
    let client = options.connect_blocking().map_err(|e| {
        let kind = e.driver_error().map_or(ErrorKind::Config, classify);
        DestinationError::new(kind, WarehouseError::PostgresConnect(e))
    })?;
    cancel.set(client.cancel_token());
    Ok(client)
}

/// The cancel key of a destination's current connection (it changes when a lost connection is made
/// again), shared by the destination's connections and its [`PgInterrupt`].
#[derive(Clone, Default)]
struct CancelSlot(Arc<Mutex<Option<postgres::CancelToken>>>);

impl CancelSlot {
    fn set(&self, token: postgres::CancelToken) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
    }

    fn get(&self) -> Option<postgres::CancelToken> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Ends the statement a [`PostgresDestination`]'s connection is running with PostgreSQL's cancel
/// request (a connection of its own to the server, made on a thread of its own: `interrupt` never
/// blocks). The statement fails with SQLSTATE 57014, its transaction rolls back and lets go of its
/// locks; arriving between statements, the request changes nothing.
#[derive(Clone)]
struct PgInterrupt {
    cancel: CancelSlot,
    options: ConnectOptions,
}

impl std::fmt::Debug for PgInterrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgInterrupt")
            .field("url", &self.options.redacted())
            .finish_non_exhaustive()
    }
}

impl Interrupt for PgInterrupt {
    fn interrupt(&self) {
        let Some(token) = self.cancel.get() else {
            return;
        };
        let url = self.options.redacted().to_owned();
        let tls = match self.options.tls() {
            Ok(tls) => tls,
            Err(e) => {
                tracing::warn!(url = %url, error = %e, "cannot cancel the warehouse's statement");
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("seam-postgres-cancel".into())
            .spawn(move || {
                if let Err(e) = token.cancel_query(tls) {
                    tracing::warn!(url = %url, error = %seam_postgres::error_chain(&e), "cancelling the warehouse's statement failed");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a thread to cancel the warehouse's statement");
        }
    }
}

impl PostgresDestination {
    /// Commits the staged batch with `state` (after a failure, that failed batch again, never with
    /// what was staged since): on a thread of its own with `background` (`Ok(None)`), else here.
    fn start(
        &mut self,
        state: Option<&State>,
        background: bool,
    ) -> Result<Option<CommitReport>, DestinationError> {
        self.join_running();
        self.finished = None;
        let batch = match self.failed.take() {
            Some(retry) => retry,
            None => self.stager.take_batch(),
        };
        let state = state.cloned();
        let conn = match self.conn() {
            Ok(_) => self.conn.take(),
            Err(e) => {
                self.failed = Some(batch);
                return Err(e);
            }
        };
        let Some(mut conn) = conn else {
            self.failed = Some(batch);
            return Err(DestinationError::new(
                ErrorKind::Internal,
                "no PostgreSQL connection",
            ));
        };
        conn.fence = self.fence;
        let layout = self.layout.clone();
        if background {
            // The job waits in a slot the thread empties: when no thread can be started, it is
            // taken back and committed here instead (the batch is never lost).
            let job = Arc::new(Mutex::new(Some((conn, batch, state, layout))));
            let for_thread = Arc::clone(&job);
            let spawned = std::thread::Builder::new()
                .name("seam-postgres-commit".into())
                .spawn(move || {
                    let taken = for_thread.lock().unwrap_or_else(PoisonError::into_inner).take();
                    taken.map(|(mut conn, batch, state, mut layout)| {
                        let result = commit_batch(&mut conn, &batch, &mut layout, state.as_ref());
                        Outcome {
                            conn,
                            batch,
                            layout,
                            result,
                        }
                    })
                });
            if let Ok(handle) = spawned {
                self.running = Some(handle);
                return Ok(None);
            }
            let Some((c, b, s, _)) = job.lock().unwrap_or_else(PoisonError::into_inner).take() else {
                return Err(DestinationError::new(
                    ErrorKind::Internal,
                    "a commit's job went missing",
                ));
            };
            conn = c;
            return self.commit_here(conn, b, s).map(Some);
        }
        self.commit_here(conn, batch, state).map(Some)
    }

    /// Commits `batch` with `state` on this thread.
    fn commit_here(
        &mut self,
        mut conn: Conn,
        batch: Stager,
        state: Option<State>,
    ) -> Result<CommitReport, DestinationError> {
        let mut layout = self.layout.clone();
        let result = commit_batch(&mut conn, &batch, &mut layout, state.as_ref());
        self.conn = Some(conn);
        match result {
            Ok(report) => {
                self.layout = layout;
                Ok(report)
            }
            Err(e) => {
                self.failed = Some(batch);
                Err(e)
            }
        }
    }
}

impl Drop for PostgresDestination {
    fn drop(&mut self) {
        // A commit still running ends (or fails) before the connection goes.
        self.join_running();
    }
}

impl Destination for PostgresDestination {
    fn batch_bytes(&self) -> usize {
        POSTGRES_BATCH_BYTES
    }

    fn check(&mut self) -> Result<(), DestinationError> {
        let checked = self.conn()?.client.batch_execute("SELECT 1");
        checked.map_err(|e| self.err(e, "checking the connection"))
    }

    fn committed_state(&mut self) -> Result<Option<State>, DestinationError> {
        let sql = sql::select_state(&quote_ident(&self.schema));
        let row = self.conn()?.client.query_opt(&sql, &[]);
        let row = row.map_err(|e| self.err(e, "reading the committed state"))?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.get(0);
        sql::parse_state(&self.schema, &text).map(Some)
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
        match self.start(state, false)? {
            Some(report) => Ok(report),
            None => self.commit_finish(),
        }
    }

    fn commit_start(&mut self, state: Option<&State>) -> Result<Option<CommitReport>, DestinationError> {
        self.start(state, true)
    }

    fn commit_running(&self) -> bool {
        self.running.as_ref().is_some_and(|h| !h.is_finished())
    }

    fn commit_finish(&mut self) -> Result<CommitReport, DestinationError> {
        self.join_running();
        self.finished
            .take()
            .unwrap_or_else(|| Err(DestinationError::new(ErrorKind::Internal, "no commit is running")))
    }

    fn discard(&mut self) {
        self.join_running();
        self.finished = None;
        self.failed = None;
        self.stager.discard();
    }

    fn interrupter(&self) -> Option<Arc<dyn Interrupt>> {
        Some(Arc::new(PgInterrupt {
            cancel: self.cancel.clone(),
            options: self.options.clone(),
        }))
    }

    fn fence(&mut self, token: i64) -> Result<(), DestinationError> {
        let schema = quote_ident(&self.schema);
        let conn = self.conn()?;
        // The claim waits for a commit of the previous holder that is under way (it holds the row),
        // so what this writer reads next includes it; a larger token already there refuses it.
        let claimed = conn.client.query_opt(
            &format!(
                "INSERT INTO {st} (id, state, committed_at) VALUES ($1, $2, now() AT TIME ZONE 'UTC') \
                 ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, committed_at = EXCLUDED.committed_at \
                 WHERE CAST({st}.state AS BIGINT) <= CAST(EXCLUDED.state AS BIGINT) RETURNING state",
                st = qualified(&schema, STATE_TABLE)
            ),
            &[&sql::FENCE_ROW, &token.to_string()],
        );
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => return Err(self.err(e, "claiming the schema for this job")),
        };
        if claimed.is_none() {
            let holder = load::fence_holder(&mut conn.client, &schema);
            let holder = holder.map_err(|e| self.err(e, "reading who holds the schema"))?;
            return Err(load::fenced(token, holder));
        }
        self.fence = Some(token);
        if let Some(c) = self.conn.as_mut() {
            c.fence = Some(token);
        }
        Ok(())
    }
}
