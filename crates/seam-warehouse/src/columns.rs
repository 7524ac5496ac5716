//! Columnar staging: a batch's rows, held table by table and column by column. Pure.
//!
//! Flattening writes each cell straight into the column it belongs to ([`StreamBatch`] is a
//! [`RowSink`]): one growing vector per `(column, type)` of a table, text in one byte buffer per
//! column, and the row number of every value. A record costs no allocation of its own beyond its
//! JSON parse; the records of a batch share their columns' buffers, and dropping a committed batch
//! frees a few vectors per column instead of every cell.
//!
//! ```text
//! record ──flatten──► StreamBatch ── tables ──► StagedTable ── columns ──► ColumnBuf { rows, values }
//!                      │ records (sequence, JSON, rows)        owner of each row, dead rows
//!                      └ keys → newest record
//! ```
//!
//! De-duplication marks the rows of a superseded record dead; planning reads the live rows.

use crate::flatten::{
    system_column_type, CellRef, Col, ColumnState, ColumnType, Ddl, FastHash, Flattened, Layout, Rejection,
    RowId, RowSink, SlotHint, SYSTEM_CELLS,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// No column buffer (a NULL cell).
const NONE: u32 = u32::MAX;

/// The values of one column buffer.
#[derive(Debug)]
enum Values {
    /// Bigints and timestamps (microseconds).
    Int(Vec<i64>),
    /// Doubles.
    Double(Vec<f64>),
    /// Booleans.
    Boolean(Vec<bool>),
    /// Text: every value's bytes, one after the other, and where each value ends.
    Text { bytes: String, ends: Vec<u32> },
}

impl Values {
    fn new(ty: ColumnType) -> Values {
        match ty {
            ColumnType::BigInt | ColumnType::Timestamp => Values::Int(Vec::new()),
            ColumnType::Double => Values::Double(Vec::new()),
            ColumnType::Boolean => Values::Boolean(Vec::new()),
            ColumnType::Text => Values::Text {
                bytes: String::new(),
                ends: Vec::new(),
            },
        }
    }
}

/// Reads a column buffer's values in row order, for [`TableRows::for_each_row`]: a row's cell is
/// its value when the buffer's next value is that row's, NULL otherwise (most cells of a sparse
/// column), without a lookup per cell.
#[derive(Debug)]
struct Cursor<'r> {
    buf: &'r ColumnBuf,
    /// The row of the next value (`u32::MAX` past the last: no row has that number, as a row
    /// number is below the `u32` row count).
    next: u32,
    /// The next value's index.
    at: usize,
    /// Where the next text value starts.
    start: usize,
}

impl<'r> Cursor<'r> {
    fn new(buf: &'r ColumnBuf) -> Cursor<'r> {
        Cursor {
            buf,
            next: buf.rows.first().copied().unwrap_or(u32::MAX),
            at: 0,
            start: 0,
        }
    }

    /// Row `r`'s cell; rows are asked for in order, each once.
    #[inline(always)]
    fn take(&mut self, r: u32) -> CellRef<'r> {
        if self.next != r {
            return CellRef::Null;
        }
        let i = self.at;
        self.at += 1;
        self.next = self.buf.rows.get(self.at).copied().unwrap_or(u32::MAX);
        match &self.buf.values {
            Values::Int(v) => match self.buf.ty {
                ColumnType::Timestamp => CellRef::Timestamp(v[i]),
                _ => CellRef::BigInt(v[i]),
            },
            Values::Double(v) => CellRef::Double(v[i]),
            Values::Boolean(v) => CellRef::Boolean(v[i]),
            Values::Text { bytes, ends } => {
                let end = ends[i] as usize;
                let text = bytes.get(self.start..end).map_or(CellRef::Null, CellRef::Text);
                self.start = end;
                text
            }
        }
    }
}

/// One column's values and the row of each, borrowed from the staged batch
/// ([`TableRows::values`]).
#[derive(Debug, Clone, Copy)]
pub struct ColumnValues<'r> {
    /// The row of each value, ascending; as many as there are values.
    pub rows: &'r [u32],
    /// The values.
    pub values: ValuesRef<'r>,
}

