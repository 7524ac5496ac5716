//! What feeds a pipeline run ([`crate::pipeline::run_feed`]): a [`Source`] (`seam sync`, the
//! service's jobs) or a stream of Singer lines (`seam target` on stdin). Either way the run's
//! driver, its loader, its stop and its bounds on warehouse calls are the same.
//!
//! ```text
//! SourceFeed: source.read(catalog, state) ─► Message ─┐
//!                                                      ├─ bounded channel ─► pipeline driver ─► Loader
//! LinesFeed:  a thread reading lines ─► Lines (chunk) ──┘
//! ```

use crate::loader::{LoadError, Numbered};
use seam_core::catalog::Catalog;
use seam_core::singer::{parse_line, read_line, Message, ReadError, MAX_LINE_BYTES};
use seam_core::{ErrorKind, ReadSummary, Source, SourceError, State};
use std::io::{BufReader, Read};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One item a feed sends to the run's driver: one message or several.
pub trait FeedItem: Send + 'static {
    /// Appends its messages to `out` in order, each with the number its errors name, and returns
    /// the input error that ends it, if it holds one (then the load's error: nothing of the batch
    /// under way is committed). `ordinal` is the number of messages the run received before it,
    /// for a feed that numbers nothing itself (a source: its messages count from 1); it is moved
    /// past them.
    fn into_messages(self, ordinal: &mut u64, out: &mut Vec<Numbered>) -> Option<LoadError>;
}

/// A source's messages are numbered in the order the run receives them.
impl FeedItem for Message {
    fn into_messages(self, ordinal: &mut u64, out: &mut Vec<Numbered>) -> Option<LoadError> {
        *ordinal += 1;
        out.push((*ordinal, self));
        None
    }
}

/// How a feed is read: its items, and a task that returns what the feed read once it is done.
#[derive(Debug)]
pub struct Started<T> {
    /// The items, in order; closed when the feed is done.
    pub items: mpsc::Receiver<T>,
    /// Ends when the feed does: what it read, or why it failed. A panic in the feed is this task's
    /// panic.
    pub done: JoinHandle<Result<ReadSummary, SourceError>>,
    /// For a feed whose every item ends at a safe point (whole Singer lines): true while it waits
    /// for input with everything it read already in `items`. After a stop, a run whose feed rests
    /// may end its reading there, without waiting for input that may never come; `done` then ends
    /// too. `None`: the feed has safe points of its own (a source), and a stop waits for it.
    pub rest: Option<watch::Receiver<bool>>,
}

/// What feeds a run's loader. Started once the run knows the state it resumes from.
pub trait Feed: Send {
    /// What the feed sends.
    type Item: FeedItem;

    /// Starts sending items into a channel of `capacity`, from `state` on. The feed stops at its
    /// next safe point once `cancel` is cancelled (a stop, or loading failed) or the channel's
    /// receiver is gone. Called on the run's async runtime.
    fn start(self, state: State, cancel: CancellationToken, capacity: usize) -> Started<Self::Item>;
}

/// A [`Source`] reading a catalog's selected streams.
pub struct SourceFeed {
    /// The source.
    pub source: Arc<dyn Source>,
    /// What it reads.
    pub catalog: Catalog,
}

impl std::fmt::Debug for SourceFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFeed")
            .field("streams", &self.catalog.selected().count())
            .finish_non_exhaustive()
    }
}

impl Feed for SourceFeed {
    type Item = Message;

    fn start(self, state: State, cancel: CancellationToken, capacity: usize) -> Started<Message> {
        let (tx, items) = mpsc::channel(capacity);
        let SourceFeed { source, catalog } = self;
        let done = tokio::spawn(async move { source.read(&catalog, state, tx, cancel).await });
        Started {
            items,
            done,
            rest: None,
        }
    }
}

/// Bytes of record JSON a [`LinesFeed`] lets wait for the loader by default, besides the batch the
/// loader gathers: a Singer line can hold up to 64 MiB, so a channel bounded by its count of
/// messages alone would hold what the batch's byte limit is there to bound.
pub const LINES_IN_FLIGHT_BYTES: usize = 2 << 20;

/// The lines read go to the driver in chunks of about this many bytes (whole lines), or fewer
/// before a read that may wait for input. They are parsed where they are loaded: parsing them on
/// the reading thread and sending one message at a time cost `seam target duckdb` ~15–20% more CPU
/// on a 20k-ticket Zendesk stream than reading on the loader's own thread (wake-ups, and each
/// record's text allocated on one thread and read and freed on another).
const CHUNK_BYTES: usize = 256 << 10;

