//! The pipeline: one source feeding one destination, exactly once.
//!
//! ```text
//! destination.committed_state() ──► source.read(catalog, state) ──bounded mpsc──► loader (blocking thread)
//!                                                                                   │ write_batch / commit(rows + STATE)
//!                                                                                   ▼
//!                                                                     on_commit(report, state)
//! ```
//!
//! The state a sync resumes from is the one the destination committed together with the rows it
//! covers, so a crash at any point — before, during or after a commit — neither loses nor duplicates
//! a row: records after the last committed STATE are read again and upserted over themselves.
//!
//! Backpressure: the channel holds at most [`PipelineConfig::channel_capacity`] messages; when the
//! warehouse is slower than the API the source waits, so memory stays flat whatever the account size.

use crate::loader::{self, Commit, LoadError, LoadSummary, LoaderConfig};
use seam_core::catalog::Catalog;
use seam_core::singer::Message;
use seam_core::{
    Classify, Destination, DestinationError, ErrorKind, ReadSummary, Source, SourceError, State,
};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Stream-level catalog metadata: `true` when the stream's rows are appended, never upserted
/// (Stitch's "Append-Only Incremental", e.g. Zendesk's `ticket_audits`).
pub const APPEND_ONLY_METADATA: &str = "seam-append-only";

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
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            channel_capacity: 2_000,
            loader: LoaderConfig::default(),
            reset_state: false,
        }
    }
}

/// Live counters of a run, shared with whoever shows progress. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    inner: Arc<Mutex<ProgressSnapshot>>,
}

/// What a run has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressSnapshot {
    /// Records received from the source, per stream.
    pub records: BTreeMap<String, u64>,
    /// The stream of the latest record.
    pub current_stream: Option<String>,
    /// Rows committed to the warehouse (subtables counted).
    pub rows_committed: u64,
    /// Commits made.
    pub commits: u64,
}

impl Progress {
    /// A copy of the counters.
    pub fn snapshot(&self) -> ProgressSnapshot {
        self.inner.lock().map(|g| g.clone()).unwrap_or_default()
    }

    fn record(&self, stream: &str) {
        if let Ok(mut g) = self.inner.lock() {
            if g.current_stream.as_deref() != Some(stream) {
                g.current_stream = Some(stream.to_owned());
            }
            match g.records.get_mut(stream) {
                Some(n) => *n += 1,
                None => {
                    g.records.insert(stream.to_owned(), 1);
                }
            }
        }
    }

    fn committed(&self, rows: u64) {
        if let Ok(mut g) = self.inner.lock() {
            g.rows_committed += rows;
            g.commits += 1;
        }
    }
}

/// Why a run failed. Whatever was committed before the failure stays committed, with its state.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The source failed.
    #[error("extraction failed: {0}")]
    Source(#[source] SourceError),
    /// Loading failed.
    #[error("{0}")]
    Load(#[source] LoadError),
    /// The destination could not be opened or read.
    #[error("{0}")]
    Destination(#[source] DestinationError),
    /// A task of the pipeline died.
    #[error("a pipeline task stopped unexpectedly: {0}")]
    Task(String),
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
            PipelineError::Task(_) => ErrorKind::Internal,
        }
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

/// Runs `source` into the destination `open_destination` returns (called on the loader's blocking
/// thread), resuming from the destination's committed state. `on_commit` runs on the loader thread
/// after every successful commit. Returns when the source is done and everything is committed, or at
/// the first failure (committed work kept). Cancelling `cancel` stops the source at its next safe
/// point; what it sent before is still loaded.
pub async fn run<F>(
    source: Arc<dyn Source>,
    catalog: Catalog,
    open_destination: F,
    mut on_commit: Box<dyn FnMut(Commit<'_>) -> io::Result<()> + Send>,
    progress: Progress,
    cancel: CancellationToken,
    config: PipelineConfig,
) -> Result<PipelineReport, PipelineError>
where
    F: FnOnce() -> Result<Box<dyn Destination>, DestinationError> + Send + 'static,
{
    let (state_tx, state_rx) = tokio::sync::oneshot::channel::<State>();
    let (tx, rx) = mpsc::channel::<Message>(config.channel_capacity);
    let loader_progress = progress.clone();
    let loader_config = config.loader.clone();
    let loader_stop = cancel.clone();
    let reset_state = config.reset_state;
    let loader = tokio::task::spawn_blocking(move || -> Result<LoadSummary, PipelineError> {
        let mut dest = open_destination().map_err(PipelineError::Destination)?;
        let state = if reset_state {
            let empty = State::default();
            dest.commit(Some(&empty)).map_err(PipelineError::Destination)?;
            empty
        } else {
            dest.committed_state()
                .map_err(PipelineError::Destination)?
                .unwrap_or_default()
        };
        // The reader waits for this; if it is dropped (open failed) the reader gives up.
        let _ = state_tx.send(state);
        let mut n = 0u64;
        let input = loader::tokio_receiver(rx).map(|m| {
            n += 1;
            if let Message::Record(r) = &m {
                loader_progress.record(&r.stream);
            }
            Ok::<_, Infallible>((n, m))
        });
        let mut report_commit = |c: Commit<'_>| {
            loader_progress.committed(c.report.total_rows());
            on_commit(c)
        };
        // A stop also ends a commit-retry wait (the batch is then not committed; its records are read
        // again from the last committed state next time).
        let loader = loader::Loader::new(loader_config).stop_on(loader_stop);
        loader::run_with(loader, dest.as_mut(), input, &mut report_commit).map_err(PipelineError::Load)
    });

    let Ok(state) = state_rx.await else {
        // The loader failed before reading the committed state: report its error.
        return match loader.await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(_)) => Err(PipelineError::Task(
                "the loader ended before reading the committed state".into(),
            )),
            Err(e) => Err(PipelineError::Task(e.to_string())),
        };
    };
    let started_from = state.clone();
    let read = source.read(&catalog, state, tx, cancel.clone()).await;
    // `tx` moved into read and is dropped now: the loader drains the channel and makes its last commit.
    let loaded = loader.await.map_err(|e| PipelineError::Task(e.to_string()))?;
    match (read, loaded) {
        // A loader failure explains a source that stopped because its consumer went away.
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(PipelineError::Source(e)),
        (Ok(read), Ok(load)) => Ok(PipelineReport {
            read,
            load,
            started_from,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_records_and_commits() {
        let p = Progress::default();
        p.record("tickets");
        p.record("tickets");
        p.record("users");
        p.committed(5);
        let s = p.snapshot();
        assert_eq!(s.records["tickets"], 2);
        assert_eq!(s.current_stream.as_deref(), Some("users"));
        assert_eq!((s.rows_committed, s.commits), (5, 1));
    }
}
