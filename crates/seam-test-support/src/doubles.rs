//! Test doubles for seam's traits (feature `doubles`): an in-memory warehouse that a test reads back,
//! and a [`Destination`] over it that can be told to fail.

use seam_core::{
    CommitReport, Destination, DestinationError, ErrorKind, RecordMessage, SchemaMessage, State,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Failures a [`MemDestination`] injects.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next commits fail with these kinds, first one first, whether or not they have rows.
    pub fail_next: Vec<ErrorKind>,
    /// Every commit with rows fails with this kind (after `fail_next` is used up).
    pub fail_with: Option<ErrorKind>,
    /// Every commit with rows panics with this text.
    pub panic_with: Option<String>,
    /// Staging records of this stream fails with a schema error naming the table.
    pub reject_stream: Option<String>,
}

/// What one successful commit made durable.
#[derive(Debug, Clone, PartialEq)]
pub struct MemCommit {
    /// The warehouse schema it went to.
    pub schema: String,
    /// Records committed, per stream (repeated keys counted each time).
    pub records: BTreeMap<String, u64>,
    /// The state committed with them.
    pub state: Option<State>,
}

impl MemCommit {
    /// Records committed, all streams together.
    pub fn total(&self) -> u64 {
        self.records.values().sum()
    }
}

/// The in-memory warehouse [`MemDestination`]s of a test share.
#[derive(Debug, Default)]
pub struct MemWarehouse {
    /// schema → table → key → row. A stream's table is keyed by its key properties' values (JSON
    /// text, joined by `|`), or by the record's JSON for a stream without keys; each top-level array
    /// field `f` of a record is a subtable `STREAM__f` keyed `KEY/INDEX`.
    pub tables: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
    /// The state committed last, per schema.
    pub states: BTreeMap<String, State>,
    /// Every successful commit, in order.
    pub commits: Vec<MemCommit>,
    /// Commits that failed on purpose ([`Faults`]).
    pub failed_commits: u64,
}

impl MemWarehouse {
    /// A warehouse to share between the destinations of a test.
    pub fn shared() -> Arc<Mutex<MemWarehouse>> {
        Arc::default()
    }

    /// Rows of `table` in `schema`.
    pub fn rows(&self, schema: &str, table: &str) -> usize {
        self.tables
            .get(schema)
            .and_then(|t| t.get(table))
            .map_or(0, BTreeMap::len)
    }

    /// Records of `stream` committed so far, in every schema (repeated keys counted each time).
    pub fn committed_records(&self, stream: &str) -> u64 {
        self.commits.iter().filter_map(|c| c.records.get(stream)).sum()
    }
}

/// Locks the warehouse, whatever a panicking test thread left behind.
pub fn lock(warehouse: &Mutex<MemWarehouse>) -> MutexGuard<'_, MemWarehouse> {
    warehouse.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A [`Destination`] that loads into one schema of a [`MemWarehouse`], with Stitch's upserts by
/// key, and fails as its [`Faults`] say. Nothing staged is visible in the warehouse before `commit`.
#[derive(Debug)]
pub struct MemDestination {
    schema: String,
    warehouse: Arc<Mutex<MemWarehouse>>,
    staged: Vec<(String, Value)>,
    keys: BTreeMap<String, Vec<String>>,
    /// What it fails with (a test may change it between calls).
    pub faults: Faults,
    /// Commit started with `commit_start` in the background: applied (or failed) by `commit_finish`.
    background: bool,
    /// A background commit counts as ended at once (`commit_running` false), instead of running
    /// until the caller waits for it.
    ends_at_once: bool,
    /// The batch and state of the commit running in the background.
    running: Option<(Batch, Option<State>)>,
    /// The batch of a background commit that failed, for its retry.
    failed: Option<Batch>,
    /// What [`Destination::batch_bytes`] answers (the trait's default when `None`).
    batch_bytes: Option<usize>,
}

/// Staged records: (stream, record).
type Batch = Vec<(String, Value)>;

/// A batch the commit did not make durable, and why.
type Refused = (Batch, DestinationError);

impl MemDestination {
    /// A destination for `schema` in `warehouse`, without faults.
    pub fn new(schema: &str, warehouse: &Arc<Mutex<MemWarehouse>>) -> MemDestination {
        MemDestination {
            schema: schema.to_owned(),
            warehouse: Arc::clone(warehouse),
            staged: Vec::new(),
            keys: BTreeMap::new(),
            faults: Faults::default(),
            background: false,
            ends_at_once: false,
            running: None,
            failed: None,
            batch_bytes: None,
        }
    }

    /// The same, asking the loader for batches of `bytes` bytes of record JSON.
    pub fn with_batch_bytes(mut self, bytes: usize) -> MemDestination {
        self.batch_bytes = Some(bytes);
        self
    }

    /// The same, committing in the background: `commit_start` returns at once and `commit_finish`
    /// applies the batch (or fails it, keeping it for the retry), as a warehouse on its own thread does.
    pub fn in_background(mut self) -> MemDestination {
        self.background = true;
        self
    }

    /// Committing in the background, each commit counting as ended as soon as it started (as a
    /// fast warehouse's does), so a caller that looks can report it without waiting.
    pub fn in_background_ending_at_once(mut self) -> MemDestination {
        self.background = true;
        self.ends_at_once = true;
        self
    }

