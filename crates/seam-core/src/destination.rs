//! The `Destination` trait: what every warehouse loader implements.

use crate::error::{Classify, ErrorKind};
use crate::singer::{RecordMessage, SchemaMessage};
use crate::source::BoxError;
use crate::state::State;
use std::collections::BTreeMap;

/// A destination failed. Displays as the cause's message (prefixed with the table); `source()` skips
/// to the cause's own cause, so a report that walks the chain says each thing once.
#[derive(Debug)]
pub struct DestinationError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The table it concerns, if one.
    pub table: Option<String>,
    /// The cause, with the message the user reads.
    pub source: BoxError,
}

impl std::fmt::Display for DestinationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(t) = &self.table {
            write!(f, "table {t}: ")?;
        }
        write!(f, "{}", self.source)
    }
}

impl std::error::Error for DestinationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

impl DestinationError {
    /// Wraps a cause.
    pub fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        DestinationError {
            kind,
            table: None,
            source: source.into(),
        }
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
    /// The stream each top-level table of `rows` loads, where the warehouse's naming made the table
    /// name differ from the stream's (`public-items` → `publicitems`).
    pub streams: BTreeMap<String, String>,
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
        for (t, s) in &other.streams {
            self.streams.insert(t.clone(), s.clone());
        }
    }

    /// The stream a table of the report loads: its entry in `streams`, else the table's own name.
    pub fn stream_of<'a>(&'a self, table: &'a str) -> &'a str {
        self.streams.get(table).map_or(table, String::as_str)
    }
}

/// How a stream's rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Rows are replaced by primary key; the record with the newest `_sdc_sequence` wins.
    Upsert,
    /// Every distinct record is a new row (Stitch's append-only). Re-sending an identical record is
    /// harmless: the row's `__sdc_primary_key` is derived from the record's bytes.
    AppendOnly,
}

impl LoadMode {
    /// The one rule for how a stream signals append-only: a SCHEMA message with empty `key_properties`
    /// is append-only (Singer has no key to upsert on); so is any stream the caller forces (for
    /// `seam sync`, a catalog stream whose replication is append-only, such as Zendesk's
    /// `ticket_audits`). Everything else upserts.
    pub fn for_stream(schema: &SchemaMessage, forced_append_only: bool) -> LoadMode {
        if forced_append_only || schema.key_properties.is_empty() {
            LoadMode::AppendOnly
        } else {
            LoadMode::Upsert
        }
    }
}

/// One record with the ordering the loader gave it.
#[derive(Debug, Clone)]
pub struct SequencedRecord {
    /// Stitch's `_sdc_sequence`: nanoseconds since the Unix epoch when the record was received
    /// (records handed over together share one reading of the clock, a nanosecond apart), strictly
    /// increasing within a loader. A newer sequence wins over an older one for the same key.
    pub sequence: i64,
    /// The record as the tap sent it.
    pub message: RecordMessage,
}

/// Hands out strictly increasing `_sdc_sequence` values: the wall clock in nanoseconds, bumped by one
/// when the clock has not moved (or moved back) since the last value.
#[derive(Debug, Default, Clone)]
pub struct SequenceClock {
    last: i64,
}

impl SequenceClock {
    /// The next sequence.
    pub fn next_sequence(&mut self) -> i64 {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX - 1);
        self.last = now.max(self.last.saturating_add(1));
        self.last
    }

    /// The first of `n` consecutive sequences, `first..first + n`, from one reading of the clock:
    /// for records received together. Reading the clock once per record was ~4% of a loader's CPU.
    pub fn next_sequences(&mut self, n: usize) -> i64 {
        let first = self.next_sequence();
        let n = i64::try_from(n.max(1)).unwrap_or(i64::MAX);
        self.last = first.saturating_add(n - 1);
        first
    }
}

/// Ends, from any thread, the warehouse call a destination is in the middle of, so that a call the
/// runtime stopped waiting for (after a stop's grace) does not go on holding the warehouse: a wait
/// for a lock, a long statement, with the locks its transaction already took.
///
/// Contract: `interrupt` returns at once, never blocks and never panics; the call it ends fails as
/// a failed commit does (nothing of its batch becomes durable; the committed state stays where it
/// was). The request may reach the warehouse after the call under way ended, and then end the next
/// one: callers interrupt a destination they have stopped waiting for and will not use again.
pub trait Interrupt: Send + Sync + std::fmt::Debug {
    /// Asks the warehouse to end the call under way, if any.
    fn interrupt(&self);
}

/// Bytes of record JSON in a batch, unless the destination or the caller chooses otherwise
/// (target-stitch's 4 MB).
pub const DEFAULT_BATCH_BYTES: usize = 4_000_000;

/// A warehouse that loads Singer streams with Stitch's semantics.
///
/// Implementations are blocking and run on a dedicated thread; the runtime feeds them from a bounded
/// channel.
///
/// Contract:
/// - `ensure_table` is idempotent: it registers a stream's schema and keys (a stream with no
///   `key_properties` is append-only, see [`LoadMode::for_stream`]). Tables and columns are created,
///   and evolved (new columns added, none dropped), by `commit`, and only for fields that carried a
///   non-null value;
/// - `write_batch` stages records, giving each the next `_sdc_sequence`; upserts go by primary key
///   (append-only streams append); writing the same records twice leaves the same rows, and an older
///   `_sdc_sequence` never overwrites a newer one;
/// - `activate_version` takes effect after the rows staged before it; callers commit right after it;
/// - nothing written is visible or durable until `commit`; `commit` is the durability barrier: the rows
///   staged since the last commit and `state` become durable together in one transaction, or neither
///   does, so a crash at any point loses no row and duplicates none;
/// - a failed `commit` leaves the staged rows staged, so the caller may retry it (after a transient
///   error); `discard` forgets them;
/// - `committed_state` returns the state of the last successful commit (what a resumed sync starts from).
pub trait Destination: Send {
    /// Proves the warehouse is reachable and writable; a clear error otherwise.
    fn check(&mut self) -> Result<(), DestinationError>;

