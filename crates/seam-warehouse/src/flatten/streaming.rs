//! Flattening a record while it is parsed: the rows, cells and order that flattening its parsed tree
//! gives ([`super::flatten_tree`]), without building the tree.
//!
//! The pass reads the record's tokens from a reader of seam's own ([`crate::json::read`]) and puts
//! each value in its cell as it is read: objects into `parent__child` columns, array elements into
//! subtable rows. A field is looked for first where the place's last objects had it, by comparing
//! the text with that name ([`ColumnCache::expected`]); records of a stream hold their fields in
//! one order, as a rule, so most keys are never read on their own. It takes the road records usually
//! take, and gives up ([`flatten`] returns `None`; the caller takes back what it put) wherever the
//! tree has a decision to make: a repeated key (the tree keeps its first place and last value), a
//! key that names no column or a column another field names, a record's own field named like a
//! nested column (`a__b`), a value no column type holds, a record without its key, text the reader
//! does not read. The tree then flattens the record, so every such case keeps one implementation.
//!
//! The record's key fields may come anywhere in it: the fields met before the last of them are
//! parsed into small trees and flattened from those once the key is known, so the top-level row
//! starts with its key cells as it does from the tree.

use super::{
    deleted_at_cell, integer_cell, items_schema, level_col, record_system_cells, scalar_cell, text_cell,
    Cell, CellRef, Col, ColumnCache, Ctx, Flattened, Flattener, NameRules, RecordKeys, RowId, RowSink,
    StreamSpec, SystemCells, DELETED_AT, NO_PREFIX, VALUE_COLUMN,
};
use crate::json::read::{Reader, Token, Unread};
use crate::json::Json;
use seam_core::schema::Schema;
use seam_core::RecordMessage;
use serde::Deserialize;
use serde_json::Number;
use std::borrow::Cow;
use std::sync::PoisonError;

/// Flattens `record` into `sink` as [`super::flatten_into`] does, or `None` when the record is one
/// for the tree (see the module's doc); the sink may then hold part of it, for the caller to take
/// back.
pub(super) fn flatten<S: RowSink>(
    spec: &StreamSpec,
    rules: &NameRules,
    record: &RecordMessage,
    sys: &SystemCells,
    sink: &mut S,
) -> Option<Flattened> {
    let table = spec.table_col.as_ref().ok()?;
    let mut cache = spec.columns.lock().unwrap_or_else(PoisonError::into_inner);
    let place = cache.root_place(table)?;
    let object = cache.next_object();
    let mut de = Reader::with_scratch(record.record.get(), std::mem::take(&mut cache.scratch));
    let levels = std::mem::take(&mut cache.levels);
    let mut top = Top {
        spec,
        record,
        table,
        flat: Flattener {
            rules,
            cache: &mut cache,
            sink,
            levels,
        },
        key_values: vec![None; spec.key_properties.len()],
        pending: Vec::new(),
        deleted: None,
        ready: None,
        place,
        object,
        cursor: 0,
    };
    let read = top.read(&mut de).and_then(|()| de.end());
    top.flat.cache.keep_scratch(de.into_scratch());
    let mut levels = std::mem::take(&mut top.flat.levels);
    levels.clear();
    top.flat.cache.levels = levels;
    read.ok()?;
    top.finish(sys)
}

/// The record's top level while it is read.
struct Top<'t, 'r, S> {
    spec: &'t StreamSpec,
    record: &'t RecordMessage,
    table: &'t Col,
    flat: Flattener<'t, S>,
    /// The value of each key property, once met.
    key_values: Vec<Option<Json<'r>>>,
    /// Fields met before the key was complete, flattened once it is.
    pending: Vec<(Cow<'r, str>, Json<'r>)>,
    /// `_sdc_deleted_at`, once met.
    deleted: Option<Cell>,
    /// Once the key is complete: the top-level row, and the key.
    ready: Option<(RowId, RecordKeys)>,
    /// The column cache's place for the record's own fields.
    place: usize,
    /// The record's object number (see [`ColumnCache::take`]).
    object: u32,
    /// The record's own fields looked up so far (see [`ColumnCache::field`]).
    cursor: usize,
}

/// [`Top`] failed to take the usual road.
struct OffRoad;

