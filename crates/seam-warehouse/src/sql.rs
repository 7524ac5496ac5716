//! SQL text shared by the destinations. Every identifier goes through [`quote_ident`], every literal
//! through [`quote_literal`]; no value is ever spliced into SQL otherwise.

use crate::flatten::{
    quote_ident, quote_literal, ColumnType, Ddl, TableLayout, REJECTED_TABLE, SEQUENCE, STATE_TABLE,
    TABLE_VERSION,
};
use crate::stage::StreamLoad;

/// What differs between destinations' SQL.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// The SQL type of each column type.
    pub type_name: fn(ColumnType) -> &'static str,
    /// Declares primary keys and merges with `INSERT … ON CONFLICT` (PostgreSQL); otherwise rows
    /// are replaced by `DELETE` + `INSERT` (DuckDB, whose ART indexes refuse a delete and re-insert
    /// of one key in a transaction).
    pub on_conflict: bool,
}

/// `<schema path>."table"`. Everywhere in this module `schema` is the schema's quoted path, as the
/// destination spells it (`"s"` in PostgreSQL; `"catalog"."s"` in DuckDB, where a file named like
/// the schema would make a bare `"s"` ambiguous).
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{schema}.{}", quote_ident(table))
}

/// The system tables, created when the destination opens.
pub fn system_tables(schema: &str, d: &Dialect) -> String {
    let ts = (d.type_name)(ColumnType::Timestamp);
    let text = (d.type_name)(ColumnType::Text);
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s};\n\
         CREATE TABLE IF NOT EXISTS {rej} (_sdc_rejected_at {ts}, table_name {text}, reason {text}, record {text});\n\
         CREATE TABLE IF NOT EXISTS {st} (id {text} PRIMARY KEY, state {text} NOT NULL, committed_at {ts} NOT NULL);",
        s = schema,
        rej = qualified(schema, REJECTED_TABLE),
        st = qualified(schema, STATE_TABLE),
    )
}

/// The one row id of the state table.
pub const STATE_ROW: &str = "singer";

/// The state table's row holding the fencing token of the writer that claimed the schema last
/// ([`seam_core::Destination::fence`]).
pub const FENCE_ROW: &str = "fence";

/// Reads the committed state.
pub fn select_state(schema: &str) -> String {
    format!(
        "SELECT state FROM {} WHERE id = {}",
        qualified(schema, STATE_TABLE),
        quote_literal(STATE_ROW)
    )
}

/// The state [`select_state`] read from `schema`'s state table (`text`), or why it is not Singer
/// state (an error naming that table, for the user to fix or delete the row).
pub fn parse_state(schema: &str, text: &str) -> Result<seam_core::State, seam_core::DestinationError> {
    let bad = |source| {
        seam_core::DestinationError::new(
            seam_core::ErrorKind::Internal,
            crate::error::WarehouseError::BadState {
                table: format!("{schema}.{STATE_TABLE}"),
                source,
            },
        )
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
    seam_core::State::from_value(value).map_err(bad)
}

/// Replaces the committed state (`state_json` becomes a literal): the row is updated in place, or
/// inserted the first time.
///
/// Not a `DELETE` and an `INSERT` of the same key: when DuckDB (1.5) fails to write such a
/// transaction's commit (a full disk), undoing it puts the deleted key back into the primary key's
/// index while the inserted one is still there, and DuckDB aborts the whole process ("Failed to
/// append to PRIMARY__sdc_state_0 … duplicate key") instead of returning the error. An update of the
/// other columns leaves the index alone (the test `a_full_disk_fails_the_sync_clearly_and_the_next_run_loses_nothing`
/// hit the abort in about one run of three before).
pub fn upsert_state(schema: &str, state_json: &str, now: &str) -> String {
    let t = qualified(schema, STATE_TABLE);
    format!(
        "UPDATE {t} SET state = {v}, committed_at = {now} WHERE id = {id};\n\
         INSERT INTO {t} (id, state, committed_at) SELECT {id}, {v}, {now} \
         WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE id = {id});",
        id = quote_literal(STATE_ROW),
        v = quote_literal(state_json),
        now = quote_literal(now),
    )
}

/// One DDL change.
pub fn ddl(schema: &str, change: &Ddl, d: &Dialect) -> String {
    match change {
        Ddl::CreateTable { table, columns, key } => {
            let mut cols: Vec<String> = columns
                .iter()
                .map(|(c, t)| format!("{} {}", quote_ident(c), (d.type_name)(*t)))
                .collect();
            let key_present = !key.is_empty() && key.iter().all(|k| columns.iter().any(|(c, _)| c == k));
            if d.on_conflict && key_present {
                let k: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
                cols.push(format!("PRIMARY KEY ({})", k.join(", ")));
            }
            format!(
                "CREATE TABLE IF NOT EXISTS {} ({})",
                qualified(schema, table),
                cols.join(", ")
            )
        }
        Ddl::AddColumn { table, column, ty } => format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            qualified(schema, table),
            quote_ident(column),
            (d.type_name)(*ty)
        ),
        Ddl::RenameColumn { table, from, to } => format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            qualified(schema, table),
            quote_ident(from),
            quote_ident(to)
        ),
    }
}

