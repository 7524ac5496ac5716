//! One commit into PostgreSQL: DDL, the rows, rejections, activations and the state, in one
//! transaction.
//!
//! Per stream, one lookup of the batch's keys (`unnest` of key arrays joined to the table's primary
//! key) decides the route. Usually no staged row must be held back: the warehouse rows of replaced
//! keys and their subtable rows are deleted, and every staged row is written with binary `COPY`
//! straight into its table — no staging table, no second copy of the rows. When a staged row must
//! not land (an older `_sdc_sequence` than the warehouse's, an append-only key already loaded), the
//! rows go through binary `COPY` into temporary staging tables and [`sql::merge`] applies them.
//!
//! A table whose staged keys are likely all new to it (this destination created it, or its last
//! lookup found none of them: every batch after the first of a first load) skips the lookup: its
//! rows are copied in inside a savepoint, and the table's primary key either lets them all in —
//! then none was there and the lookup would have chosen that same direct copy — or refuses one,
//! and the savepoint is rolled back and the keys are looked up as above ([`load_new_keys`]).

use super::copy::{self, pg_micros, COPY_CHUNK};
use super::{Conn, DIALECT};
use crate::columns::TableRows;
use crate::error::WarehouseError;
use crate::flatten::{
    quote_ident, CellRef, ColumnType, TableLayout, REJECTED_TABLE, SEQUENCE, SOURCE_KEY_PREFIX, STATE_TABLE,
};
use crate::sql::{self, qualified};
use crate::stage::{CommitPlan, StreamLoad};
use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type};
use seam_core::{DestinationError, ErrorKind, State};
use std::collections::HashMap;
use std::io::Write;

/// The PostgreSQL type of a column type, as [`super::type_name`] declares it.
pub(super) fn pg_type(t: ColumnType) -> Type {
    match t {
        ColumnType::BigInt => Type::INT8,
        ColumnType::Double => Type::FLOAT8,
        ColumnType::Boolean => Type::BOOL,
        ColumnType::Timestamp => Type::TIMESTAMP,
        ColumnType::Text => Type::TEXT,
    }
}

/// A cell whose type is not its column's: a bug in the staging plan, never outside input.
#[derive(Debug, thiserror::Error)]
#[error(
    "a {cell:?} value was staged for a {column} column: the commit plan is inconsistent, please report it"
)]
struct CellTypeMismatch {
    cell: ColumnType,
    column: Type,
}

/// A [`CellRef`] in PostgreSQL's binary format, for binary `COPY` and array parameters.
#[derive(Debug)]
pub(super) struct PgCell<'a>(pub(super) CellRef<'a>);

impl ToSql for PgCell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let cell = self.0;
        let Some(cell_type) = cell.column_type() else {
            return Ok(IsNull::Yes);
        };
        if pg_type(cell_type) != *ty {
            return Err(Box::new(CellTypeMismatch {
                cell: cell_type,
                column: ty.clone(),
            }));
        }
        match cell {
            CellRef::Null => Ok(IsNull::Yes),
            CellRef::BigInt(v) => v.to_sql(ty, out),
            CellRef::Double(v) => v.to_sql(ty, out),
            CellRef::Boolean(v) => v.to_sql(ty, out),
            // Flattening keeps years 1..=9999, far inside both ranges; an overflow cannot happen.
            CellRef::Timestamp(us) => match pg_micros(us) {
                Some(pg) => pg.to_sql(&Type::INT8, out),
                None => Ok(IsNull::Yes),
            },
            CellRef::Text(s) => s.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::FLOAT8, Type::BOOL, Type::TIMESTAMP, Type::TEXT].contains(ty)
    }

    postgres::types::to_sql_checked!();
}

type ErrFn<'e> = dyn Fn(postgres::Error, &str) -> DestinationError + 'e;

/// Why a `COPY` failed: the server's (or the driver's) error, with what was being done, or an
/// encoding or I/O error already classified.
enum CopyError {
    Driver(postgres::Error, &'static str),
    Other(DestinationError),
}

impl CopyError {
    fn into_destination(self, d_err: &ErrFn<'_>) -> DestinationError {
        match self {
            CopyError::Driver(e, action) => d_err(e, action),
            CopyError::Other(e) => e,
        }
    }

