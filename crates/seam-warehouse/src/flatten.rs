//! Stitch's table layout, pure (no IO): Singer records → rows of named, typed cells per table.
//!
//! Rules (shared by every destination; `stitch-platform.md` §4):
//! - one table per stream, named after the stream (canonicalised like a column);
//! - objects are flattened into `parent__child` columns, recursively;
//! - arrays become subtables `<table>__<field>` (recursively, `<table>__<field>__<field>`), each row
//!   carrying `_sdc_source_key_<pk>` (one per key column of the top-level table) and `_sdc_level_<N>_id`
//!   (the element's index at nesting level N, from 0). Array elements that are objects are flattened;
//!   scalar elements land in a `value` column; `null` elements produce no row (their index is skipped);
//! - system columns in every table: `_sdc_extracted_at` (the RECORD's `time_extracted`),
//!   `_sdc_received_at` (from the sequence), `_sdc_batched_at` (when the batch was staged),
//!   `_sdc_sequence`, `_sdc_table_version` (the RECORD's `version`, NULL without one) and
//!   `_sdc_deleted_at` when the record carries that field; `__sdc_primary_key` on append-only tables;
//! - types come from the value, refined by the stream's JSON schema: JSON booleans → boolean; integers
//!   → bigint, unless the schema declares the field `number` without `integer` (then double); other
//!   numbers → double precision (we pick IEEE double for "number", suffix `__do`, in both destinations:
//!   taps emit JSON numbers that are doubles already, and DuckDB's DECIMAL needs a fixed scale);
//!   strings whose schema says `format: date-time` and that parse as RFC 3339 → UTC timestamp; other
//!   strings → text. Objects and arrays never become columns;
//! - a column only exists once a non-null value arrived for it; NULLs create nothing.
//!
//! Type conflicts split the column (rename-on-split, the rule Stitch documents for PostgreSQL v1):
//! when a value of a second type arrives for column `c` of type T, `c` is renamed `c__<T's suffix>` (it
//! keeps its data) and the new value goes to `c__<suffix>`; every later type adds its own suffixed
//! column. Key columns never split: a record whose key has another type is rejected.
//!
//! Names are canonicalised per destination ([`NameRules::canonical_field`]: ASCII letters, digits and
//! underscores, leading digits dropped, a name of digits only kept behind an underscore). A name
//! with nothing left, named like a system column (see `is_reserved_name`), with the `_rjm` prefix or
//! a type suffix (`__bi __bo __de __do __it __st __ti`), over the length limit, or shared by two
//! fields cannot be a column:
//! - for the record's own fields, the whole record goes to `_sdc_rejected` with the reason (Stitch
//!   drops only the column for over-long names; we reject the record so nothing is silently lost),
//!   as it does for a key or a top-level value no column type holds;
//! - inside the record, the object holding such a key is loaded whole, as JSON text, in its own
//!   column (an array element object in the subtable's `value`). The same goes for an object or
//!   array holding a value no column type holds, and for an array whose subtable name would be too
//!   long: nothing nested ever rejects a record, and nothing is lost.

use crate::json::read::same_bytes;
use crate::json::Json;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use seam_core::schema::{JsonType, Schema};
use seam_core::singer::parse_time;
use seam_core::{RecordMessage, SchemaMessage};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

mod streaming;

/// A column name. Rows share them: a clone is a reference count, not a copy.
pub type Col = Arc<str>;

/// The hasher of rows and column caches (fast on short names; seeded per process).
pub type FastHash = foldhash::fast::RandomState;

/// `_sdc_level_<n>_id` for the usual nesting depths, made once.
static LEVEL_COLUMNS: LazyLock<Vec<Col>> =
    LazyLock::new(|| (0..16).map(|n| Col::from(level_column(n))).collect());

/// The system column names, made once.
static SYSTEM_COLUMNS: LazyLock<[Col; 7]> = LazyLock::new(|| {
    [
        EXTRACTED_AT,
        RECEIVED_AT,
        BATCHED_AT,
        SEQUENCE,
        TABLE_VERSION,
        DELETED_AT,
        SDC_PRIMARY_KEY,
    ]
    .map(Col::from)
});

/// The `value` column of scalar array elements.
static VALUE_COLUMN: LazyLock<Col> = LazyLock::new(|| Col::from(VALUE));

/// The name of the `n`-th level column, lent when it is one of the names made once.
fn level_col(n: usize) -> Cow<'static, Col> {
    match LEVEL_COLUMNS.get(n) {
        Some(c) => Cow::Borrowed(c),
        None => Cow::Owned(Col::from(level_column(n))),
    }
}

/// `_sdc_extracted_at`: the RECORD's `time_extracted`.
pub const EXTRACTED_AT: &str = "_sdc_extracted_at";
/// `_sdc_received_at`: when seam received the record.
pub const RECEIVED_AT: &str = "_sdc_received_at";
/// `_sdc_batched_at`: when the batch holding the record was staged.
pub const BATCHED_AT: &str = "_sdc_batched_at";
/// `_sdc_sequence`: the record's order (nanoseconds since the epoch, strictly increasing).
pub const SEQUENCE: &str = "_sdc_sequence";
/// `_sdc_table_version`: the RECORD's `version`.
pub const TABLE_VERSION: &str = "_sdc_table_version";
/// `_sdc_deleted_at`: a soft delete carried by the record.
pub const DELETED_AT: &str = "_sdc_deleted_at";
/// `__sdc_primary_key`: the key of append-only rows (a UUID v5 of the stream and the record's bytes).
pub const SDC_PRIMARY_KEY: &str = "__sdc_primary_key";
/// Prefix of the subtable columns holding the top-level key.
pub const SOURCE_KEY_PREFIX: &str = "_sdc_source_key_";
/// The column of scalar array elements.
pub const VALUE: &str = "value";
/// The table of rejected records.
pub const REJECTED_TABLE: &str = "_sdc_rejected";
/// The table holding the Singer state committed with the rows.
pub const STATE_TABLE: &str = "_sdc_state";

/// `_sdc_level_<n>_id`.
pub fn level_column(n: usize) -> String {
    format!("_sdc_level_{n}_id")
}

/// The type of a system column (created even when its value is NULL, so merges can rely on it).
pub fn system_column_type(name: &str) -> Option<ColumnType> {
    match name {
        EXTRACTED_AT | RECEIVED_AT | BATCHED_AT | DELETED_AT => Some(ColumnType::Timestamp),
        SEQUENCE | TABLE_VERSION => Some(ColumnType::BigInt),
        _ if name.starts_with("_sdc_level_") => Some(ColumnType::BigInt),
        _ => None,
    }
}

/// A column's SQL type family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ColumnType {
    /// 64-bit integer (`__bi`).
    BigInt,
    /// IEEE double (`__do`).
    Double,
    /// Boolean (`__bo`).
    Boolean,
    /// UTC timestamp, microseconds (`__ti`).
    Timestamp,
    /// Text (`__st`).
    Text,
}

impl ColumnType {
    /// All types.
    pub const ALL: [ColumnType; 5] = [
        ColumnType::BigInt,
        ColumnType::Double,
        ColumnType::Boolean,
        ColumnType::Timestamp,
        ColumnType::Text,
    ];

    /// The split suffix, without the `__`.
    pub fn suffix(self) -> &'static str {
        match self {
            ColumnType::BigInt => "bi",
            ColumnType::Double => "do",
            ColumnType::Boolean => "bo",
            ColumnType::Timestamp => "ti",
            ColumnType::Text => "st",
        }
    }
}

/// Type suffixes Stitch reserves (source fields may not end with them).
pub const RESERVED_SUFFIXES: [&str; 7] = ["__bi", "__bo", "__de", "__do", "__it", "__st", "__ti"];

/// One value, typed.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Cell {
    /// SQL NULL.
    #[default]
    Null,
    /// A bigint.
    BigInt(i64),
    /// A double.
    Double(f64),
    /// A boolean.
    Boolean(bool),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// Text.
    Text(String),
}

impl Cell {
    /// The column type this value needs; `None` for NULL.
    pub fn column_type(&self) -> Option<ColumnType> {
        Some(match self {
            Cell::Null => return None,
            Cell::BigInt(_) => ColumnType::BigInt,
            Cell::Double(_) => ColumnType::Double,
            Cell::Boolean(_) => ColumnType::Boolean,
            Cell::Timestamp(_) => ColumnType::Timestamp,
            Cell::Text(_) => ColumnType::Text,
        })
    }

    /// A timestamp cell from a UTC time.
    pub fn time(t: DateTime<Utc>) -> Cell {
        Cell::Timestamp(t.timestamp_micros())
    }

    /// A stable binary form, used for keys: a tag byte, then the value in fixed width (text: its
    /// length, then its bytes), so a sequence of cells has one form and no two sequences share it.
    fn key_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Cell::Null => out.push(b'n'),
            Cell::BigInt(v) => {
                out.push(b'i');
                out.extend_from_slice(&v.to_le_bytes());
            }
            Cell::Double(v) => {
                out.push(b'd');
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Cell::Boolean(v) => out.extend_from_slice(&[b'b', u8::from(*v)]),
            Cell::Timestamp(v) => {
                out.push(b't');
                out.extend_from_slice(&v.to_le_bytes());
            }
            Cell::Text(v) => {
                out.push(b's');
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                out.extend_from_slice(v.as_bytes());
            }
        }
    }
}

/// The tag [`Cell::key_bytes`] gives a cell of type `ty`.
pub(crate) fn key_tag(ty: ColumnType) -> u8 {
    match ty {
        ColumnType::BigInt => b'i',
        ColumnType::Double => b'd',
        ColumnType::Boolean => b'b',
        ColumnType::Timestamp => b't',
        ColumnType::Text => b's',
    }
}

/// The tags of the cells a key's binary form ([`Cell::key_bytes`]) holds, in order: which types its
/// cells have. A form cut short ends the tags early.
pub(crate) fn key_tags(key: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let &tag = key.get(at)?;
        let width = match tag {
            b'n' => 0,
            b'b' => 1,
            b'i' | b'd' | b't' => 8,
            b's' => {
                let len: [u8; 8] = key.get(at + 1..at + 9)?.try_into().ok()?;
                usize::try_from(u64::from_le_bytes(len)).ok()?.checked_add(8)?
            }
            _ => return None,
        };
        at = at.checked_add(1 + width).filter(|&end| end <= key.len())?;
        Some(tag)
    })
}

impl Cell {
    /// The cell, borrowed.
    pub fn as_ref(&self) -> CellRef<'_> {
        match self {
            Cell::Null => CellRef::Null,
            Cell::BigInt(v) => CellRef::BigInt(*v),
            Cell::Double(v) => CellRef::Double(*v),
            Cell::Boolean(v) => CellRef::Boolean(*v),
            Cell::Timestamp(v) => CellRef::Timestamp(*v),
            Cell::Text(v) => CellRef::Text(v),
        }
    }
}

/// One value, typed, its text borrowed (from the record's JSON while flattening, from the staged
/// column afterwards): what flattening hands a [`RowSink`] and what destinations read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CellRef<'a> {
    /// SQL NULL.
    Null,
    /// A bigint.
    BigInt(i64),
    /// A double.
    Double(f64),
    /// A boolean.
    Boolean(bool),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// Text.
    Text(&'a str),
}

impl CellRef<'_> {
    /// The column type this value needs; `None` for NULL.
    pub fn column_type(&self) -> Option<ColumnType> {
        Some(match self {
            CellRef::Null => return None,
            CellRef::BigInt(_) => ColumnType::BigInt,
            CellRef::Double(_) => ColumnType::Double,
            CellRef::Boolean(_) => ColumnType::Boolean,
            CellRef::Timestamp(_) => ColumnType::Timestamp,
            CellRef::Text(_) => ColumnType::Text,
        })
    }

    /// The cell, owned.
    pub fn to_cell(self) -> Cell {
        match self {
            CellRef::Null => Cell::Null,
            CellRef::BigInt(v) => Cell::BigInt(v),
            CellRef::Double(v) => Cell::Double(v),
            CellRef::Boolean(v) => Cell::Boolean(v),
            CellRef::Timestamp(v) => Cell::Timestamp(v),
            CellRef::Text(v) => Cell::Text(v.to_owned()),
        }
    }
}

/// An open row of a [`RowSink`]: its table's number in the sink and its number in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowId {
    /// The table, as the sink numbers them.
    pub table: u32,
    /// The row within the table.
    pub row: u32,
}