/// `CREATE TEMP TABLE … ON COMMIT DROP` (PostgreSQL) for a staging table with the given columns.
pub fn create_stage(stage: &str, columns: &[(String, ColumnType)], d: &Dialect) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|(c, t)| format!("{} {}", quote_ident(c), (d.type_name)(*t)))
        .collect();
    format!(
        "CREATE TEMP TABLE {} ({}) ON COMMIT DROP",
        quote_ident(stage),
        cols.join(", ")
    )
}

/// The statements that merge one stream's staged rows. `stage_of(table)` names a table's staging
/// table (already qualified), `win` the winners table's name as used in queries, `win_create` the
/// statement head that creates it (`CREATE TABLE "s"."w"`, or `CREATE TEMP TABLE "w" ON COMMIT DROP`).
///
/// Order: winners (staged keys whose row is new, or not newer in the warehouse — an older sequence
/// never overwrites a newer one; append-only: keys not yet present), then every subtable's rows of
/// the winners are deleted and the staged ones inserted, then the top-level rows are replaced.
pub fn merge(
    schema: &str,
    load: &StreamLoad,
    layout: &TableLayout,
    stage_of: &dyn Fn(&str) -> String,
    win: &str,
    win_create: &str,
    d: &Dialect,
) -> Vec<String> {
    let target = qualified(schema, &load.table);
    let stage = stage_of(&load.table);
    let keys: Vec<String> = load.key_columns.iter().map(|k| quote_ident(k)).collect();
    let key_match = |left: &str, right: &str, right_cols: &[String]| -> String {
        load.key_columns
            .iter()
            .zip(right_cols)
            .map(|(k, rc)| format!("{left}.{} = {right}.{}", quote_ident(k), quote_ident(rc)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let mut out = Vec::new();
    let newer = if load.append_only {
        String::new()
    } else {
        format!(" AND t.{seq} > s.{seq}", seq = quote_ident(SEQUENCE))
    };
    out.push(format!(
        "{win_create} AS SELECT {cols} FROM {stage} s WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE {m}{newer})",
        cols = keys.iter().map(|k| format!("s.{k}")).collect::<Vec<_>>().join(", "),
        m = key_match("t", "s", &load.key_columns),
    ));
    let source_cols: Vec<String> = load.source_key_columns().into_iter().map(|(c, _)| c).collect();
    for sub in &load.all_subtables {
        let q = qualified(schema, sub);
        out.push(format!(
            "DELETE FROM {q} WHERE EXISTS (SELECT 1 FROM {win} w WHERE {m})",
            m = key_match("w", &q, &source_cols)
        ));
    }
    for (sub, rows) in &load.subtables {
        let cols = rows
            .columns
            .iter()
            .map(|(c, _)| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(format!(
            "INSERT INTO {q} ({cols}) SELECT {cols} FROM {st} s WHERE EXISTS (SELECT 1 FROM {win} w WHERE {m})",
            q = qualified(schema, sub),
            st = stage_of(sub),
            m = key_match("w", "s", &source_cols),
        ));
    }
    let cols = load
        .rows
        .columns
        .iter()
        .map(|(c, _)| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!(
        "INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} s WHERE EXISTS (SELECT 1 FROM {win} w WHERE {m})",
        m = key_match("w", "s", &load.key_columns),
    );
    if d.on_conflict {
        let conflict = if load.append_only {
            "DO NOTHING".to_owned()
        } else {
            let sets: Vec<String> = layout
                .physical_columns()
                .into_iter()
                .filter(|(c, _)| !load.key_columns.contains(c))
                .map(|(c, _)| format!("{q} = EXCLUDED.{q}", q = quote_ident(&c)))
                .collect();
            if sets.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                format!(
                    "DO UPDATE SET {} WHERE {target}.{seq} <= EXCLUDED.{seq}",
                    sets.join(", "),
                    seq = quote_ident(SEQUENCE)
                )
            }
        };
        out.push(format!("{insert} ON CONFLICT ({}) {conflict}", keys.join(", ")));
    } else {
        out.push(format!(
            "DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {win} w WHERE {m})",
            m = key_match("w", &target, &load.key_columns)
        ));
        out.push(insert);
    }
    out
}

/// Deletes the rows of other versions from a table and its subtables.
pub fn activate(schema: &str, table: &str, version: i64, subtables: &[String]) -> Vec<String> {
    std::iter::once(table)
        .chain(subtables.iter().map(String::as_str))
        .map(|t| {
            format!(
                "DELETE FROM {} WHERE {} IS DISTINCT FROM {version}",
                qualified(schema, t),
                quote_ident(TABLE_VERSION)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam_core::Classify;

    #[test]
    fn stored_state_is_read_back_or_named_as_the_table_to_fix() {
        let state = parse_state(
            "s",
            r#"{"bookmarks": {"tickets": {"updated_at": "2024-01-01T00:00:00Z"}}}"#,
        )
        .unwrap();
        assert_eq!(
            state.bookmark("tickets", "updated_at"),
            Some(&serde_json::json!("2024-01-01T00:00:00Z"))
        );
        for text in ["{\"bookmarks\": ", "[1, 2]", "{\"bookmarks\": 3}"] {
            let e = parse_state("s", text).unwrap_err();
            assert_eq!(e.kind(), seam_core::ErrorKind::Internal, "{text}");
            let message = e.to_string();
            assert!(
                message.contains(&format!("s.{STATE_TABLE}")) && message.contains("fix or delete that row"),
                "{text}: {message}"
            );
        }
    }
}
