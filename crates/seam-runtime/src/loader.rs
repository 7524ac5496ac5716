//! The loader: consumes Singer messages and drives a [`Destination`]. The one place batching,
//! commits and commit retries live: [`crate::pipeline`] (`seam sync`, `seam target`, the service's
//! jobs) feeds it what a source or a tap's stdin sends.
//!
//! ```text
//! messages (stdin lines, or a channel fed by a source) --> run() --> destination.write_batch / commit
//!                                                           |
//!                                                           +--> on_commit(report, state) after each commit
//! ```
//!
//! Contract:
//! - order is checked: a RECORD (or ACTIVATE_VERSION) for a stream whose SCHEMA has not been seen is an
//!   error naming the line;
//! - records are batched and committed when a batch reaches `max_batch_records` records or
//!   `max_batch_bytes` bytes of record JSON (by default, the size the destination asks for:
//!   [`Destination::batch_bytes`]), after every ACTIVATE_VERSION, when `max_batch_age` has
//!   passed since the batch began (checked as messages arrive), and at the end of the input;
//! - each commit carries the latest STATE seen before it; a STATE is therefore made durable with, never
//!   before, the rows that precede it, and `on_commit` receives it only after the commit succeeded;
//! - a failed commit is retried under the [`RetryPolicy`] (transient and rate-limited kinds only); when
//!   it gives up, or on bad input (a malformed line, a record before its schema), nothing of the
//!   current batch is committed and the last committed state stays where it was;
//! - the wait between two commit attempts ends early when the loader's stop token
//!   ([`Loader::stop_on`]) is cancelled: the commit then fails with [`LoadError::Stopped`], with the
//!   same guarantee (nothing of the batch committed, the state where it was);
//! - a destination that commits in the background ([`Destination::commit_start`]) commits a full
//!   batch while the next one is staged: the loader reports that commit as soon as a message finds
//!   it ended, and waits for it (retrying it alone when it fails) before it starts another, before
//!   a SCHEMA or ACTIVATE_VERSION, and at the end;
//! - memory is bounded by one batch (plus the destination's staging of it; two with a background
//!   commit).
//!
//! A run's messages go through [`crate::pipeline::run_feed`], which hands them to a [`Loader`] in
//! chunks on the run's warehouse thread. For other feeds (tests), [`run`] takes an iterator,
//! [`run_blocking`] reads a standard channel and [`tokio_receiver`] wraps a tokio one.

use seam_core::singer::Message;
use seam_core::{
    Classify, CommitReport, Destination, DestinationError, RecordMessage, RetryDecision, RetryPolicy, State,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A message with its position in the input (its line number for a Singer stream on stdin).
pub type Numbered = (u64, Message);

/// How often a commit-retry wait looks at the stop token. The wait runs on a blocking thread, where
/// the token cannot be awaited; a stop is seen within this.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Batching and retry settings.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Commit when this many records are staged (target-stitch: 20,000).
    pub max_batch_records: usize,
    /// Commit when this many bytes of record JSON are staged; `None`: the destination's
    /// [`Destination::batch_bytes`] (target-stitch's 4 MB unless the destination commits better
    /// in larger batches).
    pub max_batch_bytes: Option<usize>,
    /// Commit when the batch is this old, so bookmarks move during slow syncs.
    pub max_batch_age: Duration,
    /// How failed commits are retried.
    pub retry: RetryPolicy,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            max_batch_records: 20_000,
            max_batch_bytes: None,
            max_batch_age: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

/// One successful commit, as `on_commit` sees it.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// Rows per table (subtables as their own tables) and rejections.
    pub report: &'a CommitReport,
    /// The STATE value made durable with the rows, exactly as the tap sent it; `None` when no STATE
    /// arrived since the previous commit.
    pub state: Option<&'a Value>,
}

/// Totals for one top-level table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableTotals {
    /// Rows loaded into the table itself.
    pub rows: u64,
    /// Rows loaded into its subtables.
    pub subtable_rows: u64,
    /// Records sent to `_sdc_rejected`.
    pub rejected: u64,
}

/// What a run loaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadSummary {
    /// Everything committed, table by table.
    pub report: CommitReport,
    /// Commits made.
    pub commits: u64,
    /// The last STATE committed.
    pub last_state: Option<Value>,
}