/// Where flattening puts a record's rows: the stager's column buffers
/// ([`crate::columns::StreamBatch`]), or a [`FlatRecord`].
///
/// Contract: rows are opened and filled cell by cell; a row of a table is opened only after every
/// earlier row of that table (a table is never its own descendant, so a record's rows of one table
/// are consecutive); [`RowSink::rollback`] takes back, newest first, every cell put and row opened
/// since a [`RowSink::mark`], leaving the sink as it was then.
pub trait RowSink {
    /// Opens a row of `table`.
    fn open_row(&mut self, table: &Col) -> RowId;
    /// Puts a cell in an open row; `Err` (the reason) when the row has a cell for `column` already
    /// (two source fields that canonicalise alike), and nothing is put.
    fn put(&mut self, row: RowId, column: &Col, cell: CellRef<'_>) -> Result<(), String>;
    /// A point to roll back to.
    fn mark(&self) -> usize;
    /// Takes back every cell put and every row opened since `mark`.
    fn rollback(&mut self, mark: usize);
    /// Puts a cell as [`RowSink::put`] does, `hint` being what this sink left there the last time
    /// it was handed `column` with it: a sink may keep there where it found the column, and trust
    /// it the next time instead of looking the column up again. A hint is the sink's alone; the
    /// caller keeps one per column and table, starting from [`SlotHint::default`].
    fn put_hinted(
        &mut self,
        row: RowId,
        column: &Col,
        _hint: &mut SlotHint,
        cell: CellRef<'_>,
    ) -> Result<(), String> {
        self.put(row, column, cell)
    }
}

/// Where a [`RowSink`] found a column, kept by the caller beside the column ([`RowSink::put_hinted`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotHint {
    /// The sink's own mark of the hint's owner (0: none).
    pub(crate) owner: u64,
    /// The table, as the sink numbers them.
    pub(crate) table: u32,
    /// Where the column is in that table.
    pub(crate) slot: u32,
}

/// A destination's naming rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRules {
    /// The destination's name, for messages ("PostgreSQL").
    pub destination: &'static str,
    /// Longest table name.
    pub max_table_len: usize,
    /// Longest column name (the type suffix must still fit).
    pub max_column_len: usize,
    /// Fold names to lowercase (for case-insensitive warehouses, so collisions are detected here).
    pub fold_case: bool,
}

impl NameRules {
    /// PostgreSQL: 63-character tables, 59-character columns (63 minus a `__xx` suffix), case kept.
    pub const POSTGRES: NameRules = NameRules {
        destination: "PostgreSQL",
        max_table_len: 63,
        max_column_len: 59,
        fold_case: false,
    };
    /// DuckDB: identifiers are case-insensitive, so names are folded to lowercase; the same length
    /// limits as PostgreSQL keep layouts portable between the two.
    pub const DUCKDB: NameRules = NameRules {
        destination: "DuckDB",
        max_table_len: 63,
        max_column_len: 59,
        fold_case: true,
    };

    /// Canonicalises one source field (or stream) name: keeps ASCII letters, digits and underscores,
    /// drops leading digits (Stitch's rule: `4customerid` → `customerid`), folds case when the
    /// destination does. A name made only of digits keeps them behind an underscore (`"1"` → `_1`), so
    /// it still names a column that starts with an underscore, as identifiers must. Refuses reserved
    /// prefixes and type suffixes, and names with no ASCII letter, digit or underscore at all.
    pub fn canonical_field(&self, name: &str) -> Result<String, String> {
        let mut out: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if out.is_empty() {
            return Err(format!(
                "field name {name:?} has no ASCII letter, digit or underscore to name a column"
            ));
        }
        let digits = out.bytes().take_while(u8::is_ascii_digit).count();
        if digits == out.len() {
            out.insert(0, '_');
        } else {
            out.drain(..digits);
        }
        if self.fold_case {
            out.make_ascii_lowercase();
        }
        let lower = out.to_ascii_lowercase();
        if is_reserved_name(&lower) {
            return Err(format!(
                "field name {name:?} uses a reserved prefix or system column name (_sdc…, _rjm…)"
            ));
        }
        if let Some(sfx) = RESERVED_SUFFIXES.iter().find(|s| lower.ends_with(*s)) {
            return Err(format!(
                "column names from client should not include reserved datatype suffix {sfx} on {name:?}"
            ));
        }
        Ok(out)
    }

    fn check_column(&self, column: &str) -> Result<(), String> {
        if column.len() > self.max_column_len {
            return Err(format!(
                "column name {column} is too long for {}",
                self.destination
            ));
        }
        if let Some(sfx) = RESERVED_SUFFIXES
            .iter()
            .find(|s| ends_with_ignore_case(column, s))
        {
            return Err(format!(
                "column name {column} ends with the reserved datatype suffix {sfx}"
            ));
        }
        Ok(())
    }

    fn check_table(&self, table: &str) -> Result<(), String> {
        if table.len() > self.max_table_len {
            return Err(format!("table name {table} is too long for {}", self.destination));
        }
        Ok(())
    }
}

fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Names a source field may not take. Stitch reserves the whole `_sdc` prefix; Singer SDK taps
/// (tap-jsonl and every Meltano SDK tap) add `_sdc_*` metadata fields such as `_sdc_filename`, so seam
/// reserves only the system columns it writes itself (`_sdc_extracted_at`, `_sdc_received_at`,
/// `_sdc_batched_at`, `_sdc_sequence`, `_sdc_table_version`, `__sdc_primary_key`,
/// `_sdc_source_key_*`, `_sdc_level_*`) and the `_rjm` prefix. (`_sdc_deleted_at` is read as the
/// soft-delete column.)
fn is_reserved_name(lower: &str) -> bool {
    matches!(
        lower,
        EXTRACTED_AT | RECEIVED_AT | BATCHED_AT | SEQUENCE | TABLE_VERSION | SDC_PRIMARY_KEY
    ) || lower.starts_with(SOURCE_KEY_PREFIX)
        || lower.starts_with("_sdc_level_")
        || lower.starts_with("_rjm")
}

/// Quotes an identifier for SQL (both PostgreSQL and DuckDB): `"` + name with `"` doubled + `"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// How a stream is loaded, derived from its SCHEMA message.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// The stream's name in Singer.
    pub stream: String,
    /// The top-level table (canonical), or why it cannot be loaded.
    pub table: Result<String, String>,
    /// Source key properties.
    pub key_properties: Vec<String>,
    /// Canonical key columns of the top-level table (`__sdc_primary_key` for append-only).
    pub key_columns: Vec<String>,
    /// Append-only rather than upsert.
    pub append_only: bool,
    /// The JSON schema, for types.
    pub schema: Schema,
    /// The columns its fields were found to take (shared by clones of the spec).
    columns: Arc<Mutex<ColumnCache>>,
    /// The top-level table's name, shared by every row of the stream (or why it has none).
    table_col: Result<Col, String>,
    /// The column of each key property, or why it cannot be one.
    key_cols: Vec<Result<Col, String>>,
    /// The subtable columns holding the top-level key (`_sdc_source_key_<k>`), one per key cell.
    source_key_cols: Vec<Col>,
}

/// Most `(prefix, field)` pairs a stream's [`ColumnCache`] remembers: memory stays bounded for a
/// stream whose objects are keyed by data (ids as keys); past it, names are worked out each time.
const COLUMN_CACHE_MAX: usize = 20_000;

/// The column each field under a prefix takes (or why it cannot name one), worked out once per
/// stream instead of once per record.
#[derive(Debug, Default)]
struct ColumnCache {
    /// Prefix → its place in `places` (flattening from a tree).
    by_prefix: HashMap<Col, usize, FastHash>,
    /// `(table, prefix)`, by the address of each name's shared text → its place in `places`
    /// (flattening while parsing; the names are held in `pins`, so neither address can be freed
    /// and given to another name while the entry lives).
    by_address: HashMap<(usize, usize), usize, FastHash>,
    pins: Vec<(Col, Col)>,
    places: Vec<Place>,
    /// Places, names and subtables cached (see [`COLUMN_CACHE_MAX`]).
    len: usize,
    /// The last object given a number by [`ColumnCache::next_object`].
    object: u32,
    /// Emptied column lists, reused for the next objects' columns.
    spare: Vec<Vec<Col>>,
    /// The buffer records' escaped strings are unescaped into, kept for the next record's.
    scratch: String,
    /// The array indexes above an element while a record is read, kept (empty) for the next.
    levels: Vec<i64>,
    /// `(table, column)`, by the address of each name's shared text → the subtable their arrays
    /// load into.
    subtables: HashMap<(usize, usize), Subtable, FastHash>,
    /// The place of the records' own fields, with the address of their table's name (see
    /// [`ColumnCache::root_place`]).
    root: Option<(usize, usize)>,
}

/// The columns of the fields under one prefix.
#[derive(Debug, Default)]
struct Place {
    /// Field name → its column's number in `columns`, or why it cannot name one.
    names: HashMap<Box<str>, Result<u32, String>, FastHash>,
    /// The fields of the last objects met here, in their order (see [`ColumnCache::field`]).
    order: Vec<Ordered>,
    /// Each column once (two names may take one).
    columns: Vec<PlaceColumn>,
    /// Per column (by number): whether its name holds `__`, the mark of a nested column's.
    nested: Vec<bool>,
    /// Column → its number.
    numbers: HashMap<Col, u32, FastHash>,
    /// When the place is an array element's: the sink's hints for its row's key columns (the
    /// parent's key, then the levels) and for its `value` column ([`ColumnCache::row_hints`]).
    row_hints: Vec<SlotHint>,
    value_hint: SlotHint,
}

/// One column of a place, with what flattening keeps beside it.
#[derive(Debug)]
struct PlaceColumn {
    name: Col,
    /// The last object that had a field take it (see [`ColumnCache::take`]).
    taken: u32,
    /// Where the sink last put its cells ([`SlotHint`]).
    hint: SlotHint,
    /// The place of an object's fields in this column ([`ColumnCache::child_place`]; [`NO_PLACE`]:
    /// not looked up yet).
    child: usize,
    /// The subtable an array in this column loads into, and the place of its elements' fields
    /// ([`ColumnCache::elements`]), once looked up.
    elements: Option<(Col, usize)>,
}

/// No place looked up yet.
const NO_PLACE: usize = usize::MAX;

/// A field at its place in an object (see [`ColumnCache::field`]).
#[derive(Debug)]
struct Ordered {
    name: String,
    /// Whether `name` stands in a record's text as it is (no `"` or backslash, which the text
    /// escapes), so it can be compared with the text ([`ColumnCache::expected`]).
    plain: bool,
    /// Its column's number.
    n: u32,
    /// Its index among the object schema's own properties, when it is one of them.
    property: Option<u32>,
    /// The address of the object schema `property` indexes (see [`ColumnCache::field_found`]).
    schema: usize,
}

/// A schema's address, to know it again: the schemas a stream's cache is handed are its spec's, which
/// outlives the cache, so no other schema takes an address the cache holds.
fn schema_address(schema: Option<&Schema>) -> usize {
    schema.map_or(0, |s| std::ptr::from_ref(s) as usize)
}

/// `a == b` for the short texts field names are (see [`same_bytes`]).
#[inline(always)]
fn same_name(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// Whether a field name stands in a JSON text as it is (see [`Ordered::plain`]).
fn plain_name(name: &str) -> bool {
    !name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// The longest field order a place remembers.
const ORDER_MAX: usize = 1_024;

/// The empty prefix: the record's own fields, and an array element object's.
static NO_PREFIX: LazyLock<Col> = LazyLock::new(|| Col::from(""));

/// A cached subtable name, with the two names it was worked out from: held, so neither address can
/// be freed and given to another name while the entry lives.
#[derive(Debug)]
struct Subtable {
    _names: (Col, Col),
    /// The subtable, or why its name cannot be one.
    table: Result<Col, String>,
}

/// A field of an object being flattened: its name and value.
trait Field<'j> {
    fn name(&self) -> &str;
    fn value(&self) -> &Json<'j>;
}

impl<'j> Field<'j> for (Cow<'j, str>, Json<'j>) {
    fn name(&self) -> &str {
        &self.0
    }
    fn value(&self) -> &Json<'j> {
        &self.1
    }
}

impl<'j> Field<'j> for (&str, &Json<'j>) {
    fn name(&self) -> &str {
        self.0
    }
    fn value(&self) -> &Json<'j> {
        self.1
    }
}

/// Emptied column lists a stream's cache keeps for reuse, and the longest one it keeps: a hostile
/// record (objects nested thousands deep, or with a million fields) leaves no memory behind.
const SPARE_LISTS: usize = 64;
const SPARE_LIST_CAPACITY: usize = 4_096;

/// The largest unescaping buffer a stream keeps between records.
const SCRATCH_KEPT: usize = 1 << 20;

impl ColumnCache {
    /// Keeps `scratch` for the next record, unless one long text made it large.
    fn keep_scratch(&mut self, scratch: String) {
        if scratch.capacity() <= SCRATCH_KEPT {
            self.scratch = scratch;
        }
    }

    /// Takes back a column list for reuse (see [`SPARE_LISTS`]).
    fn give_back(&mut self, mut columns: Vec<Col>) {
        columns.clear();
        if self.spare.len() < SPARE_LISTS && columns.capacity() <= SPARE_LIST_CAPACITY {
            self.spare.push(columns);
        }
    }

    /// The subtable of `table` that the arrays in `column` load into, or why its name cannot be one.
    fn subtable(&mut self, rules: &NameRules, table: &Col, column: &Col) -> Result<Col, String> {
        let key = (table.as_ptr() as usize, column.as_ptr() as usize);
        if let Some(found) = self.subtables.get(&key) {
            return found.table.clone();
        }
        let name = format!("{table}__{column}");
        let found = rules.check_table(&name).map(|()| Col::from(name));
        if self.len < COLUMN_CACHE_MAX {
            self.len += 1;
            let entry = Subtable {
                _names: (table.clone(), column.clone()),
                table: found.clone(),
            };
            self.subtables.insert(key, entry);
        }
        found
    }

