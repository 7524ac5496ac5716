//! DuckDB, the embedded default: one database file, one schema per integration.
//!
//! Rows are bulk-loaded through DuckDB's appender into staging tables, then merged with set-based SQL;
//! a commit is one DuckDB transaction (DDL included), so rows, `_sdc_rejected` and `_sdc_state`
//! become durable together. DuckDB allows one writing process per file: a second `seam` on the same
//! file fails to open it with a clear error. Within a process, every destination on a file shares one
//! database instance and has its own connection ([`shared`]): destinations on different schemas
//! stage and commit side by side, and one waiting on its source blocks no other.

mod load;
mod shared;
mod written;

use crate::error::WarehouseError;
use crate::flatten::{quote_ident, ColumnType, Layout, NameRules, TableLayout, REJECTED_TABLE, STATE_TABLE};
use crate::sql::{self, Dialect};
use crate::stage::Stager;
use seam_core::{
    CommitReport, Destination, DestinationError, ErrorKind, Interrupt, RecordMessage, SchemaMessage,
    SequencedRecord, State,
};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// DuckDB's SQL types for seam's column types.
pub fn type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::BigInt => "BIGINT",
        ColumnType::Double => "DOUBLE",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Timestamp => "TIMESTAMP",
        ColumnType::Text => "VARCHAR",
    }
}

fn parse_type(name: &str) -> Option<ColumnType> {
    Some(match name {
        "BIGINT" => ColumnType::BigInt,
        "DOUBLE" => ColumnType::Double,
        "BOOLEAN" => ColumnType::Boolean,
        "TIMESTAMP" => ColumnType::Timestamp,
        "VARCHAR" => ColumnType::Text,
        _ => return None,
    })
}

pub(crate) const DIALECT: Dialect = Dialect {
    type_name,
    on_conflict: false,
};

/// A DuckDB database file as a [`Destination`].
pub struct DuckDbDestination {
    // Declared before `_lease`: the connection closes first, so the lease closes the instance.
    conn: duckdb::Connection,
    _lease: shared::Lease,
    path: PathBuf,
    schema: String,
    /// `"catalog"."schema"`, for SQL.
    schema_sql: String,
    catalog: String,
    stager: Stager,
    layout: Layout,
    /// The keys written to the tables this destination created (see [`written`]).
    written: written::WrittenKeys,
}

/// How a DuckDB destination's commits learnt whether a table already held one of a batch's keys:
/// by asking DuckDB (a scratch table of the keys and a join), or from the keys the destination
/// itself wrote to a table it created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyChecks {
    /// Checks DuckDB answered.
    pub asked: u64,
    /// Checks answered without a query.
    pub answered: u64,
}

impl std::fmt::Debug for DuckDbDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckDbDestination")
            .field("path", &self.path)
            .field("schema", &self.schema)
            .finish()
    }
}

/// Ends the statement a [`DuckDbDestination`]'s connection is running with DuckDB's interrupt: the
/// statement fails ("INTERRUPT Error", or "Interrupted!" from an appender's flush), the commit
/// around it rolls back and its batch stays staged, as after any failed commit. A long merge,
/// append statement or checkpoint of a stopped run then stops taking the machine and the file
/// instead of running to its end. Sent between statements, it changes nothing: DuckDB clears it as
/// the next statement begins (the test `an_interrupted_commit_keeps_what_was_committed_and_can_be_retried`).
/// The handle goes quiet once the connection is closed.
struct DuckDbInterrupt {
    handle: Arc<duckdb::InterruptHandle>,
    path: PathBuf,
}

impl std::fmt::Debug for DuckDbInterrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckDbInterrupt")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Interrupt for DuckDbInterrupt {
    fn interrupt(&self) {
        self.handle.interrupt();
    }
}

/// The limit of DuckDB's buffer pool (its `memory_limit`), checked without IO.
///
/// Written as DuckDB writes it: a number (a fraction allowed) and a unit, `KB`, `MB`, `GB`, `TB`
/// (powers of 1,000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1,024), in any case, a space between
/// them allowed; at least [`DuckDbMemoryLimit::MIN_BYTES`]. A Zendesk integration's tables have ~930
/// columns, and DuckDB's checkpoint of them fails in a pool under ~48 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuckDbMemoryLimit {
    bytes: u64,
}