    /// A row whose key the table's unique index already holds.
    fn is_unique_violation(&self) -> bool {
        matches!(self, CopyError::Driver(e, _) if e.code() == Some(&SqlState::UNIQUE_VIOLATION))
    }
}

/// Binary `COPY` of `rows` into `table_sql` (already quoted).
fn copy_rows(
    tx: &mut postgres::Transaction<'_>,
    d_err: &ErrFn<'_>,
    table_sql: &str,
    rows: &TableRows,
) -> Result<(), DestinationError> {
    copy_rows_raw(tx, table_sql, rows).map_err(|e| e.into_destination(d_err))
}

/// [`copy_rows`], with the driver's error as it came.
///
/// The rows are encoded by [`copy::encode`] in large chunks, a column at a time, rather than
/// through `postgres::binary_copy::BinaryCopyInWriter`, which enters the driver's runtime once per
/// row (that cost more than encoding the rows, measured with perf on a Zendesk-shaped stream).
fn copy_rows_raw(
    tx: &mut postgres::Transaction<'_>,
    table_sql: &str,
    rows: &TableRows,
) -> Result<(), CopyError> {
    if rows.is_empty() {
        return Ok(());
    }
    let cols: Vec<String> = rows.columns.iter().map(|(c, _)| quote_ident(c)).collect();
    let mut writer = tx
        .copy_in(&format!(
            "COPY {table_sql} ({}) FROM STDIN (FORMAT binary)",
            cols.join(", ")
        ))
        .map_err(|e| CopyError::Driver(e, "starting COPY"))?;
    copy::encode(rows, COPY_CHUNK, |chunk| {
        writer
            .write_all(chunk)
            .map_err(|e| DestinationError::new(ErrorKind::Transient, WarehouseError::Io(e)))
    })
    .map_err(CopyError::Other)?;
    writer
        .finish()
        .map_err(|e| CopyError::Driver(e, "finishing COPY"))?;
    Ok(())
}

/// How one stream's rows reach their tables.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// No staged row loses to, or is kept out by, a warehouse row: delete the warehouse rows (and
    /// their subtable rows) of the staged keys in `replaced` (indexes into the top-level rows),
    /// then `COPY` every staged row straight into its table.
    Direct {
        /// [`StreamLoad::key_positions`].
        keys: Vec<usize>,
        /// Rows whose key the warehouse holds with an older or equal sequence.
        replaced: Vec<usize>,
    },
    /// Some staged rows must not land (an older `_sdc_sequence`, an append-only key already
    /// present, a warehouse row without a sequence), or the keys are not plain columns: stage
    /// into temporary tables and merge with [`sql::merge`].
    Merge,
}

/// The key columns of a load and the arrays of their staged values, as `unnest` arguments.
struct KeyArrays<'a> {
    /// `(column, its type)`, in key order.
    columns: Vec<(&'a str, ColumnType)>,
    /// One array of cells per key column.
    values: Vec<Vec<PgCell<'a>>>,
}

impl<'a> KeyArrays<'a> {
    /// The staged key values of `rows`; `positions` from [`StreamLoad::key_positions`].
    fn new(
        load: &'a StreamLoad,
        positions: &[usize],
        rows: impl Iterator<Item = usize> + Clone,
    ) -> KeyArrays<'a> {
        let columns = load
            .key_columns
            .iter()
            .zip(positions)
            .map(|(k, &p)| (k.as_str(), load.rows.columns[p].1))
            .collect();
        let values = positions
            .iter()
            .map(|&p| {
                let column = load.rows.column(p);
                rows.clone()
                    .filter_map(|r| column.get(r).map(|&c| PgCell(c)))
                    .collect()
            })
            .collect();
        KeyArrays { columns, values }
    }

    /// `unnest($1::type[], …)` aliased `u(k0, …)`, plus `extra` alias columns.
    fn unnest(&self, extra: &str) -> String {
        let args: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, t))| format!("${}::{}[]", i + 1, super::type_name(*t)))
            .collect();
        let mut names: Vec<String> = (0..self.columns.len()).map(|i| format!("k{i}")).collect();
        if !extra.is_empty() {
            names.push(extra.to_owned());
        }
        let ordinality = if extra.is_empty() { "" } else { " WITH ORDINALITY" };
        format!(
            "unnest({}){ordinality} AS u({})",
            args.join(", "),
            names.join(", ")
        )
    }

    /// `t."col" = u.k0 AND …`, where the table's columns are named by `column(key column)`.
    fn matches(&self, table_alias: &str, column: impl Fn(&str) -> String) -> String {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, (k, _))| format!("{table_alias}.{} = u.k{i}", quote_ident(&column(k))))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
    }
}

/// An index whose key columns are exactly a table's key columns (in any order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyIndex {
    None,
    /// Not unique (the index seam gives a subtable on its parent's key).
    Plain,
    /// Unique and not deferred (the primary key seam creates), with its oid: a row whose key the
    /// table holds cannot be copied in.
    Unique(u32),
}

/// Whether a table's next batch is likely to hold only keys the table does not have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum NewKeys {
    /// Look the keys up first.
    #[default]
    Unknown,
    /// This destination created the table, or the last lookup found none of the staged keys: copy
    /// the rows in first, and look up only when the table's unique index refuses one.
    Likely,
    /// Refused once in this destination's life: always look up first.
    Never,
}

/// What the destination learnt about one table across commits: kept by the destination, and
/// forgotten when a commit fails ([`apply`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TableFacts {
    key_index: Option<KeyIndex>,
    new_keys: NewKeys,
}

