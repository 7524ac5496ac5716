//! One commit into PostgreSQL: DDL, `COPY` into temporary staging tables, `INSERT … ON CONFLICT`
//! merges, rejections, activations and the state, in one transaction.

use super::{PostgresDestination, DIALECT};
use crate::error::WarehouseError;
use crate::flatten::{quote_ident, Cell, TableLayout, TableRows, REJECTED_TABLE};
use crate::sql::{self, qualified};
use crate::stage::CommitPlan;
use seam_core::{DestinationError, ErrorKind, State};
use std::io::Write;

/// Writes one cell in COPY's text format.
fn write_cell(out: &mut Vec<u8>, c: &Cell) {
    match c {
        Cell::Null => out.extend_from_slice(b"\\N"),
        Cell::BigInt(v) => {
            let _ = write!(out, "{v}");
        }
        Cell::Double(v) => {
            let _ = write!(out, "{v}");
        }
        Cell::Boolean(v) => out.push(if *v { b't' } else { b'f' }),
        Cell::Timestamp(us) => match chrono::DateTime::from_timestamp_micros(*us) {
            Some(t) => {
                let _ = write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f"));
            }
            None => out.extend_from_slice(b"\\N"),
        },
        Cell::Text(s) => {
            for b in s.bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.push(b),
                }
            }
        }
    }
}

fn copy_rows(
    tx: &mut postgres::Transaction<'_>,
    d_err: &dyn Fn(postgres::Error, &str) -> DestinationError,
    table_sql: &str,
    rows: &TableRows,
) -> Result<(), DestinationError> {
    let cols: Vec<String> = rows.columns.iter().map(|(c, _)| quote_ident(c)).collect();
    let mut writer = tx
        .copy_in(&format!("COPY {table_sql} ({}) FROM STDIN", cols.join(", ")))
        .map_err(|e| d_err(e, "starting COPY"))?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let io_err = |e: std::io::Error| DestinationError::new(ErrorKind::Transient, WarehouseError::Io(e));
    for row in &rows.rows {
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            write_cell(&mut buf, c);
        }
        buf.push(b'\n');
        if buf.len() >= 60 * 1024 {
            writer.write_all(&buf).map_err(io_err)?;
            buf.clear();
        }
    }
    writer.write_all(&buf).map_err(io_err)?;
    writer.finish().map_err(|e| d_err(e, "finishing COPY"))?;
    Ok(())
}

pub(super) fn apply(
    d: &mut PostgresDestination,
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
    let mut tx = d
        .client
        .transaction()
        .map_err(|e| err(e, "starting a transaction"))?;
    for change in &plan.ddl {
        tx.batch_execute(&sql::ddl(&schema, change, &DIALECT))
            .map_err(|e| err(e, "changing a table"))?;
    }
    for (i, load) in plan.loads.iter().enumerate() {
        let stage_name = |t: &str| -> String {
            if t == load.table {
                format!("_sdc_stage_{i}")
            } else {
                let j = load
                    .subtables
                    .iter()
                    .position(|(s, _)| s == t)
                    .unwrap_or(usize::MAX);
                format!("_sdc_stage_{i}_{j}")
            }
        };
        for (t, rows) in
            std::iter::once((&load.table, &load.rows)).chain(load.subtables.iter().map(|(t, r)| (t, r)))
        {
            let name = stage_name(t);
            tx.batch_execute(&sql::create_stage(&schema, &name, &rows.columns, &DIALECT, true))
                .map_err(|e| err(e, "creating a staging table").in_table(t.clone()))?;
            copy_rows(&mut tx, &err, &quote_ident(&name), rows).map_err(|e| e.in_table(t.clone()))?;
        }
        let win = quote_ident(&format!("_sdc_win_{i}"));
        let empty = TableLayout::default();
        let target_layout = layout.tables.get(&load.table).unwrap_or(&empty);
        let stage_of = |t: &str| quote_ident(&stage_name(t));
        for stmt in sql::merge(
            &schema,
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
    }
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
