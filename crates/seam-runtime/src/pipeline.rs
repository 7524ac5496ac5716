//! The pipeline: the one driver from a source to a destination, exactly once. `seam sync` and every
//! job of `seam serve` run through [`run`], `seam target` through [`run_feed`] with its stdin as
//! the feed ([`crate::feed`]). Batching, commits and commit retries live in the loader, and nowhere
//! else.
//!
//! ```text
//! open_destination()  (the run's warehouse thread)
//!   committed_state() or, on a reset, commit(empty state) ──► hooks.started(state)
//! feed (source.read(catalog, state), or lines) ──bounded mpsc──► driver ──hops──► Loader::push
//!                                                 │   on the warehouse thread: │ progress,
//!                                                 │                            │ write_batch / commit(rows + STATE)
//!                                                 │                            ▼
//!                                                 └──────────► hooks.committed(report, state)
//! ```
//!
//! The state a run resumes from is the one the destination committed together with the rows it
//! covers, so a crash at any point — before, during or after a commit — neither loses nor duplicates
//! a row: records after the last committed STATE are read again and upserted over themselves.
//!
//! Backpressure: the channel holds at most [`PipelineConfig::channel_capacity`] messages; when the
//! warehouse is slower than the API the source waits, so memory stays flat whatever the account size.
//!
//! A run cannot wedge:
//! - a panic in the source's `read` or in the destination (opening it, loading, committing) ends the
//!   run with [`PipelineError::Panicked`] naming the part; committed work is kept;
//! - a stop ([`Stop`]): the source is told (its token) and gets the stop's grace to return at a safe
//!   point while what it sends is still loaded (a feed of Singer lines that waits for input with
//!   every line it read sent is such a point at once: [`crate::feed::Started::rest`]); a
//!   commit-retry wait ends at once
//!   ([`LoadError::Stopped`]); a warehouse call begun before the stop gets what is left of the grace,
//!   one begun after it a whole grace (so a run ends within twice the grace). Whatever still runs
//!   then is abandoned ([`PipelineError::StopTimedOut`], naming the part that did not stop): the
//!   source's task is aborted; a blocking warehouse call is interrupted as the run ends (PostgreSQL:
//!   a cancel request, so a commit waiting on a lock lets go of the warehouse; DuckDB: its
//!   interrupt, so a long merge stops taking the machine; see [`Destination::interrupter`]) and
//!   otherwise finishes on its own thread, dropping its uncommitted batch. What was not committed
//!   is read again by the next run from the last committed state;
//! - a warehouse call unanswered for [`PipelineConfig::warehouse_call_limit`] (an hour by default:
//!   a server that stopped answering) ends the run with [`PipelineError::WarehouseUnanswered`],
//!   without a stop; the call is abandoned and interrupted as after a stop.
//!
//! Why short hops to a warehouse thread rather than a loader thread that reads the channel itself:
//! the async side never blocks, every warehouse call can be raced against the stop, and a
//! paused-clock test is never stalled by a blocking thread that waits on the source. Why one thread
//! for all of a run's calls rather than the blocking pool: see `WarehouseThread`.

use crate::feed::{rests_once_stopped, Feed, FeedItem, SourceFeed, Started};
use crate::loader::{Commit, LoadError, LoadSummary, Loader, LoaderConfig, Numbered};
use async_trait::async_trait;
use seam_core::catalog::Catalog;
use seam_core::singer::Message;
use seam_core::{
    Classify, CommitReport, Destination, DestinationError, ErrorKind, Interrupt, ReadSummary, Source,
    SourceError, State,
};
use serde::Serialize;
use serde_json::Value;
use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// Stream-level catalog metadata: `true` when the stream's rows are appended, never upserted
/// (Stitch's "Append-Only Incremental", e.g. Zendesk's `ticket_audits`).
pub const APPEND_ONLY_METADATA: &str = "seam-append-only";

/// How long a stopped run waits for the source and the warehouse by default.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(3);

/// How long one warehouse call (opening it, staging what the source sent and committing it,
/// closing it) may go unanswered by default before the run gives up on it
/// ([`PipelineError::WarehouseUnanswered`]). Lock waits end after the session's lock timeout (30 s
/// on PostgreSQL) and failed commits are retried for a few minutes at most, so an hour is a server
/// that stopped answering (a hung process, a disk that does not return), which neither TCP
/// keepalives nor its own timeouts end: its host still answers. Generous for the slowest call seam
/// makes, an index built on a large subtable the first time one of its parents is replaced.
pub const DEFAULT_WAREHOUSE_CALL_LIMIT: Duration = Duration::from_secs(3600);