impl<'t, S: RowSink> Top<'t, '_, S> {
    /// The key is complete (every key property met, or there are none): opens the top-level row
    /// with its key cells, then flattens the fields met before.
    fn key_complete(&mut self) -> Result<(), OffRoad> {
        let values = &self.key_values;
        let keys = RecordKeys::new(self.spec, self.record, |i, _| {
            values.get(i).and_then(Option::as_ref)
        })
        .map_err(|_| OffRoad)?;
        let top = self.flat.sink.open_row(self.table);
        for (col, cell) in &keys.cells {
            self.flat.put(top, col, cell.as_ref()).map_err(|_| OffRoad)?;
        }
        self.ready = Some((top, keys));
        for (name, value) in std::mem::take(&mut self.pending) {
            let (n, schema) = self.field_column(&name, false)?;
            let Some(column) = self.flat.cache.column_at(self.place, n).cloned() else {
                return Err(OffRoad);
            };
            let Some((top, keys)) = &self.ready else {
                return Err(OffRoad);
            };
            let ctx = Ctx {
                table: self.table,
                source_keys: &keys.source_keys,
                claimed: &[],
            };
            self.flat
                .value_into(*top, &column, &value, schema, &ctx)
                .map_err(|_| OffRoad)?;
        }
        Ok(())
    }

    /// The number of the column one of the record's own fields takes (see [`Column`]). A field
    /// named like a nested column (`a__b`) changes how the record's nested objects load (see
    /// `Ctx::claimed`): the tree decides.
    /// `expected`: the name is the one at the cursor in the place's field order (see
    /// [`ColumnCache::expected`]).
    fn field_column(&mut self, name: &str, expected: bool) -> Result<(u32, Option<&'t Schema>), OffRoad> {
        let cache = &mut *self.flat.cache;
        let schema = Some(&self.spec.schema);
        let found = if expected {
            cache.field_found(self.place, name, schema, &mut self.cursor)
        } else {
            cache.field(self.flat.rules, self.place, "", name, schema, &mut self.cursor)
        };
        let Some((n, schema)) = found else {
            return Err(OffRoad);
        };
        let claims = cache.nested_at(self.place, n).unwrap_or(true);
        if claims || !cache.take(self.place, n, self.object) {
            return Err(OffRoad);
        }
        Ok((n, schema))
    }

    /// What the record's rows end with; `None` when its key never completed (the tree says why).
    fn finish(self, sys: &SystemCells) -> Option<Flattened> {
        let (_, keys) = self.ready?;
        let mut system = record_system_cells(self.record, sys);
        if let Some(cell) = self.deleted {
            system.set_deleted_at(cell);
        }
        Some(Flattened {
            key: keys.key,
            system,
        })
    }
}

impl<'t, 'r, S: RowSink> Top<'t, 'r, S> {
    /// Reads the record's top-level object.
    fn read(&mut self, r: &mut Reader<'r>) -> Result<(), Unread> {
        if r.token()? != Token::Object {
            return Err(Unread);
        }
        if self.key_values.is_empty() {
            self.key_complete().map_err(|OffRoad| Unread)?;
        }
        let mut first = true;
        while r.member(first)? {
            first = false;
            let expected = match self.flat.cache.expected(self.place, self.cursor) {
                Some(name) => r.key_is(name)?,
                None => None,
            };
            let name: Cow<'r, str> = match expected {
                Some(name) => Cow::Borrowed(name),
                None => key_text(r)?,
            };
            if name == DELETED_AT {
                if self.deleted.is_some() || self.spec.key_properties.iter().any(|p| p == DELETED_AT) {
                    return Err(Unread);
                }
                let value = Json::deserialize(&mut *r)?;
                self.deleted = Some(deleted_at_cell(&value).map_err(|_| Unread)?);
                continue;
            }
            if let Some(i) = self.spec.key_properties.iter().position(|p| *p == *name) {
                if self.key_values.get(i).is_none_or(Option::is_some) {
                    return Err(Unread);
                }
                let value = Json::deserialize(&mut *r)?;
                // An append-only stream's key is the record's content: its key fields are fields.
                if self.spec.append_only {
                    self.pending.push((name, value.clone()));
                }
                self.key_values[i] = Some(value);
                if self.key_values.iter().all(Option::is_some) {
                    self.key_complete().map_err(|OffRoad| Unread)?;
                }
                continue;
            }
            if self.ready.is_none() {
                let value = Json::deserialize(&mut *r)?;
                self.pending.push((name, value));
                continue;
            }
            let (n, schema) = self
                .field_column(&name, expected.is_some())
                .map_err(|OffRoad| Unread)?;
            let Some((row, keys)) = &self.ready else {
                return Err(Unread);
            };
            let token = r.token()?;
            let value = Value {
                flat: &mut self.flat,
                source_keys: &keys.source_keys,
                row: *row,
                column: Column::Cached { place: self.place, n },
                schema,
                table: self.table,
            };
            value.read(token, r)?;
        }
        r.close(b'}')
    }
}

/// The text of the member's key, read (see [`Reader::key`]).
fn key_text<'r>(r: &mut Reader<'r>) -> Result<Cow<'r, str>, Unread> {
    Ok(match r.key()? {
        Token::Borrowed(name) => Cow::Borrowed(name),
        _ => Cow::Owned(r.unescaped().to_owned()),
    })
}

/// A value's column: one of the column cache's (read where it is needed, so a scalar's cell is put
/// without a copy of the name), or the `value` of an array element whose row's place is `place`.
#[derive(Debug, Clone, Copy)]
enum Column {
    Cached { place: usize, n: u32 },
    Value { place: Option<usize> },
}

