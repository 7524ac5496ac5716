//! One commit into DuckDB: DDL, appender-loaded staging tables, set-based merges, rejections,
//! activations and the state, inside the caller's transaction.
//!
//! A stream whose batch holds only keys the table does not have yet (a first sync, new tickets)
//! needs no merge: its rows are appended straight into the table and its subtables. Only the keys
//! are staged to find that out (or nothing, for a table this commit creates). Subtable rows exist
//! only for parents the table holds (merges and version activations delete them together), so a
//! parent that is new has no subtable rows to replace.

use super::written::WrittenKeys;
use super::{DuckDbDestination, DIALECT};
use crate::columns::TableRows;
use crate::flatten::{quote_ident, CellRef, TableLayout, REJECTED_TABLE};
use crate::sql::{self, qualified};
use crate::stage::{CommitPlan, StreamLoad};
use duckdb::types::{TimeUnit, ToSql, ToSqlOutput, Value, ValueRef};
use seam_core::{DestinationError, State};

/// A cell as an appender parameter, text borrowed rather than copied.
struct CellParam<'c>(CellRef<'c>);

impl ToSql for CellParam<'_> {
    fn to_sql(&self) -> duckdb::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            CellRef::Null => ValueRef::Null,
            CellRef::BigInt(v) => ValueRef::BigInt(v),
            CellRef::Double(v) => ValueRef::Double(v),
            CellRef::Boolean(v) => ValueRef::Boolean(v),
            CellRef::Timestamp(v) => ValueRef::Timestamp(TimeUnit::Microsecond, v),
            CellRef::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

/// A timestamp literal DuckDB and PostgreSQL both parse.
pub(crate) fn now_literal() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Where a table lives: the integration's schema, or the connection's own temporary catalog.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Schema,
    Scratch,
}

/// The catalog of connection-private temporary tables, and its schema.
const SCRATCH_CATALOG: &str = "temp";
const SCRATCH_SCHEMA: &str = "main";

/// A scratch table's qualified name.
///
/// Key checks, staged rows and merge winners live in temporary tables: they are private to the
/// destination's connection, never written to the database's WAL or file, and dropped before the
/// commit ends.
fn scratch(name: &str) -> String {
    format!("{SCRATCH_CATALOG}.{SCRATCH_SCHEMA}.{}", quote_ident(name))
}

/// `CREATE TEMP TABLE` for a scratch table with these columns.
fn create_scratch(name: &str, columns: &[(String, crate::flatten::ColumnType)]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|(c, t)| format!("{} {}", quote_ident(c), (DIALECT.type_name)(*t)))
        .collect();
    format!(
        "CREATE OR REPLACE TEMP TABLE {} ({})",
        quote_ident(name),
        cols.join(", ")
    )
}

/// Appends `rows` to `table`. With `named`, the appender fills the rows' columns by name (the
/// table's other columns get NULL); without, the table has exactly the rows' columns, in order.
fn append(
    d: &DuckDbDestination,
    place: Place,
    table: &str,
    rows: &TableRows,
    named: bool,
) -> Result<(), DestinationError> {
    let (catalog, schema) = match place {
        Place::Schema => (d.catalog.as_str(), d.schema.as_str()),
        Place::Scratch => (SCRATCH_CATALOG, SCRATCH_SCHEMA),
    };
    let mut app = d
        .conn
        .appender_to_catalog_and_db(table, catalog, schema)
        .map_err(|e| d.err(e, "opening an appender"))?;
    if named {
        for (column, _) in &rows.columns {
            app.add_column(column)
                .map_err(|e| d.err(e, "naming an appender column"))?;
        }
    }
    rows.for_each_row(|row| {
        app.append_row(duckdb::appender_params_from_iter(
            row.iter().map(|&c| CellParam(c)),
        ))
        .map_err(|e| d.err(e, "appending a row"))
    })?;
    app.flush().map_err(|e| d.err(e, "flushing the appender"))
}

/// True when `load.table` may already hold one of the keys of `load`'s rows (`keys`: its key
/// columns; staged in `keys_table` for the check); false only when none of them is there. A table
/// this commit creates is empty; `known_new` says none of them was ever written to a table this
/// destination created ([`WrittenKeys::write`]); otherwise DuckDB is asked.
fn has_any_key(
    d: &DuckDbDestination,
    plan: &CommitPlan,
    load: &StreamLoad,
    keys: Option<&TableRows>,
    known_new: bool,
    written: &mut WrittenKeys,
    keys_table: &str,
) -> Result<bool, DestinationError> {
    if plan.creates(&load.table) {
        return Ok(false);
    }
    let Some(keys) = keys else {
        return Ok(true);
    };
    if known_new {
        written.answered += 1;
        return Ok(false);
    }
    written.asked += 1;
    let exec = |sql: &str, what: &str| d.conn.execute_batch(sql).map_err(|e| d.err(e, what));
    exec(&create_scratch(keys_table, &keys.columns), "creating a key table")?;
    append(d, Place::Scratch, keys_table, keys, false)?;
    let matches = load
        .key_columns
        .iter()
        .map(|k| format!("t.{q} = k.{q}", q = quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let found: bool = d
        .conn
        .query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {} t JOIN {} k ON {matches})",
                qualified(&d.schema_sql, &load.table),
                scratch(keys_table)
            ),
            [],
            |r| r.get(0),
        )
        .map_err(|e| d.err(e, "looking for existing keys"))?;
    exec(
        &format!("DROP TABLE {}", scratch(keys_table)),
        "dropping a key table",
    )?;
    Ok(found)
}

