//! A running job's progress, as the dashboard and the API show it.

use crate::pipeline::{Phase, Progress};
use chrono::{DateTime, Utc};
use seam_metastore::Job;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Live progress of a running job, as the dashboard and the API show it: the job, and its
/// [`Progress`] (the pipeline's counters, the same `seam sync` shows).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobProgress {
    /// The job.
    pub job_id: i64,
    /// Its name.
    pub job_name: String,
    /// Phase.
    pub phase: Phase,
    /// The stream of the latest record.
    pub current_stream: Option<String>,
    /// Records received from the source so far.
    pub records_extracted: u64,
    /// Rows committed to the warehouse so far (subtables counted).
    pub rows_loaded: u64,
    /// Records received per stream.
    pub records_by_stream: BTreeMap<String, u64>,
    /// Started at.
    pub started_at: DateTime<Utc>,
    /// True once a stop was asked for.
    pub stopping: bool,
    /// Seconds the run has waited on the warehouse call under way (a lock in the warehouse, a
    /// commit being retried), once past [`crate::pipeline::WAREHOUSE_WAIT_SHOWN`]; `null` otherwise
    /// (and from a worker that does not report it).
    #[serde(default)]
    pub waiting_on_warehouse_secs: Option<u64>,
}

impl JobProgress {
    /// `job`'s progress as `progress` counts it now.
    pub fn of(job: &Job, progress: &Progress) -> JobProgress {
        let p = progress.snapshot();
        let waiting_on_warehouse_secs = p.waiting_on_warehouse().map(|w| w.as_secs());
        JobProgress {
            job_id: job.id,
            job_name: job.job_name.clone(),
            phase: p.phase,
            current_stream: p.current_stream,
            records_extracted: p.records_total,
            rows_loaded: p.rows_committed,
            records_by_stream: p.records,
            started_at: job.start_time,
            stopping: p.stopping,
            waiting_on_warehouse_secs,
        }
    }
}