/// At most this many messages go to the loader per hop to the warehouse thread (fewer when the source
/// has sent fewer: the driver never waits to fill a hop).
pub const HOP_MESSAGES: usize = 500;

/// A hop parses and counts this many messages before it hands them to the loader (or fewer: those
/// of its last item, or before an input error).
const PUSHED_AT_ONCE: usize = 256;

/// [`PipelineError::Panicked`], [`PipelineError::StopTimedOut`]: the source (its `read`; for jobs
/// also building it and its `discover`).
pub const PART_SOURCE: &str = "source";
/// [`PipelineError::Panicked`]: the loader's blocking work (loader or destination code).
pub const PART_LOADER: &str = "loader";
/// [`PipelineError::StopTimedOut`]: a warehouse call on the run's warehouse thread.
pub const PART_WAREHOUSE: &str = "warehouse";

/// Settings of a pipeline run.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Messages in flight between the source and the loader.
    pub channel_capacity: usize,
    /// Batching and commit retries.
    pub loader: LoaderConfig,
    /// Start from empty state instead of the destination's committed state (a reset, or a new
    /// integration reusing a schema name). The empty state is committed before anything is read, so
    /// a crash right after still restarts from scratch.
    pub reset_state: bool,
    /// After a stop, how long the source gets to return at a safe point and an in-flight warehouse
    /// call to end (see [`Stop`]).
    pub stop_grace: Duration,
    /// How long one warehouse call may go unanswered before the run gives up on it
    /// ([`DEFAULT_WAREHOUSE_CALL_LIMIT`]).
    pub warehouse_call_limit: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            channel_capacity: 2_000,
            loader: LoaderConfig::default(),
            reset_state: false,
            stop_grace: DEFAULT_STOP_GRACE,
            warehouse_call_limit: DEFAULT_WAREHOUSE_CALL_LIMIT,
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Before extraction (a job's structure sync; `seam sync`'s discovery).
    #[default]
    Discovery,
    /// Reading and loading.
    Extraction,
    /// The source is done or stopped: the last commit and bookkeeping.
    Finishing,
}

/// Live counters of a run, shared with whoever shows progress (`seam sync`'s progress lines, the
/// dashboard's view of a job). Cheap to clone; every clone sees the same counters.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    inner: Arc<Mutex<ProgressSnapshot>>,
}

/// What a run has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressSnapshot {
    /// Where the run is.
    pub phase: Phase,
    /// Records received from the source, per stream.
    pub records: BTreeMap<String, u64>,
    /// Records received from the source, all streams.
    pub records_total: u64,
    /// The stream of the latest record.
    pub current_stream: Option<String>,
    /// Rows committed to the warehouse (subtables counted).
    pub rows_committed: u64,
    /// Commits made.
    pub commits: u64,
    /// True once a stop was asked for.
    pub stopping: bool,
    /// When the warehouse call under way (staging what the source sent, committing it) began;
    /// `None` between calls. A long one is a warehouse that is slow or waits (on a lock, a retry).
    pub warehouse_call_since: Option<tokio::time::Instant>,
}

/// How long a warehouse call lasts before progress reports say the run waits on the warehouse.
pub const WAREHOUSE_WAIT_SHOWN: Duration = Duration::from_secs(5);

impl ProgressSnapshot {
    /// How long the run has waited on the warehouse call under way, once that is at least
    /// [`WAREHOUSE_WAIT_SHOWN`] (a lock in the warehouse, a commit being retried); `None` otherwise.
    pub fn waiting_on_warehouse(&self) -> Option<Duration> {
        self.warehouse_call_since
            .map(|since| since.elapsed())
            .filter(|waited| *waited >= WAREHOUSE_WAIT_SHOWN)
    }
}

impl Progress {
    /// A copy of the counters.
    pub fn snapshot(&self) -> ProgressSnapshot {
        self.with(|p| p.clone())
    }