pub(super) fn apply(
    d: &DuckDbDestination,
    plan: &CommitPlan,
    layout: &crate::flatten::Layout,
    state: Option<&State>,
    written: &mut WrittenKeys,
) -> Result<(), DestinationError> {
    let exec = |sql: &str, what: &str| d.conn.execute_batch(sql).map_err(|e| d.err(e, what));
    for change in &plan.ddl {
        exec(&sql::ddl(&d.schema_sql, change, &DIALECT), "changing a table")?;
    }
    for (i, load) in plan.loads.iter().enumerate() {
        let keys = load.key_positions().map(|p| load.rows.select(&p));
        if plan.creates(&load.table) {
            match &keys {
                Some(k) => written.created(&load.table, &k.columns),
                None => written.forget(&load.table),
            }
        }
        // Recorded before the rows go in: whatever happens next, the keys held stay a superset of
        // the table's.
        let known_new = match &keys {
            Some(k) => written.write(&load.table, k),
            None => {
                written.forget(&load.table);
                false
            }
        };
        let keys_table = format!("_sdc_keys_{i}");
        let found = has_any_key(d, plan, load, keys.as_ref(), known_new, written, &keys_table)
            .map_err(|e| e.in_table(load.table.clone()))?;
        if !found {
            for (t, rows) in
                std::iter::once((&load.table, &load.rows)).chain(load.subtables.iter().map(|(t, r)| (t, r)))
            {
                append(d, Place::Schema, t, rows, true).map_err(|e| e.in_table(t.clone()))?;
            }
            continue;
        }
        let stage_name = |t: &str| load.stage_name(i, t);
        let mut staged = Vec::new();
        for (t, rows) in
            std::iter::once((&load.table, &load.rows)).chain(load.subtables.iter().map(|(t, r)| (t, r)))
        {
            let name = stage_name(t);
            exec(&create_scratch(&name, &rows.columns), "creating a staging table")
                .map_err(|e| e.in_table(t.clone()))?;
            append(d, Place::Scratch, &name, rows, false).map_err(|e| e.in_table(t.clone()))?;
            staged.push(name);
        }
        let win = format!("_sdc_win_{i}");
        let empty = TableLayout::default();
        let target_layout = layout.tables.get(&load.table).unwrap_or(&empty);
        let stage_of = |t: &str| scratch(&stage_name(t));
        for stmt in sql::merge(
            &d.schema_sql,
            load,
            target_layout,
            &stage_of,
            &scratch(&win),
            &format!("CREATE OR REPLACE TEMP TABLE {}", quote_ident(&win)),
            &DIALECT,
        ) {
            exec(&stmt, "merging rows").map_err(|e| e.in_table(load.table.clone()))?;
        }
        staged.push(win);
        for name in staged {
            exec(
                &format!("DROP TABLE {}", scratch(&name)),
                "dropping a staging table",
            )?;
        }
    }
    if !plan.rejected.is_empty() {
        let now = chrono::Utc::now().timestamp_micros();
        let mut app = d
            .conn
            .appender_to_catalog_and_db(REJECTED_TABLE, &d.catalog, &d.schema)
            .map_err(|e| d.err(e, "opening the rejected table"))?;
        for r in &plan.rejected {
            app.append_row(duckdb::params![
                Value::Timestamp(TimeUnit::Microsecond, now),
                r.table_name,
                r.reason,
                r.record
            ])
            .map_err(|e| d.err(e, "writing a rejected record"))?;
        }
        app.flush().map_err(|e| d.err(e, "writing rejected records"))?;
    }
    for (table, version, subs) in &plan.activations {
        for stmt in sql::activate(&d.schema_sql, table, *version, subs) {
            exec(&stmt, "activating a table version").map_err(|e| e.in_table(table.clone()))?;
        }
    }
    if let Some(state) = state {
        let json = state.to_value().to_string();
        exec(
            &sql::upsert_state(&d.schema_sql, &json, &now_literal()),
            "storing the state",
        )?;
    }
    Ok(())
}
