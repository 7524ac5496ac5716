//! The `Source` trait: what every connector (Zendesk first) implements.

use crate::catalog::Catalog;
use crate::error::{Classify, ErrorKind};
use crate::singer::Message;
use crate::state::State;
use async_trait::async_trait;
use std::collections::BTreeMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Any error type a connector wraps in a [`SourceError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A source failed. Carries the kind (which drives retries and what the user is told) and, when the
/// failure belongs to one stream, that stream's name.
///
/// It displays as the cause's message (prefixed with the stream); [`std::error::Error::source`] skips
/// to the cause's own cause, so a report that walks the chain says each thing once.
#[derive(Debug)]
pub struct SourceError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The stream it concerns, if one.
    pub stream: Option<String>,
    /// The cause, with the message the user reads.
    pub source: BoxError,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.stream {
            write!(f, "stream {s}: ")?;
        }
        write!(f, "{}", self.source)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

impl SourceError {
    /// Wraps a cause.
    pub fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        SourceError {
            kind,
            stream: None,
            source: source.into(),
        }
    }

    /// Names the stream the error belongs to.
    pub fn in_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// The output channel closed: the consumer stopped (it failed or was cancelled).
    pub fn consumer_gone() -> Self {
        SourceError::new(ErrorKind::Internal, "the consumer of the source's output stopped")
    }
}

impl Classify for SourceError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// What a read did, per stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadSummary {
    /// Records emitted per stream.
    pub records: BTreeMap<String, u64>,
    /// Streams skipped with a warning (e.g. plan-gated 403), with the reason.
    pub skipped: BTreeMap<String, String>,
    /// HTTP requests made.
    pub requests: u64,
}

/// A source of Singer messages.
///
/// `read` is the run loop:
///
/// ```text
/// for each selected stream (possibly several at once, within the API budget):
///     send SCHEMA(stream)                       // before the stream's first RECORD
///     for each page from the bookmark on:
///         send RECORD(stream, r) for r in page  // awaits when the channel is full: backpressure
///         send STATE(bookmarks)                 // only once every record it covers was sent
/// ```
///
/// Contract:
/// - a `SCHEMA` for a stream precedes its first `RECORD`;
/// - a `STATE` is sent only when every record of every stream it covers has been sent before it, so a
///   consumer that makes the records before a STATE durable may persist that STATE;
/// - bookmarks in successive STATEs never move backwards;
/// - records are pushed into the bounded `out` channel as they arrive, never collected per stream, so
///   memory stays flat whatever the account's size;
/// - when `cancel` fires, `read` stops promptly (every wait — a request, a rate limit, a backoff, a
///   full output channel — races the token) and returns `Ok` with what it did;
/// - a stream the account cannot read (plan-gated) is skipped with a warning, the others go on;
///   fatal errors (auth, config) end the read with an error;
/// - a full-table stream (its records carry a table `version`) sends `ACTIVATE_VERSION` only once
///   the version is complete, after its last record, right after a `STATE` that sets
///   `bookmarks.<stream>.version` ([`crate::state::VERSION_BOOKMARK`]) to it, so a consumer that
///   commits at the activation makes both durable together. Only a stream that never completed a
///   version (no such bookmark: a first sync) also activates before its first record, so its rows
///   show at once. A stream that is skipped, fails or is cancelled sends no `ACTIVATE_VERSION`: the
///   destination keeps the last complete version, with the new version's records upserted over it.
#[async_trait]
pub trait Source: Send + Sync {
    /// One cheap request that proves the configuration and credentials work; a clear error otherwise.
    async fn check(&self) -> Result<(), SourceError>;

    /// The streams the account offers, with schemas, keys and replication metadata.
    async fn discover(&self) -> Result<Catalog, SourceError>;

    /// Where the source may send lines for the job's extraction log (a Singer tap's stderr), as it
    /// runs. A source drops lines rather than wait when `sink` is full. Default: the source has no
    /// such lines.
    fn log_to(&self, sink: mpsc::Sender<String>) {
        let _ = sink;
    }

    /// Reads the selected streams of `catalog` from `state` on, sending messages to `out`.
    async fn read(
        &self,
        catalog: &Catalog,
        state: State,
        out: mpsc::Sender<Message>,
        cancel: CancellationToken,
    ) -> Result<ReadSummary, SourceError>;
}