impl DuckDbMemoryLimit {
    /// The least limit accepted: 64 MB.
    pub const MIN_BYTES: u64 = 64_000_000;

    /// The limit for a process that only loads (`seam target duckdb`): a tap is another process.
    ///
    /// Measured on a 20k-ticket Zendesk stream (interleaved pairs timed from outside, 2026-12-06, the
    /// build of `4b8b5d6` reading the limit from its environment): with 192 MB instead of 128 MB,
    /// `seam target duckdb` spent 0.84× the CPU (six pairs, 0.76–1.03×) and peaked at 297 MB instead
    /// of 242 — fewer of the columns' blocks spilled to temporary files (zstd-compressed) between
    /// checkpoints; 256 MB the same CPU as 192 at 350 MB, 512 MB the same again at 392 MB. On a
    /// 2k-ticket stream the peak is the same either way (160 MB). target-duckdb, the Python peer,
    /// peaked at 1.76 GB on the 20k-ticket stream.
    pub const TARGET: DuckDbMemoryLimit = DuckDbMemoryLimit { bytes: 192_000_000 };

    /// The limit for a loader that shares its process with a source (`seam sync`) or with other
    /// integrations (the service).
    pub const LOADER: DuckDbMemoryLimit = DuckDbMemoryLimit { bytes: 128_000_000 };

    /// The limit in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The limit as DuckDB's setting takes it.
    fn setting(&self) -> String {
        format!("{}B", self.bytes)
    }
}

impl std::str::FromStr for DuckDbMemoryLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "memory limit {text:?} is not understood: write a number and a unit, e.g. 192MB, \
                 512MiB or 1.5GB"
            )
        };
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let scale: f64 = match unit.trim_start().to_ascii_lowercase().as_str() {
            "b" => 1.0,
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "tb" => 1e12,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(bad()),
        };
        let bytes = number * scale;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(bad());
        }
        // Truncating is the point: a fraction of a byte is no byte.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bytes = bytes as u64;
        if bytes < Self::MIN_BYTES {
            let least = DuckDbMemoryLimit {
                bytes: Self::MIN_BYTES,
            };
            return Err(format!(
                "memory limit {text:?} is under {least}, too little for DuckDB to checkpoint an \
                 integration's tables"
            ));
        }
        Ok(DuckDbMemoryLimit { bytes })
    }
}

impl std::fmt::Display for DuckDbMemoryLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.bytes.is_multiple_of(1_000_000) {
            write!(f, "{}MB", self.bytes / 1_000_000)
        } else {
            write!(f, "{}B", self.bytes)
        }
    }
}

/// The write-ahead log's size at which DuckDB checkpoints into the database file.
pub const DUCKDB_CHECKPOINT_THRESHOLD: &str = "128MB";

/// Compression methods a loader's checkpoints do not try.
///
/// DuckDB's checkpoint analyses the segments of every text column it writes for each method it may
/// use, and FSST's analysis (training a symbol table) is by far the costliest: 1.38 of the 5.02
/// billion instructions of a 2k-ticket `seam target duckdb` (`scripts/profile_load.sh`), for the
/// 36 segments it won (six pairs of that load: 0.51 against 0.57 CPU-s). A checkpoint rewrites the
/// last row group of every table appended to, so later runs pay it again: a run of 1,014 records
/// into a 20k-ticket file spent 0.61 CPU-s instead of 0.76 (three pairs; runs of ~100 records cost
/// the same either way). A 20k-ticket first load costs the same either way, and its file is 8%
/// larger (166 against 153 MB): long texts are stored with a dictionary or uncompressed instead.
/// ZSTD is never tried on such segments (no analysis of it in the profile); it stays off so that a
/// newer DuckDB does not start paying for it unmeasured.
///
/// Applied with `SET` once connected: DuckDB ignores this option when it comes with the
/// connection's configuration (the test `checkpoints_skip_the_disabled_compressions`).
pub const DUCKDB_DISABLED_COMPRESSION: &str = "fsst,zstd";