impl LoadSummary {
    /// Totals per top-level table: a table named `<t>__…` where `<t>` is another loaded table counts
    /// as `<t>`'s subtable.
    pub fn per_table(&self) -> BTreeMap<String, TableTotals> {
        let names: Vec<&String> = self
            .report
            .rows
            .keys()
            .chain(self.report.rejected.keys())
            .collect();
        let top = |t: &str| -> String {
            names
                .iter()
                .filter(|n| t.len() > n.len() && t.starts_with(n.as_str()) && t[n.len()..].starts_with("__"))
                .min_by_key(|n| n.len())
                .map(|n| (*n).clone())
                .unwrap_or_else(|| t.to_owned())
        };
        let mut out: BTreeMap<String, TableTotals> = BTreeMap::new();
        for (t, n) in &self.report.rows {
            let root = top(t);
            let e = out.entry(root.clone()).or_default();
            if root == *t {
                e.rows += n;
            } else {
                e.subtable_rows += n;
            }
        }
        for (t, n) in &self.report.rejected {
            out.entry(top(t)).or_default().rejected += n;
        }
        out
    }
}

/// Why a load stopped. Nothing of the batch in progress was committed.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The input could not be read or parsed (the message names the line).
    #[error("{0}")]
    Input(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A RECORD arrived before its stream's SCHEMA.
    #[error("line {line}: {kind} for stream {stream:?} before its SCHEMA: the tap must send the stream's SCHEMA message first")]
    BeforeSchema {
        /// The line.
        line: u64,
        /// RECORD or ACTIVATE_VERSION.
        kind: &'static str,
        /// The stream.
        stream: String,
    },
    /// A STATE value seam cannot store.
    #[error("line {line}: STATE value is not a JSON object: {source}")]
    BadState {
        /// The line.
        line: u64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The destination failed (after retries, for retryable failures).
    #[error(
        "loading into the warehouse failed after {attempts} attempt(s); the bookmark did not move: {source}"
    )]
    Destination {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: DestinationError,
    },
    /// `on_commit` failed (for the target: stdout closed).
    #[error("reporting a committed state failed: {0}")]
    Sink(#[source] io::Error),
    /// A stop was asked for while a failed commit waited to be retried.
    #[error(
        "stopped while retrying a failed commit (attempt {attempts}); the bookmark did not move: {source}"
    )]
    Stopped {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: DestinationError,
    },
}

/// Wraps a tokio channel receiver as a blocking iterator, for [`run`] on a blocking thread.
pub fn tokio_receiver<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl Iterator<Item = T> {
    std::iter::from_fn(move || rx.blocking_recv())
}

/// The loader's state between messages: what is staged, the latest STATE, what was committed. It
/// does not hold the destination, so a caller may keep it across calls on different threads (the
/// pipeline hops to its warehouse thread per chunk of messages). [`run`] is a loop over [`Loader::push`].
#[derive(Debug)]
pub struct Loader {
    config: LoaderConfig,
    streams: HashSet<String>,
    pending_stream: Option<String>,
    pending: Vec<RecordMessage>,
    batch_records: usize,
    batch_bytes: usize,
    batch_started: Option<Instant>,
    state: Option<(Value, State)>,
    dirty: bool,
    /// The STATE of the commit running in the background, when one is (`Some(None)`: it has none).
    running: Option<Option<(Value, State)>>,
    summary: LoadSummary,
    stop: Option<CancellationToken>,
}

/// Loads every message of `input` into `dest`; returns what was committed. See the module docs for
/// the contract. `on_commit` runs after each successful commit (the target prints the state there).
pub fn run<D, I, E>(
    dest: &mut D,
    input: I,
    on_commit: &mut dyn FnMut(Commit<'_>) -> io::Result<()>,
    config: &LoaderConfig,
) -> Result<LoadSummary, LoadError>
where
    D: Destination + ?Sized,
    I: IntoIterator<Item = Result<Numbered, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    run_with(Loader::new(config.clone()), dest, input, on_commit)
}

/// [`run`] with a loader set up by the caller (e.g. [`Loader::stop_on`] a cancellation token).
pub fn run_with<D, I, E>(
    mut loader: Loader,
    dest: &mut D,
    input: I,
    on_commit: &mut dyn FnMut(Commit<'_>) -> io::Result<()>,
) -> Result<LoadSummary, LoadError>
where
    D: Destination + ?Sized,
    I: IntoIterator<Item = Result<Numbered, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let result = input.into_iter().try_for_each(|item| {
        let (line, message) = item.map_err(|e| LoadError::Input(Box::new(e)))?;
        loader.push(dest, line, message, on_commit)
    });
    match result {
        Ok(()) => loader.finish(dest, on_commit),
        Err(e) => {
            // A commit already running holds the batches before the failure: it ends and is reported
            // (as when commits did not overlap); only what came after is dropped. A failure of that
            // commit leaves `e` the error to report.
            let _ = loader.settle(dest, on_commit);
            loader.abort(dest);
            Err(e)
        }
    }
}

