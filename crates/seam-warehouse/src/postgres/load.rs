//! One commit into PostgreSQL: DDL, binary `COPY` into temporary staging tables, `INSERT … ON CONFLICT`
//! merges, rejections, activations and the state, in one transaction.

use super::{PostgresDestination, DIALECT};
use crate::error::WarehouseError;
use crate::flatten::{quote_ident, Cell, ColumnType, TableLayout, TableRows, REJECTED_TABLE};
use crate::sql::{self, qualified};
use crate::stage::CommitPlan;
use bytes::BytesMut;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{IsNull, ToSql, Type};
use seam_core::{DestinationError, State};

/// PostgreSQL's binary timestamps count microseconds from 2000-01-01 00:00:00; seam's
/// [`Cell::Timestamp`] from 1970-01-01 00:00:00 (both UTC, no time zone).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The PostgreSQL type of a column type, as [`super::type_name`] declares it.
fn pg_type(t: ColumnType) -> Type {
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

/// A [`Cell`] in PostgreSQL's binary format, for binary `COPY` and array parameters.
#[derive(Debug)]
struct PgCell<'a>(&'a Cell);

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
            Cell::Null => Ok(IsNull::Yes),
            Cell::BigInt(v) => v.to_sql(ty, out),
            Cell::Double(v) => v.to_sql(ty, out),
            Cell::Boolean(v) => v.to_sql(ty, out),
            // Flattening keeps years 1..=9999, far inside both ranges; an overflow cannot happen.
            Cell::Timestamp(us) => match us.checked_sub(PG_EPOCH_OFFSET_MICROS) {
                Some(pg) => pg.to_sql(&Type::INT8, out),
                None => Ok(IsNull::Yes),
            },
            Cell::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::FLOAT8, Type::BOOL, Type::TIMESTAMP, Type::TEXT].contains(ty)
    }

    postgres::types::to_sql_checked!();
}

type ErrFn<'e> = dyn Fn(postgres::Error, &str) -> DestinationError + 'e;

/// Binary `COPY` of `rows` into `table_sql` (already quoted).
fn copy_rows(
    tx: &mut postgres::Transaction<'_>,
    d_err: &ErrFn<'_>,
    table_sql: &str,
    rows: &TableRows,
) -> Result<(), DestinationError> {
    if rows.rows.is_empty() {
        return Ok(());
    }
    let cols: Vec<String> = rows.columns.iter().map(|(c, _)| quote_ident(c)).collect();
    let types: Vec<Type> = rows.columns.iter().map(|(_, t)| pg_type(*t)).collect();
    let writer = tx
        .copy_in(&format!(
            "COPY {table_sql} ({}) FROM STDIN (FORMAT binary)",
            cols.join(", ")
        ))
        .map_err(|e| d_err(e, "starting COPY"))?;
    let mut writer = BinaryCopyInWriter::new(writer, &types);
    for row in &rows.rows {
        writer
            .write_raw(row.iter().map(|c| {
                let c: &Cell = c;
                PgCell(c)
            }))
            .map_err(|e| d_err(e, "writing COPY rows"))?;
    }
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