    /// Works out the column `name` takes under `prefix`.
    fn work_out(rules: &NameRules, prefix: &str, name: &str) -> Result<Col, String> {
        rules.canonical_field(name).and_then(|canon| {
            let column = if prefix.is_empty() {
                canon
            } else {
                format!("{prefix}__{canon}")
            };
            rules.check_column(&column)?;
            Ok(Col::from(column))
        })
    }

    /// A new place, unless the cache is full (a place counts as an entry: a stream whose records
    /// hold ever new empty objects cannot grow the cache past its bound either).
    fn new_place(&mut self) -> Option<usize> {
        if self.len >= COLUMN_CACHE_MAX {
            return None;
        }
        self.len += 1;
        self.places.push(Place::default());
        Some(self.places.len() - 1)
    }

    /// The place of `prefix`'s columns in the cache, for [`Self::column`]; `None` when the cache is
    /// full and `prefix` is new (its names are then worked out each time).
    fn prefix(&mut self, prefix: &str) -> Option<usize> {
        if let Some(&i) = self.by_prefix.get(prefix) {
            return Some(i);
        }
        let i = self.new_place()?;
        self.by_prefix.insert(Col::from(prefix), i);
        Some(i)
    }

    /// The place of the columns under `prefix` in rows of `table`, found by the names' addresses;
    /// `None` when the cache is full and the pair is new. Two objects open at once (one inside the
    /// other) never share a place: a nested object's prefix is longer than its parent's, and an
    /// array element's table longer than its array's.
    fn place_of(&mut self, table: &Col, prefix: &Col) -> Option<usize> {
        let key = (table.as_ptr() as usize, prefix.as_ptr() as usize);
        if let Some(&i) = self.by_address.get(&key) {
            return Some(i);
        }
        let i = self.new_place()?;
        self.by_address.insert(key, i);
        self.pins.push((table.clone(), prefix.clone()));
        Some(i)
    }

    /// The sink's hints for the first `len` key columns of an array element's row at `place`
    /// (see [`Place::row_hints`]), and for its `value` column.
    fn row_hints(&mut self, place: usize, len: usize) -> Option<(&mut [SlotHint], &mut SlotHint)> {
        let p = self.places.get_mut(place)?;
        if p.row_hints.len() < len {
            p.row_hints.resize(len, SlotHint::default());
        }
        Some((p.row_hints.get_mut(..len)?, &mut p.value_hint))
    }

    /// The place of the fields of a record whose rows are of `table` ([`Self::place_of`] with no
    /// prefix), kept for the next record: a stream's records all load into its one table.
    fn root_place(&mut self, table: &Col) -> Option<usize> {
        let address = table.as_ptr() as usize;
        match self.root {
            Some((at, place)) if at == address => Some(place),
            _ => {
                let place = self.place_of(table, &NO_PREFIX)?;
                self.root = Some((address, place));
                Some(place)
            }
        }
    }

    /// The number of the column field `name` takes under `prefix` (at `place`), or why it cannot
    /// name one; `None` when the cache is full and the name is new.
    fn number(
        &mut self,
        rules: &NameRules,
        place: usize,
        prefix: &str,
        name: &str,
    ) -> Option<Result<u32, String>> {
        let full = self.len >= COLUMN_CACHE_MAX;
        let p = self.places.get_mut(place)?;
        if let Some(found) = p.names.get(name) {
            return Some(found.clone());
        }
        if full {
            return None;
        }
        self.len += 1;
        let found = Self::work_out(rules, prefix, name).map(|column| match p.numbers.get(&column) {
            Some(&n) => n,
            None => {
                let n = p.columns.len() as u32;
                p.numbers.insert(column.clone(), n);
                p.nested.push(column.contains("__"));
                p.columns.push(PlaceColumn {
                    name: column,
                    taken: 0,
                    hint: SlotHint::default(),
                    child: NO_PLACE,
                    elements: None,
                });
                n
            }
        });
        p.names.insert(name.into(), found.clone());
        Some(found)
    }

    /// The column number of field `name` (the `*cursor`-th field looked up in its object, counted
    /// here) of an object at `place`, as [`Self::number`] gives it, and the field's schema in the
    /// object's `schema`, as [`child`] gives it; `None` when `name` names no column (or the cache is
    /// full and the name is new).
    ///
    /// A stream's records hold their fields in one order, as a rule: each place remembers the
    /// fields met in its last objects, by position, and a field found where it was last time (or
    /// one further on, when the field before is missing) takes its number and its property's index
    /// from there, at the cost of comparing its name, instead of hashing the name into the cache's
    /// map and into the schema's properties. A hit's answers are those of the lookups: the number
    /// is the one `number` gave for that name at this place (names keep their numbers), and the
    /// property is used only when the schema's property at that index has that very name.
    fn field<'s>(
        &mut self,
        rules: &NameRules,
        place: usize,
        prefix: &str,
        name: &str,
        schema: Option<&'s Schema>,
        cursor: &mut usize,
    ) -> Option<(u32, Option<&'s Schema>)> {
        let order = &self.places.get(place)?.order;
        let at = *cursor;
        let hit = [at, at + 1]
            .into_iter()
            .find(|&i| order.get(i).is_some_and(|o| same_name(&o.name, name)));
        if let Some(i) = hit {
            *cursor = i;
            return self.field_found(place, name, schema, cursor);
        }
        *cursor = at + 1;
        let n = self.number(rules, place, prefix, name)?.ok()?;
        let property = schema
            .and_then(|s| s.properties.as_ref()?.get_index_of(name))
            .and_then(|p| u32::try_from(p).ok());
        let full = self.len >= COLUMN_CACHE_MAX;
        let order = &mut self.places.get_mut(place)?.order;
        if let Some(o) = order.get_mut(at) {
            o.name.clear();
            o.name.push_str(name);
            o.plain = plain_name(name);
            o.n = n;
            o.property = property;
            o.schema = schema_address(schema);
        } else if at == order.len() && at < ORDER_MAX && !full {
            self.len += 1;
            order.push(Ordered {
                name: name.to_owned(),
                plain: plain_name(name),
                n,
                property,
                schema: schema_address(schema),
            });
        }
        Some((n, schema.and_then(|s| child(s, name))))
    }

    /// What [`Self::field`] answers for field `name` found at `*cursor` in the place's field
    /// order (`name` is the name there), moving the cursor past it.
    #[inline(always)]
    fn field_found<'s>(
        &self,
        place: usize,
        name: &str,
        schema: Option<&'s Schema>,
        cursor: &mut usize,
    ) -> Option<(u32, Option<&'s Schema>)> {
        let o = self.places.get(place)?.order.get(*cursor)?;
        *cursor += 1;
        // The property at that index has this name when it is the schema the index was taken in
        // (the name is the one found there); another schema must have the name there too.
        let same_schema = schema_address(schema) == o.schema;
        let own = o.property.and_then(|p| {
            let (k, v) = schema?.properties.as_ref()?.get_index(p as usize)?;
            (same_schema || same_name(k, name)).then_some(v)
        });
        Some((o.n, own.or_else(|| schema.and_then(|s| child(s, name)))))
    }

    /// The name of the field at `cursor` in the place's field order (see [`Self::field`]), when
    /// it stands in a record's text as it is: a record's next field is most often that one, which
    /// the text shows by one comparison ([`crate::json::read::Reader::key_is`]), and
    /// [`Self::field_found`] then answers for it.
    #[inline(always)]
    fn expected(&self, place: usize, cursor: usize) -> Option<&str> {
        let o = self.places.get(place)?.order.get(cursor)?;
        o.plain.then_some(o.name.as_str())
    }

    /// Column `n` of `place`.
    fn column_at(&self, place: usize, n: u32) -> Option<&Col> {
        self.places.get(place)?.columns.get(n as usize).map(|c| &c.name)
    }

    /// Column `n` of `place`, with the sink's hint for it.
    fn column_hint(&mut self, place: usize, n: u32) -> Option<(&Col, &mut SlotHint)> {
        let c = self.places.get_mut(place)?.columns.get_mut(n as usize)?;
        Some((&c.name, &mut c.hint))
    }

    /// The place of the fields of an object in column `n` of `place` (whose rows are of `table`),
    /// as [`Self::place_of`] gives it, kept beside the column; `None` when the cache is full.
    fn child_place(&mut self, place: usize, n: u32, table: &Col) -> Option<usize> {
        let c = self.places.get(place)?.columns.get(n as usize)?;
        if c.child != NO_PLACE {
            return Some(c.child);
        }
        let prefix = c.name.clone();
        let child = self.place_of(table, &prefix)?;
        self.places.get_mut(place)?.columns.get_mut(n as usize)?.child = child;
        Some(child)
    }

    /// The subtable arrays in column `n` of `place` (whose rows are of `table`) load into, as
    /// [`Self::subtable`] gives it, and the place of its elements' fields ([`Self::place_of`]:
    /// `None` when the cache is full), kept beside the column; `Err` when the subtable's name
    /// cannot be one (or there is no such column).
    fn elements(
        &mut self,
        rules: &NameRules,
        place: usize,
        n: u32,
        table: &Col,
    ) -> Result<(Col, Option<usize>), String> {
        let Some(c) = self.places.get(place).and_then(|p| p.columns.get(n as usize)) else {
            return Err(format!("no column {n} at place {place}"));
        };
        if let Some((subtable, at)) = &c.elements {
            return Ok((subtable.clone(), Some(*at)));
        }
        let column = c.name.clone();
        let subtable = self.subtable(rules, table, &column)?;
        let at = self.place_of(&subtable, &NO_PREFIX);
        if let (Some(at), Some(c)) = (
            at,
            self.places
                .get_mut(place)
                .and_then(|p| p.columns.get_mut(n as usize)),
        ) {
            c.elements = Some((subtable.clone(), at));
        }
        Ok((subtable, at))
    }

    /// Whether column `n` of `place` has `__` in its name (`None`: no such column).
    fn nested_at(&self, place: usize, n: u32) -> Option<bool> {
        self.places.get(place)?.nested.get(n as usize).copied()
    }

    /// The column field `name` takes under `prefix` (whose place [`Self::prefix`] gave), or why it
    /// cannot name one.
    fn column(
        &mut self,
        rules: &NameRules,
        place: Option<usize>,
        prefix: &str,
        name: &str,
    ) -> Result<Col, String> {
        if let Some(p) = place {
            match self.number(rules, p, prefix, name) {
                Some(Ok(n)) => {
                    if let Some(column) = self.column_at(p, n) {
                        return Ok(column.clone());
                    }
                }
                Some(Err(reason)) => return Err(reason),
                None => {}
            }
        }
        Self::work_out(rules, prefix, name)
    }

    /// A number for the next object flattened while parsing (never 0, which no object has).
    fn next_object(&mut self) -> u32 {
        self.object = self.object.wrapping_add(1).max(1);
        self.object
    }

    /// Has a field of `object` take column `n` of `place`; `false` when one of its fields took it
    /// already. (After 2³² objects a number comes round again: a stale mark then reads as a
    /// repeat, which only sends the record to its tree.)
    fn take(&mut self, place: usize, n: u32, object: u32) -> bool {
        match self
            .places
            .get_mut(place)
            .and_then(|p| p.columns.get_mut(n as usize))
        {
            Some(c) if c.taken != object => {
                c.taken = object;
                true
            }
            _ => false,
        }
    }

    /// The columns each of `fields` takes under `prefix`, in order, onto `out` (the prefix is looked
    /// up once for them all); `check` sees each column (and the ones before it) as it is found, and
    /// its `Err`, or the first field that names no column, ends the work with that reason.
    fn columns<'j, F: Field<'j>>(
        &mut self,
        rules: &NameRules,
        prefix: &str,
        fields: &[F],
        out: &mut Vec<Col>,
        mut check: impl FnMut(&[Col], &Col) -> Result<(), String>,
    ) -> Result<(), String> {
        let place = self.prefix(prefix);
        for field in fields {
            let column = self.column(rules, place, prefix, field.name())?;
            check(out, &column)?;
            out.push(column);
        }
        Ok(())
    }
}