/// How a destination's commits reached their tables, for tests and inspection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounters {
    /// Lookups of a batch's keys in a table ([`probe`]'s query).
    pub key_lookups: u64,
    /// Batches of a stream copied into their table without a lookup ([`load_new_keys`]).
    pub new_key_loads: u64,
    /// Copies without a lookup that the table's unique index refused (rolled back, then looked up;
    /// not counted in `new_key_loads`).
    pub new_key_refusals: u64,
}

/// What a commit knows of its tables' key indexes and keys, and whether its joins may be hash and
/// merge joins.
///
/// PostgreSQL prices each index probe as a random read from disk, so once a batch holds more than a
/// few percent of a table's rows it joins the batch's keys to the table with a hash join over a
/// sequential scan of the whole table. Seen in the server's log on a 20k-ticket load: each commit's
/// key lookup read every row loaded so far (15 ms per lookup on `ticket_comments` by the end, 0.77 s
/// of the run's 2.6 s of server time), so a run's lookups grew with the square of its size. A nested
/// loop over the key index costs per staged key instead. [`probe`] and the deletes of replaced rows
/// and of their subtable rows turn hash and merge joins off ([`Lookups::by_index`]) where the table
/// has an index on its key columns ([`Lookups::key_index`]; without one a nested loop would scan
/// the table once per key; subtables get theirs from [`Lookups::source_key_index`]); every other
/// statement gets the planner's defaults back first ([`Lookups::planner`]). Both are
/// `SET LOCAL`: the transaction's end undoes them.
#[derive(Debug)]
struct Lookups<'k> {
    by_index: bool,
    /// Table (quoted and qualified) → what is known of it.
    known: &'k mut HashMap<String, TableFacts>,
    counters: &'k mut LoadCounters,
}

impl<'k> Lookups<'k> {
    fn new(known: &'k mut HashMap<String, TableFacts>, counters: &'k mut LoadCounters) -> Self {
        Lookups {
            by_index: false,
            known,
            counters,
        }
    }

    /// Whether `table`'s staged keys are likely all new to it ([`NewKeys::Likely`]).
    fn expects_new_keys(&self, table: &str) -> bool {
        self.known
            .get(table)
            .is_some_and(|f| f.new_keys == NewKeys::Likely)
    }

    /// A lookup in `table` (or its creation) found none of the staged keys (`none`), or some.
    fn looked_up(&mut self, table: &str, none: bool) {
        let facts = self.known.entry(table.to_owned()).or_default();
        if facts.new_keys != NewKeys::Never {
            facts.new_keys = if none { NewKeys::Likely } else { NewKeys::Unknown };
        }
    }

    /// `table`'s unique index refused a staged key copied in without a lookup.
    fn refused(&mut self, table: &str) {
        self.known.entry(table.to_owned()).or_default().new_keys = NewKeys::Never;
        self.counters.new_key_refusals += 1;
    }

    fn by_index(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        err: &ErrFn<'_>,
    ) -> Result<(), DestinationError> {
        if !self.by_index {
            tx.batch_execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
                .map_err(|e| err(e, "choosing index lookups"))?;
            self.by_index = true;
        }
        Ok(())
    }

    fn planner(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        err: &ErrFn<'_>,
    ) -> Result<(), DestinationError> {
        if self.by_index {
            tx.batch_execute("RESET enable_hashjoin; RESET enable_mergejoin")
                .map_err(|e| err(e, "restoring the planner's joins"))?;
            self.by_index = false;
        }
        Ok(())
    }

    /// Whether `table` (already quoted and qualified) has a valid index whose key columns are
    /// exactly `keys`, in any order (the primary key seam creates), remembered per table.
    fn key_index(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        err: &ErrFn<'_>,
        table: &str,
        keys: &[String],
    ) -> Result<bool, DestinationError> {
        Ok(self.key_index_kind(tx, err, table, keys)? != KeyIndex::None)
    }

    /// The oid of such an index that is unique and checked at once (not a deferred constraint):
    /// then a row whose key the table holds cannot be copied in.
    fn unique_key_index(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        err: &ErrFn<'_>,
        table: &str,
        keys: &[String],
    ) -> Result<Option<u32>, DestinationError> {
        Ok(match self.key_index_kind(tx, err, table, keys)? {
            KeyIndex::Unique(oid) => Some(oid),
            KeyIndex::None | KeyIndex::Plain => None,
        })
    }

    /// Forgets what is known of `table` (its index was not what this destination remembered).
    fn forget(&mut self, table: &str) {
        self.known.remove(table);
    }

