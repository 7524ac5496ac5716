//! What a destination holds between commits, and the plan a commit executes. Pure; shared by every
//! destination.
//!
//! Records are flattened as they are staged and de-duplicated by key within the batch (the newest
//! `_sdc_sequence` wins; for append-only streams the key is the record's content, so a record sent
//! twice is staged once). At commit the stager checks each record against the warehouse's [`Layout`],
//! plans the DDL (create, add, split), and hands the destination physical rows per table.

use crate::columns::{BatchShape, StreamBatch, TableRows};
use crate::error::WarehouseError;
use crate::flatten::Ddl;
use crate::flatten::{
    flatten_into, level_column, Layout, NameRules, Rejection, StreamSpec, SystemCells, SOURCE_KEY_PREFIX,
};
use chrono::Utc;
use indexmap::IndexMap;
use seam_core::{
    CommitReport, DestinationError, ErrorKind, LoadMode, RecordMessage, SchemaMessage, SequenceClock,
    SequencedRecord,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Input that cannot be staged (a stream used before its SCHEMA): a schema-kind error, never retried.
fn input_error(message: String) -> DestinationError {
    DestinationError::new(ErrorKind::Schema, WarehouseError::Input(message))
}

/// Staged, not yet committed work.
#[derive(Debug)]
pub struct Stager {
    rules: NameRules,
    forced_append_only: HashSet<String>,
    /// Shared with the batches taken out for commits ([`Stager::take_batch`]).
    specs: HashMap<String, Arc<StreamSpec>>,
    pending: IndexMap<String, StreamBatch>,
    /// The sizes each stream's last batch reached, for its next one ([`BatchShape`]).
    shapes: HashMap<String, Arc<BatchShape>>,
    rejected: Vec<Rejection>,
    activations: Vec<(String, i64)>,
    clock: SequenceClock,
    staged_records: usize,
}

/// One stream's rows for a commit.
#[derive(Debug, Clone)]
pub struct StreamLoad<'r> {
    /// The top-level table.
    pub table: String,
    /// Its key columns (`__sdc_primary_key` for append-only).
    pub key_columns: Vec<String>,
    /// Append-only: never replace an existing row.
    pub append_only: bool,
    /// Top-level rows (one per key).
    pub rows: TableRows<'r>,
    /// Subtable rows, per subtable.
    pub subtables: Vec<(String, TableRows<'r>)>,
    /// Every subtable the table has after this commit (their rows for replaced parents are deleted).
    pub all_subtables: Vec<String>,
}

impl StreamLoad<'_> {
    /// Where each key column sits among the staged top-level columns (`None` when one is missing).
    pub fn key_positions(&self) -> Option<Vec<usize>> {
        self.key_columns
            .iter()
            .map(|k| self.rows.columns.iter().position(|(c, _)| c == k))
            .collect()
    }

    /// The staging table of `table` (the top-level table or one of its subtables) for the `i`-th
    /// load of a commit.
    pub fn stage_name(&self, i: usize, table: &str) -> String {
        if table == self.table {
            format!("_sdc_stage_{i}")
        } else {
            let j = self
                .subtables
                .iter()
                .position(|(s, _)| s == table)
                .unwrap_or(usize::MAX);
            format!("_sdc_stage_{i}_{j}")
        }
    }

    /// The subtable columns that hold the parent key, paired with the parent's key columns.
    pub fn source_key_columns(&self) -> Vec<(String, String)> {
        self.key_columns
            .iter()
            .map(|k| (format!("{SOURCE_KEY_PREFIX}{k}"), k.clone()))
            .collect()
    }
}

/// Everything one commit does, in order: DDL, per-stream merges, rejections, version activations.
#[derive(Debug, Clone, Default)]
pub struct CommitPlan<'r> {
    /// Table changes, in order.
    pub ddl: Vec<Ddl>,
    /// Per-stream loads.
    pub loads: Vec<StreamLoad<'r>>,
    /// Records for `_sdc_rejected`.
    pub rejected: Vec<Rejection>,
    /// `(table, version)`: delete rows of other versions from the table and its subtables.
    pub activations: Vec<(String, i64, Vec<String>)>,
    /// What the commit reports.
    pub report: CommitReport,
}

impl CommitPlan<'_> {
    /// True when this commit creates `table` (it is empty before the commit's rows: no staged key
    /// can be there already).
    pub fn creates(&self, table: &str) -> bool {
        self.ddl
            .iter()
            .any(|c| matches!(c, Ddl::CreateTable { table: t, .. } if t == table))
    }
}

impl Stager {
    /// An empty stager for a destination's naming rules. Streams in `forced_append_only` are
    /// append-only even when they have key properties.
    pub fn new(rules: NameRules, forced_append_only: HashSet<String>) -> Stager {
        Stager {
            rules,
            forced_append_only,
            specs: HashMap::new(),
            pending: IndexMap::new(),
            shapes: HashMap::new(),
            rejected: Vec::new(),
            activations: Vec::new(),
            clock: SequenceClock::default(),
            staged_records: 0,
        }
    }

