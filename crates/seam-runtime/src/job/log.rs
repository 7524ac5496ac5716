//! A job's extraction log.

use crate::clock::Clock;
use crate::job::JobContext;
use seam_metastore::{LogLevel, LogLine, LogLocation, Metastore};
use std::sync::Arc;
use tracing::warn;

/// Writes extraction-log lines for one job, in Stitch's format.
#[derive(Debug, Clone)]
pub(crate) struct JobLog {
    pub(crate) metastore: Arc<dyn Metastore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) job_id: i64,
}

impl JobLog {
    pub(crate) fn of(ctx: &JobContext, job_id: i64) -> JobLog {
        JobLog {
            metastore: Arc::clone(&ctx.metastore),
            clock: Arc::clone(&ctx.clock),
            job_id,
        }
    }

    pub(crate) async fn line(&self, location: LogLocation, level: LogLevel, message: impl Into<String>) {
        let line = LogLine {
            at: self.clock.now(),
            location,
            level,
            message: message.into(),
        };
        if let Err(e) = self
            .metastore
            .append_logs(self.job_id, std::slice::from_ref(&line))
            .await
        {
            warn!(job_id = self.job_id, error = %e, "could not store an extraction log line");
        }
    }
}
