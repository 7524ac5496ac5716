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
    flatten_into, key_tag, key_tags, level_column, ColumnState, ColumnType, Layout, NameRules, Rejection,
    StreamSpec, SystemCells, SOURCE_KEY_PREFIX,
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
    /// The warehouse's layout when the destination opened ([`Stager::know_layout`]); `None` keeps
    /// every record's JSON.
    known: Option<Layout>,
    /// What each registered stream's key types are, with `known`.
    key_types: HashMap<String, KeyTypes>,
}

/// The types of a stream's key cells in the warehouse, as far as the stager knows them.
///
/// A batch keeps each record's JSON for one purpose: a record whose key has another type than its
/// column is refused at planning and its JSON goes to `_sdc_rejected`
/// ([`StreamBatch::reject_key_conflicts`]). Holding every record's JSON costs a batch's size again
/// in memory, so the stager keeps it only for records that may be refused. The key of every row a
/// record writes has the types of the record's key cells (a subtable's `_sdc_source_key_*` columns
/// are the parent's key cells, its `_sdc_level_*_id` columns bigints), and planning gives a key
/// column the type of the layout's column, else of the first record not refused that has it, the
/// records taken in the order they were staged. So when the stream's tables hold keys of one set of
/// types, or none yet, every record not refused has the types of the first record staged (which is
/// never refused), and a record with those types is never refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyTypes {
    /// None of the stream's tables is in the warehouse and no record of it has been staged: the
    /// first one staged fixes the types.
    Unset,
    /// The types (as [`key_tags`] gives them) the stream's tables hold, or will hold once what was
    /// staged commits: a record whose key has them is never refused.
    Fixed(Vec<u8>),
    /// Not known (a table of the stream holds keys of other or mixed types, or the stream's keys
    /// changed): every record's JSON is kept.
    Any,
}

impl KeyTypes {
    /// What `layout` says of the key types of `spec`'s tables.
    fn in_layout(layout: &Layout, spec: &StreamSpec) -> KeyTypes {
        let Ok(table) = &spec.table else {
            return KeyTypes::Any;
        };
        let prefix = format!("{table}__");
        let mut subtables = layout
            .tables
            .range(prefix.clone()..)
            .take_while(|(name, _)| name.starts_with(&prefix))
            .map(|(_, t)| t)
            .peekable();
        let Some(top) = layout.tables.get(table) else {
            return if subtables.peek().is_none() {
                KeyTypes::Unset
            } else {
                KeyTypes::Any
            };
        };
        let mut tags = Vec::with_capacity(spec.key_columns.len());
        for k in &spec.key_columns {
            match top.columns.get(k) {
                Some(ColumnState::Single(ty)) => tags.push(key_tag(*ty)),
                _ => return KeyTypes::Any,
            }
        }
        let expected: Vec<(String, u8)> = spec
            .key_columns
            .iter()
            .zip(&tags)
            .map(|(k, &tag)| (format!("{SOURCE_KEY_PREFIX}{k}"), tag))
            .chain((0..8).map(|l| (level_column(l), key_tag(ColumnType::BigInt))))
            .collect();
        for sub in subtables {
            for (column, tag) in &expected {
                match sub.columns.get(column) {
                    None => {}
                    Some(ColumnState::Single(ty)) if key_tag(*ty) == *tag => {}
                    Some(_) => return KeyTypes::Any,
                }
            }
        }
        KeyTypes::Fixed(tags)
    }