/// The buffer lines are read through: with stdin's own 8 KB buffer a tap's output cost one read
/// call per 8 KB.
const READ_BUFFER: usize = 256 << 10;

/// At most how many lines already in the read buffer are read after a stop before it is seen.
const STOP_LOOK_LINES: u32 = 64;

/// Singer messages read from lines (a tap's output on stdin), on a thread of their own: the state
/// a run resumes from is the tap's business, not the feed's. Each message keeps its line's number
/// for the errors that name it; a line that cannot be read or parsed ends the load there, with
/// nothing of the batch under way committed, as the loader's own contract says. What is read goes
/// to the driver in chunks of whole lines, each sent once it is full or before a read that may
/// wait for input, and parsed on the loader's thread.
///
/// What it read ([`Started::done`]) counts nothing: its records are counted as they are parsed, in
/// the run's [`crate::pipeline::Progress`].
///
/// After a stop, the run ends its reading as soon as the thread waits for input with every line it
/// read sent ([`Started::rest`]): what was read is loaded and committed, and a tap that stays silent
/// (waiting on its API) does not hold the run. The reading thread is not joined: a read that blocks
/// keeps it until the input ends or the process exits.
#[derive(Debug)]
pub struct LinesFeed<S> {
    input: BufReader<S>,
    max_line: usize,
    in_flight_bytes: usize,
}

impl<S: Read + Send + 'static> LinesFeed<S> {
    /// Messages read from `input`, at most [`LINES_IN_FLIGHT_BYTES`] of lines waiting at a time,
    /// lines of at most [`MAX_LINE_BYTES`].
    pub fn new(input: S) -> Self {
        LinesFeed {
            input: BufReader::with_capacity(READ_BUFFER, input),
            max_line: MAX_LINE_BYTES,
            in_flight_bytes: LINES_IN_FLIGHT_BYTES,
        }
    }

    /// The same, refusing lines of more than `max` bytes (their newline aside).
    pub fn max_line_bytes(mut self, max: usize) -> Self {
        self.max_line = max;
        self
    }

    /// The same, at most `bytes` of lines waiting (a larger chunk waits alone).
    pub fn in_flight_bytes(mut self, bytes: usize) -> Self {
        self.in_flight_bytes = bytes.max(1);
        self
    }
}

/// Consecutive lines of the input, and the error that ended it after them, if one did; holds its
/// share of the feed's byte budget until the loader takes it.
#[derive(Debug)]
pub struct Lines {
    text: Vec<u8>,
    /// The number of the line before the first.
    before: u64,
    error: Option<ReadError>,
    _budget: OwnedSemaphorePermit,
}

impl FeedItem for Lines {
    fn into_messages(self, _ordinal: &mut u64, out: &mut Vec<Numbered>) -> Option<LoadError> {
        let Lines {
            text,
            mut before,
            error,
            _budget,
        } = self;
        let mut rest = &text[..];
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |at| at + 1);
            let (line, after) = rest.split_at(end);
            rest = after;
            before += 1;
            match parse_line(line, before) {
                Some(Ok(message)) => out.push(message),
                Some(Err(e)) => return Some(LoadError::Input(Box::new(e))),
                None => {}
            }
        }
        error.map(|e| LoadError::Input(Box::new(e)))
    }
}

impl<S: Read + Send + 'static> Feed for LinesFeed<S> {
    type Item = Lines;

    fn start(self, _state: State, cancel: CancellationToken, capacity: usize) -> Started<Lines> {
        let (tx, items) = mpsc::channel(capacity);
        let (sent, summary) = oneshot::channel();
        let (resting, rest) = watch::channel(false);
        let LinesFeed {
            mut input,
            max_line,
            in_flight_bytes,
        } = self;
        let size = in_flight_bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let budget = Budget {
            permits: Arc::new(Semaphore::new(size)),
            size: u32::try_from(size).unwrap_or(u32::MAX),
        };
        let done_cancel = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("seam-lines".into())
            .spawn(move || {
                // Records are counted where lines are parsed (the run's progress), not here.
                let read = panic::catch_unwind(AssertUnwindSafe(|| {
                    read_lines(&mut input, max_line, &tx, &cancel, &budget, &resting);
                    ReadSummary::default()
                }));
                // A panic inside a read is not a rest: it is what the feed ends with.
                resting.send_replace(false);
                let _ = sent.send(read);
            });
        let mut resting = rest.clone();
        let done = tokio::spawn(async move {
            if let Err(e) = spawned {
                return Err(SourceError::new(
                    ErrorKind::Internal,
                    format!("cannot start the thread that reads the input: {e}"),
                ));
            }
            let read = tokio::select! {
                biased;
                read = summary => read,
                // Stopped while waiting for input with everything read sent: done, the thread
                // left to its read.
                () = rests_once_stopped(&done_cancel, &mut resting) => return Ok(ReadSummary::default()),
            };
            match read {
                Ok(Ok(summary)) => Ok(summary),
                Ok(Err(payload)) => panic::resume_unwind(payload),
                Err(_) => Err(SourceError::new(
                    ErrorKind::Internal,
                    "the thread reading the input ended without a result",
                )),
            }
        });
        Started {
            items,
            done,
            rest: Some(rest),
        }
    }
}