    fn key_index_kind(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        err: &ErrFn<'_>,
        table: &str,
        keys: &[String],
    ) -> Result<KeyIndex, DestinationError> {
        if let Some(kind) = self.known.get(table).and_then(|f| f.key_index) {
            return Ok(kind);
        }
        let row = tx
            .query_one(
                "SELECT (array_agg(i.indexrelid) FILTER (WHERE i.indisunique AND i.indimmediate))[1], \
                        count(*) > 0 FROM pg_index i \
                   WHERE i.indrelid = to_regclass($1) AND i.indisvalid AND i.indpred IS NULL \
                     AND i.indexprs IS NULL AND i.indnkeyatts = cardinality($2::text[]) \
                     AND ARRAY(SELECT a.attname::text FROM pg_attribute a \
                               WHERE a.attrelid = i.indrelid \
                                 AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]) \
                               ORDER BY 1) \
                       = ARRAY(SELECT k FROM unnest($2::text[]) AS k ORDER BY 1)",
                &[&table, &keys],
            )
            .map_err(|e| err(e, "looking up the table's key index"))?;
        let (unique, any): (Option<u32>, bool) = (row.get(0), row.get(1));
        let kind = match (unique, any) {
            (Some(oid), _) => KeyIndex::Unique(oid),
            (None, true) => KeyIndex::Plain,
            (None, false) => KeyIndex::None,
        };
        self.known.entry(table.to_owned()).or_default().key_index = Some(kind);
        Ok(kind)
    }

    /// Gives the subtable `sub` (quoted and qualified) an index on its parent's key columns `keys`
    /// (`_sdc_source_key_*`) unless it has one, so deleting a replaced parent's subtable rows probes
    /// the index per parent key instead of reading the whole subtable in every commit (a cost that
    /// grew with the warehouse: see docs/LOADING.md).
    ///
    /// Subtables are created without one: a first load never deletes from them and would only pay
    /// to maintain it. The first commit that replaces a parent row already in the warehouse creates
    /// it, once (one read and sort of the subtable), inside the commit's transaction: a commit that
    /// fails rolls it back, and [`apply`] then forgets what it learnt.
    fn source_key_index(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        err: &ErrFn<'_>,
        sub: &str,
        keys: &[String],
    ) -> Result<(), DestinationError> {
        if self.key_index(tx, err, sub, keys)? {
            return Ok(());
        }
        let columns: Vec<String> = keys.iter().map(|k| quote_ident(k)).collect();
        // No name: PostgreSQL picks one that is free in the schema.
        tx.batch_execute(&format!("CREATE INDEX ON {sub} ({})", columns.join(", ")))
            .map_err(|e| err(e, "indexing a subtable on its parent's key"))?;
        self.known.entry(sub.to_owned()).or_default().key_index = Some(KeyIndex::Plain);
        Ok(())
    }
}

/// The position (from 1) in `keys` and the `_sdc_sequence` of each row of `target` with one of the
/// keys.
fn probe_sql(keys: &KeyArrays<'_>, target: &str) -> String {
    format!(
        "SELECT u._sdc_ord, t.{seq_col} FROM {u} JOIN {target} t ON {m}",
        seq_col = quote_ident(SEQUENCE),
        u = keys.unnest("_sdc_ord"),
        m = keys.matches("t", str::to_owned),
    )
}

/// Finds the warehouse rows with the staged keys (one indexed lookup per key, no staging table)
/// and decides the route. The merge's rules, row by row: a staged row is replaced into the
/// warehouse unless the warehouse row has a newer `_sdc_sequence`; append-only keys are never
/// replaced. Whenever a staged row would not land, the staged merge decides instead. A table the
/// commit creates (`created`) is not looked in.
fn probe(
    tx: &mut postgres::Transaction<'_>,
    err: &ErrFn<'_>,
    lookups: &mut Lookups<'_>,
    schema: &str,
    load: &StreamLoad,
    created: bool,
) -> Result<Route, DestinationError> {
    let rows = &load.rows;
    let Some(seq) = rows.columns.iter().position(|(c, _)| c == SEQUENCE) else {
        return Ok(Route::Merge);
    };
    let Some(positions) = load.key_positions() else {
        return Ok(Route::Merge);
    };
    if positions.is_empty() {
        return Ok(Route::Merge);
    }
    if created {
        // A table this commit creates holds no row yet: nothing to look up.
        return Ok(Route::Direct {
            keys: positions,
            replaced: Vec::new(),
        });
    }
    let keys = KeyArrays::new(load, &positions, 0..rows.len());
    let sequences = rows.column(seq);
    let target = qualified(schema, &load.table);
    if lookups.key_index(tx, err, &target, &load.key_columns)? {
        lookups.by_index(tx, err)?;
    } else {
        lookups.planner(tx, err)?;
    }
    let sql = probe_sql(&keys, &target);
    lookups.counters.key_lookups += 1;
    let found = tx
        .query(&sql, &keys.params())
        .map_err(|e| err(e, "looking up the batch's keys"))?;
    let mut replaced = Vec::with_capacity(found.len());
    for row in found {
        if load.append_only {
            return Ok(Route::Merge);
        }
        let ord: i64 = row.get(0);
        let warehouse_seq: Option<i64> = row.get(1);
        let Some(i) = usize::try_from(ord).ok().and_then(|o| o.checked_sub(1)) else {
            return Ok(Route::Merge);
        };
        let staged_seq = match sequences.get(i) {
            Some(CellRef::BigInt(s)) => *s,
            _ => return Ok(Route::Merge),
        };
        match warehouse_seq {
            Some(w) if w <= staged_seq => replaced.push(i),
            _ => return Ok(Route::Merge),
        }
    }
    Ok(Route::Direct {
        keys: positions,
        replaced,
    })
}