impl StreamSpec {
    /// Builds the spec; `append_only` is [`seam_core::LoadMode::for_stream`]'s answer.
    pub fn new(schema: &SchemaMessage, append_only: bool, rules: &NameRules) -> StreamSpec {
        let table = rules
            .canonical_field(&schema.stream)
            .and_then(|t| rules.check_table(&t).map(|()| t));
        let key_columns = if append_only {
            vec![SDC_PRIMARY_KEY.to_owned()]
        } else {
            schema
                .key_properties
                .iter()
                .map(|k| rules.canonical_field(k).unwrap_or_else(|_| k.clone()))
                .collect()
        };
        let key_cols: Vec<Result<Col, String>> = schema
            .key_properties
            .iter()
            .map(|k| {
                let c = rules.canonical_field(k)?;
                rules.check_column(&c)?;
                Ok(Col::from(c))
            })
            .collect();
        let source_key_cols = append_only
            .then_some(SDC_PRIMARY_KEY)
            .into_iter()
            .chain(key_cols.iter().flatten().map(|c| &**c))
            .map(|k| Col::from(format!("{SOURCE_KEY_PREFIX}{k}")))
            .collect();
        StreamSpec {
            stream: schema.stream.clone(),
            table_col: table.clone().map(Col::from),
            table,
            key_properties: schema.key_properties.clone(),
            key_columns,
            append_only,
            schema: schema.schema.clone(),
            columns: Arc::default(),
            key_cols,
            source_key_cols,
        }
    }
}

/// A row: base column name → cell, in first-seen order. Base names are before any type split.
///
/// A plain list: rows are small (a record's fields, an element's), built once and read in order, so
/// a scan that compares lengths first costs less than hashing every name into a map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(Vec<(Col, Cell)>);

impl Row {
    /// An empty row with room for `n` cells.
    pub fn with_capacity(n: usize) -> Row {
        Row(Vec::with_capacity(n))
    }

    /// The cell of `column`.
    pub fn get(&self, column: &str) -> Option<&Cell> {
        self.0.iter().find(|(c, _)| &**c == column).map(|(_, v)| v)
    }

    /// True when the row has a cell for `column`.
    pub fn contains_key(&self, column: &str) -> bool {
        self.get(column).is_some()
    }

    /// Adds a cell; the caller makes sure the row has none for `column` yet.
    pub fn push(&mut self, column: Col, cell: Cell) {
        self.0.push((column, cell));
    }

    /// Cells.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True without cells.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps the first `n` cells.
    pub fn truncate(&mut self, n: usize) {
        self.0.truncate(n);
    }

    /// `(column, cell)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Col, &Cell)> {
        self.0.iter().map(|(c, v)| (c, v))
    }
}

impl FromIterator<(Col, Cell)> for Row {
    fn from_iter<I: IntoIterator<Item = (Col, Cell)>>(iter: I) -> Row {
        Row(iter.into_iter().collect())
    }
}

impl std::ops::Index<&str> for Row {
    type Output = Cell;

    fn index(&self, column: &str) -> &Cell {
        self.get(column)
            .unwrap_or_else(|| panic!("the row has no column {column}"))
    }
}

/// One record flattened: its rows, table by table; the first row is the top-level table's.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatRecord {
    /// The key of the top-level row (binary form), for de-duplication within a batch.
    pub key: Vec<u8>,
    /// The record's sequence.
    pub sequence: i64,
    /// The record's JSON, for `_sdc_rejected` should a later check refuse it.
    pub raw: String,
    /// `(table, row)` pairs. The system cells are not in the rows: see [`FlatRecord::system`].
    pub rows: Vec<(Col, Row)>,
    /// The system cells every row of the record ends with, held once for all of them: the
    /// top-level row has them all, a subtable row all but `_sdc_deleted_at` (kept last).
    pub system: SystemRow,
    /// While flattening: per cell put, its row (`None`: a row opened), for [`RowSink::rollback`].
    log: Vec<Option<usize>>,
}

impl FlatRecord {
    /// The system cells of row `i` (see [`FlatRecord::system`]).
    pub fn system_of(&self, i: usize) -> impl Iterator<Item = (&'static Col, &Cell)> {
        self.system.of_row(i == 0)
    }

    /// Row `i`'s cells, its system cells last.
    pub fn cells_of(&self, i: usize) -> impl Iterator<Item = (&Col, &Cell)> {
        self.rows[i]
            .1
            .iter()
            .chain(self.system_of(i).map(|(c, v): (&Col, &Cell)| (c, v)))
    }
}

/// A record that cannot be loaded, bound for `_sdc_rejected`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The top-level table (or stream name when it has no valid table name).
    pub table_name: String,
    /// Why, in the user's words.
    pub reason: String,
    /// The record's JSON.
    pub record: String,
}

/// The system cells every row of a record carries.
#[derive(Debug, Clone)]
pub struct SystemCells {
    /// `_sdc_sequence`.
    pub sequence: i64,
    /// `_sdc_batched_at`.
    pub batched_at: DateTime<Utc>,
}

/// What [`flatten_into`] learnt about a record besides its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Flattened {
    /// The key of the top-level row (binary form), for de-duplication within a batch.
    pub key: Vec<u8>,
    /// The system cells every row of the record ends with: the top-level row has them all, a
    /// subtable row all but `_sdc_deleted_at` (see [`SystemRow::of_row`]).
    pub system: SystemRow,
}

/// The most system cells a row has ([`SystemRow`]).
pub const SYSTEM_CELLS: usize = 6;

/// The system cells of a record, in the order of `SYSTEM_COLUMNS` (`_sdc_extracted_at`,
/// `_sdc_received_at`, `_sdc_batched_at`, `_sdc_sequence`, `_sdc_table_version`, and
/// `_sdc_deleted_at` when the record has one), held in place: a record's system cells cost no
/// allocation, and their names are the shared texts, never a new reference to count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SystemRow {
    cells: [Cell; SYSTEM_CELLS],
    len: usize,
}

impl SystemRow {
    /// The cells of the record's row: all of them for its top-level row, all but
    /// `_sdc_deleted_at` (the last) for a subtable row.
    pub fn of_row(&self, top: bool) -> impl Iterator<Item = (&'static Col, &Cell)> {
        let len = if top {
            self.len
        } else {
            self.len.min(DELETED_AT_CELL)
        };
        SYSTEM_COLUMNS.iter().zip(&self.cells[..len])
    }

    /// Gives the record its `_sdc_deleted_at` (its top-level row's last system cell).
    fn set_deleted_at(&mut self, cell: Cell) {
        self.cells[DELETED_AT_CELL] = cell;
        self.len = SYSTEM_CELLS;
    }
}

/// `_sdc_deleted_at`'s place among a record's system cells (the last; see [`SystemRow`]).
const DELETED_AT_CELL: usize = SYSTEM_CELLS - 1;

/// Flattens one record into `sink`: its top-level row first, then (as they are met) its subtable
/// rows, without their system cells (see [`Flattened::system`]). `Err` means the record goes to
/// `_sdc_rejected`; the sink may then hold part of the record, for the caller to roll back to a
/// mark taken before. `rules` are the ones `spec` was built with.
///
/// Records are flattened while they are parsed ([`streaming`]); one that takes that pass off the
/// usual road (a repeated key, a name that cannot be a column, a value no column holds, a missing
/// key…) is taken back and flattened again from its parsed tree, which decides every such case.
pub fn flatten_into<S: RowSink>(
    spec: &StreamSpec,
    rules: &NameRules,
    record: &RecordMessage,
    sys: &SystemCells,
    sink: &mut S,
) -> Result<Flattened, Rejection> {
    let mark = sink.mark();
    if let Some(done) = streaming::flatten(spec, rules, record, sys, sink) {
        return Ok(done);
    }
    sink.rollback(mark);
    flatten_tree(spec, rules, record, sys, sink)
}

/// [`flatten_into`] from the record's parsed tree: the reference every record can take, whatever
/// it holds.
fn flatten_tree<S: RowSink>(
    spec: &StreamSpec,
    rules: &NameRules,
    record: &RecordMessage,
    sys: &SystemCells,
    sink: &mut S,
) -> Result<Flattened, Rejection> {
    let reject = |table: &str, reason: String| Rejection {
        table_name: table.to_owned(),
        reason,
        record: record.record.get().to_owned(),
    };
    let table: Col = match &spec.table_col {
        Ok(t) => t.clone(),
        Err(reason) => return Err(reject(&spec.stream, reason.clone())),
    };
    let object: Vec<(Cow<'_, str>, Json<'_>)> = match Json::parse(record.record.get()) {
        Ok(Json::Object(fields)) => fields,
        Ok(_) => return Err(reject(&table, "record is not a JSON object".to_owned())),
        Err(e) => return Err(reject(&table, format!("record is not a JSON object: {e}"))),
    };
    let field = |name: &str| object.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let mut system = record_system_cells(record, sys);
    let keys = RecordKeys::new(spec, record, |_, prop| field(prop)).map_err(|r| reject(&table, r))?;

    let mut cache = spec.columns.lock().unwrap_or_else(PoisonError::into_inner);
    let mut flat = Flattener {
        rules,
        cache: &mut cache,
        sink,
        levels: Vec::new(),
    };
    let top = flat.sink.open_row(&table);
    for (col, cell) in &keys.cells {
        flat.put(top, col, cell.as_ref()).map_err(|r| reject(&table, r))?;
    }
    if let Some(v) = field(DELETED_AT) {
        let cell = deleted_at_cell(v).map_err(|r| reject(&table, r))?;
        system.set_deleted_at(cell);
    }
    // Key fields are already in the row under their canonical names.
    let mut entries: Vec<(&str, &Json<'_>)> = Vec::with_capacity(object.len());
    entries.extend(
        object
            .iter()
            .filter(|(k, _)| {
                k != DELETED_AT && (spec.append_only || !spec.key_properties.iter().any(|p| p == k))
            })
            .map(|(k, v)| (&**k, v)),
    );
    // The record's own fields must each name a column of their own (or the record is rejected);
    // deeper down, an object or array that cannot be flattened is kept whole as JSON instead (see
    // `Flattener::value_into`).
    let columns = flat
        .field_columns("", &entries, &[])
        .map_err(|r| reject(&table, r))?;
    // Only a top-level column with `__` in its name can be the name of a nested one: usually none.
    let claimed: Vec<Col> = columns.iter().filter(|c| c.contains("__")).cloned().collect();
    let ctx = Ctx {
        table: &table,
        source_keys: &keys.source_keys,
        claimed: &claimed,
    };
    flat.object_into(top, &entries, columns, Some(&spec.schema), &ctx)
        .map_err(|r| reject(&table, r))?;
    Ok(Flattened {
        key: keys.key,
        system,
    })
}

/// The system cells of every row of `record` (`_sdc_deleted_at` aside: see [`deleted_at_cell`]).
fn record_system_cells(record: &RecordMessage, sys: &SystemCells) -> SystemRow {
    let received = DateTime::<Utc>::from_timestamp_nanos(sys.sequence);
    SystemRow {
        cells: [
            record.time_extracted.map(Cell::time).unwrap_or(Cell::Null),
            Cell::time(received),
            Cell::time(sys.batched_at),
            Cell::BigInt(sys.sequence),
            record.version.map(Cell::BigInt).unwrap_or(Cell::Null),
            Cell::Null,
        ],
        len: DELETED_AT_CELL,
    }
}

/// `_sdc_deleted_at` from the record's field of that name, or why it cannot be.
fn deleted_at_cell(value: &Json<'_>) -> Result<Cell, String> {
    match value.as_str().map(parse_time) {
        Some(Ok(t)) => Ok(Cell::time(t)),
        _ if value.is_null() => Ok(Cell::Null),
        _ => Err(format!("{DELETED_AT} is not an RFC 3339 time")),
    }
}

/// A record's key: the top-level row's key cells, their binary form, and the subtable columns
/// holding them.
struct RecordKeys {
    cells: Vec<(Col, Cell)>,
    key: Vec<u8>,
    source_keys: Vec<(Col, Cell)>,
}

impl RecordKeys {
    /// The key of `record` from its key fields (`field(i, name)`: the value of the `i`-th key
    /// property, `name`), or why it has none: keys are top-level, non-null scalars.
    fn new<'j, 'v: 'j>(
        spec: &StreamSpec,
        record: &RecordMessage,
        field: impl Fn(usize, &str) -> Option<&'j Json<'v>>,
    ) -> Result<RecordKeys, String> {
        let mut cells: Vec<(Col, Cell)> = Vec::new();
        if spec.append_only {
            let id = uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("{}\n{}", spec.stream, record.record.get()).as_bytes(),
            );
            let [.., primary_key] = &*SYSTEM_COLUMNS;
            cells.push((primary_key.clone(), Cell::Text(id.to_string())));
        }
        for (i, (prop, col)) in spec.key_properties.iter().zip(&spec.key_cols).enumerate() {
            let col = col.clone()?;
            let value = field(i, prop).unwrap_or(&Json::Null);
            match scalar_cell(value, spec.schema.property(prop))? {
                Some(c) if c != CellRef::Null => cells.push((col, c.to_cell())),
                _ => return Err(format!("primary key {prop} is missing, null or not a scalar")),
            }
        }
        let mut key = Vec::with_capacity(9 * cells.len());
        for (_, c) in &cells {
            c.key_bytes(&mut key);
        }
        // The subtable columns holding the top-level key, named once per stream.
        let source_keys = spec
            .source_key_cols
            .iter()
            .zip(&cells)
            .map(|(k, (_, c))| (k.clone(), c.clone()))
            .collect();
        Ok(RecordKeys {
            cells,
            key,
            source_keys,
        })
    }
}

