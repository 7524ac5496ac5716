//! The `Destination` trait: what every warehouse loader implements.

use crate::error::{Classify, ErrorKind};
use crate::singer::{RecordMessage, SchemaMessage};
use crate::source::BoxError;
use crate::state::State;
use std::collections::BTreeMap;
use thiserror::Error;

/// A destination failed.
#[derive(Debug, Error)]
#[error("{}{source}", table.as_ref().map(|t| format!("table {t}: ")).unwrap_or_default())]
pub struct DestinationError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The table it concerns, if one.
    pub table: Option<String>,
    /// The cause, with the message the user reads.
    #[source]
    pub source: BoxError,
}

impl DestinationError {
    /// Wraps a cause.
    pub fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        DestinationError { kind, table: None, source: source.into() }
    }

    /// Names the table the error belongs to.
    pub fn in_table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }
}

impl Classify for DestinationError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// What one commit made durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Rows loaded per table, subtables counted as their own tables (Stitch's "replicated rows").
    pub rows: BTreeMap<String, u64>,
    /// Records sent to `_sdc_rejected`, per source table.
    pub rejected: BTreeMap<String, u64>,
}

impl CommitReport {
    /// Total rows loaded, subtable rows included.
    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }

    /// Adds another report's counts to this one.
    pub fn absorb(&mut self, other: &CommitReport) {
        for (t, n) in &other.rows {
            *self.rows.entry(t.clone()).or_default() += n;
        }
        for (t, n) in &other.rejected {
            *self.rejected.entry(t.clone()).or_default() += n;
        }
    }
}

/// A warehouse that loads Singer streams with Stitch's semantics.
///
/// Implementations are blocking and run on a dedicated thread; the runtime feeds them from a bounded
/// channel.
///
/// Contract:
/// - `ensure_table` is idempotent and evolves tables (new columns added, none dropped);
/// - `write_batch` upserts by primary key (append-only streams append); writing the same records twice
///   leaves the same rows, and an older `_sdc_sequence` never overwrites a newer one;
/// - nothing written is visible or durable until `commit`; `commit` is the durability barrier: the rows
///   staged since the last commit and `state` become durable together in one transaction, or neither
///   does, so a crash at any point loses no row and duplicates none;
/// - `committed_state` returns the state of the last successful commit (what a resumed sync starts from).
pub trait Destination: Send {
    /// Proves the warehouse is reachable and writable; a clear error otherwise.
    fn check(&mut self) -> Result<(), DestinationError>;

    /// The state stored with the last commit, if any.
    fn committed_state(&mut self) -> Result<Option<State>, DestinationError>;

    /// Creates or evolves the tables for a stream.
    fn ensure_table(&mut self, schema: &SchemaMessage) -> Result<(), DestinationError>;

    /// Stages records of one stream (already announced with `ensure_table`).
    fn write_batch(&mut self, stream: &str, records: &[RecordMessage]) -> Result<(), DestinationError>;

    /// Makes `version` the stream's table: at the next commit, rows of other versions disappear.
    fn activate_version(&mut self, stream: &str, version: i64) -> Result<(), DestinationError>;

    /// Makes everything staged, and `state`, durable together.
    fn commit(&mut self, state: Option<&State>) -> Result<CommitReport, DestinationError>;
}