    /// The same, failing as `faults` say.
    pub fn with_faults(mut self, faults: Faults) -> MemDestination {
        self.faults = faults;
        self
    }

    /// Records staged and not yet committed.
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// The warehouse it loads into, locked.
    pub fn warehouse(&self) -> MutexGuard<'_, MemWarehouse> {
        lock(&self.warehouse)
    }

    /// The state committed last into its schema.
    pub fn state(&self) -> Option<State> {
        self.warehouse().states.get(&self.schema).cloned()
    }

    fn key(&self, stream: &str, row: &Value) -> String {
        match self.keys.get(stream) {
            Some(keys) if !keys.is_empty() => keys
                .iter()
                .map(|k| row.get(k).map(Value::to_string).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|"),
            _ => row.to_string(),
        }
    }
}

impl MemDestination {
    /// Applies `batch` with `state`, or hands it back with the fault that refused it.
    fn apply(&mut self, batch: Batch, state: Option<&State>) -> Result<CommitReport, Refused> {
        let mut w = lock(&self.warehouse);
        if !self.faults.fail_next.is_empty() {
            let kind = self.faults.fail_next.remove(0);
            w.failed_commits += 1;
            return Err((
                batch,
                DestinationError::new(kind, "the warehouse is unreachable".to_owned()),
            ));
        }
        if !batch.is_empty() {
            if let Some(text) = &self.faults.panic_with {
                let text = text.clone();
                drop(w);
                panic!("{text}");
            }
            if let Some(kind) = self.faults.fail_with {
                w.failed_commits += 1;
                return Err((
                    batch,
                    DestinationError::new(kind, "the warehouse is throttling commits".to_owned()),
                ));
            }
        }
        let mut report = CommitReport::default();
        let mut records = BTreeMap::new();
        for (stream, row) in batch {
            let key = self.key(&stream, &row);
            let tables = w.tables.entry(self.schema.clone()).or_default();
            if let Value::Object(fields) = &row {
                for (field, value) in fields {
                    let Some(items) = value.as_array() else { continue };
                    let sub = format!("{stream}__{field}");
                    for (i, item) in items.iter().enumerate() {
                        tables
                            .entry(sub.clone())
                            .or_default()
                            .insert(format!("{key}/{i}"), item.clone());
                    }
                    *report.rows.entry(sub).or_default() += items.len() as u64;
                }
            }
            tables.entry(stream.clone()).or_default().insert(key, row);
            *report.rows.entry(stream.clone()).or_default() += 1;
            *records.entry(stream).or_default() += 1;
        }
        if let Some(s) = state {
            w.states.insert(self.schema.clone(), s.clone());
        }
        w.commits.push(MemCommit {
            schema: self.schema.clone(),
            records,
            state: state.cloned(),
        });
        Ok(report)
    }
}

impl Destination for MemDestination {
    fn batch_bytes(&self) -> usize {
        self.batch_bytes.unwrap_or(seam_core::DEFAULT_BATCH_BYTES)
    }

    fn check(&mut self) -> Result<(), DestinationError> {
        Ok(())
    }

    fn committed_state(&mut self) -> Result<Option<State>, DestinationError> {
        Ok(self.state())
    }

    fn ensure_table(&mut self, schema: &SchemaMessage) -> Result<(), DestinationError> {
        self.keys
            .insert(schema.stream.clone(), schema.key_properties.clone());
        Ok(())
    }

    fn write_batch(&mut self, stream: &str, records: &[RecordMessage]) -> Result<(), DestinationError> {
        if self.faults.reject_stream.as_deref() == Some(stream) {
            return Err(DestinationError::new(
                ErrorKind::Schema,
                format!("column subject of {stream} has conflicting types"),
            )
            .in_table(stream));
        }
        for r in records {
            let row = r
                .value()
                .map_err(|e| DestinationError::new(ErrorKind::Schema, e.to_string()))?;
            self.staged.push((stream.to_owned(), Value::Object(row)));
        }
        Ok(())
    }

    fn activate_version(&mut self, _stream: &str, _version: i64) -> Result<(), DestinationError> {
        Ok(())
    }

    fn commit(&mut self, state: Option<&State>) -> Result<CommitReport, DestinationError> {
        let batch = std::mem::take(&mut self.staged);
        self.apply(batch, state).map_err(|(batch, e)| {
            self.staged = batch;
            e
        })
    }

    fn commit_start(&mut self, state: Option<&State>) -> Result<Option<CommitReport>, DestinationError> {
        if !self.background {
            return self.commit(state).map(Some);
        }
        let batch = match self.failed.take() {
            Some(batch) => batch,
            None => std::mem::take(&mut self.staged),
        };
        self.running = Some((batch, state.cloned()));
        Ok(None)
    }

    fn commit_running(&self) -> bool {
        self.running.is_some() && !self.ends_at_once
    }

    fn commit_finish(&mut self) -> Result<CommitReport, DestinationError> {
        let Some((batch, state)) = self.running.take() else {
            return Err(DestinationError::new(ErrorKind::Internal, "no commit is running"));
        };
        self.apply(batch, state.as_ref()).map_err(|(batch, e)| {
            self.failed = Some(batch);
            e
        })
    }

    fn discard(&mut self) {
        self.staged.clear();
        self.running = None;
        self.failed = None;
    }
}