    /// Whether a record with `key` (its binary form) needs its JSON kept; the first record of a
    /// stream whose types were unset fixes them.
    fn needs_json(&mut self, key: &[u8]) -> bool {
        match self {
            KeyTypes::Any => true,
            KeyTypes::Fixed(tags) => !key_tags(key).eq(tags.iter().copied()),
            KeyTypes::Unset => {
                *self = KeyTypes::Fixed(key_tags(key).collect());
                false
            }
        }
    }
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
            known: None,
            key_types: HashMap::new(),
        }
    }

    /// Tells the stager the warehouse's layout as the destination found it on opening, before any
    /// record is staged; the batches committed since must all have been staged here. From then on
    /// a batch keeps the JSON of a record only when its key may be refused at planning (see
    /// `KeyTypes`); without it, of every record. [`Stager::discard`] forgets it. Were a
    /// stream's tables changed meanwhile by another stream's rows (a stream named like another's
    /// subtable), a record could turn out refused without its JSON: its commit then fails, and
    /// commits nothing ([`Stager::plan`]).
    pub fn know_layout(&mut self, layout: &Layout) {
        self.key_types = self
            .specs
            .iter()
            .map(|(stream, spec)| (stream.clone(), KeyTypes::in_layout(layout, spec)))
            .collect();
        self.known = Some(layout.clone());
    }

    /// The naming rules.
    pub fn rules(&self) -> &NameRules {
        &self.rules
    }

    /// Registers a stream (idempotent; a later SCHEMA replaces the earlier one).
    pub fn register(&mut self, schema: &SchemaMessage) {
        let mode = LoadMode::for_stream(schema, self.forced_append_only.contains(&schema.stream));
        let spec = StreamSpec::new(schema, mode == LoadMode::AppendOnly, &self.rules);
        if let Some(layout) = &self.known {
            let types = match self.specs.get(&schema.stream) {
                None => KeyTypes::in_layout(layout, &spec),
                // The same table and key: what its records fixed stays.
                Some(old) if old.table == spec.table && old.key_columns == spec.key_columns => self
                    .key_types
                    .get(&schema.stream)
                    .cloned()
                    .unwrap_or(KeyTypes::Any),
                Some(_) => KeyTypes::Any,
            };
            self.key_types.insert(schema.stream.clone(), types);
        }
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
        let mut types = match self.known {
            Some(_) => self.key_types.get_mut(stream),
            None => None,
        };
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
                    let json = types.as_deref_mut().is_none_or(|t| t.needs_json(&done.key));
                    batch.finish_record(done, sequence, json.then(|| message.record.get()));
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
            known: None,
            key_types: HashMap::new(),
        }
    }

    /// Forgets everything staged, and what it told of the streams' key types: records staged from
    /// now on keep their JSON. For a batch dropped uncommitted (after a commit that failed for
    /// good); [`Stager::clear`] drops a committed one.
    pub fn discard(&mut self) {
        self.clear();
        self.known = None;
        self.key_types.clear();
    }

    /// Forgets everything staged (a committed batch).
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

    /// Plans the commit against `layout`, which it updates to the layout after the DDL. `Err` (an
    /// internal error) when a record to refuse was staged without its JSON.
    pub fn plan(&self, layout: &mut Layout) -> Result<CommitPlan<'_>, DestinationError> {
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
                .map_err(|e| DestinationError::new(ErrorKind::Internal, e))?
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
        Ok(plan)
    }

    /// Records staged since the last clear (before de-duplication), for batch accounting.
    pub fn staged_records(&self) -> usize {
        self.staged_records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The rows of each table of a plan, as text, in order.
    fn planned(stager: &Stager) -> Vec<(String, Vec<String>)> {
        let mut layout = Layout::default();
        let plan = stager.plan(&mut layout).unwrap();
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

    fn tickets_schema(key: &str) -> SchemaMessage {
        SchemaMessage {
            stream: "tickets".into(),
            schema: serde_json::from_value(json!({"type": "object"})).unwrap(),
            key_properties: vec![key.into()],
            bookmark_properties: None,
        }
    }

    /// A plan as text: its DDL, rejections (with each record's JSON), report and rows (without the
    /// cells that tell when a record was staged).
    fn plan_text(stager: &Stager, layout: &mut Layout) -> Result<String, DestinationError> {
        let plan = stager.plan(layout)?;
        let rejected: Vec<_> = plan
            .rejected
            .iter()
            .map(|r| (&r.table_name, &r.reason, &r.record))
            .collect();
        let mut out = format!("{:?}\n{rejected:?}\n{:?}\n", plan.ddl, plan.report);
        for load in &plan.loads {
            let tables =
                std::iter::once((&load.table, &load.rows)).chain(load.subtables.iter().map(|(t, r)| (t, r)));
            for (table, rows) in tables {
                rows.for_each_row(|cells| {
                    let row: Vec<_> = rows
                        .columns
                        .iter()
                        .zip(cells)
                        .filter(|((c, _), _)| {
                            !c.starts_with("_sdc_batched") && !c.starts_with("_sdc_received")
                        })
                        .collect();
                    out.push_str(&format!("{table}: {row:?}\n"));
                    Ok::<(), ()>(())
                })
                .unwrap();
            }
        }
        Ok(out)
    }

    fn key_value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            (0i64..4).prop_map(|i| json!(i)),
            (0i64..4).prop_map(|i| json!(format!("k{i}"))),
            (0i64..2).prop_map(|i| json!(i as f64 + 0.5)),
            any::<bool>().prop_map(|b| json!(b)),
        ]
    }

    /// A record: its key, sequence, and whether it has subtable rows (and nested ones).
    fn ticket() -> impl Strategy<Value = (serde_json::Value, i64, u8)> {
        (key_value(), 0i64..6, 0u8..3)
    }

    fn ticket_records(batch: &[(serde_json::Value, i64, u8)]) -> Vec<SequencedRecord> {
        batch
            .iter()
            .enumerate()
            .map(|(i, (id, seq, subs))| {
                let mut v = json!({"id": id, "n": i});
                if *subs > 0 {
                    v["tags"] = json!(["a", "b"]);
                }
                if *subs > 1 {
                    v["events"] = json!([{"via": {"ids": [1, 2]}}]);
                }
                SequencedRecord {
                    sequence: 1_000 + seq,
                    message: RecordMessage::from_value("tickets", &v).unwrap(),
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// A stager that knows the warehouse's layout keeps a record's JSON only when its key may be
        /// refused, and plans exactly what a stager keeping every record's JSON plans: the same
        /// DDL, rejections (record JSON included), reports and rows, batch after batch, whatever
        /// the key types of the records and of the tables already there; it never finds a
        /// record to refuse without its JSON.
        #[test]
        fn keeping_only_the_json_of_records_that_may_be_refused_plans_the_same(
            earlier in proptest::collection::vec(ticket(), 0..6),
            batches in proptest::collection::vec(proptest::collection::vec(ticket(), 0..12), 1..4),
            resend_schema in any::<bool>(),
        ) {
            // The warehouse as an earlier run left it (perhaps with keys of another type).
            let mut layout = Layout::default();
            if !earlier.is_empty() {
                let mut first = Stager::new(NameRules::POSTGRES, HashSet::new());
                first.register(&tickets_schema("id"));
                first.stage_sequenced("tickets", &ticket_records(&earlier)).unwrap();
                first.plan(&mut layout).unwrap();
            }
            let mut knowing = Stager::new(NameRules::POSTGRES, HashSet::new());
            knowing.know_layout(&layout);
            knowing.register(&tickets_schema("id"));
            let mut keeping = Stager::new(NameRules::POSTGRES, HashSet::new());
            keeping.register(&tickets_schema("id"));
            let (mut layout_k, mut layout_all) = (layout.clone(), layout.clone());
            for batch in &batches {
                if resend_schema {
                    knowing.register(&tickets_schema("id"));
                    keeping.register(&tickets_schema("id"));
                }
                let records = ticket_records(batch);
                knowing.stage_sequenced("tickets", &records).unwrap();
                keeping.stage_sequenced("tickets", &records).unwrap();
                let (k, all) = (knowing.take_batch(), keeping.take_batch());
                let expected = plan_text(&all, &mut layout_all).unwrap();
                let got = plan_text(&k, &mut layout_k);
                prop_assert!(got.is_ok(), "{got:?}");
                prop_assert_eq!(got.unwrap(), expected);
                prop_assert_eq!(&layout_k, &layout_all);
            }
        }
    }

    /// A record whose key has the types its table holds keeps no JSON; one of other types keeps
    /// it, and so does every record after the stream's keys change or the batch is discarded.
    #[test]
    fn only_records_whose_key_may_be_refused_keep_their_json() {
        let kept = |s: &Stager| s.pending.get("tickets").map_or(0, |b| b.json_kept());
        let mut layout = Layout::default();
        let mut first = Stager::new(NameRules::POSTGRES, HashSet::new());
        first.register(&tickets_schema("id"));
        first
            .stage_sequenced("tickets", &ticket_records(&[(json!(1), 0, 1)]))
            .unwrap();
        first.plan(&mut layout).unwrap();

        let mut s = Stager::new(NameRules::POSTGRES, HashSet::new());
        s.know_layout(&layout);
        s.register(&tickets_schema("id"));
        let batch = [(json!(2), 0, 1), (json!("two"), 0, 0), (json!(3), 0, 2)];
        s.stage_sequenced("tickets", &ticket_records(&batch)).unwrap();
        assert_eq!(kept(&s), 1, "only the text key");
        let mut l = layout.clone();
        let plan = s.plan(&mut l).unwrap();
        assert_eq!(plan.rejected.len(), 1);
        assert_eq!(plan.rejected[0].record, r#"{"id":"two","n":1}"#);
        drop(plan);
        s.clear();

        // The same key again: what was fixed stays.
        s.register(&tickets_schema("id"));
        s.stage_sequenced("tickets", &ticket_records(&[(json!(4), 0, 0)]))
            .unwrap();
        assert_eq!(kept(&s), 0);
        s.clear();
        // Another key: nothing is known of its types.
        s.register(&tickets_schema("n"));
        s.stage_sequenced("tickets", &ticket_records(&[(json!(5), 0, 0)]))
            .unwrap();
        assert_eq!(kept(&s), 1);
        s.register(&tickets_schema("id"));
        s.clear();

        // A stream new to the warehouse: its first record fixes the types.
        let mut fresh = Stager::new(NameRules::POSTGRES, HashSet::new());
        fresh.know_layout(&Layout::default());
        fresh.register(&tickets_schema("id"));
        fresh
            .stage_sequenced(
                "tickets",
                &ticket_records(&[(json!("a"), 0, 0), (json!("b"), 0, 1), (json!(1), 0, 0)]),
            )
            .unwrap();
        assert_eq!(kept(&fresh), 1, "only the bigint key");
        // Discarded uncommitted: nothing more is assumed.
        fresh.discard();
        fresh.register(&tickets_schema("id"));
        fresh
            .stage_sequenced("tickets", &ticket_records(&[(json!("c"), 0, 0)]))
            .unwrap();
        assert_eq!(kept(&fresh), 1);
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