/// Bytes of record JSON a DuckDB batch gathers before it commits, unless the caller says otherwise.
///
/// Every commit pays DuckDB a cost for each table it appends to, whatever the number of rows:
/// each column's append state and its last segment are set up and pinned, and with a Zendesk
/// account's ~60 tables and ~900 columns that work, and the buffer pool's evictions it causes,
/// is a large share of a small commit. Twice target-stitch's 4 MB halves the number of commits:
/// `seam target duckdb` on a 20k-ticket stream spent 11% less CPU (five interleaved pairs, 4.09 against
/// 4.60 CPU-s) for 15 MB more peak memory (226 against 211 MB); 16 MB saved 13.5% for 48 MB more.
pub const DUCKDB_BATCH_BYTES: usize = 8_000_000;

impl DuckDbDestination {
    /// Opens (creating when missing) the database file and the integration's schema with its system
    /// tables `_sdc_rejected` and `_sdc_state`, and reads the existing table layout. The file's
    /// database instance is shared with every other destination on it in this process; this
    /// destination has a connection of its own.
    pub fn open(path: &Path, schema: &str) -> Result<Self, DestinationError> {
        Self::open_limited(path, schema, HashSet::new(), DuckDbMemoryLimit::LOADER)
    }

    /// Like [`DuckDbDestination::open`]; streams in `append_only` are loaded append-only even when
    /// they have key properties (see [`seam_core::LoadMode::for_stream`]), and DuckDB's buffer pool
    /// is limited to `memory_limit` (when this opens the file's database instance in this process;
    /// one already open keeps its own).
    pub fn open_limited(
        path: &Path,
        schema: &str,
        append_only: HashSet<String>,
        memory_limit: DuckDbMemoryLimit,
    ) -> Result<Self, DestinationError> {
        // DuckDB's buffer pool defaults to 80% of RAM and keeps pages it has touched; a loader only
        // needs the pages of the batch it merges, so memory stays flat however large the file grows.
        // One thread: a loader's queries are small and many, and DuckDB's worker threads cost more in
        // handing work over than they save (measured: a third less CPU for a Zendesk stream); each
        // connection still runs its own queries on its caller's thread, so integrations load in
        // parallel. A larger checkpoint threshold than DuckDB's 16 MB lets several commits share a
        // checkpoint instead of rewriting the tables' last row groups after every few commits.
        let config = duckdb::Config::default()
            .max_memory(&memory_limit.setting())
            .and_then(|c| c.threads(1))
            .and_then(|c| c.with("checkpoint_threshold", DUCKDB_CHECKPOINT_THRESHOLD))
            .map_err(|source| {
                DestinationError::new(
                    ErrorKind::Internal,
                    WarehouseError::DuckDb {
                        path: path.display().to_string(),
                        action: "bad settings".into(),
                        source: source.into(),
                    },
                )
            })?;
        let (conn, lease) = shared::connect(path, || duckdb::Connection::open_with_flags(path, config))
            .map_err(|source| {
                DestinationError::new(
                    ErrorKind::Config,
                    WarehouseError::DuckDb {
                        path: path.display().to_string(),
                        action:
                            "cannot open the file (check the path, and that no other process has it open)"
                                .into(),
                        source: source.into(),
                    },
                )
            })?;
        let mut d = DuckDbDestination {
            conn,
            _lease: lease,
            path: path.to_path_buf(),
            schema: schema.to_owned(),
            schema_sql: String::new(),
            catalog: String::new(),
            stager: Stager::new(NameRules::DUCKDB, append_only),
            layout: Layout::default(),
            written: written::WrittenKeys::default(),
        };
        d.conn
            .execute_batch(&format!(
                "SET disabled_compression_methods = '{DUCKDB_DISABLED_COMPRESSION}'"
            ))
            .map_err(|e| d.err(e, "choosing the compressions it tries"))?;
        d.catalog = d
            .conn
            .query_row("SELECT current_database()", [], |r| r.get::<_, String>(0))
            .map_err(|e| d.err(e, "reading the catalog name"))?;
        d.schema_sql = format!("{}.{}", quote_ident(&d.catalog), quote_ident(schema));
        d.conn
            .execute_batch(&sql::system_tables(&d.schema_sql, &DIALECT))
            .map_err(|e| d.err(e, "creating the schema"))?;
        d.layout = d.read_layout()?;
        d.stager.know_layout(&d.layout);
        Ok(d)
    }