    /// The naming rules.
    pub fn rules(&self) -> &NameRules {
        &self.rules
    }

    /// Registers a stream (idempotent; a later SCHEMA replaces the earlier one).
    pub fn register(&mut self, schema: &SchemaMessage) {
        let mode = LoadMode::for_stream(schema, self.forced_append_only.contains(&schema.stream));
        let spec = StreamSpec::new(schema, mode == LoadMode::AppendOnly, &self.rules);
        self.specs.insert(schema.stream.clone(), Arc::new(spec));
    }

    /// The spec of a registered stream.
    pub fn spec(&self, stream: &str) -> Option<&StreamSpec> {
        self.specs.get(stream).map(Arc::as_ref)
    }

    /// Stages records, giving them consecutive sequences from one reading of the clock.
    pub fn stage(&mut self, stream: &str, records: &[RecordMessage]) -> Result<(), DestinationError> {
        let mut clock = std::mem::take(&mut self.clock);
        let first = clock.next_sequences(records.len());
        let staged = self.stage_each(
            stream,
            records.iter().zip(0..).map(|(r, i)| (first.saturating_add(i), r)),
        );
        self.clock = clock;
        staged
    }

    /// Stages records with the sequences the caller gave them.
    pub fn stage_sequenced(
        &mut self,
        stream: &str,
        records: &[SequencedRecord],
    ) -> Result<(), DestinationError> {
        self.stage_each(stream, records.iter().map(|r| (r.sequence, &r.message)))
    }

    fn stage_each<'m>(
        &mut self,
        stream: &str,
        records: impl Iterator<Item = (i64, &'m RecordMessage)>,
    ) -> Result<(), DestinationError> {
        let Some(spec) = self.specs.get(stream) else {
            return Err(input_error(format!(
                "stream {stream:?} has no SCHEMA yet: send its SCHEMA message before its records"
            )));
        };
        let batched_at = Utc::now();
        let shapes = &self.shapes;
        let batch = self.pending.entry(stream.to_owned()).or_insert_with(|| {
            shapes
                .get(stream)
                .cloned()
                .map_or_else(StreamBatch::default, StreamBatch::shaped)
        });
        for (sequence, message) in records {
            let sys = SystemCells { sequence, batched_at };
            match flatten_into(spec, &self.rules, message, &sys, batch) {
                Ok(done) => {
                    self.staged_records += 1;
                    batch.finish_record(done, sequence, message.record.get());
                }
                Err(rej) => {
                    batch.discard_record();
                    self.rejected.push(rej);
                }
            }
        }
        Ok(())
    }

    /// Records a version activation (applied after the rows staged before it).
    pub fn activate(&mut self, stream: &str, version: i64) -> Result<(), DestinationError> {
        if !self.specs.contains_key(stream) {
            return Err(input_error(format!(
                "ACTIVATE_VERSION for stream {stream:?} before its SCHEMA"
            )));
        }
        self.activations.push((stream.to_owned(), version));
        Ok(())
    }