/// [`run`] over a standard channel (the sending side may be a source thread or async code).
pub fn run_blocking<D, E>(
    dest: &mut D,
    rx: std::sync::mpsc::Receiver<Result<Numbered, E>>,
    on_commit: &mut dyn FnMut(Commit<'_>) -> io::Result<()>,
    config: &LoaderConfig,
) -> Result<LoadSummary, LoadError>
where
    D: Destination + ?Sized,
    E: std::error::Error + Send + Sync + 'static,
{
    run(dest, rx, on_commit, config)
}

impl Loader {
    /// A loader with nothing staged.
    pub fn new(config: LoaderConfig) -> Self {
        Loader {
            config,
            streams: HashSet::new(),
            pending_stream: None,
            pending: Vec::new(),
            batch_records: 0,
            batch_bytes: 0,
            batch_started: None,
            state: None,
            dirty: false,
            running: None,
            summary: LoadSummary::default(),
            stop: None,
        }
    }

    /// Ends commit-retry waits when `stop` is cancelled (the failed commit then returns
    /// [`LoadError::Stopped`]). Without it, a retry wait lasts what the [`RetryPolicy`] says.
    pub fn stop_on(mut self, stop: CancellationToken) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Sleeps `wait`, or less when the stop token is cancelled; true when it was.
    fn wait_unless_stopped(&self, wait: Duration) -> bool {
        let Some(stop) = &self.stop else {
            std::thread::sleep(wait);
            return false;
        };
        let until = Instant::now() + wait;
        loop {
            if stop.is_cancelled() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(STOP_POLL));
        }
    }

    /// Takes one message (`line` is its position, for errors), committing when the batch is full.
    /// After an error, call [`Loader::abort`]: nothing of the batch in progress may be committed.
    pub fn push<D: Destination + ?Sized>(
        &mut self,
        dest: &mut D,
        line: u64,
        message: Message,
        on_commit: &mut dyn FnMut(Commit<'_>) -> io::Result<()>,
    ) -> Result<(), LoadError> {
        {
            match message {
                Message::Schema(schema) => {
                    self.settle(dest, on_commit)?;
                    self.flush_pending(dest)?;
                    dest.ensure_table(&schema)
                        .map_err(|source| LoadError::Destination { attempts: 1, source })?;
                    self.streams.insert(schema.stream.clone());
                }
                Message::Record(record) => {
                    // The pending stream had its SCHEMA (streams are never forgotten): only a record
                    // of another stream is looked up.
                    if self.pending_stream.as_deref() != Some(record.stream.as_str()) {
                        if !self.streams.contains(&record.stream) {
                            return Err(LoadError::BeforeSchema {
                                line,
                                kind: "RECORD",
                                stream: record.stream,
                            });
                        }
                        self.flush_pending(dest)?;
                        self.pending_stream = Some(record.stream.clone());
                    }
                    self.batch_started.get_or_insert_with(Instant::now);
                    self.batch_records += 1;
                    self.batch_bytes += record.record.get().len();
                    self.pending.push(record);
                    self.dirty = true;
                    if self.pending.len() >= 1_000 {
                        self.flush_pending(dest)?;
                    }
                }
                Message::State { value } => {
                    let state = State::from_value(value.clone())
                        .map_err(|source| LoadError::BadState { line, source })?;
                    self.state = Some((value, state));
                    self.batch_started.get_or_insert_with(Instant::now);
                }
                Message::ActivateVersion { stream, version } => {
                    if !self.streams.contains(&stream) {
                        return Err(LoadError::BeforeSchema {
                            line,
                            kind: "ACTIVATE_VERSION",
                            stream,
                        });
                    }
                    self.settle(dest, on_commit)?;
                    self.flush_pending(dest)?;
                    dest.activate_version(&stream, version)
                        .map_err(|source| LoadError::Destination { attempts: 1, source })?;
                    self.dirty = true;
                    return self.commit(dest, on_commit, false);
                }
                Message::Unknown { message_type } => {
                    debug!(line, message_type, "ignoring a message of unknown type");
                }
            }
            let full = self.batch_records >= self.config.max_batch_records
                || self.batch_bytes >= self.config.max_batch_bytes.unwrap_or_else(|| dest.batch_bytes())
                || self
                    .batch_started
                    .is_some_and(|t| t.elapsed() >= self.config.max_batch_age);
            if full {
                self.commit(dest, on_commit, true)?;
            } else if self.running.is_some() && !dest.commit_running() {
                // The commit running in the background has ended: report it now rather than when
                // the next one starts.
                self.settle(dest, on_commit)?;
            }
        }
        Ok(())
    }

    /// Commits what is staged (and the latest STATE) at the end of the input; returns the totals.
    pub fn finish<D: Destination + ?Sized>(
        &mut self,
        dest: &mut D,
        on_commit: &mut dyn FnMut(Commit<'_>) -> io::Result<()>,
    ) -> Result<LoadSummary, LoadError> {
        let mut done = self.settle(dest, on_commit);
        if done.is_ok() && (self.dirty || self.state.is_some()) {
            done = self.commit(dest, on_commit, false);
        }
        if let Err(e) = done {
            self.abort(dest);
            return Err(e);
        }
        Ok(std::mem::take(&mut self.summary))
    }

    /// Forgets the batch in progress, in the loader and in the destination: nothing of it is committed.
    pub fn abort<D: Destination + ?Sized>(&mut self, dest: &mut D) {
        self.pending.clear();
        self.state = None;
        self.dirty = false;
        self.running = None;
        dest.discard();
    }

    /// What has been committed so far.
    pub fn summary(&self) -> &LoadSummary {
        &self.summary
    }

    fn flush_pending<D: Destination + ?Sized>(&mut self, dest: &mut D) -> Result<(), LoadError> {
        if let Some(stream) = &self.pending_stream {
            if !self.pending.is_empty() {
                dest.write_batch(stream, &self.pending)
                    .map_err(|source| LoadError::Destination { attempts: 1, source })?;
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Commits the batch (with the latest STATE). With `background`, a destination that commits in
    /// the background returns at once and the loader waits for it later ([`Loader::settle`]).
    fn commit<D: Destination + ?Sized>(
        &mut self,
        dest: &mut D,
        on_commit: &mut dyn FnMut(Commit<'_>) -> io::Result<()>,
        background: bool,
    ) -> Result<(), LoadError> {
        self.settle(dest, on_commit)?;
        self.flush_pending(dest)?;
        let state = self.state.take();
        let started = dest.commit_start(state.as_ref().map(|(_, s)| s));
        // What arrives from now on belongs to the next batch.
        self.batch_records = 0;
        self.batch_bytes = 0;
        self.batch_started = None;
        self.dirty = false;
        match started {
            Ok(Some(report)) => self.committed(report, state, on_commit),
            Ok(None) => {
                self.running = Some(state);
                if background {
                    Ok(())
                } else {
                    self.settle(dest, on_commit)
                }
            }
            Err(e) => {
                self.running = Some(state);
                self.settle_after(dest, Err(e), on_commit)
            }
        }
    }

    /// Waits for the commit running in the background (if any), retrying it under the policy, and
    /// reports it.
    fn settle<D: Destination + ?Sized>(
        &mut self,
        dest: &mut D,
        on_commit: &mut dyn FnMut(Commit<'_>) -> io::Result<()>,
    ) -> Result<(), LoadError> {
        if self.running.is_none() {
            return Ok(());
        }
        let first = dest.commit_finish();
        self.settle_after(dest, first, on_commit)
    }

    /// Retries the running commit (whose first attempt ended with `outcome`) until it is durable,
    /// the policy gives up or a stop comes; a retry commits the same batch and state again.
    fn settle_after<D: Destination + ?Sized>(
        &mut self,
        dest: &mut D,
        mut outcome: Result<CommitReport, DestinationError>,
        on_commit: &mut dyn FnMut(Commit<'_>) -> io::Result<()>,
    ) -> Result<(), LoadError> {
        let Some(state) = self.running.take() else {
            return Ok(());
        };
        let mut attempt = 1;
        let report = loop {
            let e = match outcome {
                Ok(r) => break r,
                Err(e) => e,
            };
            match self.config.retry.decide(e.kind(), attempt) {
                RetryDecision::RetryAfter(wait) => {
                    warn!(attempt, error = %e, wait_ms = wait.as_millis() as u64, "commit failed; retrying");
                    if self.wait_unless_stopped(wait) {
                        return Err(LoadError::Stopped {
                            attempts: attempt,
                            source: e,
                        });
                    }
                }
                RetryDecision::GiveUp => {
                    return Err(LoadError::Destination {
                        attempts: attempt,
                        source: e,
                    })
                }
            }
            attempt += 1;
            outcome = match dest.commit_start(state.as_ref().map(|(_, s)| s)) {
                Ok(Some(r)) => Ok(r),
                Ok(None) => dest.commit_finish(),
                Err(e) => Err(e),
            };
        };
        self.committed(report, state, on_commit)
    }

    /// Counts a durable commit and hands it to `on_commit`.
    fn committed(
        &mut self,
        report: CommitReport,
        state: Option<(Value, State)>,
        on_commit: &mut dyn FnMut(Commit<'_>) -> io::Result<()>,
    ) -> Result<(), LoadError> {
        self.summary.report.absorb(&report);
        self.summary.commits += 1;
        if let Some((value, _)) = &state {
            self.summary.last_state = Some(value.clone());
        }
        on_commit(Commit {
            report: &report,
            state: state.as_ref().map(|(v, _)| v),
        })
        .map_err(LoadError::Sink)
    }
}