/// Flattens one record into a [`FlatRecord`] of its own (see [`flatten_into`]).
pub fn flatten_record(
    spec: &StreamSpec,
    rules: &NameRules,
    record: &RecordMessage,
    sys: &SystemCells,
) -> Result<FlatRecord, Rejection> {
    let mut flat = FlatRecord {
        key: Vec::new(),
        sequence: sys.sequence,
        raw: record.record.get().to_owned(),
        rows: Vec::new(),
        system: SystemRow::default(),
        log: Vec::new(),
    };
    let done = flatten_into(spec, rules, record, sys, &mut flat)?;
    flat.key = done.key;
    flat.system = done.system;
    flat.log.clear();
    Ok(flat)
}

impl RowSink for FlatRecord {
    fn open_row(&mut self, table: &Col) -> RowId {
        self.rows.push((table.clone(), Row::default()));
        self.log.push(None);
        RowId {
            table: 0,
            row: (self.rows.len() - 1) as u32,
        }
    }

    fn put(&mut self, row: RowId, column: &Col, cell: CellRef<'_>) -> Result<(), String> {
        let r = row.row as usize;
        let Some((_, cells)) = self.rows.get_mut(r) else {
            return Err(format!("no open row {r} for {column}"));
        };
        if cells.contains_key(column) {
            return Err(format!("Field collision on {column}"));
        }
        cells.push(column.clone(), cell.to_cell());
        self.log.push(Some(r));
        Ok(())
    }

    fn mark(&self) -> usize {
        self.log.len()
    }

    fn rollback(&mut self, mark: usize) {
        while self.log.len() > mark {
            match self.log.pop() {
                Some(Some(r)) => {
                    if let Some((_, cells)) = self.rows.get_mut(r) {
                        cells.0.pop();
                    }
                }
                Some(None) => {
                    self.rows.pop();
                }
                None => break,
            }
        }
    }
}

struct Ctx<'a> {
    table: &'a Col,
    /// `(_sdc_source_key_<k>, value)` for each key column of the top-level table.
    source_keys: &'a [(Col, Cell)],
    /// The columns of the record's own fields that a nested column could be named like (those with
    /// `__`; top-level row only): a nested object never takes one, whatever the order of the fields.
    claimed: &'a [Col],
}

struct Flattener<'a, S> {
    rules: &'a NameRules,
    cache: &'a mut ColumnCache,
    sink: &'a mut S,
    /// The array indexes leading to the element being flattened, outermost first.
    levels: Vec<i64>,
}

impl<S: RowSink> Flattener<'_, S> {
    /// The column each field of an object takes under `prefix`, in the object's order; `Err` (the
    /// reason) when some key cannot name a column of its own: it has no ASCII letter, digit or
    /// underscore, it is reserved, the column would be too long, two keys name the same column, or
    /// (nested) the column is one a field of the record itself names. Hand the list back to
    /// [`Self::object_into`], which gives it back to the cache for reuse.
    fn field_columns<'j, F: Field<'j>>(
        &mut self,
        prefix: &str,
        fields: &[F],
        claimed: &[Col],
    ) -> Result<Vec<Col>, String> {
        let mut columns = self.cache.spare.pop().unwrap_or_default();
        // Small objects (the usual case) are checked for duplicates by a scan, large ones by a set.
        let mut seen: HashSet<Col, FastHash> = HashSet::default();
        let small = fields.len() <= 16;
        let found = self
            .cache
            .columns(self.rules, prefix, fields, &mut columns, |earlier, column| {
                let duplicate = if small {
                    earlier.contains(column)
                } else {
                    !seen.insert(column.clone())
                };
                if duplicate || (!prefix.is_empty() && claimed.contains(column)) {
                    return Err(format!("Field collision on {column}"));
                }
                Ok(())
            });
        match found {
            Ok(()) => Ok(columns),
            Err(reason) => {
                self.cache.give_back(columns);
                Err(reason)
            }
        }
    }

    /// Flattens an object's fields into `row`, each under its column from [`Self::field_columns`].
    fn object_into<'j, F: Field<'j>>(
        &mut self,
        row: RowId,
        fields: &[F],
        columns: Vec<Col>,
        schema: Option<&Schema>,
        ctx: &Ctx<'_>,
    ) -> Result<(), String> {
        let mut done = Ok(());
        for (field, column) in fields.iter().zip(&columns) {
            let sub_schema = schema.and_then(|s| child(s, field.name()));
            done = self.value_into(row, column, field.value(), sub_schema, ctx);
            if done.is_err() {
                break;
            }
        }
        self.cache.give_back(columns);
        done
    }

    /// Puts one cell in `row`, refusing a second value for a column (two source fields that
    /// canonicalise alike). `column` comes from [`Self::field_columns`], whose names were checked
    /// against the destination's rules when they were worked out, or is a system or `value`
    /// column: it is not checked again for every cell.
    fn put(&mut self, row: RowId, column: &Col, cell: CellRef<'_>) -> Result<(), String> {
        debug_assert!(
            self.rules.check_column(column).is_ok(),
            "unchecked column {column}"
        );
        self.sink.put(row, column, cell)
    }

    /// An object or array loaded as one text column holding its JSON.
    fn put_json(&mut self, row: RowId, column: &Col, value: &Json<'_>) -> Result<(), String> {
        let json = serde_json::to_string(value)
            .map_err(|e| format!("the value of {column} cannot be written as JSON: {e}"))?;
        self.put(row, column, CellRef::Text(&json))
    }

    /// Flattens `value` into `column` of `row` (objects into `column__…` columns, arrays into the
    /// subtable `<table>__column`). An object or array that cannot be flattened whole (a key that
    /// names no column, a name too long, two names for one column, a value no column type holds)
    /// is kept whole instead, as JSON text in `column`: what it had put in `row` and the subtables
    /// is taken back first, so nothing is loaded twice.
    fn value_into(
        &mut self,
        row: RowId,
        column: &Col,
        value: &Json<'_>,
        schema: Option<&Schema>,
        ctx: &Ctx<'_>,
    ) -> Result<(), String> {
        match value {
            // NULLs create nothing, but two fields mapping to one column still collide.
            Json::Null => self.put(row, column, CellRef::Null),
            Json::Object(fields) => {
                let mark = self.sink.mark();
                let flattened = self
                    .field_columns(column, fields, ctx.claimed)
                    .and_then(|columns| self.object_into(row, fields, columns, schema, ctx));
                if flattened.is_err() {
                    self.sink.rollback(mark);
                    return self.put_json(row, column, value);
                }
                Ok(())
            }
            Json::Array(items) => {
                let mark = self.sink.mark();
                let loaded = self
                    .cache
                    .subtable(self.rules, ctx.table, column)
                    .and_then(|table| self.array(table, items, schema.and_then(items_schema), ctx));
                if loaded.is_err() {
                    self.sink.rollback(mark);
                    return self.put_json(row, column, value);
                }
                Ok(())
            }
            scalar => {
                let cell = scalar_cell(scalar, schema)?.unwrap_or(CellRef::Null);
                self.put(row, column, cell)
            }
        }
    }

    /// One subtable row per non-null element. An element object that cannot be flattened lands
    /// whole, as JSON text, in the row's `value` column; any other failure fails the array (which
    /// its parent then keeps as JSON).
    fn array(
        &mut self,
        table: Col,
        items: &[Json<'_>],
        schema: Option<&Schema>,
        ctx: &Ctx<'_>,
    ) -> Result<(), String> {
        for (i, item) in items.iter().enumerate() {
            if item.is_null() {
                continue;
            }
            // The element's level stays on the stack while its row and nested arrays are built.
            self.levels.push(i as i64);
            let row = self.element_row(&table, item, schema, ctx);
            self.levels.pop();
            row?;
        }
        Ok(())
    }

    /// The subtable row of one array element (the element's level on top of `self.levels`).
    fn element_row(
        &mut self,
        table: &Col,
        item: &Json<'_>,
        schema: Option<&Schema>,
        ctx: &Ctx<'_>,
    ) -> Result<(), String> {
        let value_column = &*VALUE_COLUMN;
        let row = self.sink.open_row(table);
        for (k, c) in ctx.source_keys {
            self.sink.put(row, k, c.as_ref())?;
        }
        for n in 0..self.levels.len() {
            let id = self.levels[n];
            self.sink.put(row, &level_col(n), CellRef::BigInt(id))?;
        }
        let sub = Ctx {
            table,
            source_keys: ctx.source_keys,
            claimed: &[],
        };
        match item {
            Json::Object(fields) => {
                let mark = self.sink.mark();
                let flattened = self
                    .field_columns("", fields, &[])
                    .and_then(|columns| self.object_into(row, fields, columns, schema, &sub));
                if flattened.is_err() {
                    self.sink.rollback(mark);
                    self.put_json(row, value_column, item)?;
                }
            }
            other => self.value_into(row, value_column, other, schema, &sub)?,
        }
        Ok(())
    }
}

/// The schema of an object's property, looking through `anyOf`.
fn child<'s>(schema: &'s Schema, name: &str) -> Option<&'s Schema> {
    schema
        .property(name)
        .or_else(|| schema.any_of.iter().flatten().find_map(|alt| child(alt, name)))
}

/// The schema of an array's items, looking through `anyOf`.
fn items_schema(schema: &Schema) -> Option<&Schema> {
    schema
        .items
        .as_deref()
        .or_else(|| schema.any_of.iter().flatten().find_map(items_schema))
}

fn is_date_time(schema: &Schema) -> bool {
    schema.is_date_time() || schema.any_of.iter().flatten().any(is_date_time)
}

/// The cell for a scalar JSON value; `Ok(None)` for objects and arrays.
fn scalar_cell<'j>(value: &'j Json<'_>, schema: Option<&Schema>) -> Result<Option<CellRef<'j>>, String> {
    Ok(Some(match value {
        Json::Null => CellRef::Null,
        Json::Bool(b) => CellRef::Boolean(*b),
        Json::Number(n) => {
            let number_only = number_only(schema);
            if let Some(i) = n.as_i64() {
                if number_only {
                    CellRef::Double(i as f64)
                } else {
                    CellRef::BigInt(i)
                }
            } else if n.is_u64() && !number_only {
                return Err(format!(
                    "integer out of range on {n}: it does not fit a 64-bit integer"
                ));
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() => CellRef::Double(f),
                    _ => return Err(format!("number {n} does not fit a double")),
                }
            }
        }
        Json::String(s) if s.contains('\0') => {
            return Err("a text value contains a NUL character, which warehouses cannot store".to_owned())
        }
        Json::String(s) => text_cell(s, schema),
        Json::Object(_) | Json::Array(_) => return Ok(None),
    }))
}

/// True when `schema` allows numbers but not integers: an integer then loads as a double.
fn number_only(schema: Option<&Schema>) -> bool {
    schema.is_some_and(|s| s.allows(JsonType::Number) && !s.allows(JsonType::Integer))
}

/// The cell for an integer that fits 64 bits, as [`scalar_cell`] makes it.
fn integer_cell(i: i64, schema: Option<&Schema>) -> CellRef<'static> {
    if number_only(schema) {
        CellRef::Double(i as f64)
    } else {
        CellRef::BigInt(i)
    }
}

/// The cell for a JSON string known to hold no NUL (which [`scalar_cell`] refuses).
fn text_cell<'j>(s: &'j str, schema: Option<&Schema>) -> CellRef<'j> {
    match schema.filter(|s| is_date_time(s)).map(|_| parse_time(s)) {
        // Years outside 1..=9999 do not fit every warehouse's timestamp; they stay text.
        Some(Ok(t)) if (1..=9999).contains(&chrono::Datelike::year(&t)) => {
            CellRef::Timestamp(t.timestamp_micros())
        }
        _ => CellRef::Text(s),
    }
}

// ---------------------------------------------------------------------------------------------------
// Layout: the tables and columns a destination has, and the DDL a batch needs.

/// A base column's physical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnState {
    /// One column named like the base, of this type.
    Single(ColumnType),
    /// Split: one column `<base>__<suffix>` per type, in arrival order.
    Split(Vec<ColumnType>),
}

/// One table's columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableLayout {
    /// Base column → state, in creation order.
    pub columns: IndexMap<String, ColumnState, FastHash>,
}

impl TableLayout {
    /// The physical column for a base column and a type, if it exists.
    pub fn physical(&self, base: &str, ty: ColumnType) -> Option<String> {
        match self.columns.get(base)? {
            ColumnState::Single(t) if *t == ty => Some(base.to_owned()),
            ColumnState::Split(ts) if ts.contains(&ty) => Some(format!("{base}__{}", ty.suffix())),
            _ => None,
        }
    }

    /// Physical columns and their types, in order.
    pub fn physical_columns(&self) -> Vec<(String, ColumnType)> {
        let mut out = Vec::new();
        for (base, st) in &self.columns {
            match st {
                ColumnState::Single(t) => out.push((base.clone(), *t)),
                ColumnState::Split(ts) => {
                    out.extend(ts.iter().map(|t| (format!("{base}__{}", t.suffix()), *t)))
                }
            }
        }
        out
    }