    /// Moves the run to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.with(|p| p.phase = phase);
    }

    /// Marks a warehouse call as under way (`true`) or over.
    pub fn set_warehouse_call(&self, under_way: bool) {
        let since = under_way.then(tokio::time::Instant::now);
        self.with(|p| p.warehouse_call_since = since);
    }

    /// Marks the run as stopping (a stop was asked for).
    pub fn set_stopping(&self) {
        self.with(|p| p.stopping = true);
    }

    fn with<R>(&self, f: impl FnOnce(&mut ProgressSnapshot) -> R) -> R {
        f(&mut self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Counts the records of `messages` (one lock per chunk, not per record).
    fn received(&self, messages: &[Numbered]) {
        let mut counts: Vec<(&str, u64)> = Vec::new();
        let mut last = None;
        for (_, m) in messages {
            if let Message::Record(r) = m {
                match counts.last_mut() {
                    Some((s, n)) if *s == r.stream => *n += 1,
                    _ => counts.push((&r.stream, 1)),
                }
                last = Some(r.stream.as_str());
            }
        }
        if counts.is_empty() {
            return;
        }
        self.with(|p| {
            for (stream, n) in counts {
                p.records_total += n;
                match p.records.get_mut(stream) {
                    Some(total) => *total += n,
                    None => {
                        p.records.insert(stream.to_owned(), n);
                    }
                }
            }
            if p.current_stream.as_deref() != last {
                p.current_stream = last.map(str::to_owned);
            }
        });
    }

    fn committed(&self, rows: u64) {
        self.with(|p| {
            p.rows_committed += rows;
            p.commits += 1;
        });
    }
}

/// A run's stop request and its grace period; every wait of the run races it.
#[derive(Debug)]
pub struct Stop {
    cancel: CancellationToken,
    grace: Duration,
    /// Set when a wait first sees the stop: the grace counts once for the whole run.
    deadline: OnceLock<tokio::time::Instant>,
}

impl Stop {
    /// A stop asked for by cancelling `cancel`, after which the run gets `grace`.
    pub fn new(cancel: CancellationToken, grace: Duration) -> Self {
        Stop {
            cancel,
            grace,
            deadline: OnceLock::new(),
        }
    }

    /// The token that asks for the stop.
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The grace after a stop.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// True once the stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// When the grace runs out: `None` before a stop; fixed the first time it is asked for after one.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.is_stopped().then(|| {
            *self
                .deadline
                .get_or_init(|| tokio::time::Instant::now() + self.grace)
        })
    }

    /// True once the grace after a stop has run out.
    pub fn has_expired(&self) -> bool {
        self.deadline().is_some_and(|d| tokio::time::Instant::now() >= d)
    }

    /// Resolves once the grace after a stop has run out; never without a stop.
    pub async fn expired(&self) {
        self.cancel.cancelled().await;
        if let Some(deadline) = self.deadline() {
            tokio::time::sleep_until(deadline).await;
        }
    }

    /// `fut`'s result, unless its time after a stop runs out first: then `fut` is dropped (a blocking
    /// call it waited on finishes on its own thread) and the result is
    /// [`PipelineError::StopTimedOut`] naming `part`. A call begun before the stop gets what is left
    /// of the grace; one begun after it (while the source still sends within its grace) gets a
    /// whole grace of its own, so a busy but healthy warehouse is not blamed for a source that
    /// ignored the stop.
    pub async fn bounded<T, E: From<PipelineError>>(
        &self,
        part: &'static str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let begun = tokio::time::Instant::now();
        let expired = async {
            self.cancel.cancelled().await;
            if let Some(deadline) = self.deadline() {
                tokio::time::sleep_until(deadline.max(begun + self.grace)).await;
            }
        };
        tokio::select! {
            biased;
            out = fut => out,
            () = expired => Err(self.timed_out(part).into()),
        }
    }

    /// `fut`'s output if it comes within the grace (counted from now, or from the stop).
    pub async fn within_grace<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = fut => Some(out),
            () = self.expired() => None,
            () = tokio::time::sleep(self.grace) => None,
        }
    }

    /// The error of a `part` that did not return within the grace.
    pub fn timed_out(&self, part: &'static str) -> PipelineError {
        PipelineError::StopTimedOut {
            part,
            grace: self.grace,
        }
    }
}

/// Why a run (or one side of it) failed. Whatever was committed before the failure stays committed,
/// with its state.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The source failed.
    #[error("extraction failed: {0}")]
    Source(#[source] SourceError),
    /// Loading failed.
    #[error("{0}")]
    Load(#[source] LoadError),
    /// The destination could not be opened or its committed state read.
    #[error("{0}")]
    Destination(#[source] DestinationError),
    /// A part of the run panicked (a bug); the run ended instead of hanging.
    #[error(
        "the {part} panicked: {message}; this is a bug in seam, please report it (work committed before it is kept)"
    )]
    Panicked {
        /// What panicked: [`PART_SOURCE`] or [`PART_LOADER`].
        part: &'static str,
        /// The panic's message.
        message: String,
    },
    /// After a stop, a part of the run did not return within the grace and was abandoned.
    #[error(
        "the {part} did not stop within {} s of the stop; seam abandoned it: what was not committed \
         is read again by the next run",
        grace.as_secs_f64()
    )]
    StopTimedOut {
        /// What was abandoned: [`PART_SOURCE`] or [`PART_WAREHOUSE`].
        part: &'static str,
        /// The grace it had.
        grace: Duration,
    },
    /// A warehouse call went unanswered past the limit ([`PipelineConfig::warehouse_call_limit`]):
    /// the run gave up on it and interrupted it (see [`Destination::interrupter`]).
    #[error(
        "the warehouse did not answer for {} s (a server that stopped answering: check that it runs \
         and that its disk answers); seam gave up on the call: what was not committed is read again \
         by the next run",
        limit.as_secs_f64()
    )]
    WarehouseUnanswered {
        /// How long the call had.
        limit: Duration,
    },
    /// A task of the run ended without a result (cancelled from outside).
    #[error("the {0} task was cancelled")]
    Cancelled(&'static str),
}