/// A column's values, by type.
#[derive(Debug, Clone, Copy)]
pub enum ValuesRef<'r> {
    /// Bigints.
    BigInt(&'r [i64]),
    /// Doubles.
    Double(&'r [f64]),
    /// Booleans.
    Boolean(&'r [bool]),
    /// Timestamps: microseconds since the Unix epoch, UTC.
    Timestamp(&'r [i64]),
    /// Texts: their bytes one after the other, and where each ends (value `i` is
    /// `bytes[ends[i - 1]..ends[i]]`, the first from 0).
    Text {
        /// The values' bytes.
        bytes: &'r str,
        /// The end of each value in `bytes`.
        ends: &'r [u32],
    },
}

/// The values of one `(base column, type)` of a staged table, with their row numbers (ascending).
#[derive(Debug)]
pub struct ColumnBuf {
    /// The base column (before any type split).
    pub base: Col,
    /// The values' type.
    pub ty: ColumnType,
    rows: Vec<u32>,
    values: Values,
    /// The rows that put a NULL in this system column (it is created for them too).
    nulls: Vec<u32>,
}

/// In a log entry, marks a NULL put in a system column's buffer.
const NULL_BIT: u32 = 1 << 31;

impl ColumnBuf {
    /// A buffer with room for `size` (values, text bytes) without growing.
    fn with_capacity(base: Col, ty: ColumnType, size: BufSize) -> ColumnBuf {
        let mut values = Values::new(ty);
        match &mut values {
            Values::Int(v) => v.reserve_exact(size.values),
            Values::Double(v) => v.reserve_exact(size.values),
            Values::Boolean(v) => v.reserve_exact(size.values),
            Values::Text { bytes, ends } => {
                bytes.reserve_exact(size.bytes);
                ends.reserve_exact(size.values);
            }
        }
        ColumnBuf {
            base,
            ty,
            rows: Vec::with_capacity(size.values),
            values,
            nulls: Vec::new(),
        }
    }

    /// The buffer's size, for the next batch's buffer of its column.
    fn size(&self) -> BufSize {
        BufSize {
            values: self.rows.len(),
            bytes: match &self.values {
                Values::Text { bytes, .. } => bytes.len(),
                _ => 0,
            },
        }
    }

    /// Appends a value of row `row`; `false` when the cell's type is not the buffer's (nothing is
    /// appended).
    fn push(&mut self, row: u32, cell: CellRef<'_>) -> bool {
        match (&mut self.values, cell) {
            (Values::Int(v), CellRef::BigInt(x) | CellRef::Timestamp(x)) => v.push(x),
            (Values::Double(v), CellRef::Double(x)) => v.push(x),
            (Values::Boolean(v), CellRef::Boolean(x)) => v.push(x),
            (Values::Text { bytes, ends }, CellRef::Text(x)) => {
                bytes.push_str(x);
                ends.push(bytes.len() as u32);
            }
            _ => return false,
        }
        self.rows.push(row);
        true
    }

    /// Takes back the last value.
    fn pop(&mut self) {
        self.rows.pop();
        match &mut self.values {
            Values::Int(v) => {
                v.pop();
            }
            Values::Double(v) => {
                v.pop();
            }
            Values::Boolean(v) => {
                v.pop();
            }
            Values::Text { bytes, ends } => {
                ends.pop();
                bytes.truncate(ends.last().map_or(0, |&e| e as usize));
            }
        }
    }

    /// The `i`-th value.
    fn value(&self, i: usize) -> CellRef<'_> {
        match &self.values {
            Values::Int(v) => match self.ty {
                ColumnType::Timestamp => CellRef::Timestamp(v[i]),
                _ => CellRef::BigInt(v[i]),
            },
            Values::Double(v) => CellRef::Double(v[i]),
            Values::Boolean(v) => CellRef::Boolean(v[i]),
            Values::Text { bytes, ends } => {
                let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                bytes
                    .get(start..ends[i] as usize)
                    .map_or(CellRef::Null, CellRef::Text)
            }
        }
    }

    /// Values held.
    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// A column buffer's size: values, and text bytes.
#[derive(Debug, Clone, Copy, Default)]
struct BufSize {
    values: usize,
    bytes: usize,
}

/// The sizes a staged table reached: its rows, and each column buffer's size.
#[derive(Debug, Default)]
struct TableShape {
    rows: usize,
    bufs: HashMap<(Col, ColumnType), BufSize, FastHash>,
}

/// The sizes a stream's batch reached ([`StreamBatch::shape`]), for its next batch to make room
/// for up front ([`StreamBatch::shaped`]). Buffers that grow by doubling copy what they hold at
/// each step: over a batch that is another pass over most of its data, and memory traffic a
/// loader would pay in every batch. A next batch that turns out smaller only leaves room unused
/// (reserved, never touched); one that turns out larger grows from there.
#[derive(Debug, Default)]
pub struct BatchShape {
    records: usize,
    spans: usize,
    tables: HashMap<Col, Arc<TableShape>, FastHash>,
}

/// One base column of a staged table: the row that last had a cell for it (for collisions) and its
/// buffer per type.
#[derive(Debug)]
struct Slot {
    /// The row number + 1 of the last cell put (0: none in the open rows).
    stamp: u32,
    /// The buffer of each type (indexed like [`ColumnType::ALL`]), or [`NONE`].
    bufs: [u32; 5],
    /// The column's type when it is a system column (created even when its cells are NULL).
    system: Option<ColumnType>,
}

fn type_index(ty: ColumnType) -> usize {
    match ty {
        ColumnType::BigInt => 0,
        ColumnType::Double => 1,
        ColumnType::Boolean => 2,
        ColumnType::Timestamp => 3,
        ColumnType::Text => 4,
    }
}

/// One table's staged rows.
#[derive(Debug)]
pub struct StagedTable {
    /// The table.
    pub name: Col,
    /// The sizes this table reached in the stream's last batch, if any.
    shape: Option<Arc<TableShape>>,
    /// Rows staged (dead ones included).
    rows: u32,
    /// The record each row belongs to.
    owner: Vec<u32>,
    /// Which rows are dead (empty until one is).
    dead: Vec<bool>,
    dead_rows: u32,
    /// Column name (by the address of its shared text) → slot. Names with the same text but another
    /// address are found through `by_name`, and kept alive in `pins` so their address stays theirs.
    by_address: HashMap<usize, u32, FastHash>,
    by_name: HashMap<Col, u32, FastHash>,
    pins: Vec<Col>,
    /// The buffers of the system columns, in the order of [`crate::flatten::SystemRow::of_row`]
    /// ([`NONE`]: none yet); see [`StagedTable::write_system`].
    system_bufs: [u32; SYSTEM_CELLS],
    slots: Vec<Slot>,
    /// The column buffers, in the order they were first used.
    bufs: Vec<ColumnBuf>,
}

impl StagedTable {
    fn new(name: Col, shape: Option<Arc<TableShape>>) -> StagedTable {
        StagedTable {
            name,
            owner: Vec::with_capacity(shape.as_ref().map_or(0, |s| s.rows)),
            shape,
            rows: 0,
            dead: Vec::new(),
            dead_rows: 0,
            by_address: HashMap::default(),
            by_name: HashMap::default(),
            pins: Vec::new(),
            system_bufs: [NONE; SYSTEM_CELLS],
            slots: Vec::new(),
            bufs: Vec::new(),
        }
    }

    /// True when the table made room for the sizes of a last batch.
    #[cfg(test)]
    pub(crate) fn shaped(&self) -> bool {
        self.shape.is_some()
    }

    #[inline(always)]
    fn slot(&mut self, column: &Col) -> u32 {
        let address = column.as_ptr() as usize;
        if let Some(&s) = self.by_address.get(&address) {
            return s;
        }
        let s = match self.by_name.get(column) {
            Some(&s) => {
                self.pins.push(column.clone());
                s
            }
            None => {
                let s = self.slots.len() as u32;
                self.slots.push(Slot {
                    stamp: 0,
                    bufs: [NONE; 5],
                    system: system_column_type(column),
                });
                self.by_name.insert(column.clone(), s);
                s
            }
        };
        self.by_address.insert(address, s);
        s
    }

    /// Puts the `k`-th system cell of a row (the `k`-th of [`crate::flatten::SystemRow::of_row`]'s
    /// cells, `column` its name) into its column: the first one through [`StagedTable::write`],
    /// the next ones straight into the buffer it used (a cell of another type, which seam's
    /// system cells never are, takes the first one's way). A system column has one type (its
    /// cells are of that type or NULL, and it is created for NULLs too), so one buffer; its name is
    /// never a field's (the naming rules reserve the names), so it needs no check for a
    /// collision; and system cells are put when their record is finished, never taken back.
    #[inline(always)]
    fn write_system(&mut self, row: u32, k: usize, column: &Col, cell: CellRef<'_>) {
        let known = self.system_bufs.get(k).copied().unwrap_or(NONE);
        if let Some(buf) = self.bufs.get_mut(known as usize) {
            let put = match cell {
                CellRef::Null => {
                    buf.nulls.push(row);
                    true
                }
                _ => buf.push(row, cell),
            };
            if put {
                return;
            }
        }
        let s = self.slot(column);
        if let Ok(b) = self.write(row, s, column, cell) {
            if let (Some(known), true) = (self.system_bufs.get_mut(k), b != NONE) {
                *known = b & !NULL_BIT;
            }
        }
    }

    /// Puts `cell` into slot `s` of `row`: what [`Entry::Cell`] logs for it (its buffer, with
    /// [`NULL_BIT`] for a NULL, or [`NONE`]), or the collision when the row has a cell there.
    #[inline(always)]
    fn write(&mut self, row: u32, s: u32, column: &Col, cell: CellRef<'_>) -> Result<u32, String> {
        let Some(slot) = self.slots.get_mut(s as usize) else {
            return Err(format!("no slot {s} for {column}"));
        };
        if slot.stamp == row + 1 {
            return Err(format!("Field collision on {column}"));
        }
        slot.stamp = row + 1;
        let Some(ty) = cell.column_type().or(slot.system) else {
            return Ok(NONE);
        };
        let mut b = slot.bufs[type_index(ty)];
        if b == NONE {
            b = self.bufs.len() as u32;
            slot.bufs[type_index(ty)] = b;
            let size = self
                .shape
                .as_ref()
                .and_then(|s| s.bufs.get(&(column.clone(), ty)));
            self.bufs.push(ColumnBuf::with_capacity(
                column.clone(),
                ty,
                size.copied().unwrap_or_default(),
            ));
        }
        let buf = &mut self.bufs[b as usize];
        Ok(if cell == CellRef::Null {
            buf.nulls.push(row);
            b | NULL_BIT
        } else if buf.push(row, cell) {
            b
        } else {
            NONE
        })
    }

    fn is_dead(&self, row: u32) -> bool {
        self.dead.get(row as usize).copied().unwrap_or(false)
    }

    fn kill(&mut self, first: u32, count: u32) {
        if self.dead.len() < self.rows as usize {
            self.dead.resize(self.rows as usize, false);
        }
        for r in first..first + count {
            if let Some(d) = self.dead.get_mut(r as usize) {
                if !*d {
                    *d = true;
                    self.dead_rows += 1;
                }
            }
        }
    }

    /// True when row `row` is loaded: not superseded, and its record not among `rejected`
    /// (indexed by record; empty when none is).
    fn live(&self, row: u32, rejected: &[bool]) -> bool {
        !self.is_dead(row)
            && (rejected.is_empty()
                || !self
                    .owner
                    .get(row as usize)
                    .and_then(|&o| rejected.get(o as usize))
                    .copied()
                    .unwrap_or(false))
    }

    /// Rows loaded (see [`StagedTable::live`]).
    pub fn live_rows(&self, rejected: &[bool]) -> usize {
        if rejected.is_empty() {
            return (self.rows - self.dead_rows) as usize;
        }
        (0..self.rows).filter(|&r| self.live(r, rejected)).count()
    }

    /// True when `buf` has a value in a loaded row.
    fn has_live(&self, buf: &ColumnBuf, rejected: &[bool]) -> bool {
        if self.dead_rows == 0 && rejected.is_empty() {
            return buf.len() > 0;
        }
        buf.rows.iter().any(|&r| self.live(r, rejected))
    }

    /// True when `buf` has a value, or (a system column) a NULL, in a loaded row: the column is
    /// then created.
    fn needs_column(&self, buf: &ColumnBuf, rejected: &[bool]) -> bool {
        self.has_live(buf, rejected) || buf.nulls.iter().any(|&r| self.live(r, rejected))
    }

    /// The buffers of `column` (one per type it took), if the table has any.
    fn bufs_of(&self, column: &str) -> impl Iterator<Item = &ColumnBuf> {
        self.by_name
            .get(column)
            .map(|&s| self.slots[s as usize].bufs)
            .into_iter()
            .flatten()
            .filter(|&b| b != NONE)
            .map(|b| &self.bufs[b as usize])
    }
}

/// What flattening did, cell by cell, to the record in progress (taken back by a rollback).
#[derive(Debug, Clone, Copy)]
enum Entry {
    /// A row opened: the last of [`StreamBatch::rows`].
    Row,
    /// A cell put; `buf` is [`NONE`] for a NULL.
    Cell { table: u32, slot: u32, buf: u32 },
}

/// A staged record.
#[derive(Debug)]
struct StagedRecord {
    sequence: i64,
    /// Where the record stands in the batch's order: its own number, or that of the record with
    /// the same key it replaced.
    position: u32,
    /// Its JSON, in [`StreamBatch::raw`], when it was kept: only a record whose key may be
    /// refused at planning needs it ([`StreamBatch::reject_key_conflicts`]).
    raw: Option<TextAt>,
    /// Its rows, in [`StreamBatch::spans`].
    spans: (u32, u32),
    dead: bool,
}

/// Where [`Texts`] holds a text.
#[derive(Debug, Clone, Copy)]
struct TextAt {
    chunk: usize,
    start: usize,
    end: usize,
}

/// The bytes of a chunk of [`Texts`] (a longer text has a chunk of its own size).
const TEXT_CHUNK: usize = 256 * 1024;

/// Texts one after the other, in chunks that never move: appending never copies what is held
/// already, as a growing `String` does at each doubling (a batch keeps megabytes of records' JSON).
#[derive(Debug, Default)]
struct Texts {
    chunks: Vec<String>,
}

impl Texts {
    fn push(&mut self, text: &str) -> TextAt {
        let c = match self.chunks.last_mut() {
            Some(c) if c.capacity() - c.len() >= text.len() => c,
            _ => {
                self.chunks
                    .push(String::with_capacity(text.len().max(TEXT_CHUNK)));
                self.chunks.last_mut().expect("a chunk was just pushed")
            }
        };
        let start = c.len();
        c.push_str(text);
        TextAt {
            chunk: self.chunks.len() - 1,
            start,
            end: start + text.len(),
        }
    }

    fn get(&self, at: TextAt) -> &str {
        self.chunks
            .get(at.chunk)
            .and_then(|c| c.get(at.start..at.end))
            .unwrap_or_default()
    }
}

/// A record's consecutive rows of one table.
#[derive(Debug, Clone, Copy)]
struct Span {
    table: u32,
    first: u32,
    count: u32,
}

/// One stream's staged batch, column by column. See the module docs.
#[derive(Debug)]
pub struct StreamBatch {
    /// This batch's mark on the [`SlotHint`]s it leaves: no other batch has it.
    mark: u64,
    /// The sizes of the stream's last batch, if any.
    shape: Option<Arc<BatchShape>>,
    tables: Vec<StagedTable>,
    log: Vec<Entry>,
    records: Vec<StagedRecord>,
    spans: Vec<Span>,
    /// Each key's newest record. The key bytes are kept as built (a `Box<[u8]>` would shrink, and so
    /// copy, every key).
    keys: HashMap<Vec<u8>, u32, FastHash>,
    raw: Texts,
    /// The rows of the record in progress, in the order it opened them (the [`Entry::Row`]s of
    /// [`StreamBatch::log`]: kept beside it so that finishing a record does not walk its cells).
    rows: Vec<RowId>,
}

impl Default for StreamBatch {
    fn default() -> StreamBatch {
        /// The next batch's mark (never 0, a hint's "none"; 2⁶⁴ batches never come round).
        static NEXT_MARK: AtomicU64 = AtomicU64::new(1);
        StreamBatch {
            mark: NEXT_MARK.fetch_add(1, Ordering::Relaxed),
            shape: None,
            tables: Vec::new(),
            log: Vec::new(),
            records: Vec::new(),
            spans: Vec::new(),
            keys: HashMap::default(),
            raw: Texts::default(),
            rows: Vec::new(),
        }
    }
}

impl RowSink for StreamBatch {
    fn open_row(&mut self, table: &Col) -> RowId {
        let t = match self.tables.iter().position(|t| t.name == *table) {
            Some(t) => t,
            None => {
                let shape = self.shape.as_ref().and_then(|s| s.tables.get(table).cloned());
                self.tables.push(StagedTable::new(table.clone(), shape));
                self.tables.len() - 1
            }
        };
        let record = self.records.len() as u32;
        let st = &mut self.tables[t];
        let row = st.rows;
        st.rows += 1;
        st.owner.push(record);
        if !st.dead.is_empty() {
            st.dead.push(false);
        }
        self.log.push(Entry::Row);
        let id = RowId { table: t as u32, row };
        self.rows.push(id);
        id
    }

    fn put(&mut self, row: RowId, column: &Col, cell: CellRef<'_>) -> Result<(), String> {
        let Some(t) = self.tables.get_mut(row.table as usize) else {
            return Err(format!("no open row for {column}"));
        };
        let s = t.slot(column);
        self.write(row, s, column, cell)
    }

    /// A hint this batch left names the slot it found `column` in, in the hint's table: slots are
    /// never taken back within a batch (a rollback leaves them, empty).
    #[inline(always)]
    fn put_hinted(
        &mut self,
        row: RowId,
        column: &Col,
        hint: &mut SlotHint,
        cell: CellRef<'_>,
    ) -> Result<(), String> {
        if hint.owner == self.mark && hint.table == row.table {
            return self.write(row, hint.slot, column, cell);
        }
        let Some(t) = self.tables.get_mut(row.table as usize) else {
            return Err(format!("no open row for {column}"));
        };
        let s = t.slot(column);
        *hint = SlotHint {
            owner: self.mark,
            table: row.table,
            slot: s,
        };
        self.write(row, s, column, cell)
    }

    fn mark(&self) -> usize {
        self.log.len()
    }

    fn rollback(&mut self, mark: usize) {
        while self.log.len() > mark {
            let Some(entry) = self.log.pop() else { break };
            match entry {
                Entry::Row => {
                    let Some(RowId { table, .. }) = self.rows.pop() else {
                        continue;
                    };
                    if let Some(t) = self.tables.get_mut(table as usize) {
                        t.rows -= 1;
                        t.owner.pop();
                        if t.dead.len() > t.rows as usize {
                            t.dead.pop();
                        }
                    }
                }
                Entry::Cell { table, slot, buf } => {
                    if let Some(t) = self.tables.get_mut(table as usize) {
                        t.slots[slot as usize].stamp = 0;
                        if buf == NONE {
                        } else if buf & NULL_BIT != 0 {
                            t.bufs[(buf & !NULL_BIT) as usize].nulls.pop();
                        } else {
                            t.bufs[buf as usize].pop();
                        }
                    }
                }
            }
        }
    }
}

impl StreamBatch {
    /// Puts `cell` into slot `s` of `row`'s table, and logs it for a rollback.
    #[inline(always)]
    fn write(&mut self, row: RowId, s: u32, column: &Col, cell: CellRef<'_>) -> Result<(), String> {
        let Some(t) = self.tables.get_mut(row.table as usize) else {
            return Err(format!("no open row for {column}"));
        };
        let logged = t.write(row.row, s, column, cell)?;
        self.log.push(Entry::Cell {
            table: row.table,
            slot: s,
            buf: logged,
        });
        Ok(())
    }

    /// An empty batch that makes room for what `shape` (a last batch's) held.
    pub fn shaped(shape: Arc<BatchShape>) -> StreamBatch {
        let mut batch = StreamBatch {
            records: Vec::with_capacity(shape.records),
            spans: Vec::with_capacity(shape.spans),
            ..StreamBatch::default()
        };
        batch.keys.reserve(shape.records);
        batch.shape = Some(shape);
        batch
    }

    /// The sizes this batch reached, for [`StreamBatch::shaped`].
    pub fn shape(&self) -> BatchShape {
        BatchShape {
            records: self.records.len(),
            spans: self.spans.len(),
            tables: self
                .tables
                .iter()
                .map(|t| {
                    let bufs = t
                        .bufs
                        .iter()
                        .map(|b| ((b.base.clone(), b.ty), b.size()))
                        .collect();
                    let shape = TableShape {
                        rows: t.rows as usize,
                        bufs,
                    };
                    (t.name.clone(), Arc::new(shape))
                })
                .collect(),
        }
    }

    /// True when no record is staged.
    pub fn is_empty(&self) -> bool {
        self.records.iter().all(|r| r.dead)
    }

    /// Takes back the record being flattened (after a rejection).
    pub fn discard_record(&mut self) {
        self.rollback(0);
    }

    /// Ends the record being flattened: gives each of its rows the system cells, and keeps it
    /// unless the batch holds a newer record with the same key (the newest `_sdc_sequence` wins; on
    /// a tie, the later record). `raw` is the record's JSON, kept for a rejection at planning; the
    /// caller leaves it out (`None`) for a record whose key cannot be refused there.
    pub fn finish_record(&mut self, done: Flattened, sequence: i64, raw: Option<&str>) {
        let rows = std::mem::take(&mut self.rows);
        let index = self.records.len() as u32;
        let replaces = match self.keys.get(done.key.as_slice()) {
            Some(&old) if self.records[old as usize].sequence > sequence => {
                // The rows go back to the log's rollback, which takes them off `self.rows`.
                self.rows = rows;
                self.rollback(0);
                return;
            }
            Some(&old) => Some(old),
            None => None,
        };
        // The record stays: its system cells need no log entry (the log is cleared below).
        for (i, &row) in rows.iter().enumerate() {
            let Some(t) = self.tables.get_mut(row.table as usize) else {
                continue;
            };
            for (k, (c, v)) in done.system.of_row(i == 0).enumerate() {
                t.write_system(row.row, k, c, v.as_ref());
            }
        }
        let first_span = self.spans.len() as u32;
        for &row in &rows {
            let own = self.spans.len() as u32 > first_span;
            match self.spans.last_mut() {
                Some(s) if own && s.table == row.table && s.first + s.count == row.row => s.count += 1,
                _ => self.spans.push(Span {
                    table: row.table,
                    first: row.row,
                    count: 1,
                }),
            }
        }
        let raw = raw.map(|raw| self.raw.push(raw));
        let position = replaces.map_or(index, |old| self.records[old as usize].position);
        self.records.push(StagedRecord {
            sequence,
            position,
            raw,
            spans: (first_span, self.spans.len() as u32),
            dead: false,
        });
        // Stamps need no reset: the next record's rows have numbers of their own.
        self.log.clear();
        if let Some(old) = replaces {
            self.kill(old);
        }
        self.keys.insert(done.key, index);
        self.rows = rows;
        self.rows.clear();
    }

    /// Marks a record's rows dead.
    fn kill(&mut self, record: u32) {
        let Some(r) = self.records.get_mut(record as usize) else {
            return;
        };
        if r.dead {
            return;
        }
        r.dead = true;
        let (a, b) = r.spans;
        for span in &self.spans[a as usize..b as usize] {
            if let Some(t) = self.tables.get_mut(span.table as usize) {
                t.kill(span.first, span.count);
            }
        }
    }

    /// How many staged records kept their JSON.
    #[cfg(test)]
    pub(crate) fn json_kept(&self) -> usize {
        self.records.iter().filter(|r| r.raw.is_some()).count()
    }

    /// The staged tables, in the order they were first met.
    pub fn tables(&self) -> &[StagedTable] {
        &self.tables
    }

    /// Checks the batch's key columns against `layout` and rejects the records whose key has another
    /// type than its column: key columns never split. As if the batch's records were planned one by
    /// one in the order they were first staged (a record replaced within the batch by one with the
    /// same key hands its place on): a key column the layout does not have yet takes the type of
    /// the first record that is not rejected. `keys` gives each table's key columns; rejections go
    /// to `rejected` under `table_name`. Returns, per record, whether it was rejected (empty when
    /// none was). The batch is not changed: a commit that fails plans again. `Err` when a record to
    /// reject was staged without its JSON (the stager's promise that its key fits was wrong):
    /// nothing may be committed then.
    pub fn reject_key_conflicts<'k>(
        &self,
        layout: &Layout,
        keys: &dyn Fn(&str) -> &'k [String],
        table_name: &str,
        rejected: &mut Vec<Rejection>,
    ) -> Result<Vec<bool>, String> {
        // (table, key column, its live buffers, the layout's state of the column).
        let mut checks = Vec::new();
        let mut conflict = false;
        for (ti, t) in self.tables.iter().enumerate() {
            let existing = layout.tables.get(&*t.name);
            for key in keys(&t.name) {
                let bufs: Vec<&ColumnBuf> = t.bufs_of(key).filter(|b| t.has_live(b, &[])).collect();
                if bufs.is_empty() {
                    continue;
                }
                let state = existing.and_then(|l| l.columns.get(key));
                conflict |= bufs.len() > 1
                    || match state {
                        Some(ColumnState::Single(ty)) => *ty != bufs[0].ty,
                        Some(ColumnState::Split(_)) => true,
                        None => false,
                    };
                checks.push((ti, key, bufs, state));
            }
        }
        if !conflict {
            return Ok(Vec::new());
        }
        // Each key column: the type of each live row's key cell, and the type the column takes
        // (`None` inside: split, no type fits).
        let mut types: Vec<HashMap<u32, ColumnType, FastHash>> = Vec::with_capacity(checks.len());
        let mut chosen: Vec<Option<Option<ColumnType>>> = Vec::with_capacity(checks.len());
        for (ti, _, bufs, state) in &checks {
            let t = &self.tables[*ti];
            let mut by_row = HashMap::default();
            for b in bufs {
                by_row.extend(b.rows.iter().filter(|&&r| !t.is_dead(r)).map(|&r| (r, b.ty)));
            }
            types.push(by_row);
            chosen.push(match state {
                Some(ColumnState::Single(ty)) => Some(Some(*ty)),
                Some(ColumnState::Split(_)) => Some(None),
                None => None,
            });
        }
        let mut order: Vec<u32> = (0..self.records.len() as u32)
            .filter(|&r| !self.records[r as usize].dead)
            .collect();
        order.sort_by_key(|&r| self.records[r as usize].position);
        let mut out = vec![false; self.records.len()];
        for record in order {
            let r = &self.records[record as usize];
            let spans = &self.spans[r.spans.0 as usize..r.spans.1 as usize];
            // The record's key cells, per check.
            let mut cells: Vec<(usize, ColumnType)> = Vec::new();
            for span in spans {
                for (c, (ti, ..)) in checks.iter().enumerate() {
                    if *ti != span.table as usize {
                        continue;
                    }
                    for row in span.first..span.first + span.count {
                        if let Some(&ty) = types[c].get(&row) {
                            cells.push((c, ty));
                        }
                    }
                }
            }
            let clash = cells
                .iter()
                .find(|&&(c, ty)| matches!(chosen[c], Some(fits) if fits != Some(ty)));
            if let Some(&(c, _)) = clash {
                let (ti, key, ..) = &checks[c];
                let Some(raw) = r.raw else {
                    return Err(format!(
                        "a record of {table_name} whose key was expected to fit was staged without its JSON, \
                         and its primary key {key} of {} has another type than its column",
                        self.tables[*ti].name
                    ));
                };
                rejected.push(Rejection {
                    table_name: table_name.to_owned(),
                    reason: format!(
                        "primary key {key} of {} has a value of another type than its column",
                        self.tables[*ti].name
                    ),
                    record: self.raw.get(raw).to_owned(),
                });
                out[record as usize] = true;
                continue;
            }
            for (c, ty) in cells {
                chosen[c].get_or_insert(Some(ty));
            }
        }
        Ok(out)
    }

    /// Plans the DDL the batch's live rows need, table by table in the order they were met.
    pub fn plan_ddl<'k>(
        &self,
        layout: &mut Layout,
        keys: &dyn Fn(&str) -> &'k [String],
        rejected: &[bool],
        ddl: &mut Vec<Ddl>,
    ) {
        for t in &self.tables {
            if t.live_rows(rejected) == 0 {
                continue;
            }
            let typed = t
                .bufs
                .iter()
                .filter(|b| t.needs_column(b, rejected))
                .map(|b| (&*b.base, b.ty));
            layout.plan_columns(&t.name, typed, keys(&t.name), ddl);
        }
    }

    /// The physical rows of a staged table, after planning (`layout` has every column they need),
    /// without the records `rejected` marks (see [`StreamBatch::reject_key_conflicts`]).
    pub fn table_rows<'b>(
        &'b self,
        table: &'b StagedTable,
        layout: &Layout,
        rejected: &Arc<[bool]>,
    ) -> TableRows<'b> {
        let mut out = TableRows {
            columns: Vec::new(),
            bufs: Vec::new(),
            table: Some(table),
            rejected: rejected.clone(),
            len: table.live_rows(rejected),
        };
        let Some(tl) = layout.tables.get(&*table.name) else {
            return out;
        };
        for b in &table.bufs {
            if !table.has_live(b, rejected) {
                continue;
            }
            if let Some(phys) = tl.physical(&b.base, b.ty) {
                out.columns.push((phys, b.ty));
                out.bufs.push(b);
            }
        }
        out
    }
}

