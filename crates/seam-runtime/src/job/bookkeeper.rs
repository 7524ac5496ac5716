//! A job's side of the pipeline: what each commit made durable goes to the metastore.

use super::log::JobLog;
use super::JobContext;
use crate::loader::Commit;
use crate::pipeline::PipelineHooks;
use async_trait::async_trait;
use seam_core::{CommitReport, State};
use seam_metastore::{Integration, Job, LoadDelta, LogLevel, LogLocation};
use std::collections::BTreeMap;
use tracing::warn;

/// A job's side of the pipeline: logs where each stream starts, and records what each commit made
/// durable (bookmarks, loads per table, usage, log lines).
pub(super) struct Bookkeeper<'a> {
    pub(super) ctx: &'a JobContext,
    pub(super) integration: &'a Integration,
    pub(super) job: &'a Job,
    pub(super) log: &'a JobLog,
    pub(super) selected: &'a [String],
    pub(super) committed: State,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) rows_total: u64,
}

#[async_trait]
impl PipelineHooks for Bookkeeper<'_> {
    async fn started(&mut self, state: &State, reset: bool) {
        if reset {
            self.log
                .line(
                    LogLocation::Main,
                    LogLevel::Info,
                    "No bookmarks: full replication from the start date",
                )
                .await;
        }
        for stream in self.selected {
            let line = match state.bookmarks.get(stream) {
                Some(b) => format!("found current bookmark for {stream}: {b}"),
                None => {
                    let start = seam_core::singer::format_time(self.integration.properties.start_date);
                    format!("no bookmark for {stream}; starting from {start}")
                }
            };
            self.log.line(LogLocation::Tap, LogLevel::Info, line).await;
        }
        self.committed = state.clone();
        self.labels = bookmark_labels(state);
    }

    async fn committed(&mut self, commit: Commit<'_>) {
        let state = commit.state.and_then(|v| State::from_value(v.clone()).ok());
        self.committed_batch(commit.report, state).await;
    }
}

impl Bookkeeper<'_> {
    async fn committed_batch(&mut self, report: &CommitReport, state: Option<State>) {
        let (ctx, id) = (self.ctx, self.integration.id);
        let at = ctx.clock.now();
        if let Some(s) = &state {
            self.committed.merge_forward(s);
            if let Err(e) = ctx.metastore.set_state(id, Some(&self.committed)).await {
                warn!(job = %self.job.job_name, error = %e, "could not store bookmarks; the next job re-reads from the older ones");
            }
        }
        let labels = bookmark_labels(&self.committed);
        for (stream, label) in &labels {
            if self.labels.get(stream) != Some(label) {
                self.log
                    .line(
                        LogLocation::Main,
                        LogLevel::Info,
                        format!("State update: bookmarks.{stream} = {label}"),
                    )
                    .await;
            }
        }
        let deltas: Vec<LoadDelta> = report
            .rows
            .iter()
            .map(|(table, rows)| LoadDelta {
                table_name: table.clone(),
                rows: i64::try_from(*rows).unwrap_or(i64::MAX),
                max_bookmark: labels.get(report.stream_of(table)).cloned(),
                error: None,
            })
            .collect();
        self.labels = labels;
        let rows = report.total_rows();
        self.rows_total += rows;
        ctx.telemetry.rows_loaded(id, rows);
        for (table, n) in &report.rejected {
            self.log
                .line(
                    LogLocation::Target,
                    LogLevel::Warning,
                    format!("{n} records of {table} went to _sdc_rejected"),
                )
                .await;
        }
        if !deltas.is_empty() {
            self.log
                .line(
                    LogLocation::Target,
                    LogLevel::Info,
                    format!("Committed {rows} rows"),
                )
                .await;
            if let Err(e) = ctx.metastore.record_loads(id, self.job.id, at, &deltas).await {
                warn!(job = %self.job.job_name, error = %e, "could not record loads");
            }
        }
    }
}

/// `column: value` for each stream's bookmark in `state` (Stitch's "Max Replication Bookmark Value").
fn bookmark_labels(state: &State) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (stream, marks) in &state.bookmarks {
        if let Some(obj) = marks.as_object() {
            let text: Vec<String> = obj
                .iter()
                // Pagination cursors are opaque and say nothing about how far replication got.
                .filter(|(k, v)| (v.is_string() || v.is_number()) && !k.contains("cursor"))
                .map(|(k, v)| {
                    format!(
                        "{k}: {}",
                        v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
                    )
                })
                .collect();
            if !text.is_empty() {
                out.insert(stream.clone(), text.join(", "));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bookmark_labels_read_column_and_value() {
        let s = State::from_value(
            json!({"bookmarks": {"tickets": {"generated_timestamp": 1700000000, "after_cursor": "abc"},
            "users": {"updated_at": "2026-01-01T00:00:00Z"}, "odd": {"cursor": null}}}),
        )
        .expect("state");
        let l = bookmark_labels(&s);
        assert_eq!(l["tickets"], "generated_timestamp: 1700000000");
        assert_eq!(l["users"], "updated_at: 2026-01-01T00:00:00Z");
        assert!(!l.contains_key("odd"));
    }
}