/// Flattens one value into `column` of `row`, as `Flattener::value_into` does from the tree.
struct Value<'a, 't, S> {
    flat: &'a mut Flattener<'t, S>,
    /// `(_sdc_source_key_<k>, value)` for each key column of the top-level table.
    source_keys: &'a [(Col, Cell)],
    row: RowId,
    column: Column,
    schema: Option<&'a Schema>,
    /// The table `row` is in: arrays load into its subtables.
    table: &'a Col,
}

impl<S: RowSink> Value<'_, '_, S> {
    /// Reads the value whose first token is `token`.
    fn read<'r>(self, token: Token<'r>, r: &mut Reader<'r>) -> Result<(), Unread> {
        match token {
            Token::Null => self.put(CellRef::Null),
            Token::Bool(b) => self.put(CellRef::Boolean(b)),
            Token::I64(i) => {
                let cell = integer_cell(i, self.schema);
                self.put(cell)
            }
            Token::U64(u) => match i64::try_from(u) {
                Ok(i) => {
                    let cell = integer_cell(i, self.schema);
                    self.put(cell)
                }
                // Past i64: `scalar_cell` says what becomes of it.
                Err(_) => self.scalar(&Json::Number(u.into())),
            },
            Token::F64(f) => match Number::from_f64(f) {
                Some(n) => self.scalar(&Json::Number(n)),
                None => Err(Unread),
            },
            // The reader hands over no string holding a NUL (it stops at a `\u0000`, and at
            // control characters written raw): no search for one (the test
            // `strings_read_hold_no_nul`).
            Token::Borrowed(text) => {
                let cell = text_cell(text, self.schema);
                self.put(cell)
            }
            Token::Unescaped => {
                let cell = text_cell(r.unescaped(), self.schema);
                self.put(cell)
            }
            Token::Object => {
                let cache = &mut *self.flat.cache;
                let (place, prefix) = match self.column {
                    Column::Cached { place, n } => (
                        cache.child_place(place, n, self.table),
                        Prefix::Column { place, n },
                    ),
                    Column::Value { .. } => (cache.place_of(self.table, &VALUE_COLUMN), Prefix::Value),
                };
                let object = Object {
                    flat: self.flat,
                    source_keys: self.source_keys,
                    row: self.row,
                    place: place.ok_or(Unread)?,
                    prefix,
                    schema: self.schema,
                    table: self.table,
                };
                object.read(r)?;
                r.close(b'}')
            }
            Token::Array => {
                let Flattener { rules, cache, .. } = &mut *self.flat;
                let elements = match self.column {
                    Column::Cached { place, n } => cache.elements(rules, place, n, self.table),
                    Column::Value { .. } => cache.subtable(rules, self.table, &VALUE_COLUMN).map(|table| {
                        let at = cache.place_of(&table, &NO_PREFIX);
                        (table, at)
                    }),
                };
                let (table, place) = elements.map_err(|_| Unread)?;
                let schema = self.schema.and_then(items_schema);
                let mut index = 0;
                while r.element(index == 0)? {
                    let element = Element {
                        flat: &mut *self.flat,
                        source_keys: self.source_keys,
                        table: &table,
                        place,
                        schema,
                        index,
                    };
                    element.read(r)?;
                    index += 1;
                }
                r.close(b']')
            }
        }
    }

    fn scalar(self, value: &Json<'_>) -> Result<(), Unread> {
        let cell = scalar_cell(value, self.schema)
            .map_err(|_| Unread)?
            .unwrap_or(CellRef::Null);
        self.put(cell)
    }

    fn put(self, cell: CellRef<'_>) -> Result<(), Unread> {
        // The column was checked against the destination's rules when it was worked out.
        let Flattener { cache, sink, .. } = self.flat;
        let put = match self.column {
            Column::Cached { place, n } => {
                let (column, hint) = cache.column_hint(place, n).ok_or(Unread)?;
                sink.put_hinted(self.row, column, hint, cell)
            }
            Column::Value { place } => match place.and_then(|place| cache.row_hints(place, 0)) {
                Some((_, hint)) => sink.put_hinted(self.row, &VALUE_COLUMN, hint, cell),
                None => sink.put(self.row, &VALUE_COLUMN, cell),
            },
        };
        put.map_err(|_| Unread)
    }
}

/// The prefix of an object's columns, named only when a field's column must be worked out.
#[derive(Debug, Clone, Copy)]
enum Prefix {
    /// An array element's own fields.
    Root,
    /// An object in an array element's `value`.
    Value,
    /// An object in column `n` of `place`.
    Column { place: usize, n: u32 },
}

impl Prefix {
    fn name(self, cache: &ColumnCache) -> Option<Col> {
        match self {
            Prefix::Root => Some(NO_PREFIX.clone()),
            Prefix::Value => Some(VALUE_COLUMN.clone()),
            Prefix::Column { place, n } => cache.column_at(place, n).cloned(),
        }
    }
}

