//! Why a job or a connection check could not run.

use crate::loader::LoadError;
use crate::pipeline::PipelineError;
use seam_core::{Classify, DestinationError, ErrorKind, SourceError};
use seam_metastore::crypto::CryptoError;
use seam_metastore::MetastoreError;
use std::time::Duration;
use thiserror::Error;

/// A job or check could not run.
#[derive(Debug, Error)]
pub enum JobError {
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The destination failed.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The metastore failed.
    #[error(transparent)]
    Metastore(#[from] MetastoreError),
    /// Credentials could not be opened.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// No connector for this type.
    #[error("unknown integration type {kind}: seam knows {known}")]
    UnknownType {
        /// The type asked for.
        kind: String,
        /// The known types.
        known: String,
    },
    /// The connector's configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The loader failed outside the warehouse (bad input from the source, a lost connection).
    #[error("the loader stopped unexpectedly: {0}")]
    Loader(String),
    /// A part of the job panicked (a bug); the job ended instead of hanging.
    #[error(
        "the {part} panicked: {message}; this is a bug in seam, please report it with this extraction's \
         log (work committed before it is kept)"
    )]
    Panicked {
        /// What panicked: [`PART_SOURCE`], [`PART_LOADER`] or [`PART_JOB`].
        part: &'static str,
        /// The panic's message.
        message: String,
    },
    /// After a stop, a part of the job did not return within the grace period and was abandoned.
    #[error(
        "the {part} did not stop within {} s of the stop; seam abandoned it: what was not committed \
         is read again by the next job",
        grace.as_secs_f64()
    )]
    StopTimedOut {
        /// What was abandoned: [`PART_SOURCE`] or [`PART_WAREHOUSE`].
        part: &'static str,
        /// The grace it had.
        grace: Duration,
    },
    /// A stop came while the loader waited to retry a failed commit.
    #[error(transparent)]
    Stopped(LoadError),
}

impl Classify for JobError {
    fn kind(&self) -> ErrorKind {
        match self {
            JobError::Source(e) => e.kind(),
            JobError::Destination(e) => e.kind(),
            JobError::Metastore(e) => e.kind(),
            JobError::Stopped(LoadError::Stopped { source, .. }) => source.kind(),
            JobError::Crypto(_) | JobError::UnknownType { .. } | JobError::Config(_) => ErrorKind::Config,
            JobError::Loader(_)
            | JobError::Panicked { .. }
            | JobError::StopTimedOut { .. }
            | JobError::Stopped(_) => ErrorKind::Internal,
        }
    }
}

pub use crate::pipeline::{panic_message, DEFAULT_STOP_GRACE, PART_LOADER, PART_SOURCE, PART_WAREHOUSE};

/// [`JobError::Panicked`]: the job runner itself.
pub const PART_JOB: &str = "job runner";

impl From<PipelineError> for JobError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Source(e) => JobError::Source(e),
            PipelineError::Destination(e) | PipelineError::Load(LoadError::Destination { source: e, .. }) => {
                JobError::Destination(e)
            }
            PipelineError::Load(stopped @ LoadError::Stopped { .. }) => JobError::Stopped(stopped),
            PipelineError::Load(other) => JobError::Loader(other.to_string()),
            PipelineError::Panicked { part, message } => JobError::Panicked { part, message },
            PipelineError::StopTimedOut { part, grace } => JobError::StopTimedOut { part, grace },
            unanswered @ PipelineError::WarehouseUnanswered { .. } => JobError::Destination(
                DestinationError::new(ErrorKind::Transient, unanswered.to_string()),
            ),
            cancelled @ PipelineError::Cancelled(_) => JobError::Loader(cancelled.to_string()),
        }
    }
}