    /// True when nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.pending.values().all(StreamBatch::is_empty)
            && self.rejected.is_empty()
            && self.activations.is_empty()
    }

    /// Moves what is staged into a stager of its own (same rules and streams), to plan and commit
    /// apart while this one stages the next batch; sequences keep counting here.
    pub fn take_batch(&mut self) -> Stager {
        self.keep_shapes();
        Stager {
            rules: self.rules,
            forced_append_only: self.forced_append_only.clone(),
            specs: self.specs.clone(),
            pending: std::mem::take(&mut self.pending),
            shapes: HashMap::new(),
            rejected: std::mem::take(&mut self.rejected),
            activations: std::mem::take(&mut self.activations),
            clock: SequenceClock::default(),
            staged_records: std::mem::take(&mut self.staged_records),
        }
    }

    /// Forgets everything staged.
    pub fn clear(&mut self) {
        self.keep_shapes();
        self.pending.clear();
        self.rejected.clear();
        self.activations.clear();
        self.staged_records = 0;
    }

    /// Keeps the sizes the pending batches reached, for the streams' next batches.
    fn keep_shapes(&mut self) {
        for (stream, batch) in &self.pending {
            self.shapes.insert(stream.clone(), Arc::new(batch.shape()));
        }
    }

    /// Plans the commit against `layout`, which it updates to the layout after the DDL.
    pub fn plan(&self, layout: &mut Layout) -> CommitPlan<'_> {
        let mut plan = CommitPlan {
            rejected: self.rejected.clone(),
            ..CommitPlan::default()
        };
        for (stream, records) in &self.pending {
            let Some(spec) = self.specs.get(stream) else {
                continue;
            };
            let Ok(table) = spec.table.clone() else { continue };
            let mut sub_keys: Vec<String> = spec
                .key_columns
                .iter()
                .map(|k| format!("{SOURCE_KEY_PREFIX}{k}"))
                .collect();
            sub_keys.extend((0..8).map(level_column));
            let keys = |t: &str| -> &[String] {
                if t == table {
                    &spec.key_columns
                } else {
                    &sub_keys
                }
            };
            let rejected: Arc<[bool]> = records
                .reject_key_conflicts(layout, &keys, &table, &mut plan.rejected)
                .into();
            records.plan_ddl(layout, &keys, &rejected, &mut plan.ddl);
            let mut rows = None;
            let mut subtables = Vec::new();
            for t in records.tables() {
                let t_rows = records.table_rows(t, layout, &rejected);
                if t_rows.is_empty() {
                    continue;
                }
                if *t.name == *table {
                    rows = Some(t_rows);
                } else {
                    *plan.report.rows.entry(t.name.to_string()).or_default() += t_rows.len() as u64;
                    subtables.push((t.name.to_string(), t_rows));
                }
            }
            let Some(rows) = rows else { continue };
            subtables.sort_by(|a, b| a.0.cmp(&b.0));
            *plan.report.rows.entry(table.clone()).or_default() += rows.len() as u64;
            if table != *stream {
                plan.report.streams.insert(table.clone(), stream.clone());
            }
            plan.loads.push(StreamLoad {
                table: table.clone(),
                key_columns: spec.key_columns.clone(),
                append_only: spec.append_only,
                rows,
                subtables,
                all_subtables: layout.subtables_of(&table),
            });
        }
        for rej in &plan.rejected {
            *plan.report.rejected.entry(rej.table_name.clone()).or_default() += 1;
        }
        for (stream, version) in &self.activations {
            let Some(Ok(table)) = self.specs.get(stream).map(|s| s.table.clone()) else {
                continue;
            };
            if layout.tables.contains_key(&table) {
                let subs = layout.subtables_of(&table);
                plan.activations.push((table, *version, subs));
            }
        }
        plan
    }

    /// Records staged since the last clear (before de-duplication), for batch accounting.
    pub fn staged_records(&self) -> usize {
        self.staged_records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The rows of each table of a plan, as text, in order.
    fn planned(stager: &Stager) -> Vec<(String, Vec<String>)> {
        let mut layout = Layout::default();
        let plan = stager.plan(&mut layout);
        let mut out = Vec::new();
        for load in &plan.loads {
            let tables = std::iter::once((load.table.clone(), &load.rows))
                .chain(load.subtables.iter().map(|(t, r)| (t.clone(), r)));
            for (table, rows) in tables {
                let mut lines = Vec::new();
                rows.for_each_row(|cells| {
                    let line = rows
                        .columns
                        .iter()
                        .zip(cells)
                        .filter(|((c, _), _)| {
                            !c.starts_with("_sdc_batched") && !c.starts_with("_sdc_received")
                        })
                        .map(|((c, _), v)| format!("{c}={v:?}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    lines.push(line);
                    Ok::<(), ()>(())
                })
                .unwrap();
                out.push((table, lines));
            }
        }
        out
    }

    /// A stream's next batch makes room for what its last one held (taken for a commit or cleared)
    /// and stages exactly what a batch without that room would: the same rows, cells and order,
    /// for a batch larger, smaller and of other columns than the last.
    #[test]
    fn a_batch_shaped_by_the_last_stages_what_an_unshaped_one_does() {
        let schema: SchemaMessage = SchemaMessage {
            stream: "tickets".into(),
            schema: serde_json::from_value(json!({"type": "object"})).unwrap(),
            key_properties: vec!["id".into()],
            bookmark_properties: None,
        };
        let records = |from: i64, to: i64, extra: &str| -> Vec<SequencedRecord> {
            (from..to)
                .map(|i| SequencedRecord {
                    sequence: 1_000 + i,
                    message: RecordMessage::from_value(
                        "tickets",
                        &json!({"id": i % 7, "s": "x".repeat(i as usize % 5), "tags": ["a", i], extra: i, "o": {"n": i}}),
                    )
                    .unwrap(),
                })
                .collect()
        };
        let mut shaped = Stager::new(NameRules::POSTGRES, HashSet::new());
        shaped.register(&schema);
        shaped.stage_sequenced("tickets", &records(0, 40, "a")).unwrap();
        let first = shaped.take_batch();
        assert!(shaped.shapes.contains_key("tickets"));
        for (from, to, extra) in [(40, 100, "b"), (100, 103, "a"), (103, 200, "c")] {
            let mut fresh = Stager::new(NameRules::POSTGRES, HashSet::new());
            fresh.register(&schema);
            let batch = records(from, to, extra);
            fresh.stage_sequenced("tickets", &batch).unwrap();
            shaped.stage_sequenced("tickets", &batch).unwrap();
            assert!(shaped.pending["tickets"].tables().iter().all(|t| t.shaped()));
            assert_eq!(planned(&shaped), planned(&fresh), "records {from}..{to}");
            assert!(!planned(&fresh).is_empty());
            shaped.clear();
        }
        drop(first);
    }
}