/// An object's fields, flattened into `row` (of `table`) under `prefix`, whose columns are at
/// `place` in the column cache, as `Flattener::field_columns` and `Flattener::object_into` do from
/// the tree.
struct Object<'a, 't, S> {
    flat: &'a mut Flattener<'t, S>,
    source_keys: &'a [(Col, Cell)],
    row: RowId,
    place: usize,
    prefix: Prefix,
    schema: Option<&'a Schema>,
    table: &'a Col,
}

impl<S: RowSink> Object<'_, '_, S> {
    /// Reads the members of the entered object (not its closing brace).
    fn read(self, r: &mut Reader<'_>) -> Result<(), Unread> {
        let flat = self.flat;
        let place = self.place;
        let object = flat.cache.next_object();
        let mut cursor = 0;
        let mut first = true;
        while r.member(first)? {
            first = false;
            let expected = match flat.cache.expected(place, cursor) {
                Some(name) => r.key_is(name)?,
                None => None,
            };
            let found = match expected {
                Some(name) => flat.cache.field_found(place, name, self.schema, &mut cursor),
                None => {
                    let prefix = self.prefix.name(flat.cache).ok_or(Unread)?;
                    let name = match r.key()? {
                        Token::Borrowed(name) => name,
                        _ => r.unescaped(),
                    };
                    flat.cache
                        .field(flat.rules, place, &prefix, name, self.schema, &mut cursor)
                }
            };
            let Some((n, field_schema)) = found else {
                return Err(Unread);
            };
            if !flat.cache.take(place, n, object) {
                return Err(Unread);
            }
            let token = r.token()?;
            let value = Value {
                flat: &mut *flat,
                source_keys: self.source_keys,
                row: self.row,
                column: Column::Cached { place, n },
                schema: field_schema,
                table: self.table,
            };
            value.read(token, r)?;
        }
        Ok(())
    }
}

/// One array element: its subtable row (none for `null`), as `Flattener::array` and
/// `Flattener::element_row` make it from the tree.
struct Element<'a, 't, S> {
    flat: &'a mut Flattener<'t, S>,
    source_keys: &'a [(Col, Cell)],
    /// The subtable.
    table: &'a Col,
    /// The place of an element object's fields in the column cache (`None`: the cache is full).
    place: Option<usize>,
    /// The schema of the array's items.
    schema: Option<&'a Schema>,
    /// The element's index in its array.
    index: i64,
}