/// Rows for one table, with physical column names, ready to load: read row by row
/// ([`TableRows::for_each_row`]) or one column at a time ([`TableRows::column`]). The values are
/// borrowed from the staged batch: nothing is copied between flattening and the warehouse.
#[derive(Debug, Clone, Default)]
pub struct TableRows<'r> {
    /// Physical columns, in the order of each row's cells.
    pub columns: Vec<(String, ColumnType)>,
    bufs: Vec<&'r ColumnBuf>,
    table: Option<&'r StagedTable>,
    /// Records whose rows are not loaded (indexed by record; empty when none).
    rejected: Arc<[bool]>,
    len: usize,
}

impl<'r> TableRows<'r> {
    /// Rows (live ones).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same rows with only the columns at `positions`, in that order.
    pub fn select(&self, positions: &[usize]) -> TableRows<'r> {
        TableRows {
            columns: positions.iter().map(|&p| self.columns[p].clone()).collect(),
            bufs: positions.iter().map(|&p| self.bufs[p]).collect(),
            table: self.table,
            rejected: self.rejected.clone(),
            len: self.len,
        }
    }

    /// Calls `f` with each loaded row's cells (one per column, NULL where the row has no value), in
    /// order.
    pub fn for_each_row<E>(&self, mut f: impl FnMut(&[CellRef<'r>]) -> Result<(), E>) -> Result<(), E> {
        let Some(table) = self.table else {
            return Ok(());
        };
        let mut cursors: Vec<Cursor<'r>> = self.bufs.iter().map(|b| Cursor::new(b)).collect();
        let mut cells = vec![CellRef::Null; self.bufs.len()];
        for r in 0..table.rows {
            // Every cursor moves past this row, loaded or not.
            for (cursor, cell) in cursors.iter_mut().zip(cells.iter_mut()) {
                *cell = cursor.take(r);
            }
            if table.live(r, &self.rejected) {
                f(&cells)?;
            }
        }
        Ok(())
    }

    /// The rows of the staged table, loaded or not: every value's row number is below it. Zero
    /// for a table with nothing staged.
    pub fn row_count(&self) -> u32 {
        self.table.map_or(0, |t| t.rows)
    }

    /// Which of the [`TableRows::row_count`] rows are loaded; `None` when every one is.
    pub fn live_mask(&self) -> Option<Vec<bool>> {
        let table = self.table?;
        if table.dead_rows == 0 && self.rejected.is_empty() {
            return None;
        }
        Some((0..table.rows).map(|r| table.live(r, &self.rejected)).collect())
    }

    /// Column `j`'s values with their row numbers, for an encoder that writes a column at a time;
    /// values of rows that are not loaded are among them (see [`TableRows::live_mask`]).
    pub fn values(&self, j: usize) -> Option<ColumnValues<'r>> {
        let b: &'r ColumnBuf = self.bufs.get(j)?;
        let values = match &b.values {
            Values::Int(v) if b.ty == ColumnType::Timestamp => ValuesRef::Timestamp(v),
            Values::Int(v) => ValuesRef::BigInt(v),
            Values::Double(v) => ValuesRef::Double(v),
            Values::Boolean(v) => ValuesRef::Boolean(v),
            Values::Text { bytes, ends } => ValuesRef::Text { bytes, ends },
        };
        Some(ColumnValues {
            rows: &b.rows,
            values,
        })
    }

    /// The cells of column `j`, one per row.
    pub fn column(&self, j: usize) -> Vec<CellRef<'r>> {
        let mut out = Vec::with_capacity(self.len());
        let (Some(table), Some(b)) = (self.table, self.bufs.get(j)) else {
            return out;
        };
        let mut c = 0;
        for r in 0..table.rows {
            let cell = if b.rows.get(c) == Some(&r) {
                c += 1;
                b.value(c - 1)
            } else {
                CellRef::Null
            };
            if table.live(r, &self.rejected) {
                out.push(cell);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts come back as they went in, across chunks and when longer than a chunk, and a chunk
    /// never moves (its start address stays) once texts are in it.
    #[test]
    fn texts_keep_what_they_hold_in_chunks_that_never_move() {
        let mut texts = Texts::default();
        let small: Vec<String> = (0..2_000)
            .map(|i| format!("{{\"id\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 300)))
            .collect();
        let mut at = Vec::new();
        let first = texts.push(&small[0]);
        let address = texts.chunks[0].as_ptr();
        at.push(first);
        for t in &small[1..] {
            at.push(texts.push(t));
        }
        let big = "y".repeat(3 * TEXT_CHUNK);
        let big_at = texts.push(&big);
        at.push(texts.push("after"));
        assert_eq!(texts.chunks[0].as_ptr(), address);
        assert!(texts.chunks.len() > 2, "{} chunks", texts.chunks.len());
        for (t, a) in small.iter().zip(&at) {
            assert_eq!(texts.get(*a), t);
        }
        assert_eq!(texts.get(big_at), big);
        assert_eq!(texts.get(at[at.len() - 1]), "after");
        assert!(texts
            .chunks
            .iter()
            .all(|c| c.len() <= c.capacity().max(TEXT_CHUNK)));
    }
}