impl PipelineError {
    /// True for the errors that only mean "the stop cut this short" (an abandoned part, a
    /// commit-retry wait ended by the stop).
    pub fn is_stop(&self) -> bool {
        matches!(
            self,
            PipelineError::StopTimedOut { .. } | PipelineError::Load(LoadError::Stopped { .. })
        )
    }
}

impl Classify for PipelineError {
    fn kind(&self) -> ErrorKind {
        match self {
            PipelineError::Source(e) => e.kind(),
            PipelineError::Destination(e) => e.kind(),
            PipelineError::Load(
                LoadError::Destination { source, .. } | LoadError::Stopped { source, .. },
            ) => source.kind(),
            PipelineError::Load(_) => ErrorKind::Schema,
            PipelineError::WarehouseUnanswered { .. } => ErrorKind::Transient,
            PipelineError::Panicked { .. }
            | PipelineError::StopTimedOut { .. }
            | PipelineError::Cancelled(_) => ErrorKind::Internal,
        }
    }
}

/// The text of a panic's payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// A task of `part` that did not return: a panic becomes [`PipelineError::Panicked`] with its message.
fn join_error(part: &'static str, e: tokio::task::JoinError) -> PipelineError {
    if e.is_panic() {
        PipelineError::Panicked {
            part,
            message: panic_message(e.into_panic().as_ref()),
        }
    } else {
        PipelineError::Cancelled(part)
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct PipelineReport {
    /// What the source read.
    pub read: ReadSummary,
    /// What the loader committed.
    pub load: LoadSummary,
    /// The state the run started from.
    pub started_from: State,
}

/// How each side of a run ended.
#[derive(Debug)]
pub struct PipelineRun {
    /// The state the run started from; `None` when the destination could not be opened or read.
    pub started_from: Option<State>,
    /// How the source ended; `None` when it was not started, or was abandoned without being waited
    /// for (the warehouse did not return within the stop's grace).
    pub read: Option<Result<ReadSummary, PipelineError>>,
    /// How loading ended: everything committed, or the first failure.
    pub load: Result<LoadSummary, PipelineError>,
}

impl PipelineRun {
    /// The run as one result: the loading failure first (it explains a source that stopped because
    /// its consumer went away), then the source's.
    pub fn into_result(self) -> Result<PipelineReport, PipelineError> {
        let load = self.load?;
        match self.read {
            Some(Ok(read)) => Ok(PipelineReport {
                read,
                load,
                started_from: self.started_from.unwrap_or_default(),
            }),
            Some(Err(e)) => Err(e),
            None => Err(PipelineError::Cancelled(PART_SOURCE)),
        }
    }
}

/// What a caller does at the run's milestones (a job's bookkeeping; nothing for `seam sync`). The
/// hooks run on the driver's task, between warehouse calls: while one runs, nothing is loaded.
#[async_trait]
pub trait PipelineHooks: Send {
    /// The destination is open and the run starts from `state`; `reset`: the empty state was just
    /// committed ([`PipelineConfig::reset_state`]).
    async fn started(&mut self, state: &State, reset: bool) {
        let _ = (state, reset);
    }

    /// A commit succeeded: its rows and the STATE made durable with them. Called once per commit,
    /// in order, after [`Progress`] counted it.
    async fn committed(&mut self, commit: Commit<'_>) {
        let _ = commit;
    }
}

/// No hooks.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl PipelineHooks for NoHooks {}

/// The append-only streams of a catalog (selected streams with [`APPEND_ONLY_METADATA`]).
pub fn append_only_streams(catalog: &Catalog) -> std::collections::HashSet<String> {
    catalog
        .selected()
        .filter(|e| {
            e.stream_metadata(APPEND_ONLY_METADATA)
                .and_then(serde_json::Value::as_bool)
                == Some(true)
        })
        .map(|e| e.stream.clone())
        .collect()
}

/// Runs `source` into the destination `open_destination` returns (called on the run's warehouse
/// thread),
/// resuming from the destination's committed state (or from empty state with
/// [`PipelineConfig::reset_state`]). Returns when the source is done and everything is committed,
/// at the first failure (committed work kept), or once the grace after a stop ran out. Cancelling
/// `stop`'s token stops the source at its next safe point; what it sent before is still loaded. See
/// the module docs for what cannot wedge a run.
pub async fn run<F>(
    source: Arc<dyn Source>,
    catalog: Catalog,
    open_destination: F,
    hooks: &mut (dyn PipelineHooks + '_),
    progress: &Progress,
    stop: &Stop,
    config: &PipelineConfig,
) -> PipelineRun
where
    F: FnOnce() -> Result<Box<dyn Destination>, DestinationError> + Send + 'static,
{
    let feed = SourceFeed { source, catalog };
    run_feed(feed, open_destination, hooks, progress, stop, config).await
}

/// [`run`] with what `feed` sends (a source, or Singer lines for `seam target`): the same driver,
/// loader, stop and bounds on warehouse calls. `feed` is started with the state the run resumes
/// from; what it read is the run's [`PipelineRun::read`].
pub async fn run_feed<D, F>(
    feed: D,
    open_destination: F,
    hooks: &mut (dyn PipelineHooks + '_),
    progress: &Progress,
    stop: &Stop,
    config: &PipelineConfig,
) -> PipelineRun
where
    D: Feed,
    F: FnOnce() -> Result<Box<dyn Destination>, DestinationError> + Send + 'static,
{
    let mut run = PipelineRun {
        started_from: None,
        read: None,
        load: Ok(LoadSummary::default()),
    };
    // A stop also ends a commit-retry wait (the batch is then not committed; its records are read
    // again from the last committed state next time).
    let loader = Loader::new(config.loader.clone()).stop_on(stop.token().clone());
    let opened = stop
        .bounded(
            PART_WAREHOUSE,
            Hops::open(
                open_destination,
                loader,
                progress.clone(),
                config.warehouse_call_limit,
            ),
        )
        .await;
    let mut hops = match opened {
        Ok(hops) => hops,
        Err(e) => {
            run.load = Err(e);
            return run;
        }
    };
    let reset = config.reset_state;
    let start = if reset {
        stop.bounded(
            PART_WAREHOUSE,
            hops.call(|d| d.commit(Some(&State::default())).map(|_| State::default())),
        )
        .await
    } else {
        stop.bounded(
            PART_WAREHOUSE,
            hops.call(|d| d.committed_state().map(Option::unwrap_or_default)),
        )
        .await
    };
    let state = match start {
        Ok(state) => state,
        Err(e) => {
            run.load = Err(e);
            return run;
        }
    };
    hooks.started(&state, reset).await;
    run.started_from = Some(state.clone());
    progress.set_phase(Phase::Extraction);

    // The source's own token: stopped with the run, and also when loading fails.
    let read_cancel = stop.token().child_token();
    let Started {
        items: mut rx,
        done,
        mut rest,
    } = feed.start(state, read_cancel.clone(), config.channel_capacity.max(1));
    let reader = AbortOnDropHandle::new(done);

    let loaded: Result<LoadSummary, PipelineError> = async {
        let mut chunk: Vec<D::Item> = Vec::with_capacity(HOP_MESSAGES);
        loop {
            // After a stop the source gets the grace to return at a safe point; what it sends
            // meanwhile is still loaded. A source that keeps sending is abandoned all the same (what
            // a source that did return sent before is loaded).
            if stop.has_expired() && !rx.is_closed() {
                return Err(stop.timed_out(PART_SOURCE));
            }
            let first = tokio::select! {
                biased;
                m = rx.recv() => m,
                // A feed of whole lines that waits for input with all it read sent: its reading
                // ends here, and what it sent is loaded (an input that stays silent would otherwise
                // hold the run until the grace ran out, with what was read left uncommitted).
                () = rests_after(stop, &mut rest) => rx.try_recv().ok(),
                () = stop.expired() => return Err(stop.timed_out(PART_SOURCE)),
            };
            let Some(first) = first else { break };
            chunk.push(first);
            while chunk.len() < HOP_MESSAGES {
                match rx.try_recv() {
                    Ok(m) => chunk.push(m),
                    Err(_) => break,
                }
            }
            let messages = std::mem::replace(&mut chunk, Vec::with_capacity(HOP_MESSAGES));
            progress.set_warehouse_call(true);
            let pushed = stop.bounded(PART_WAREHOUSE, hops.push(messages)).await;
            progress.set_warehouse_call(false);
            announced(pushed, hooks, progress).await?;
        }
        progress.set_warehouse_call(true);
        let finished = stop.bounded(PART_WAREHOUSE, hops.finish()).await;
        progress.set_warehouse_call(false);
        announced(finished, hooks, progress).await
    }
    .await;
    // The source has returned (its channel closed), or must stop now: closing the channel makes it
    // stop at its next send, the token at its next wait. It gets the grace to do so, then is aborted
    // (the abort-on-drop handle, when this function returns).
    read_cancel.cancel();
    drop(rx);
    if !matches!(
        loaded,
        Err(PipelineError::StopTimedOut {
            part: PART_WAREHOUSE,
            ..
        })
    ) {
        run.read = Some(match stop.within_grace(reader).await {
            Some(Ok(Ok(summary))) => Ok(summary),
            Some(Ok(Err(e))) => Err(PipelineError::Source(e)),
            Some(Err(e)) => Err(join_error(PART_SOURCE, e)),
            None => Err(stop.timed_out(PART_SOURCE)),
        });
    }
    // Let go of the warehouse before the run is reported ended: closing DuckDB checkpoints and
    // removes its WAL, and a reader that opens the file meanwhile fails. Not waited for past a stop's
    // grace (the close then finishes on its own), nor for a destination an abandoned hop still holds.
    if stop.bounded(PART_WAREHOUSE, hops.close()).await.is_err() {
        tracing::warn!("the warehouse connection was still closing when the run ended");
    }
    progress.set_phase(Phase::Finishing);
    run.load = loaded;
    run
}

/// Resolves once the run is stopped while its feed rests ([`Started::rest`]); never for a feed
/// without rests (a source, which the stop's grace waits for).
async fn rests_after(stop: &Stop, rest: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match rest {
        Some(rest) => rests_once_stopped(stop.token(), rest).await,
        None => std::future::pending().await,
    }
}

/// Counts what a hop committed and hands it to the hooks.
async fn announce(commits: &[Committed], hooks: &mut (dyn PipelineHooks + '_), progress: &Progress) {
    for (report, state) in commits {
        progress.committed(report.total_rows());
        hooks
            .committed(Commit {
                report,
                state: state.as_ref(),
            })
            .await;
    }
}

/// What one commit made durable: its report and the STATE committed with it.
type Committed = (CommitReport, Option<Value>);

/// A hop to the loader: what it returned, and the commits it made before it returned, which are
/// durable (and announced) even when it then failed.
struct Hopped<R> {
    result: Result<R, PipelineError>,
    commits: Vec<Committed>,
}

impl<R> Hopped<R> {
    /// The same, its result's value dropped.
    fn unit(self) -> Hopped<()> {
        Hopped {
            result: self.result.map(|_| ()),
            commits: self.commits,
        }
    }
}

/// A hop that did not come back: no commit of its is known.
impl<R> From<PipelineError> for Hopped<R> {
    fn from(e: PipelineError) -> Self {
        Hopped {
            result: Err(e),
            commits: Vec::new(),
        }
    }
}

/// Announces a hop's commits (see [`announce`]), then gives its result.
async fn announced<R>(
    hopped: Result<Hopped<R>, Hopped<R>>,
    hooks: &mut (dyn PipelineHooks + '_),
    progress: &Progress,
) -> Result<R, PipelineError> {
    let hopped = hopped.unwrap_or_else(|failed| failed);
    announce(&hopped.commits, hooks, progress).await;
    hopped.result
}

/// The destination and the loader, moving to the run's warehouse thread for each call and back. A hop the
/// run stopped waiting for keeps them on its thread, which drops them when the call returns (the
/// uncommitted batch with them); later calls then say the destination is gone.
struct Hops {
    /// Where the calls run.
    thread: WarehouseThread,
    dest: Option<Box<dyn Destination>>,
    loader: Option<Loader>,
    /// Counts the messages handed to the loader.
    progress: Progress,
    /// The messages handed to the loader so far.
    line: u64,
    /// Ends the destination's call under way (see [`Interrupt`]).
    interrupter: Option<Arc<dyn Interrupt>>,
    /// True from the start of a call on the warehouse thread until it came back: still true when the
    /// run stopped waiting for it.
    in_flight: bool,
    /// How long a call may go unanswered ([`PipelineConfig::warehouse_call_limit`]).
    limit: Duration,
}

/// The destination is closed on the warehouse thread: closing blocks (DuckDB may checkpoint, the
/// PostgreSQL client says goodbye to the server), and the blocking PostgreSQL client panics when
/// dropped on an async worker ("Cannot start a runtime from within a runtime").
///
/// A call the run stopped waiting for (a stop's grace ran out, or the call went unanswered past its
/// limit) is interrupted as the run ends: a commit waiting on a lock in the warehouse then fails and
/// lets go of what it held, rather than going on there after the run was reported stopped; its
/// batch was never committed and is read again by the next run.
impl Drop for Hops {
    fn drop(&mut self) {
        if self.in_flight {
            if let Some(interrupter) = &self.interrupter {
                tracing::info!("interrupting the warehouse call the stopped run left under way");
                interrupter.interrupt();
            }
        }
        let Some(dest) = self.dest.take() else {
            return;
        };
        // Not waited for: the thread drops it after any call still under way, then ends. Should
        // the thread be gone, the blocking pool drops it.
        let job: Job = Box::new(move || drop(dest));
        if let Err(std::sync::mpsc::SendError(job)) = self.thread.jobs.send(job) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(job)),
                Err(_) => job(),
            }
        }
    }
}

/// A job for the [`WarehouseThread`].
type Job = Box<dyn FnOnce() + Send>;

/// The one thread a run's warehouse calls run on, in turn. Not the blocking pool, where each call
/// may land on another thread: DuckDB keeps memory per thread (its allocator's caches), and a
/// 20k-ticket `seam sync` into DuckDB peaked at 277 MB with its calls spread over the pool against
/// 227 MB with them on one thread (median of four interleaved pairs each, 0.97× the CPU). The
/// thread ends once the run let go of it ([`Hops`] dropped) and the calls sent to it returned; a
/// call the run stopped waiting for keeps it until the call returns.
struct WarehouseThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl WarehouseThread {
    fn start() -> Result<WarehouseThread, PipelineError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("seam-warehouse".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })
            .map_err(|e| {
                PipelineError::Destination(DestinationError::new(
                    ErrorKind::Transient,
                    format!("cannot start the thread warehouse calls run on: {e}"),
                ))
            })?;
        Ok(WarehouseThread { jobs })
    }

    /// Runs `f` on the thread; its output, or [`PipelineError::Panicked`] with the panic's message.
    /// Dropping the future leaves `f` to run or finish there on its own.
    fn run<T, F>(&self, f: F) -> impl Future<Output = Result<T, PipelineError>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = std::sync::mpsc::sync_channel(1);
        let sent = self.jobs.send(Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        }));
        async move {
            sent.map_err(|_| destination_lost())?;
            // Waited for on the blocking pool, so that the runtime counts the call as work under
            // way: a paused clock (the service's tests) does not jump past a call that runs.
            match tokio::task::spawn_blocking(move || result.recv()).await {
                Ok(Ok(Ok(out))) => Ok(out),
                Ok(Ok(Err(payload))) => Err(PipelineError::Panicked {
                    part: PART_LOADER,
                    message: panic_message(payload.as_ref()),
                }),
                Ok(Err(_)) => Err(destination_lost()),
                Err(e) => Err(join_error(PART_LOADER, e)),
            }
        }
    }
}