/// Resolves once `cancel` is cancelled while the feed rests (see [`Started::rest`]); never once the
/// feed's thread is gone (its items then end, and with them the run's reading).
pub async fn rests_once_stopped(cancel: &CancellationToken, rest: &mut watch::Receiver<bool>) {
    cancel.cancelled().await;
    if rest.wait_for(|&resting| resting).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The bytes of record JSON a [`LinesFeed`] lets wait.
struct Budget {
    permits: Arc<Semaphore>,
    /// The permits it was made with: what one chunk takes at most.
    size: u32,
}

impl Budget {
    /// `bytes` of it (all of it, at most), once they are free; `None` when the run ends first.
    fn take(
        &self,
        bytes: usize,
        tx: &mpsc::Sender<Lines>,
        cancel: &CancellationToken,
    ) -> Option<OwnedSemaphorePermit> {
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.size);
        if let Ok(permit) = self.permits.clone().try_acquire_many_owned(permits) {
            return Some(permit);
        }
        // Wait for the loader to take what is waiting, or for the run to end.
        futures::executor::block_on(async {
            tokio::select! {
                permit = self.permits.clone().acquire_many_owned(permits) => permit.ok(),
                () = cancel.cancelled() => None,
                () = tx.closed() => None,
            }
        })
    }
}

/// Reads `input` into `tx`, a chunk of whole lines at a time, until the input ends, a line cannot
/// be read (sent after the lines before it, then the end), `cancel` is cancelled (what was read is
/// sent if the budget has room for it) or the receiver is gone. `resting` is true while a read
/// that may wait for input runs with every line read before it sent.
fn read_lines<S: Read>(
    input: &mut BufReader<S>,
    max_line: usize,
    tx: &mpsc::Sender<Lines>,
    cancel: &CancellationToken,
    budget: &Budget,
    resting: &watch::Sender<bool>,
) {
    let mut line = 0;
    let mut sent = 0;
    let mut text = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
    let mut error = None;
    let mut unlooked = 0;
    loop {
        // What was read goes before a read that may wait for input: when the buffer holds no whole
        // line, reading the next one reads the input (a tap may stop halfway through a line).
        let waits = memchr::memchr(b'\n', input.buffer()).is_none();
        // The stop is looked at before a read that may wait and every few lines read from the
        // buffer: the token takes a lock each time (~1% of `seam target postgres` looked at every line).
        if waits || unlooked == STOP_LOOK_LINES {
            if cancel.is_cancelled() {
                break;
            }
            unlooked = 0;
        }
        unlooked += 1;
        if !text.is_empty() && (text.len() >= CHUNK_BYTES || waits) {
            if !send(&mut text, sent, None, tx, cancel, budget) {
                return;
            }
            sent = line;
        }
        let start = text.len();
        // Only when the buffer holds no whole line: set once per buffer's worth of input, not once
        // a line.
        let rests = waits && text.is_empty();
        if rests {
            resting.send_replace(true);
        }
        let read = read_line(input, &mut text, max_line);
        if rests {
            resting.send_replace(false);
        }
        match read {
            Ok(0) => break,
            Ok(_) => line += 1,
            Err(source) => {
                // What was read of the line is not a line: the error goes in its place.
                text.truncate(start);
                error = Some(ReadError::Io {
                    line: line + 1,
                    source,
                });
                break;
            }
        }
    }
    if !text.is_empty() || error.is_some() {
        send(&mut text, sent, error, tx, cancel, budget);
    }
}

/// Sends `text` (its lines following line number `before`, then `error`) once its bytes are free
/// in the budget; false when the run ended first.
fn send(
    text: &mut Vec<u8>,
    before: u64,
    error: Option<ReadError>,
    tx: &mpsc::Sender<Lines>,
    cancel: &CancellationToken,
    budget: &Budget,
) -> bool {
    let Some(permit) = budget.take(text.len(), tx, cancel) else {
        return false;
    };
    let lines = Lines {
        text: std::mem::replace(text, Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4)),
        before,
        error,
        _budget: permit,
    };
    tx.blocking_send(lines).is_ok()
}