/// Savepoints a commit may open for [`load_new_keys`]: each one that copies rows becomes a
/// subtransaction with an id of its own, and past 64 in one transaction PostgreSQL's snapshots of
/// other sessions get slower until it ends. A batch of more streams looks the rest up.
const NEW_KEY_SAVEPOINTS: usize = 32;

/// [`Route::Direct`] without [`probe`]'s lookup, for a table whose staged keys are likely all new to
/// it ([`Lookups::expects_new_keys`]: this destination created it, or its last lookup found none),
/// such as every batch after the first of a first load. The rows are copied straight into the
/// table inside a savepoint: when the copy goes through, the table's unique index on the key
/// columns has checked that it held none of the keys, so nothing was to be replaced or deleted and
/// the subtable rows follow, which is what the lookup would have decided. When it refuses one, the
/// savepoint is rolled back (nothing of the attempt stays) and false says to look the keys up as
/// usual; the table is then looked up first for the rest of the destination's life, so a refused
/// attempt is paid at most once per table. Tables without such a unique index, and streams whose
/// route the lookup alone decides (no key columns, no `_sdc_sequence`), are not attempted. The
/// index is remembered from the table's first lookup, and checked to be still there before the
/// copy, under the lock the copy takes (a primary key dropped behind seam's back during a run
/// would otherwise have let a key in twice).
fn load_new_keys(
    tx: &mut postgres::Transaction<'_>,
    err: &ErrFn<'_>,
    lookups: &mut Lookups<'_>,
    schema: &str,
    load: &StreamLoad,
) -> Result<bool, DestinationError> {
    let target = qualified(schema, &load.table);
    let plain_keys = load.key_positions().is_some_and(|p| !p.is_empty());
    let sequenced = load.rows.columns.iter().any(|(c, _)| c == SEQUENCE);
    if !plain_keys || !sequenced {
        return Ok(false);
    }
    let Some(index) = lookups.unique_key_index(tx, err, &target, &load.key_columns)? else {
        return Ok(false);
    };
    // The index is remembered from the table's first lookup in this destination's life: make sure
    // it is still there, under the lock the copy takes anyway (held until the commit ends; dropping
    // the index or its constraint waits for it), in the round trip that opens the savepoint.
    let opened = tx
        .simple_query(&format!(
            "SAVEPOINT seam_new_keys; LOCK TABLE {target} IN ROW EXCLUSIVE MODE; \
             SELECT EXISTS (SELECT 1 FROM pg_index \
               WHERE indexrelid = {index} AND indisvalid AND indisunique AND indimmediate)"
        ))
        .map_err(|e| err(e, "starting a savepoint"))?;
    let guarded = opened
        .iter()
        .any(|m| matches!(m, postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t")));
    let undo = |tx: &mut postgres::Transaction<'_>| {
        tx.batch_execute("ROLLBACK TO SAVEPOINT seam_new_keys; RELEASE SAVEPOINT seam_new_keys")
            .map_err(|e| err(e, "rolling back to a savepoint"))
    };
    if !guarded {
        undo(tx)?;
        lookups.forget(&target);
        return Ok(false);
    }
    match copy_rows_raw(tx, &target, &load.rows) {
        Ok(()) => {}
        Err(e) if e.is_unique_violation() => {
            undo(tx)?;
            lookups.refused(&target);
            return Ok(false);
        }
        Err(e) => return Err(e.into_destination(err)),
    }
    tx.batch_execute("RELEASE SAVEPOINT seam_new_keys")
        .map_err(|e| err(e, "releasing a savepoint"))?;
    lookups.counters.new_key_loads += 1;
    for (sub, rows) in &load.subtables {
        copy_rows(tx, err, &qualified(schema, sub), rows).map_err(|e| e.in_table(sub.clone()))?;
    }
    Ok(true)
}

/// [`Route::Direct`]: deletes the replaced rows and their subtable rows, then copies every staged
/// row into its table. Subtable rows are only ever written with their parent row and deleted with
/// it (here, in the staged merge and by version activation), so a key with no parent row in the
/// warehouse has no subtable rows to delete.
fn load_direct(
    tx: &mut postgres::Transaction<'_>,
    err: &ErrFn<'_>,
    lookups: &mut Lookups<'_>,
    schema: &str,
    load: &StreamLoad,
    positions: &[usize],
    replaced: &[usize],
) -> Result<(), DestinationError> {
    if !replaced.is_empty() {
        let keys = KeyArrays::new(load, positions, replaced.iter().copied());
        let params = keys.params();
        let target = qualified(schema, &load.table);
        let sql = format!(
            "DELETE FROM {target} t USING {} WHERE {}",
            keys.unnest(""),
            keys.matches("t", str::to_owned)
        );
        // The joins are still those `probe` chose for this table.
        tx.execute(&sql, &params)
            .map_err(|e| err(e, "deleting replaced rows").in_table(load.table.clone()))?;
        let source_keys: Vec<String> = load.source_key_columns().into_iter().map(|(c, _)| c).collect();
        for sub in &load.all_subtables {
            let table = qualified(schema, sub);
            lookups
                .source_key_index(tx, err, &table, &source_keys)
                .map_err(|e| e.in_table(sub.clone()))?;
            lookups.by_index(tx, err)?;
            let sql = format!(
                "DELETE FROM {table} s USING {} WHERE {}",
                keys.unnest(""),
                keys.matches("s", |k| format!("{SOURCE_KEY_PREFIX}{k}"))
            );
            tx.execute(&sql, &params)
                .map_err(|e| err(e, "deleting replaced subtable rows").in_table(sub.clone()))?;
        }
    }
    copy_rows(tx, err, &qualified(schema, &load.table), &load.rows)
        .map_err(|e| e.in_table(load.table.clone()))?;
    for (sub, rows) in &load.subtables {
        copy_rows(tx, err, &qualified(schema, sub), rows).map_err(|e| e.in_table(sub.clone()))?;
    }
    Ok(())
}

/// [`Route::Merge`]: copies the rows into temporary staging tables (dropped at commit) and runs
/// [`sql::merge`].
fn merge_staged(
    tx: &mut postgres::Transaction<'_>,
    err: &ErrFn<'_>,
    schema: &str,
    i: usize,
    load: &StreamLoad,
    target_layout: &TableLayout,
) -> Result<(), DestinationError> {
    let stage_name = |t: &str| load.stage_name(i, t);
    for (t, rows) in
        std::iter::once((&load.table, &load.rows)).chain(load.subtables.iter().map(|(t, r)| (t, r)))
    {
        let name = stage_name(t);
        tx.batch_execute(&sql::create_stage(&name, &rows.columns, &DIALECT))
            .map_err(|e| err(e, "creating a staging table").in_table(t.clone()))?;
        copy_rows(tx, err, &quote_ident(&name), rows).map_err(|e| e.in_table(t.clone()))?;
    }
    let win = quote_ident(&format!("_sdc_win_{i}"));
    let stage_of = |t: &str| quote_ident(&stage_name(t));
    for stmt in sql::merge(
        schema,
        load,
        target_layout,
        &stage_of,
        &win,
        &format!("CREATE TEMP TABLE {win} ON COMMIT DROP"),
        &DIALECT,
    ) {
        tx.batch_execute(&stmt)
            .map_err(|e| err(e, "merging rows").in_table(load.table.clone()))?;
    }
    Ok(())
}

/// The token that holds the schema now (empty when none does).
pub(super) fn fence_holder(client: &mut postgres::Client, schema: &str) -> Result<String, postgres::Error> {
    Ok(client
        .query_opt(
            &format!(
                "SELECT state FROM {} WHERE id = $1",
                qualified(schema, STATE_TABLE)
            ),
            &[&sql::FENCE_ROW],
        )?
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_default())
}

/// The error of a writer whose claim a newer one replaced: never retried.
pub(super) fn fenced(token: i64, holder: String) -> DestinationError {
    DestinationError::new(ErrorKind::Config, WarehouseError::Fenced { token, holder })
}

/// Commits `plan` and `state` in one transaction. When it fails, what the destination learnt about
/// its tables' key indexes is forgotten: the transaction may have created an index it rolled back.
pub(super) fn apply(
    d: &mut Conn,
    plan: &CommitPlan,
    layout: &crate::flatten::Layout,
    state: Option<&State>,
) -> Result<(), DestinationError> {
    let committed = commit(d, plan, layout, state);
    if committed.is_err() {
        d.tables.clear();
    }
    committed
}

fn commit(
    d: &mut Conn,
    plan: &CommitPlan,
    layout: &crate::flatten::Layout,
    state: Option<&State>,
) -> Result<(), DestinationError> {
    let schema = quote_ident(&d.schema);
    let shown = d.options.redacted().to_owned();
    let err = move |source: postgres::Error, action: &str| {
        DestinationError::new(
            super::classify(&source),
            WarehouseError::Postgres {
                url: shown.clone(),
                action: action.to_owned(),
                source,
            },
        )
    };
    let fence = d.fence;
    let mut lookups = Lookups::new(&mut d.tables, &mut d.counters);
    let mut tx = d
        .client
        .transaction()
        .map_err(|e| err(e, "starting a transaction"))?;
    if let Some(token) = fence {
        // Held until the commit ends: a newer job's claim waits for it, then wins.
        let holder = tx
            .query_opt(
                &format!(
                    "SELECT state FROM {} WHERE id = $1 FOR UPDATE",
                    qualified(&schema, STATE_TABLE)
                ),
                &[&sql::FENCE_ROW],
            )
            .map_err(|e| err(e, "checking this job still holds the schema"))?
            .map(|r| r.get::<_, String>(0));
        if holder.as_deref() != Some(token.to_string().as_str()) {
            return Err(fenced(token, holder.unwrap_or_default()));
        }
    }
    for change in &plan.ddl {
        tx.batch_execute(&sql::ddl(&schema, change, &DIALECT))
            .map_err(|e| err(e, "changing a table"))?;
    }
    let mut savepoints = 0;
    for (i, load) in plan.loads.iter().enumerate() {
        let created = plan.creates(&load.table);
        let target = qualified(&schema, &load.table);
        if !created && savepoints < NEW_KEY_SAVEPOINTS && lookups.expects_new_keys(&target) {
            savepoints += 1;
            if load_new_keys(&mut tx, &err, &mut lookups, &schema, load)
                .map_err(|e| e.in_table(load.table.clone()))?
            {
                continue;
            }
        }
        let route = probe(&mut tx, &err, &mut lookups, &schema, load, created)
            .map_err(|e| e.in_table(load.table.clone()))?;
        lookups.looked_up(
            &target,
            matches!(&route, Route::Direct { replaced, .. } if replaced.is_empty()),
        );
        match route {
            Route::Direct { keys, replaced } => {
                load_direct(&mut tx, &err, &mut lookups, &schema, load, &keys, &replaced)?
            }
            Route::Merge => {
                lookups.planner(&mut tx, &err)?;
                let empty = TableLayout::default();
                let target_layout = layout.tables.get(&load.table).unwrap_or(&empty);
                merge_staged(&mut tx, &err, &schema, i, load, target_layout)?;
            }
        }
    }
    lookups.planner(&mut tx, &err)?;
    if !plan.rejected.is_empty() {
        let stmt = tx
            .prepare(&format!(
                "INSERT INTO {} (_sdc_rejected_at, table_name, reason, record) VALUES (now() AT TIME ZONE 'UTC', $1, $2, $3)",
                qualified(&schema, REJECTED_TABLE)
            ))
            .map_err(|e| err(e, "writing rejected records"))?;
        for r in &plan.rejected {
            tx.execute(&stmt, &[&r.table_name, &r.reason, &r.record])
                .map_err(|e| err(e, "writing a rejected record"))?;
        }
    }
    for (table, version, subs) in &plan.activations {
        for stmt in sql::activate(&schema, table, *version, subs) {
            tx.batch_execute(&stmt)
                .map_err(|e| err(e, "activating a table version").in_table(table.clone()))?;
        }
    }
    if let Some(state) = state {
        let json = state.to_value().to_string();
        let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
        tx.batch_execute(&sql::upsert_state(&schema, &json, &now))
            .map_err(|e| err(e, "storing the state"))?;
    }
    tx.commit().map_err(|e| err(e, "committing"))
}

#[cfg(test)]
mod tests {
    use super::super::copy::PG_EPOCH_OFFSET_MICROS;
    use super::*;
    use crate::flatten::Cell;

    fn encode(cell: &Cell, ty: &Type) -> Result<Option<Vec<u8>>, String> {
        let mut buf = BytesMut::new();
        match PgCell(cell.as_ref()).to_sql_checked(ty, &mut buf) {
            Ok(IsNull::Yes) => Ok(None),
            Ok(IsNull::No) => Ok(Some(buf.to_vec())),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn timestamps_count_from_postgresqls_epoch() {
        let at = |us: i64| encode(&Cell::Timestamp(us), &Type::TIMESTAMP).unwrap();
        assert_eq!(at(PG_EPOCH_OFFSET_MICROS), Some(0i64.to_be_bytes().to_vec()));
        assert_eq!(at(0), Some((-PG_EPOCH_OFFSET_MICROS).to_be_bytes().to_vec()));
        assert_eq!(
            at(i64::MIN),
            None,
            "an instant before i64's range is NULL, never a panic"
        );
    }

    /// A key index is one on exactly the key columns, in any order; the probe then looks the keys up
    /// through it, even where the planner would scan the whole table.
    #[test]
    fn key_lookups_go_through_the_key_index() {
        let Some(url) = seam_test_support::postgres_url() else {
            return;
        };
        let options = seam_postgres::ConnectOptions::parse(&url).unwrap();
        let mut client = super::super::open(&options, &super::super::CancelSlot::default()).unwrap();
        let schema = quote_ident(&seam_test_support::unique_name("keyindex"));
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.keyed (id bigint PRIMARY KEY, _sdc_sequence bigint, body text);
                 CREATE TABLE {schema}.pair (a bigint, b text, _sdc_sequence bigint, PRIMARY KEY (b, a));
                 CREATE TABLE {schema}.bare (id bigint, _sdc_sequence bigint);
                 CREATE TABLE {schema}.other (id bigint, k bigint PRIMARY KEY, _sdc_sequence bigint);
                 CREATE TABLE {schema}.wider (id bigint, x bigint, _sdc_sequence bigint, PRIMARY KEY (id, x));
                 CREATE TABLE {schema}.plain (id bigint, _sdc_sequence bigint);
                 CREATE INDEX ON {schema}.plain (id);
                 CREATE TABLE {schema}.deferred (id bigint, _sdc_sequence bigint,
                   UNIQUE (id) DEFERRABLE INITIALLY DEFERRED);
                 INSERT INTO {schema}.keyed SELECT i, i, repeat('x', 200) FROM generate_series(1, 20000) i;
                 ANALYZE {schema}.keyed;"
            ))
            .unwrap();
        let err = |e: postgres::Error, what: &str| {
            DestinationError::new(ErrorKind::Internal, format!("{what}: {e}"))
        };
        let owned = |ks: &[&str]| ks.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
        let mut known = HashMap::new();
        let mut counters = LoadCounters::default();
        let mut lookups = Lookups::new(&mut known, &mut counters);
        let mut tx = client.transaction().unwrap();
        let mut indexed = |table: &str, keys: &[&str]| {
            let table = format!("{schema}.{table}");
            let any = lookups.key_index(&mut tx, &err, &table, &owned(keys)).unwrap();
            let unique = lookups
                .unique_key_index(&mut tx, &err, &table, &owned(keys))
                .unwrap();
            (any, unique.is_some())
        };
        assert_eq!(indexed("keyed", &["id"]), (true, true));
        assert_eq!(
            indexed("pair", &["a", "b"]),
            (true, true),
            "the key's order is not the index's"
        );
        assert_eq!(indexed("plain", &["id"]), (true, false), "not unique");
        assert_eq!(
            indexed("deferred", &["id"]),
            (true, false),
            "unique, but checked at commit"
        );
        assert_eq!(indexed("bare", &["id"]), (false, false));
        assert_eq!(
            indexed("other", &["id"]),
            (false, false),
            "an index on another column"
        );
        assert_eq!(
            indexed("wider", &["id"]),
            (false, false),
            "an index on more columns than the key"
        );
        assert_eq!(indexed("missing", &["id"]), (false, false), "no such table");
        assert_eq!(lookups.known.len(), 8, "each answer is remembered");

        // 2,000 keys against 20,000 rows: the planner's own choice is a hash join over the whole
        // table (not asserted: it depends on its costs); with index lookups, a nested loop.
        let cells: Vec<PgCell<'_>> = (0..2000i64).map(|i| PgCell(CellRef::BigInt(i * 7))).collect();
        let keys = KeyArrays {
            columns: vec![("id", ColumnType::BigInt)],
            values: vec![cells],
        };
        let sql = format!("EXPLAIN {}", probe_sql(&keys, &format!("{schema}.keyed")));
        let plan = |tx: &mut postgres::Transaction<'_>| -> String {
            let rows = tx.query(&sql, &keys.params()).unwrap();
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n")
        };
        eprintln!("the planner's own plan:\n{}", plan(&mut tx));
        lookups.by_index(&mut tx, &err).unwrap();
        let by_index = plan(&mut tx);
        assert!(
            by_index.contains("Index") && !by_index.contains("Hash Join") && !by_index.contains("Seq Scan"),
            "{by_index}"
        );
        lookups.planner(&mut tx, &err).unwrap();
        let settings: Vec<String> = tx
            .query(
                "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')",
                &[],
            )
            .unwrap()
            .iter()
            .flat_map(|r| [r.get::<_, String>(0), r.get::<_, String>(1)])
            .collect();
        assert_eq!(settings, ["on", "on"], "the planner's joins are back");
        tx.rollback().unwrap();
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
    }

    #[test]
    fn a_cell_of_another_type_than_its_column_is_an_error() {
        let err = encode(&Cell::Text("1".into()), &Type::INT8).unwrap_err();
        assert!(err.contains("staged for a int8 column"), "{err}");
        assert_eq!(encode(&Cell::Null, &Type::INT8), Ok(None));
        assert_eq!(
            encode(&Cell::BigInt(-2), &Type::INT8),
            Ok(Some((-2i64).to_be_bytes().to_vec()))
        );
    }
}