    /// The integration's schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// How this destination's commits checked for keys already in a table (for tests and benchmarks).
    pub fn key_checks(&self) -> KeyChecks {
        KeyChecks {
            asked: self.written.asked,
            answered: self.written.answered,
        }
    }

    /// The underlying connection (for tests, benchmarks and inspection; do not write through it).
    pub fn connection(&self) -> &duckdb::Connection {
        &self.conn
    }

    /// Stages records with sequences chosen by the caller (the trait's `write_batch` numbers them from
    /// the clock); for replays and tests of ordering.
    pub fn write_sequenced(
        &mut self,
        stream: &str,
        records: &[SequencedRecord],
    ) -> Result<(), DestinationError> {
        self.stager.stage_sequenced(stream, records)
    }

    pub(crate) fn err(&self, source: duckdb::Error, action: &str) -> DestinationError {
        let kind = if source.to_string().contains("Conflict") {
            ErrorKind::Transient
        } else {
            ErrorKind::Internal
        };
        DestinationError::new(
            kind,
            WarehouseError::DuckDb {
                path: self.path.display().to_string(),
                action: action.to_owned(),
                source: source.into(),
            },
        )
    }

    /// Rolls back the transaction of a failed commit. An interrupt (see [`DuckDbInterrupt`]) that
    /// reaches DuckDB as the `ROLLBACK` runs ends it too and leaves the transaction open, so it is
    /// sent once more; DuckDB clears the interrupt as the next statement begins. A transaction still
    /// open after that (interrupts sent again and again) is rolled back by the next commit's
    /// [`DuckDbDestination::begin`].
    fn roll_back(&self) {
        for _ in 0..2 {
            match self.conn.execute_batch("ROLLBACK") {
                Ok(()) => return,
                Err(e) if e.to_string().contains("no transaction is active") => return,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "rolling back a failed commit")
                }
            }
        }
    }

    /// Begins a commit's transaction, first rolling back one a failed commit left open (see
    /// [`DuckDbDestination::roll_back`]; DuckDB then refuses `BEGIN`, "within a transaction" or
    /// "transaction is aborted"): nothing of it was committed, and its batch is still staged. When
    /// there is nothing to roll back, `BEGIN`'s own error is the answer.
    fn begin(&self) -> Result<(), DestinationError> {
        let Err(refused) = self.conn.execute_batch("BEGIN TRANSACTION") else {
            return Ok(());
        };
        if self.conn.execute_batch("ROLLBACK").is_err() {
            return Err(self.err(refused, "starting a transaction"));
        }
        self.conn
            .execute_batch("BEGIN TRANSACTION")
            .map_err(|e| self.err(e, "starting a transaction after rolling back a failed commit's"))
    }

    fn read_layout(&self) -> Result<Layout, DestinationError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT table_name, column_name, data_type FROM information_schema.columns \
                 WHERE table_catalog = ? AND table_schema = ? ORDER BY table_name, ordinal_position",
            )
            .map_err(|e| self.err(e, "reading the table layout"))?;
        let rows = stmt
            .query_map([&self.catalog, &self.schema], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.err(e, "reading the table layout"))?;
        let mut tables: BTreeMap<String, Vec<(String, ColumnType)>> = BTreeMap::new();
        for row in rows {
            let (table, column, ty) = row.map_err(|e| self.err(e, "reading the table layout"))?;
            if table == REJECTED_TABLE || table == STATE_TABLE || table.starts_with("_sdc_stage") {
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

impl Destination for DuckDbDestination {
    fn batch_bytes(&self) -> usize {
        DUCKDB_BATCH_BYTES
    }

    fn check(&mut self) -> Result<(), DestinationError> {
        self.conn
            .execute_batch("SELECT 1")
            .map_err(|e| self.err(e, "checking the connection"))
    }

    fn committed_state(&mut self) -> Result<Option<State>, DestinationError> {
        let text: Option<String> = match self
            .conn
            .query_row(&sql::select_state(&self.schema_sql), [], |r| r.get(0))
        {
            Ok(t) => Some(t),
            Err(duckdb::Error::QueryReturnedNoRows) => None,
            Err(e) => return Err(self.err(e, "reading the committed state")),
        };
        let Some(text) = text else { return Ok(None) };
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
        let mut layout = self.layout.clone();
        let mut plan = self.stager.plan(&mut layout)?;
        self.begin()?;
        let mut written = std::mem::take(&mut self.written);
        let applied = load::apply(self, &plan, &layout, state, &mut written);
        self.written = written;
        match applied {
            Ok(()) => {
                if let Err(e) = self.conn.execute_batch("COMMIT") {
                    self.roll_back();
                    return Err(self.err(e, "committing"));
                }
                let report = std::mem::take(&mut plan.report);
                drop(plan);
                self.layout = layout;
                self.stager.clear();
                Ok(report)
            }
            Err(e) => {
                self.roll_back();
                Err(e)
            }
        }
    }

    fn discard(&mut self) {
        self.stager.discard();
    }

    fn interrupter(&self) -> Option<Arc<dyn Interrupt>> {
        Some(Arc::new(DuckDbInterrupt {
            handle: self.conn.interrupt_handle(),
            path: self.path.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{DuckDbDestination, DuckDbMemoryLimit};

    #[test]
    fn memory_limits_read_as_duckdb_writes_them_and_refuse_what_it_cannot_use() {
        let bytes = |text: &str| text.parse::<DuckDbMemoryLimit>().map(|l| l.bytes());
        assert_eq!(bytes("192MB"), Ok(192_000_000));
        assert_eq!(bytes(" 192 mb "), Ok(192_000_000));
        assert_eq!(bytes("512MiB"), Ok(512 << 20));
        assert_eq!(bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(bytes("2gib"), Ok(2 << 30));
        assert_eq!(bytes("64000000B"), Ok(64_000_000));
        assert_eq!(bytes("1TB"), Ok(1_000_000_000_000));
        assert_eq!(DuckDbMemoryLimit::TARGET.bytes(), 192_000_000);
        assert_eq!(DuckDbMemoryLimit::LOADER.bytes(), 128_000_000);
        for bad in [
            "", "192", "MB", "192XB", "1..5GB", "-1GB", "192 M B", "1e3MB", "9e99TB",
        ] {
            let e = bytes(bad).unwrap_err();
            assert!(e.contains("not understood"), "{bad:?}: {e}");
        }
        for small in ["63MB", "60MiB", "0GB", "1KB"] {
            let e = bytes(small).unwrap_err();
            assert!(e.contains("under 64MB"), "{small:?}: {e}");
        }
        // What a limit says of itself parses back to it.
        for text in ["192MB", "1GiB", "64MB"] {
            let limit: DuckDbMemoryLimit = text.parse().unwrap();
            assert_eq!(limit.to_string().parse::<DuckDbMemoryLimit>(), Ok(limit));
        }
    }

    #[test]
    fn a_failed_commits_transaction_is_closed_by_its_rollback_or_by_the_next_begin() {
        let dir = tempfile::tempdir().unwrap();
        let d = DuckDbDestination::open(&dir.path().join("w.duckdb"), "s").unwrap();
        // The message `roll_back` takes for "nothing to roll back".
        let none = d.conn.execute_batch("ROLLBACK").unwrap_err().to_string();
        assert!(none.contains("no transaction is active"), "{none}");
        d.roll_back();
        d.conn.execute_batch("BEGIN TRANSACTION").unwrap();
        assert!(d.conn.execute_batch("SELECT * FROM no_such_table").is_err());
        d.roll_back();
        // The transaction is closed: a new one begins.
        d.conn.execute_batch("BEGIN TRANSACTION; COMMIT").unwrap();

        // A transaction left open and aborted (its rollback interrupted): the next commit's `begin`
        // rolls it back.
        d.conn.execute_batch("BEGIN TRANSACTION").unwrap();
        assert!(d.conn.execute_batch("SELECT * FROM no_such_table").is_err());
        d.begin().unwrap();
        d.conn.execute_batch("SELECT 1; COMMIT").unwrap();
        // With none open, `begin` just begins.
        d.begin().unwrap();
        d.conn.execute_batch("COMMIT").unwrap();
    }
}