/// `call`'s output, unless it has not come after `limit`: then [`PipelineError::WarehouseUnanswered`]
/// (the call goes on on its thread, and is interrupted as the run ends: see [`Hops`]).
async fn answered_within<T>(limit: Duration, call: impl Future<Output = T>) -> Result<T, PipelineError> {
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| PipelineError::WarehouseUnanswered { limit })
}

/// What a hop returns when an earlier hop was abandoned.
fn destination_lost() -> PipelineError {
    PipelineError::Cancelled(PART_WAREHOUSE)
}

impl Hops {
    async fn open<F>(
        open: F,
        loader: Loader,
        progress: Progress,
        limit: Duration,
    ) -> Result<Hops, PipelineError>
    where
        F: FnOnce() -> Result<Box<dyn Destination>, DestinationError> + Send + 'static,
    {
        let thread = WarehouseThread::start()?;
        let dest = answered_within(limit, thread.run(open))
            .await??
            .map_err(PipelineError::Destination)?;
        Ok(Hops {
            thread,
            interrupter: dest.interrupter(),
            dest: Some(dest),
            loader: Some(loader),
            progress,
            line: 0,
            in_flight: false,
            limit,
        })
    }

    /// Runs `f` with the destination on the warehouse thread.
    async fn call<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut dyn Destination) -> Result<R, DestinationError> + Send + 'static,
    ) -> Result<R, PipelineError> {
        let mut dest = self.dest.take().ok_or_else(destination_lost)?;
        self.in_flight = true;
        let joined = answered_within(
            self.limit,
            self.thread.run(move || {
                let r = f(dest.as_mut());
                (dest, r)
            }),
        )
        .await?;
        self.in_flight = false;
        let (dest, result) = joined?;
        self.dest = Some(dest);
        result.map_err(PipelineError::Destination)
    }

    /// Closes the destination on the warehouse thread and waits for it (dropping the future leaves the
    /// close to finish there on its own).
    async fn close(&mut self) -> Result<(), PipelineError> {
        let Some(dest) = self.dest.take() else {
            return Ok(());
        };
        self.in_flight = true;
        let joined = answered_within(self.limit, self.thread.run(move || drop(dest))).await?;
        self.in_flight = false;
        joined
    }

    /// Hands `items`' messages to the loader, counted in the run's progress as they are handed.
    async fn push<T: FeedItem>(&mut self, items: Vec<T>) -> Result<Hopped<()>, Hopped<()>> {
        let mut ordinal = self.line;
        let progress = self.progress.clone();
        let hopped = self
            .hop(move |loader, dest, on_commit| {
                // A few hundred messages at a time (an item of a feed of lines holds a chunk of
                // them), counted with one lock.
                let mut messages = Vec::new();
                let mut items = items.into_iter().peekable();
                let pushed = std::iter::from_fn(|| items.next().map(|item| (item, items.peek().is_none())))
                    .try_for_each(|(item, last)| {
                        let failed = item.into_messages(&mut ordinal, &mut messages);
                        if failed.is_some() || last || messages.len() >= PUSHED_AT_ONCE {
                            progress.received(&messages);
                            messages.drain(..).try_for_each(|(line, m)| {
                                loader.push(&mut *dest, line, m, &mut *on_commit)
                            })?;
                        }
                        failed.map_or(Ok(()), Err)
                    });
                if pushed.is_err() {
                    loader.abort(dest);
                }
                pushed.map(|()| ordinal)
            })
            .await;
        if let Ok(Hopped {
            result: Ok(ordinal), ..
        }) = &hopped
        {
            self.line = *ordinal;
        }
        hopped.map(Hopped::unit).map_err(Hopped::unit)
    }

    /// Commits what is staged after the source ended; returns the run's totals.
    async fn finish(&mut self) -> Result<Hopped<LoadSummary>, Hopped<LoadSummary>> {
        self.hop(|loader, dest, on_commit| loader.finish(dest, on_commit))
            .await
    }

    async fn hop<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(
                &mut Loader,
                &mut dyn Destination,
                &mut dyn FnMut(Commit<'_>) -> std::io::Result<()>,
            ) -> Result<R, LoadError>
            + Send
            + 'static,
    ) -> Result<Hopped<R>, Hopped<R>> {
        let mut dest = self.dest.take().ok_or_else(destination_lost)?;
        let mut loader = self.loader.take().ok_or_else(destination_lost)?;
        self.in_flight = true;
        let joined = answered_within(
            self.limit,
            self.thread.run(move || {
                let mut commits: Vec<Committed> = Vec::new();
                let mut on_commit = |c: Commit<'_>| {
                    commits.push((c.report.clone(), c.state.cloned()));
                    Ok(())
                };
                let result = f(&mut loader, dest.as_mut(), &mut on_commit);
                (dest, loader, result, commits)
            }),
        )
        .await?;
        self.in_flight = false;
        let (dest, loader, result, commits) = joined?;
        self.dest = Some(dest);
        self.loader = Some(loader);
        Ok(Hopped {
            result: result.map_err(PipelineError::Load),
            commits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam_core::RecordMessage;

    fn record(stream: &str) -> Message {
        Message::Record(RecordMessage::from_value(stream, &serde_json::json!({"id": 1})).expect("record"))
    }

    #[test]
    fn progress_counts_records_and_commits() {
        let p = Progress::default();
        p.received(&[
            (1, record("tickets")),
            (
                2,
                Message::State {
                    value: serde_json::json!({}),
                },
            ),
            (3, record("tickets")),
            (4, record("users")),
        ]);
        p.received(&[]);
        p.committed(5);
        let s = p.snapshot();
        assert_eq!(s.records["tickets"], 2);
        assert_eq!(s.records_total, 3);
        assert_eq!(s.current_stream.as_deref(), Some("users"));
        assert_eq!((s.rows_committed, s.commits), (5, 1));
        assert_eq!(s.phase, Phase::Discovery);
        p.set_phase(Phase::Extraction);
        p.set_stopping();
        let s = p.snapshot();
        assert!(s.stopping && s.phase == Phase::Extraction);
    }
}