impl<S: RowSink> Element<'_, '_, S> {
    /// Reads the element: a `null` has no row (its index is skipped); an object's fields go in
    /// the row, anything else in its `value` column. The element's level is on top of the
    /// flattener's while its row is built.
    fn read<'r>(self, r: &mut Reader<'r>) -> Result<(), Unread> {
        let token = r.token()?;
        if token == Token::Null {
            return Ok(());
        }
        let flat = self.flat;
        flat.levels.push(self.index);
        let row = flat.sink.open_row(self.table);
        let Flattener {
            cache, sink, levels, ..
        } = &mut *flat;
        let keys = self.source_keys.len();
        let hints = self
            .place
            .and_then(|place| cache.row_hints(place, keys + levels.len()));
        match hints {
            Some((hints, _)) => {
                let (key_hints, level_hints) = hints.split_at_mut(keys);
                for ((k, c), hint) in self.source_keys.iter().zip(key_hints) {
                    sink.put_hinted(row, k, hint, c.as_ref()).map_err(|_| Unread)?;
                }
                for ((n, &id), hint) in levels.iter().enumerate().zip(level_hints) {
                    sink.put_hinted(row, &level_col(n), hint, CellRef::BigInt(id))
                        .map_err(|_| Unread)?;
                }
            }
            None => {
                for (k, c) in self.source_keys {
                    sink.put(row, k, c.as_ref()).map_err(|_| Unread)?;
                }
                for (n, &id) in levels.iter().enumerate() {
                    sink.put(row, &level_col(n), CellRef::BigInt(id))
                        .map_err(|_| Unread)?;
                }
            }
        }
        if token == Token::Object {
            let object = Object {
                flat: &mut *flat,
                source_keys: self.source_keys,
                row,
                place: self.place.ok_or(Unread)?,
                prefix: Prefix::Root,
                schema: self.schema,
                table: self.table,
            };
            object.read(r)?;
            r.close(b'}')?;
        } else {
            let value = Value {
                flat: &mut *flat,
                source_keys: self.source_keys,
                row,
                column: Column::Value { place: self.place },
                schema: self.schema,
                table: self.table,
            };
            value.read(token, r)?;
        }
        flat.levels.pop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{flatten_record, flatten_tree, FlatRecord, Rejection, SchemaMessage};
    use super::*;
    use crate::flatten::SystemRow;
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use serde_json::json;

    fn spec(keys: &[&str], append_only: bool, rules: &NameRules) -> StreamSpec {
        let schema = json!({"type": "object", "properties": {
            "id": {"type": ["integer", "string"]},
            "k2": {"type": "string"},
            "ts": {"type": ["null", "string"], "format": "date-time"},
            "n": {"type": "number"},
            "o": {"type": "object", "properties": {"ts": {"type": "string", "format": "date-time"}, "n": {"type": "number"}}},
            "arr": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "string", "format": "date-time"}}]},
        }});
        let message = SchemaMessage {
            stream: "tickets".into(),
            schema: serde_json::from_value(schema).unwrap(),
            key_properties: keys.iter().map(|k| (*k).to_owned()).collect(),
            bookmark_properties: None,
        };
        StreamSpec::new(&message, append_only, rules)
    }

    fn record(text: &str) -> RecordMessage {
        RecordMessage {
            stream: "tickets".into(),
            record: serde_json::value::RawValue::from_string(text.to_owned()).unwrap(),
            version: Some(3),
            time_extracted: DateTime::<Utc>::from_timestamp(1_700_000_000, 0),
        }
    }

    fn sys() -> SystemCells {
        SystemCells {
            sequence: 1_700_000_000_000_000_000,
            batched_at: DateTime::<Utc>::from_timestamp_nanos(1_700_000_000_000_000_000),
        }
    }

    fn empty(rec: &RecordMessage) -> FlatRecord {
        FlatRecord {
            key: Vec::new(),
            sequence: sys().sequence,
            raw: rec.record.get().to_owned(),
            rows: Vec::new(),
            system: SystemRow::default(),
            log: Vec::new(),
        }
    }

    /// The record flattened by the streaming pass alone (`None`: it left the road).
    fn streamed(spec: &StreamSpec, rules: &NameRules, rec: &RecordMessage) -> Option<FlatRecord> {
        let mut out = empty(rec);
        let done = flatten(spec, rules, rec, &sys(), &mut out)?;
        out.key = done.key;
        out.system = done.system;
        out.log.clear();
        Some(out)
    }

    /// The record flattened from its tree alone.
    fn from_tree(spec: &StreamSpec, rules: &NameRules, rec: &RecordMessage) -> Result<FlatRecord, Rejection> {
        let mut out = empty(rec);
        let done = flatten_tree(spec, rules, rec, &sys(), &mut out)?;
        out.key = done.key;
        out.system = done.system;
        out.log.clear();
        Ok(out)
    }

    /// Checks both ways agree on `text`; true when the streaming pass took it.
    fn agree(spec: &StreamSpec, rules: &NameRules, text: &str) -> bool {
        let rec = record(text);
        let tree = from_tree(spec, rules, &rec);
        // What seam runs (streaming, or the tree after taking back what streaming put) is the tree's answer.
        assert_eq!(flatten_record(spec, rules, &rec, &sys()), tree, "for {text}");
        match streamed(spec, rules, &rec) {
            Some(s) => {
                assert_eq!(Ok(&s), tree.as_ref(), "for {text}");
                true
            }
            None => false,
        }
    }

    /// Records as sources send them take the streaming pass, whatever the place of their key.
    #[test]
    fn usual_records_are_flattened_while_parsed() {
        let rules = NameRules::POSTGRES;
        let tickets = spec(&["id"], false, &rules);
        for text in [
            r#"{"url": "https://x/1.json", "id": 1, "via": {"channel": "web", "source": {"from": {}, "rel": null}},
                "tags": ["a", "b", null, "c"], "custom_fields": [{"id": 7, "value": null}, {"id": 8, "value": "x"}],
                "ts": "2024-01-02T03:04:05Z", "n": 2, "o": {"ts": "2024-01-02T03:04:05Z", "n": 1.5},
                "arr": ["2024-01-02T03:04:05Z", "not a time"], "m": [[1, 2], [], [null, [3]]], "esc\"key": "a\nb",
                "_sdc_deleted_at": "2024-05-06T07:08:09Z", "big": 1e300, "neg": -5, "t": true, "z": null}"#,
            r#"{"a": {"b": {"c": [{"d": [1, {"e": 2}]}]}}, "id": "x"}"#,
            r#"{"id": 2}"#,
            r#"{"e": {}, "f": [], "id": 3, "g": [{}], "_sdc_deleted_at": null}"#,
        ] {
            assert!(agree(&tickets, &rules, text), "left the road: {text}");
        }
        assert!(agree(
            &spec(&[], false, &rules),
            &rules,
            r#"{"x": [1], "y": {"z": 2}}"#
        ));
        assert!(agree(
            &spec(&["id", "k2"], false, &rules),
            &rules,
            r#"{"a": [1], "k2": "b", "id": 1}"#
        ));
        let audits = spec(&[], true, &rules);
        assert!(agree(&audits, &rules, r#"{"id": 1, "events": [{"x": 1}]}"#));
        let audits = spec(&["id"], true, &rules);
        agree(&audits, &rules, r#"{"events": [{"x": 1}], "id": 1}"#);
    }

    /// Records off the road are flattened (or rejected) from their tree, after the streaming pass
    /// took back what it had put.
    #[test]
    fn unusual_records_go_to_the_tree() {
        let rules = NameRules::POSTGRES;
        let tickets = spec(&["id"], false, &rules);
        for text in [
            r#"{"id": 1, "a": 1, "a": 2}"#,
            r#"{"id": 1, "o": {"x": [1], "x": {"y": 2}}}"#,
            r#"{"id": 1, "a": {"b": 1}, "a__b": 2}"#,
            r#"{"id": 1, "a": {"b": [1]}, "a__b": 2}"#,
            r#"{"id": 1, "x": [{"%": 1}], "y": 2}"#,
            r#"{"id": 1, "x": {"n": 18446744073709551615}}"#,
            r#"{"id": 1, "x": "a\u0000b"}"#,
            r#"{"id": 1, "id": 2}"#,
            r#"{"x": [1, 2]}"#,
            r#"{"id": null, "x": 1}"#,
            r#"{"id": {"a": 1}}"#,
            r#"{"id": 1, "_sdc_deleted_at": "yesterday"}"#,
            r#"{"id": 1, "_sdc_deleted_at": null, "_sdc_deleted_at": null}"#,
            r#"[1, 2]"#,
        ] {
            assert!(!agree(&tickets, &rules, text), "took the streaming pass: {text}");
        }
        // Two names that fold into one column.
        let folded = spec(&["id"], false, &NameRules::DUCKDB);
        assert!(!agree(
            &folded,
            &NameRules::DUCKDB,
            r#"{"id": 1, "o": {"A": 1, "a": 2}}"#
        ));
    }

    /// A NUL reaches a string only through an escape: the reader, like serde_json, refuses one
    /// written raw, and stops at an escaped one, so the streaming pass searches no string for a
    /// NUL; the record goes to its tree wherever the string sits, which never stores a NUL.
    #[test]
    fn strings_read_hold_no_nul() {
        use serde::Deserialize;
        for raw in ["\"a\u{0}b\"", "\"a\u{1}b\"", "\"a\u{1f}\""] {
            assert!(<&str>::deserialize(&mut Reader::new(raw)).is_err(), "{raw:?}");
        }
        assert_eq!(<&str>::deserialize(&mut Reader::new("\"a b\"")).ok(), Some("a b"));
        // Nor does a string it unescapes: a `\u0000` stops it.
        assert!(String::deserialize(&mut Reader::new(r#""a\u0000b""#)).is_err());
        assert_eq!(
            String::deserialize(&mut Reader::new(r#""a\u0001b""#))
                .ok()
                .as_deref(),
            Some("a\u{1}b")
        );
        assert!(serde_json::from_str::<&str>("\"a\u{0}b\"").is_err());
        // A record's text is a `RawValue`, which serde_json checks as it reads it.
        assert!(serde_json::value::RawValue::from_string("{\"id\": 1, \"x\": \"a\u{0}b\"}".into()).is_err());
        assert_eq!(serde_json::from_str::<&str>("\"a\u{1}b\"").ok(), None);
        let rules = NameRules::POSTGRES;
        let tickets = spec(&["id"], false, &rules);
        assert!(agree(
            &tickets,
            &rules,
            r#"{"id": 1, "x": "a\nb", "o": {"y": "\u0041"}}"#
        ));
        for text in [
            r#"{"id": 1, "o": {"y": "a\u0000b"}}"#,
            r#"{"id": 1, "t": ["a", "\u0000"]}"#,
            r#"{"id": 1, "t": [{"y": "\u0000"}]}"#,
        ] {
            assert!(!agree(&tickets, &rules, text), "took the streaming pass: {text}");
            // The tree keeps such a value whole as JSON (the NUL stays escaped) or rejects the record.
            if let Ok(flat) = flatten_record(&tickets, &rules, &record(text), &sys()) {
                for i in 0..flat.rows.len() {
                    assert!(
                        flat.cells_of(i)
                            .all(|(_, c)| !matches!(c, Cell::Text(t) if t.contains('\0'))),
                        "{text}: {flat:?}"
                    );
                }
            }
        }
    }

    /// Objects keyed by data (a new name in every record, empty objects included) fill the column
    /// cache up to its bound and no further; past it records still flatten as from their tree.
    #[test]
    fn the_column_cache_stays_bounded_for_objects_keyed_by_data() {
        let rules = NameRules::POSTGRES;
        let tickets = spec(&["id"], false, &rules);
        let n = super::super::COLUMN_CACHE_MAX / 2 + 500;
        for i in 0..n {
            let text = format!(
                r#"{{"id": {i}, "m": {{"k{i}": {{"e{i}": {{}}}}, "v": [{{"w{i}": 1}}]}}, "x": "y"}}"#
            );
            if i % 1_000 == 0 || i + 3 > n {
                agree(&tickets, &rules, &text);
            } else {
                flatten_record(&tickets, &rules, &record(&text), &sys()).unwrap();
            }
        }
        let cache = tickets.columns.lock().unwrap();
        assert!(cache.len <= super::super::COLUMN_CACHE_MAX, "{}", cache.len);
        let names: usize = cache.places.iter().map(|p| p.names.len()).sum();
        assert!(cache.places.len() + names + cache.subtables.len() <= super::super::COLUMN_CACHE_MAX);
        assert!(
            cache.len > super::super::COLUMN_CACHE_MAX - 10,
            "the cache did fill: {}",
            cache.len
        );
        drop(cache);
        // Known names still take the streaming pass once the cache is full.
        assert!(agree(
            &tickets,
            &rules,
            r#"{"id": 1, "x": "z", "m": {"k1": {"e1": {}}}}"#
        ));
    }

    /// A JSON value as text, keys possibly repeated.
    #[derive(Debug, Clone)]
    enum J {
        Null,
        Bool(bool),
        Int(i64),
        Big(u64),
        Float(f64),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    impl J {
        fn write(&self, out: &mut String) {
            let quoted = |s: &str| serde_json::to_string(s).unwrap();
            match self {
                J::Null => out.push_str("null"),
                J::Bool(b) => out.push_str(&b.to_string()),
                J::Int(i) => out.push_str(&i.to_string()),
                J::Big(u) => out.push_str(&u.to_string()),
                J::Float(f) => out.push_str(&serde_json::to_string(&json!(f)).unwrap()),
                J::Str(s) => out.push_str(&quoted(s)),
                J::Arr(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        item.write(out);
                    }
                    out.push(']');
                }
                J::Obj(fields) => {
                    out.push('{');
                    for (i, (k, v)) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        out.push_str(&quoted(k));
                        out.push(':');
                        v.write(out);
                    }
                    out.push('}');
                }
            }
        }
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => "[a-c]{1,2}",
            2 => prop::sample::select(vec!["id", "k2", "ts", "n", "o", "arr", "value", "_sdc_deleted_at"]).prop_map(str::to_owned),
            1 => "[a-c]__[a-c]",
            1 => "[A-C\"\n é%]{0,3}",
            1 => "[0-9]{1,2}",
        ]
    }

    fn value() -> impl Strategy<Value = J> {
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::Int),
            Just(J::Big(u64::MAX)),
            (-400i32..400).prop_map(|i| J::Float(f64::from(i) / 8.0)),
            prop_oneof![
                "[a-z \"\\\\\n]{0,6}",
                Just("2024-01-02T03:04:05Z".to_owned()),
                Just("99999-01-02T03:04:05Z".to_owned()),
                Just("a\u{0}b".to_owned()),
            ]
            .prop_map(J::Str),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
                prop::collection::vec((key(), inner), 0..5).prop_map(J::Obj),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever the record, flattening gives what the tree gives; where the streaming pass
        /// takes a record, it gives exactly the tree's rows, cells, order, key and system cells.
        #[test]
        fn streaming_flattens_what_the_tree_does(
            fields in prop::collection::vec((key(), value()), 0..7),
            id in prop_oneof![4 => any::<i64>().prop_map(J::Int), 1 => "[a-z]{1,3}".prop_map(J::Str), 1 => Just(J::Null)],
            id_at in 0usize..8,
            keyed in 0usize..4,
            fold in any::<bool>(),
        ) {
            let rules = if fold { NameRules::DUCKDB } else { NameRules::POSTGRES };
            let mut fields = fields;
            if keyed != 3 {
                fields.insert(id_at.min(fields.len()), ("id".to_owned(), id));
            }
            let mut text = String::new();
            J::Obj(fields).write(&mut text);
            // One stream per setup for every case, as a loader keeps it for a stream's records:
            // its column cache and field orders carry over from record to record.
            SPECS.with(|specs| {
                let mut specs = specs.borrow_mut();
                let stream = specs.entry((if keyed == 3 { 0 } else { keyed }, fold)).or_insert_with(|| match keyed {
                    0 | 3 => spec(&["id"], false, &rules),
                    1 => spec(&[], true, &rules),
                    _ => spec(&["id", "k2"], false, &rules),
                });
                agree(stream, &rules, &text);
            });
        }
    }

    thread_local! {
        /// The streams of the property above, by key setup and naming rules.
        static SPECS: std::cell::RefCell<std::collections::HashMap<(usize, bool), StreamSpec>> =
            std::cell::RefCell::default();
    }

    /// A field found where the place's last objects had it takes its property only when the
    /// object's own schema has that name there. `O` folds into `o`'s column, so their fields share
    /// a place, but their schemas differ: `o.ts` is a date-time, `O.ts` a plain string (and `O`'s
    /// first property, `x`, a date-time). Fields in another order, or one fewer, are still found.
    #[test]
    fn field_orders_answer_as_the_lookups_do() {
        let rules = NameRules::DUCKDB;
        let time = json!({"type": "string", "format": "date-time"});
        let schema = json!({"type": "object", "properties": {
            "id": {"type": "integer"},
            "n": {"type": "number"},
            "ts": time,
            "o": {"type": "object", "properties": {"ts": time, "n": {"type": "number"}}},
            "O": {"type": "object", "properties": {"x": time, "ts": {"type": "string"}}},
        }});
        let stream = StreamSpec::new(
            &SchemaMessage {
                stream: "tickets".into(),
                schema: serde_json::from_value(schema).unwrap(),
                key_properties: vec!["id".into()],
                bookmark_properties: None,
            },
            false,
            &rules,
        );
        let at = "2024-01-02T03:04:05Z";
        let texts = [
            format!(r#"{{"id": 1, "o": {{"ts": "{at}", "n": 1}}, "ts": "{at}", "n": 2}}"#),
            format!(r#"{{"id": 2, "O": {{"ts": "{at}", "x": "{at}"}}, "ts": "{at}", "n": 2}}"#),
            format!(r#"{{"id": 3, "o": {{"ts": "{at}", "n": 1}}, "ts": "{at}", "n": 2}}"#),
            format!(r#"{{"id": 4, "o": {{"n": 1, "ts": "{at}"}}, "n": 2, "ts": "{at}"}}"#),
            format!(r#"{{"id": 5, "o": {{"ts": "{at}"}}, "ts": "{at}"}}"#),
            format!(r#"{{"id": 6, "N": 2, "TS": "{at}", "o": {{"N": 1, "Ts": "{at}"}}}}"#),
            format!(r#"{{"id": 7, "n": 2, "ts": "{at}", "o": {{"n": 1, "ts": "{at}"}}}}"#),
            format!(r#"{{"id": 8, "O": {{"x": "{at}", "ts": "{at}"}}, "ts": "{at}"}}"#),
        ];
        for _ in 0..3 {
            for text in &texts {
                assert!(agree(&stream, &rules, text), "left the road: {text}");
            }
        }
        let ts_cell = |text: &str| {
            let rows = streamed(&stream, &rules, &record(text)).unwrap().rows;
            let cell = rows[0]
                .1
                .iter()
                .find(|(k, _)| k.as_ref() == "o__ts")
                .map(|(_, c)| c.clone());
            cell
        };
        assert!(matches!(ts_cell(&texts[0]), Some(Cell::Timestamp(_))));
        assert!(
            matches!(ts_cell(&texts[1]), Some(Cell::Text(_))),
            "O.ts is a plain string"
        );
        assert!(
            matches!(ts_cell(&texts[5]), Some(Cell::Text(_))),
            "Ts is not a property of o"
        );
    }

    /// A field is found by comparing the text with the name its place's last objects had there
    /// (`Reader::key_is`); a key the text writes with escapes, or a name it must escape, is read
    /// instead. Either way the rows are the tree's.
    #[test]
    fn fields_found_in_the_text_answer_as_the_tree_does() {
        let rules = NameRules::POSTGRES;
        let tickets = spec(&["id"], false, &rules);
        let at = "2024-01-02T03:04:05Z";
        let texts = [
            format!(r#"{{"id": 1, "a": 1, "o": {{"n": 1, "ts": "{at}"}}, "q\"t": 2, "b\\s": 3, "né": 4}}"#),
            format!(
                r#"{{"id": 2, "\u0061": 1, "o": {{"\u006e": 1, "ts": "{at}"}}, "q\"t": 2, "b\\s": 3, "n\u00e9": 4}}"#
            ),
            r#"{"id": 3, "a": 1, "o": {"n": 1, "ts": "x"}, "q\"t": 2, "b\\s": 3, "né": 4}"#.to_owned(),
            format!(r#"{{"id": 4, "o": {{"ts": "{at}", "n": 1}}, "a": 1}}"#),
            format!(r#"{{"id": 5, "a": 1, "o": {{"n": 1, "ts": "{at}"}}, "q\"t": 2, "b\\s": 3, "né": 4}}"#),
        ];
        for _ in 0..2 {
            for text in &texts {
                assert!(agree(&tickets, &rules, text), "left the road: {text}");
            }
        }
        // A field met twice still sends the record to its tree, found in the text or read.
        assert!(!agree(&tickets, &rules, r#"{"id": 6, "a": 1, "a": 2}"#));
        assert!(!agree(
            &tickets,
            &rules,
            r#"{"id": 7, "a": 1, "o": {"n": 1, "n": 2}}"#
        ));
        assert!(!agree(&tickets, &rules, r#"{"id": 8, "a": 1, "\u0061": 2}"#));
    }

    /// The generated records exercise both roads (the property above is not passed by the tree
    /// alone).
    #[test]
    fn the_property_takes_both_roads() {
        let rules = NameRules::POSTGRES;
        let stream = spec(&["id"], false, &rules);
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = prop::collection::vec((key(), value()), 0..7);
        let (mut streamed_n, mut tree_n) = (0, 0);
        for _ in 0..500 {
            let mut fields = strategy.new_tree(&mut runner).unwrap().current();
            fields.insert(0, ("id".to_owned(), J::Int(1)));
            let mut text = String::new();
            J::Obj(fields).write(&mut text);
            if agree(&stream, &rules, &text) {
                streamed_n += 1;
            } else {
                tree_n += 1;
            }
        }
        assert!(
            streamed_n > 100 && tree_n > 50,
            "streamed {streamed_n}, tree {tree_n}"
        );
    }
}