    /// Rebuilds a layout from a warehouse's physical columns (as introspected). Columns ending in a
    /// type suffix whose type matches are split columns (source fields can never end in one).
    pub fn from_physical(columns: impl IntoIterator<Item = (String, ColumnType)>) -> TableLayout {
        let mut layout = TableLayout::default();
        for (name, ty) in columns {
            let split_base = name
                .strip_suffix(ty.suffix())
                .and_then(|b| b.strip_suffix("__"))
                .filter(|b| !b.is_empty());
            match split_base {
                Some(base) => match layout
                    .columns
                    .entry(base.to_owned())
                    .or_insert(ColumnState::Split(Vec::new()))
                {
                    ColumnState::Split(ts) => ts.push(ty),
                    ColumnState::Single(_) => {
                        layout.columns.insert(name, ColumnState::Single(ty));
                    }
                },
                None => {
                    layout.columns.insert(name, ColumnState::Single(ty));
                }
            }
        }
        layout
    }
}

/// A change to the warehouse's tables, in the order to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ddl {
    /// Create a table with these columns; `key` names the key columns (top-level tables of upsert
    /// streams, for a primary-key constraint where the destination declares one).
    CreateTable {
        /// Table.
        table: String,
        /// Columns.
        columns: Vec<(String, ColumnType)>,
        /// Key columns.
        key: Vec<String>,
    },
    /// Add a column.
    AddColumn {
        /// Table.
        table: String,
        /// Column.
        column: String,
        /// Type.
        ty: ColumnType,
    },
    /// Rename a column (the first half of a split).
    RenameColumn {
        /// Table.
        table: String,
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
}

/// Every table a destination holds, keyed by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Tables.
    pub tables: BTreeMap<String, TableLayout>,
}