    /// The state stored with the last commit, if any.
    fn committed_state(&mut self) -> Result<Option<State>, DestinationError>;

    /// Registers (or re-registers, after a schema change) a stream; idempotent.
    fn ensure_table(&mut self, schema: &SchemaMessage) -> Result<(), DestinationError>;

    /// Stages records of one stream (already announced with `ensure_table`).
    fn write_batch(&mut self, stream: &str, records: &[RecordMessage]) -> Result<(), DestinationError>;

    /// Makes `version` the stream's table: at the next commit, rows of other versions disappear.
    fn activate_version(&mut self, stream: &str, version: i64) -> Result<(), DestinationError>;

    /// Makes everything staged, and `state` (when given), durable together.
    fn commit(&mut self, state: Option<&State>) -> Result<CommitReport, DestinationError>;

    /// Starts committing everything staged, with `state`, like [`Destination::commit`], but may return
    /// before the commit is durable: `Ok(None)` says it runs in the background (records staged from
    /// now on belong to the next commit) and [`Destination::commit_finish`] waits for it; until that
    /// returns, the caller calls nothing but `write_batch` and `discard`. `Ok(Some(report))`: already
    /// durable (the default, which is `commit`). After a failed `commit_finish`, the next
    /// `commit_start` commits that same batch and state again (a retry), never with the records
    /// staged since.
    fn commit_start(&mut self, state: Option<&State>) -> Result<Option<CommitReport>, DestinationError> {
        self.commit(state).map(Some)
    }

    /// Bytes of record JSON a batch gathers before it commits, when the loader's settings name none:
    /// what this destination commits best at. [`DEFAULT_BATCH_BYTES`] unless it knows better.
    fn batch_bytes(&self) -> usize {
        DEFAULT_BATCH_BYTES
    }

    /// True while a commit [`Destination::commit_start`] left running has not ended; once false,
    /// [`Destination::commit_finish`] returns without waiting. The default leaves none running.
    fn commit_running(&self) -> bool {
        false
    }

    /// Waits for the commit [`Destination::commit_start`] left running; its report once it is
    /// durable, or why it failed (the batch then waits for a retry or `discard`).
    fn commit_finish(&mut self) -> Result<CommitReport, DestinationError> {
        Err(DestinationError::new(ErrorKind::Internal, "no commit is running"))
    }

    /// Forgets everything staged since the last commit (after a failed commit that will not be retried),
    /// and a commit left running or failed (a running one may still become durable).
    fn discard(&mut self) {}

    /// Claims the destination for the writer holding `token` (a job's id: a later job has a larger
    /// one), before its first `committed_state`. From then on a commit succeeds only while no writer
    /// has claimed a larger token, checked in the commit's own transaction: a worker whose job was
    /// taken over by another (its lease ran out) can no longer commit rows or state. Fails when a
    /// larger token already holds the destination. A destination only one process can open (DuckDB)
    /// has nothing to fence; the default claims nothing.
    fn fence(&mut self, token: i64) -> Result<(), DestinationError> {
        let _ = token;
        Ok(())
    }

    /// A handle that ends this destination's calls from another thread (see [`Interrupt`]), kept by
    /// the caller for as long as it uses the destination; `None` (the default) when the warehouse
    /// offers no way to end a call, which then runs to its end on its thread.
    fn interrupter(&self) -> Option<std::sync::Arc<dyn Interrupt>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::SequenceClock;

    #[test]
    fn sequences_handed_out_together_are_consecutive_and_stay_increasing() {
        let mut clock = SequenceClock::default();
        let a = clock.next_sequence();
        let first = clock.next_sequences(1000);
        assert!(first > a, "{first} after {a}");
        let after = clock.next_sequence();
        assert!(
            after >= first + 1000,
            "{after} after the block {first}..{}",
            first + 1000
        );

        // A clock ahead of the wall clock counts on from its last sequence: exact values.
        let ahead = 7_000_000_000_000_000_000; // in the year 2191
        let mut clock = SequenceClock { last: ahead };
        assert_eq!(clock.next_sequences(1000), ahead + 1);
        assert_eq!(clock.next_sequence(), ahead + 1001);
        // An empty block still takes its first sequence: none is handed out twice.
        assert_eq!(clock.next_sequences(0), ahead + 1002);
        assert_eq!(clock.next_sequence(), ahead + 1003);
        assert_eq!(clock.next_sequences(1), ahead + 1004);
        assert_eq!(clock.next_sequence(), ahead + 1005);

        // Far in the future, the clock saturates instead of wrapping.
        let mut late = SequenceClock { last: i64::MAX - 3 };
        let f = late.next_sequences(10);
        assert_eq!(f, i64::MAX - 2);
        assert_eq!(late.next_sequence(), i64::MAX);
    }
}