impl Layout {
    /// Checks one flattened record's rows against the layout (with the changes planned so far) and
    /// plans the DDL it needs. Key columns (`keys`, per table) never split: `Err` names the conflict
    /// and nothing is planned for the record. The stager plans a whole batch at once from its
    /// columns ([`crate::columns::StreamBatch`]); this record-by-record planning is the reference
    /// its tests compare it with.
    pub fn plan_record<'k>(
        &mut self,
        record: &FlatRecord,
        keys: &dyn Fn(&str) -> &'k [String],
        ddl: &mut Vec<Ddl>,
    ) -> Result<(), String> {
        // First pass: find key conflicts without mutating (key columns never split).
        for (table, row) in &record.rows {
            let Some(t) = self.tables.get(&**table) else {
                continue;
            };
            for key in keys(table) {
                if let (Some(cell_ty), Some(st)) = (
                    row.get(key.as_str()).and_then(Cell::column_type),
                    t.columns.get(key),
                ) {
                    if *st != ColumnState::Single(cell_ty) {
                        return Err(format!(
                            "primary key {key} of {table} has a value of another type than its column"
                        ));
                    }
                }
            }
        }
        for (i, (table, _)) in record.rows.iter().enumerate() {
            let typed: Vec<(&str, ColumnType)> = record
                .cells_of(i)
                .filter_map(|(c, v)| Some((&**c, v.column_type().or_else(|| system_column_type(c))?)))
                .collect();
            self.plan_columns(table, typed.into_iter(), keys(table), ddl);
        }
        Ok(())
    }

    /// Plans the DDL for `table` to hold cells of the `(base column, type)` pairs of `typed`, in
    /// arrival order: the table is created (with `key` as its key columns) when the layout has none,
    /// a new base column is added, a second type splits its column (the first rename-on-split), a
    /// later type adds its suffixed column. Key conflicts are the caller's to find first.
    pub fn plan_columns<'c>(
        &mut self,
        table: &str,
        typed: impl Iterator<Item = (&'c str, ColumnType)>,
        key: &[String],
        ddl: &mut Vec<Ddl>,
    ) {
        let Some(t) = self.tables.get_mut(table) else {
            let mut layout = TableLayout::default();
            for (base, ty) in typed {
                match layout.columns.get_mut(base) {
                    None => {
                        layout.columns.insert(base.to_owned(), ColumnState::Single(ty));
                    }
                    Some(ColumnState::Single(old)) if *old == ty => {}
                    Some(st @ ColumnState::Single(_)) => {
                        let ColumnState::Single(old) = *st else { continue };
                        *st = ColumnState::Split(vec![old, ty]);
                    }
                    Some(ColumnState::Split(ts)) => {
                        if !ts.contains(&ty) {
                            ts.push(ty);
                        }
                    }
                }
            }
            ddl.push(Ddl::CreateTable {
                table: table.to_owned(),
                columns: layout.physical_columns(),
                key: key.to_vec(),
            });
            self.tables.insert(table.to_owned(), layout);
            return;
        };
        for (base, ty) in typed {
            match t.columns.get_mut(base) {
                None => {
                    t.columns.insert(base.to_string(), ColumnState::Single(ty));
                    ddl.push(Ddl::AddColumn {
                        table: table.to_string(),
                        column: base.to_string(),
                        ty,
                    });
                }
                Some(ColumnState::Single(old)) if *old == ty => {}
                Some(st @ ColumnState::Single(_)) => {
                    let ColumnState::Single(old) = *st else { continue };
                    *st = ColumnState::Split(vec![old, ty]);
                    ddl.push(Ddl::RenameColumn {
                        table: table.to_string(),
                        from: base.to_string(),
                        to: format!("{base}__{}", old.suffix()),
                    });
                    ddl.push(Ddl::AddColumn {
                        table: table.to_string(),
                        column: format!("{base}__{}", ty.suffix()),
                        ty,
                    });
                }
                Some(ColumnState::Split(ts)) => {
                    if !ts.contains(&ty) {
                        ts.push(ty);
                        ddl.push(Ddl::AddColumn {
                            table: table.to_string(),
                            column: format!("{base}__{}", ty.suffix()),
                            ty,
                        });
                    }
                }
            }
        }
    }

    /// The subtables of a top-level table (tables named `<table>__…` that carry `_sdc_level_0_id`).
    pub fn subtables_of(&self, table: &str) -> Vec<String> {
        let prefix = format!("{table}__");
        let level0 = level_column(0);
        self.tables
            .iter()
            .filter(|(name, t)| name.starts_with(&prefix) && t.columns.contains_key(&level0))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    /// The key columns of a table keyed by `id`.
    static ID_KEY: LazyLock<Vec<String>> = LazyLock::new(|| vec!["id".to_owned()]);
    use proptest::prelude::*;
    use serde_json::json;
    use serde_json::{Map, Value};

    fn schema_msg(stream: &str, keys: &[&str], schema: Value) -> SchemaMessage {
        SchemaMessage {
            stream: stream.into(),
            schema: serde_json::from_value(schema).unwrap(),
            key_properties: keys.iter().map(|k| (*k).to_owned()).collect(),
            bookmark_properties: None,
        }
    }

    /// A record of one row with one cell and no system cells.
    fn one_row(table: &str, column: &str, cell: Cell) -> FlatRecord {
        FlatRecord {
            key: Vec::new(),
            sequence: 0,
            raw: String::new(),
            rows: vec![(Col::from(table), Row::from_iter([(Col::from(column), cell)]))],
            system: SystemRow::default(),
            log: Vec::new(),
        }
    }

    fn flat(spec: &StreamSpec, v: Value) -> Result<FlatRecord, Rejection> {
        let rec = RecordMessage::from_value(&spec.stream, &v).unwrap();
        let sys = SystemCells {
            sequence: 1_700_000_000_000_000_000,
            batched_at: Utc::now(),
        };
        flatten_record(spec, &NameRules::POSTGRES, &rec, &sys)
    }

    fn tickets() -> StreamSpec {
        let s = schema_msg(
            "tickets",
            &["id"],
            json!({"type": "object", "properties": {
                "id": {"type": "integer"}, "updated_at": {"type": ["null", "string"], "format": "date-time"},
                "price": {"type": ["null", "number"]},
                "custom_fields": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}}}}),
        );
        StreamSpec::new(&s, false, &NameRules::POSTGRES)
    }

    /// `same_name` is `==` for every pair of lengths 0..=20 around its word boundaries, with the
    /// difference at each position.
    #[test]
    fn same_name_is_equality() {
        for n in 0..=20usize {
            let a: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(same_name(&a, &a.clone()), "{a}");
            for m in 0..=20usize {
                let b: String = (0..m).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
                assert_eq!(same_name(&a, &b), a == b, "{a} {b}");
            }
            for i in 0..n {
                let mut b = a.clone().into_bytes();
                b[i] = b'Z';
                let b = String::from_utf8(b).unwrap();
                assert!(!same_name(&a, &b), "{a} {b}");
            }
        }
        assert!(same_name("héllo wörld", "héllo wörld"));
        assert!(!same_name("héllo wörld", "héllo wörle"));
    }

    #[test]
    fn objects_flatten_and_arrays_become_subtables() {
        let f = flat(
            &tickets(),
            json!({"id": 7, "via": {"source": {"from": {"name": "x"}}}, "tags": ["a", "b"],
                   "custom_fields": [{"id": 1, "value": "v", "opts": [true]}], "updated_at": "2024-01-01T00:00:00Z", "price": 3}),
        )
        .unwrap();
        let tables: Vec<&str> = f.rows.iter().map(|(t, _)| &**t).collect();
        assert_eq!(
            tables,
            [
                "tickets",
                "tickets__tags",
                "tickets__tags",
                "tickets__custom_fields",
                "tickets__custom_fields__opts"
            ]
        );
        let top = &f.rows[0].1;
        assert_eq!(top["id"], Cell::BigInt(7));
        assert_eq!(top["via__source__from__name"], Cell::Text("x".into()));
        assert_eq!(top["updated_at"], Cell::Timestamp(1_704_067_200_000_000));
        assert_eq!(
            top["price"],
            Cell::Double(3.0),
            "schema says number: integers become doubles"
        );
        let sequence = |i: usize| {
            f.cells_of(i)
                .find(|(c, _)| &***c == SEQUENCE)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(sequence(0), Some(Cell::BigInt(1_700_000_000_000_000_000)));
        assert_eq!(
            sequence(4),
            sequence(0),
            "subtable rows carry the record's system cells"
        );
        assert!(!top.contains_key(SEQUENCE), "held once per record, not per row");
        assert!(!top.contains_key("tags") && !top.contains_key("custom_fields"));
        let tag1 = &f.rows[2].1;
        assert_eq!(tag1["_sdc_source_key_id"], Cell::BigInt(7));
        assert_eq!(tag1["_sdc_level_0_id"], Cell::BigInt(1));
        assert_eq!(tag1[VALUE], Cell::Text("b".into()));
        let opts = &f.rows[4].1;
        assert_eq!(opts["_sdc_level_0_id"], Cell::BigInt(0));
        assert_eq!(opts["_sdc_level_1_id"], Cell::BigInt(0));
        assert_eq!(opts[VALUE], Cell::Boolean(true));
        assert_eq!(f.rows[3].1["value"], Cell::Text("v".into()));
    }

    #[test]
    fn hostile_and_reserved_names() {
        let r = &NameRules::POSTGRES;
        assert_eq!(
            r.canonical_field("x\"; DROP TABLE users; --").unwrap(),
            "xDROPTABLEusers"
        );
        assert_eq!(r.canonical_field("customer#id").unwrap(), "customerid");
        assert_eq!(r.canonical_field("4customerid").unwrap(), "customerid");
        assert_eq!(r.canonical_field("_customerid").unwrap(), "_customerid");
        assert_eq!(
            NameRules::DUCKDB.canonical_field("CuStoMeRId").unwrap(),
            "customerid"
        );
        assert!(r.canonical_field("_sdc_sequence").is_err());
        assert!(r.canonical_field("_SDC_Level_0_id").is_err());
        assert_eq!(
            r.canonical_field("_sdc_filename").unwrap(),
            "_sdc_filename",
            "Singer SDK metadata loads"
        );
        assert!(r.canonical_field("_rjm").is_err());
        assert!(r.canonical_field("age__bi").is_err());
        let e = r.canonical_field("%%%").unwrap_err();
        assert_eq!(
            e,
            "field name \"%%%\" has no ASCII letter, digit or underscore to name a column"
        );
        assert!(r.canonical_field("").is_err());
        assert!(r.canonical_field("日本").is_err());
        // Names made only of digits keep them behind an underscore; other leading digits go.
        assert_eq!(r.canonical_field("1").unwrap(), "_1");
        assert_eq!(r.canonical_field("#12").unwrap(), "_12");
        assert_eq!(r.canonical_field("1_").unwrap(), "_");
        assert_eq!(r.canonical_field("2fa").unwrap(), "fa");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        let e = flat(&tickets(), json!({"id": 1, "customer#id": 1, "customerid": 2})).unwrap_err();
        assert_eq!(e.reason, "Field collision on customerid");
        // A nested object never takes the column of one of the record's own fields: it is kept
        // whole as JSON, whichever comes first.
        for record in [
            json!({"id": 1, "a": {"b": 1}, "a__b": 2}),
            json!({"id": 1, "a__b": 2, "a": {"b": 1}}),
        ] {
            let f = flat(&tickets(), record).unwrap();
            assert_eq!(f.rows[0].1["a__b"], Cell::BigInt(2));
            assert_eq!(f.rows[0].1["a"], Cell::Text(r#"{"b":1}"#.into()));
        }
        let long = "x".repeat(60);
        let e = flat(&tickets(), json!({"id": 1, long.clone(): 1})).unwrap_err();
        assert!(e.reason.contains("too long"), "{}", e.reason);
        let e = flat(&tickets(), json!({"name": "no key"})).unwrap_err();
        assert!(e.reason.contains("primary key id"), "{}", e.reason);
        assert!(flat(&tickets(), json!({"id": 1, "big": 18446744073709551615u64}))
            .unwrap_err()
            .reason
            .contains("out of range"));
    }

    #[test]
    fn digit_keys_name_columns_and_unnameable_nested_objects_stay_json() {
        // Zendesk Talk's phone numbers: greeting categories keyed by id.
        let spec = StreamSpec::new(
            &schema_msg("talk_phone_numbers", &["id"], json!({"type": "object"})),
            false,
            &NameRules::POSTGRES,
        );
        let f = flat(
            &spec,
            json!({"id": 7, "categorised_greetings": {"1": "voicemail_en", "2": "available_en"}}),
        )
        .unwrap();
        let top = &f.rows[0].1;
        assert_eq!(
            top["categorised_greetings___1"],
            Cell::Text("voicemail_en".into())
        );
        assert_eq!(
            top["categorised_greetings___2"],
            Cell::Text("available_en".into())
        );
        // A nested key with nothing to name a column keeps its object whole, as JSON text.
        let f = flat(&spec, json!({"id": 7, "labels": {"日本": 1, "a": 2}, "n": 3})).unwrap();
        let top = &f.rows[0].1;
        assert_eq!(top["labels"], Cell::Text(r#"{"日本":1,"a":2}"#.into()));
        assert_eq!(top["n"], Cell::BigInt(3));
        assert!(!top.contains_key("labels__a"));
        // So do reserved names, names too long once prefixed, and keys that name one column twice.
        for (field, object) in [
            ("x", json!({"_sdc_sequence": 1})),
            ("y", json!({"bi": 1})),
            ("z", json!({"f".repeat(58): 1})),
            ("w", json!({"1": 1, "_1": 2})),
        ] {
            let f = flat(&spec, json!({"id": 1, field: object.clone()})).unwrap();
            assert_eq!(f.rows[0].1[field], Cell::Text(object.to_string()), "{field}");
        }
        // Array elements whose keys cannot name columns land whole in `value`.
        let f = flat(&spec, json!({"id": 1, "items": [{"a": 1}, {"": 2}]})).unwrap();
        assert_eq!(f.rows[1].1["a"], Cell::BigInt(1));
        assert_eq!(f.rows[2].1[VALUE], Cell::Text(r#"{"":2}"#.into()));
        // Arrays whose subtable name would be too long stay in their column as JSON text.
        let long = "g".repeat(45);
        let f = flat(&spec, json!({"id": 1, long.clone(): [1, 2]})).unwrap();
        assert_eq!(f.rows.len(), 1);
        assert_eq!(f.rows[0].1[long.as_str()], Cell::Text("[1,2]".into()));
        // Nested values no column type holds keep their object or array whole, as JSON.
        let f = flat(
            &spec,
            json!({"id": 1, "m": {"big": 18446744073709551615u64, "n": 1}}),
        )
        .unwrap();
        assert_eq!(
            f.rows[0].1["m"],
            Cell::Text(r#"{"big":18446744073709551615,"n":1}"#.into())
        );
        assert!(!f.rows[0].1.contains_key("m__n"), "nothing of it is loaded twice");
        let f = flat(&spec, json!({"id": 1, "xs": [{"a": [1, 2]}, "nul\u{0}"]})).unwrap();
        assert_eq!(f.rows.len(), 1, "no subtable rows: {:?}", f.rows);
        assert_eq!(
            f.rows[0].1["xs"],
            Cell::Text(r#"[{"a":[1,2]},"nul\u0000"]"#.into())
        );
        // Nested collisions across levels keep the innermost object that collides.
        let f = flat(&spec, json!({"id": 1, "p": {"q__r": 1, "q": {"r": 2}}})).unwrap();
        assert_eq!(f.rows[0].1["p__q__r"], Cell::BigInt(1));
        assert_eq!(f.rows[0].1["p__q"], Cell::Text(r#"{"r":2}"#.into()));
        // The record's own fields still have to name columns and hold loadable values: those
        // records are rejected.
        let e = flat(&spec, json!({"id": 1, "%": 1})).unwrap_err();
        assert!(e.reason.contains("no ASCII letter"), "{}", e.reason);
        let e = flat(&spec, json!({"id": 1, "big": 18446744073709551615u64})).unwrap_err();
        assert!(e.reason.contains("out of range"), "{}", e.reason);
    }

    /// Two key cell sequences share a key form only when they are equal.
    #[test]
    fn key_forms_are_one_per_key() {
        let form = |cells: &[Cell]| {
            let mut out = Vec::new();
            for c in cells {
                c.key_bytes(&mut out);
            }
            out
        };
        let text = |s: &str| Cell::Text(s.to_owned());
        let keys: Vec<Vec<Cell>> = vec![
            vec![Cell::BigInt(1)],
            vec![Cell::BigInt(-1)],
            vec![Cell::Timestamp(1)],
            vec![Cell::Double(1.0)],
            vec![Cell::Double(-0.0)],
            vec![Cell::Double(0.0)],
            vec![Cell::Boolean(true)],
            vec![Cell::Boolean(false)],
            vec![text("1")],
            vec![text("")],
            vec![text(""), text("")],
            vec![text("a"), text("b")],
            vec![text("a\u{1f}b")],
            vec![text("ab")],
            vec![text("a"), Cell::BigInt(98)],
            vec![Cell::BigInt(1), Cell::BigInt(2)],
            vec![Cell::BigInt(2), Cell::BigInt(1)],
        ];
        let forms: Vec<Vec<u8>> = keys.iter().map(|k| form(k)).collect();
        for (i, a) in forms.iter().enumerate() {
            for (j, b) in forms.iter().enumerate() {
                assert_eq!(a == b, i == j, "{:?} against {:?}", keys[i], keys[j]);
            }
        }
        assert_eq!(
            form(&[text("é"), Cell::BigInt(7)]),
            form(&[text("é"), Cell::BigInt(7)])
        );
    }

    #[test]
    fn append_only_rows_get_a_content_key() {
        let s = schema_msg("audits", &[], json!({"type": "object"}));
        let spec = StreamSpec::new(&s, true, &NameRules::POSTGRES);
        let a = flat(&spec, json!({"id": 1, "events": [{"x": 1}]})).unwrap();
        let b = flat(&spec, json!({"id": 1, "events": [{"x": 1}]})).unwrap();
        let c = flat(&spec, json!({"id": 1, "events": [{"x": 2}]})).unwrap();
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
        assert!(matches!(a.rows[0].1[SDC_PRIMARY_KEY], Cell::Text(_)));
        assert!(a.rows[1].1.contains_key("_sdc_source_key___sdc_primary_key"));
    }

    #[test]
    fn splits_rename_the_original_column() {
        let mut layout = Layout::default();
        let mut ddl = Vec::new();
        let no_keys = |_: &str| -> &[String] { &[] };
        let row = |v: Cell| one_row("t", "age", v);
        layout
            .plan_record(&row(Cell::BigInt(1)), &no_keys, &mut ddl)
            .unwrap();
        layout.plan_record(&row(Cell::Null), &no_keys, &mut ddl).unwrap();
        layout
            .plan_record(&row(Cell::Double(1.5)), &no_keys, &mut ddl)
            .unwrap();
        layout
            .plan_record(&row(Cell::Text("x".into())), &no_keys, &mut ddl)
            .unwrap();
        assert_eq!(ddl.len(), 4);
        assert_eq!(
            ddl[1],
            Ddl::RenameColumn {
                table: "t".into(),
                from: "age".into(),
                to: "age__bi".into()
            }
        );
        let t = &layout.tables["t"];
        let phys: Vec<String> = t.physical_columns().into_iter().map(|(c, _)| c).collect();
        assert_eq!(phys, ["age__bi", "age__do", "age__st"]);
        assert_eq!(TableLayout::from_physical(t.physical_columns()), *t);
        let age = ["age".to_owned()];
        let keyed = |_: &str| -> &[String] { &age };
        let mut l2 = Layout::default();
        l2.plan_record(&row(Cell::BigInt(1)), &keyed, &mut ddl).unwrap();
        assert!(l2
            .plan_record(&row(Cell::Text("1".into())), &keyed, &mut ddl)
            .is_err());
    }

    #[test]
    fn null_only_fields_create_nothing() {
        let mut layout = Layout::default();
        let mut ddl = Vec::new();
        let id = ["id".to_owned()];
        let f = flat(&tickets(), json!({"id": 1, "gone": null, "tags": []})).unwrap();
        layout.plan_record(&f, &|_| &id[..], &mut ddl).unwrap();
        assert_eq!(f.rows.len(), 1);
        assert!(!layout.tables["tickets"].columns.contains_key("gone"));
        let mut batch = crate::columns::StreamBatch::default();
        let rec = RecordMessage::from_value("tickets", &json!({"id": 1, "gone": null, "tags": []})).unwrap();
        let sys = SystemCells {
            sequence: 1,
            batched_at: Utc::now(),
        };
        let done = flatten_into(&tickets(), &NameRules::POSTGRES, &rec, &sys, &mut batch).unwrap();
        batch.finish_record(done, 1, Some(rec.record.get()));
        let mut fresh = Layout::default();
        batch.plan_ddl(&mut fresh, &|_| &id[..], &[], &mut ddl);
        assert_eq!(fresh.tables["tickets"], layout.tables["tickets"]);
        assert_eq!(batch.tables().len(), 1, "an empty array opens no subtable row");
        let rows = batch.table_rows(&batch.tables()[0], &fresh, &Arc::from([]));
        assert!(rows.columns.iter().all(|(c, _)| c != "gone"));
        assert_eq!(rows.len(), 1);
    }

    /// A cell as a field of PostgreSQL's binary `COPY` (`None`: NULL), written out plainly here
    /// (`postgres::copy`'s tests hold the encoder to the driver's encoding).
    fn copy_field(cell: CellRef<'_>) -> Option<Vec<u8>> {
        match cell {
            CellRef::Null => None,
            CellRef::BigInt(v) => Some(v.to_be_bytes().to_vec()),
            CellRef::Double(v) => Some(v.to_be_bytes().to_vec()),
            CellRef::Boolean(v) => Some(vec![u8::from(v)]),
            CellRef::Timestamp(us) => us
                .checked_sub(946_684_800_000_000)
                .map(|v| v.to_be_bytes().to_vec()),
            CellRef::Text(s) => Some(s.as_bytes().to_vec()),
        }
    }

    /// Object keys as sources send them, odd ones included: empty, digits only, leading digits,
    /// unicode, very long, quotes, dots, case variants that fold together, reserved names and
    /// suffixes.
    fn odd_key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-zA-Z_\"; -]{1,6}",
            1 => Just(String::new()),
            2 => "[0-9]{1,3}",
            1 => "_?[0-9]{1,2}[a-z]{0,2}",
            1 => "\\PC{1,4}",
            1 => "[a-z]{50,70}",
            1 => "[a-z.]{1,5}",
            2 => "[aA][bB]?",
            1 => prop::sample::select(vec!["_sdc_sequence", "_SDC_level_0_id", "_rjm", "x__bi", "bi", "value", "_sdc_deleted_at"])
                .prop_map(str::to_owned),
        ]
    }

    /// Any JSON value. Strings never start with `{` or `[`, so a text cell that does holds an
    /// object or array kept whole as JSON.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            (-4000i32..4000).prop_map(|i| json!(f64::from(i) / 4.0)),
            "[a-z \"';{\\[]{0,8}"
                .prop_filter("not JSON-looking", |s: &String| !s.starts_with(['{', '[']))
                .prop_map(Value::String),
            // Values no column type holds: an integer past i64, a string with NUL.
            Just(json!(u64::MAX)),
            Just(json!("a\u{0}b")),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((odd_key(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// An object or an array, holding anything.
    fn nested_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            prop::collection::vec(json_value(), 0..4).prop_map(Value::Array),
            prop::collection::vec((odd_key(), json_value()), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    }

    /// Counts the scalars (non-null) reachable in a value, skipping array nulls.
    fn scalars(v: &Value) -> usize {
        match v {
            Value::Null => 0,
            Value::Object(m) => m.values().map(scalars).sum(),
            Value::Array(a) => a.iter().map(scalars).sum(),
            _ => 1,
        }
    }

    /// The scalars a flattened record holds: one per non-null cell, or those of the JSON an
    /// object or array was kept as (system and key cells aside).
    fn scalars_loaded(f: &FlatRecord) -> usize {
        let mut n = 0;
        for (i, (_, row)) in f.rows.iter().enumerate() {
            for (c, cell) in row.iter() {
                let system = matches!(
                    &**c,
                    EXTRACTED_AT | RECEIVED_AT | BATCHED_AT | SEQUENCE | TABLE_VERSION | SDC_PRIMARY_KEY
                ) || c.starts_with(SOURCE_KEY_PREFIX)
                    || c.starts_with("_sdc_level_")
                    || (i == 0 && (&**c == "id" || &**c == DELETED_AT));
                match cell {
                    _ if system => {}
                    Cell::Null => {}
                    Cell::Text(t) if t.starts_with(['{', '[']) => {
                        n += scalars(&serde_json::from_str::<Value>(t).expect("kept JSON parses"));
                    }
                    _ => n += 1,
                }
            }
        }
        n
    }

    fn rules_for(fold: bool) -> NameRules {
        if fold {
            NameRules::DUCKDB
        } else {
            NameRules::POSTGRES
        }
    }

    fn flat_with(rules: &NameRules, v: &Value) -> Result<FlatRecord, Rejection> {
        let s = schema_msg(
            "tickets",
            &["id"],
            json!({"type": "object", "properties": {"id": {"type": "integer"}}}),
        );
        let spec = StreamSpec::new(&s, false, rules);
        let rec = RecordMessage::from_value(&spec.stream, v).unwrap();
        let sys = SystemCells {
            sequence: 1_700_000_000_000_000_000,
            batched_at: DateTime::<Utc>::from_timestamp_nanos(1_700_000_000_000_000_000),
        };
        flatten_record(&spec, rules, &rec, &sys)
    }

    fn record_with_id(fields: Vec<(String, Value)>) -> Value {
        let mut obj: Map<String, Value> = fields.into_iter().collect();
        obj.insert("id".into(), json!(1));
        Value::Object(obj)
    }

    /// A key's tags are its cells' types in order, as [`key_tag`] names them, texts of any length
    /// included; a form cut short ends them early.
    #[test]
    fn key_tags_name_the_types_of_a_keys_cells() {
        let cells = [
            Cell::BigInt(-7),
            Cell::Text("a longer text than eight bytes".into()),
            Cell::Double(1.5),
            Cell::Boolean(true),
            Cell::Timestamp(1),
            Cell::Text(String::new()),
        ];
        let mut key = Vec::new();
        for c in &cells {
            c.key_bytes(&mut key);
        }
        let want: Vec<u8> = cells.iter().map(|c| key_tag(c.column_type().unwrap())).collect();
        assert_eq!(key_tags(&key).collect::<Vec<_>>(), want);
        assert_eq!(key_tags(&key[..key.len() - 1]).collect::<Vec<_>>(), want[..5]);
        assert_eq!(key_tags(&key[..12]).collect::<Vec<_>>(), want[..1]);
        assert_eq!(key_tags(&[]).count(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Any record becomes rows or one rejection with a reason, never a panic; rows lose no
        /// value and every name they use is a loadable identifier.
        #[test]
        fn flattening_is_total_and_loses_no_value(
            fields in prop::collection::vec((odd_key(), json_value()), 0..7),
            fold in any::<bool>(),
        ) {
            let rules = rules_for(fold);
            let value = record_with_id(fields);
            match flat_with(&rules, &value) {
                Ok(f) => {
                    // Every scalar lands in exactly one cell, or in one object kept as JSON.
                    prop_assert_eq!(scalars_loaded(&f), scalars(&value) - 1);
                    // The first row is the record's; subtables follow.
                    prop_assert_eq!(&*f.rows[0].0, "tickets");
                    prop_assert!(f.rows[1..].iter().all(|(t, _)| t.starts_with("tickets__")));
                    // Every name is a loadable identifier, and the layout reads back the same.
                    let mut layout = Layout::default();
                    let mut ddl = Vec::new();
                    layout.plan_record(&f, &|_| &ID_KEY[..], &mut ddl).unwrap();
                    for (t, tl) in &layout.tables {
                        prop_assert!(t.len() <= 63, "{}", t);
                        for (c, ty) in tl.physical_columns() {
                            prop_assert!(c.len() <= 63 && !c.is_empty(), "{}", c);
                            prop_assert!(c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'), "{}", c);
                            prop_assert!(!c.starts_with(|ch: char| ch.is_ascii_digit()), "{}", c);
                            prop_assert!(!fold || !c.chars().any(|ch| ch.is_ascii_uppercase()), "{}", c);
                            let split_suffix = format!("__{}", ty.suffix());
                            let base = c.strip_suffix(&split_suffix).unwrap_or(&c);
                            prop_assert!(tl.physical(base, ty).is_some(), "{}", c);
                        }
                        prop_assert_eq!(&TableLayout::from_physical(tl.physical_columns()), tl);
                    }
                }
                Err(rej) => {
                    // One rejection that keeps the record and says why.
                    prop_assert!(!rej.reason.is_empty());
                    prop_assert_eq!(rej.table_name.as_str(), "tickets");
                    prop_assert_eq!(serde_json::from_str::<Value>(&rej.record).unwrap(), value);
                }
            }
        }

        /// Only the record's own fields can reject it: with plain top-level names, whatever is
        /// nested (odd keys, long names, collisions, values no column type holds) loads.
        #[test]
        fn nested_values_never_reject_a_record(
            fields in prop::collection::btree_map("[a-z]{1,8}", nested_value(), 0..6),
            fold in any::<bool>(),
        ) {
            let rules = rules_for(fold);
            let value = record_with_id(fields.into_iter().collect());
            match flat_with(&rules, &value) {
                Ok(f) => prop_assert_eq!(scalars_loaded(&f), scalars(&value) - 1),
                Err(rej) => prop_assert!(false, "rejected {}: {}", rej.record, rej.reason),
            }
        }

        /// The same records give the same rows, rejections, DDL and layout, every time.
        #[test]
        fn flattening_and_layout_are_deterministic(
            records in prop::collection::vec(prop::collection::vec((odd_key(), json_value()), 0..5), 1..5),
            fold in any::<bool>(),
        ) {
            let rules = rules_for(fold);
            let run = || {
                let mut layout = Layout::default();
                let mut ddl = Vec::new();
                let mut out = Vec::new();
                for fields in &records {
                    let r = flat_with(&rules, &record_with_id(fields.clone()));
                    if let Ok(f) = &r {
                        let planned = layout.plan_record(f, &|_| &ID_KEY[..], &mut ddl);
                        out.push((r.clone(), planned));
                    } else {
                        out.push((r, Ok(())));
                    }
                }
                (out, ddl, layout)
            };
            let first = run();
            prop_assert_eq!(&first, &run());
        }

        /// The stager's columnar batch loads exactly what flattening each record on its own, keeping
        /// the newest record per key and planning record by record loads: the same rows (physical
        /// column → value) in every table, the same physical columns, the same rejections. Keys
        /// repeat (de-duplication, older sequences included) and take several types (key conflicts).
        #[test]
        fn columnar_staging_loads_what_record_by_record_planning_does(
            records in prop::collection::vec(
                (
                    prop::collection::vec((odd_key(), json_value()), 0..5),
                    prop_oneof![Just(json!(1)), Just(json!("1")), Just(json!(2.5)), Just(json!(2))],
                    0i64..4,
                ),
                1..8,
            ),
            fold in any::<bool>(),
        ) {
            use crate::columns::StreamBatch;
            let rules = rules_for(fold);
            let s = schema_msg("tickets", &["id"], json!({"type": "object"}));
            let spec = StreamSpec::new(&s, false, &rules);
            let batched_at = DateTime::<Utc>::from_timestamp_nanos(1_700_000_000_000_000_000);
            let mut sub_keys: Vec<String> = vec![format!("{SOURCE_KEY_PREFIX}id")];
            sub_keys.extend((0..8).map(level_column));
            let keys = |t: &str| -> &[String] { if t == "tickets" { &ID_KEY[..] } else { &sub_keys[..] } };
            type Rows = BTreeMap<String, Vec<BTreeMap<String, Cell>>>;

            // The reference: record by record.
            let mut kept: IndexMap<Vec<u8>, FlatRecord> = IndexMap::new();
            let mut rejected_ref = Vec::new();
            // The subject: one columnar batch.
            let mut batch = StreamBatch::default();
            let mut rejected_new = Vec::new();
            for (fields, id, seq) in &records {
                let mut v = record_with_id(fields.clone());
                v["id"] = id.clone();
                let rec = RecordMessage::from_value("tickets", &v).unwrap();
                let sys = SystemCells { sequence: 1_700_000_000_000_000_000 + seq, batched_at };
                match flatten_record(&spec, &rules, &rec, &sys) {
                    Ok(f) => match kept.get_mut(&f.key) {
                        Some(old) if old.sequence > f.sequence => {}
                        Some(old) => *old = f,
                        None => {
                            kept.insert(f.key.clone(), f);
                        }
                    },
                    Err(r) => rejected_ref.push(r.record),
                }
                match flatten_into(&spec, &rules, &rec, &sys, &mut batch) {
                    Ok(done) => batch.finish_record(done, sys.sequence, Some(rec.record.get())),
                    Err(r) => {
                        batch.discard_record();
                        rejected_new.push(r.record);
                    }
                }
            }
            let mut layout_ref = Layout::default();
            let mut ddl = Vec::new();
            let mut rows_ref = Rows::new();
            let mut accepted = Vec::new();
            for f in kept.values() {
                match layout_ref.plan_record(f, &keys, &mut ddl) {
                    Ok(()) => accepted.push(f),
                    Err(_) => rejected_ref.push(f.raw.clone()),
                }
            }
            for f in accepted {
                for (i, (t, _)) in f.rows.iter().enumerate() {
                    let tl = &layout_ref.tables[&**t];
                    let row = f
                        .cells_of(i)
                        .filter_map(|(c, v)| Some((tl.physical(c, v.column_type()?).unwrap(), v.clone())))
                        .collect();
                    rows_ref.entry(t.to_string()).or_default().push(row);
                }
            }

            let mut layout_new = Layout::default();
            let mut rejections = Vec::new();
            let mask: Arc<[bool]> = batch
                .reject_key_conflicts(&layout_new, &keys, "tickets", &mut rejections)
                .unwrap()
                .into();
            rejected_new.extend(rejections.into_iter().map(|r| r.record));
            batch.plan_ddl(&mut layout_new, &keys, &mask, &mut Vec::new());
            let mut rows_new = Rows::new();
            for t in batch.tables() {
                let tr = batch.table_rows(t, &layout_new, &mask);
                tr.for_each_row(|cells| {
                    let row = tr
                        .columns
                        .iter()
                        .zip(cells)
                        .filter(|(_, c)| **c != CellRef::Null)
                        .map(|((n, _), c)| (n.clone(), c.to_cell()))
                        .collect();
                    rows_new.entry(t.name.to_string()).or_default().push(row);
                    Ok::<(), ()>(())
                })
                .unwrap();
                prop_assert_eq!(tr.len(), rows_new.get(&*t.name).map_or(0, Vec::len));
                // The same rows as PostgreSQL's binary `COPY` (written a column at a time), in
                // chunks of a few rows.
                let mut whole = Vec::new();
                tr.for_each_row(|cells| {
                    whole.push(cells.iter().map(|c| copy_field(*c)).collect::<Vec<_>>());
                    Ok::<(), ()>(())
                })
                .unwrap();
                let mut stream = Vec::new();
                crate::postgres::copy::encode(&tr, 100, |chunk| {
                    stream.extend_from_slice(chunk);
                    Ok(())
                })
                .unwrap();
                let copied = if tr.is_empty() { Vec::new() } else { crate::postgres::copy::decode::rows(&stream) };
                prop_assert_eq!(whole, copied);
            }
            let sorted = |mut rows: Rows| {
                for v in rows.values_mut() {
                    v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
                }
                rows
            };
            prop_assert_eq!(sorted(rows_ref), sorted(rows_new));
            rejected_ref.sort();
            rejected_new.sort();
            prop_assert_eq!(rejected_ref, rejected_new);
            let physical = |l: &Layout| -> BTreeMap<String, BTreeSet<(String, ColumnType)>> {
                l.tables.iter().map(|(t, tl)| (t.clone(), tl.physical_columns().into_iter().collect())).collect()
            };
            prop_assert_eq!(physical(&layout_ref), physical(&layout_new));
        }

        #[test]
        fn any_type_sequence_splits_consistently(types in prop::collection::vec(0usize..5, 1..12)) {
            let mut layout = Layout::default();
            let mut ddl = Vec::new();
            let cells = [Cell::BigInt(1), Cell::Double(0.5), Cell::Boolean(true), Cell::Timestamp(0), Cell::Text("s".into())];
            for t in &types {
                layout.plan_record(&one_row("t", "c", cells[*t].clone()), &|_| &[], &mut ddl).unwrap();
                let tl = &layout.tables["t"];
                prop_assert!(tl.physical("c", cells[*t].column_type().unwrap()).is_some());
            }
            let distinct: HashSet<usize> = types.iter().copied().collect();
            let phys = layout.tables["t"].physical_columns();
            prop_assert_eq!(phys.len(), distinct.len());
            prop_assert_eq!(TableLayout::from_physical(phys), layout.tables["t"].clone());
        }
    }
}
