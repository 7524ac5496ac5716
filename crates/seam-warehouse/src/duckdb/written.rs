//! The keys a DuckDB destination has written to the tables it created, so that a batch whose keys
//! are all new to such a table is appended without asking DuckDB first.
//!
//! DuckDB tables have no primary key, so before appending a batch's rows straight into a table that
//! already holds rows, [`super::load`] asks DuckDB whether the table holds any of the batch's keys
//! (a scratch table of the keys and a join: four statements, ~2 ms per stream and commit, 7% of a
//! 20k-ticket first load's CPU). For a table this destination created, every row in it came
//! through this destination, so the keys it wrote answer the question without DuckDB: if none of a
//! batch's keys is among them, the table holds none of them.
//!
//! What is kept is a *superset* of the table's keys, as fingerprints in a hash set (a bigint key's
//! value itself; other keys a 64-bit hash of their cells): every batch loaded into a tracked table, by either
//! road (appended or merged), adds its keys before its commit ends, whether or not the commit then
//! succeeds, and nothing is ever taken out (version activation deletes rows; a failed commit rolls
//! its rows back: both only leave fingerprints of keys no longer there). So a fingerprint that is
//! absent proves the key absent, and a present one (a key written before, a hash collision, a
//! rolled-back row) only sends the batch to DuckDB's own check, as before. A table whose key
//! columns change, or whose fingerprints would pass [`WrittenKeys::CAP`] in all, is forgotten and
//! checked by DuckDB from then on.
//!
//! This holds because one destination is the only writer of its schema: DuckDB lets one process
//! open a file for writing, and within it the scheduler runs one job per integration at a time.

use crate::columns::TableRows;
use crate::flatten::{CellRef, ColumnType, FastHash};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// A batch's keys: the key columns and each row's key cells, in key order.
pub(crate) trait KeyRows {
    /// The key columns and their types.
    fn columns(&self) -> &[(String, ColumnType)];
    /// Calls `f` with each row's key cells until it returns `Err`, which is passed on.
    fn each(&self, f: &mut dyn FnMut(&[CellRef<'_>]) -> Result<(), ()>) -> Result<(), ()>;
}

impl KeyRows for TableRows<'_> {
    fn columns(&self) -> &[(String, ColumnType)] {
        &self.columns
    }

    fn each(&self, f: &mut dyn FnMut(&[CellRef<'_>]) -> Result<(), ()>) -> Result<(), ()> {
        self.for_each_row(|cells| f(cells))
    }
}

/// The fingerprints of the keys written to one table, and the key columns they are of.
#[derive(Debug)]
struct TableKeys {
    columns: Vec<(String, ColumnType)>,
    prints: HashSet<u64, FastHash>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct WrittenKeys {
    /// Top-level table → its keys, for tables this destination created.
    tables: HashMap<String, TableKeys>,
    /// Fingerprints held, all tables together.
    held: usize,
    /// Key checks DuckDB answered (a query), for tests and benchmarks.
    pub(crate) asked: u64,
    /// Key checks answered here, without a query.
    pub(crate) answered: u64,
}

impl WrittenKeys {
    /// The most fingerprints held at once, all tables together: ~10 MB of hash sets at most (9
    /// bytes a slot, at least 8/7 slots a fingerprint, rounded up to a power of two; half as much
    /// again for a moment while a set grows). A 20k-ticket Zendesk account's top-level tables hold
    /// ~250k keys (~5 MB); past this, tables are forgotten one by one.
    pub(crate) const CAP: usize = 500_000;

    /// `table` was just created (empty) with these key columns: track it from now on.
    pub(crate) fn created(&mut self, table: &str, columns: &[(String, ColumnType)]) {
        self.forget(table);
        self.tables.insert(
            table.to_owned(),
            TableKeys {
                columns: columns.to_vec(),
                prints: HashSet::default(),
            },
        );
    }

    /// Records the keys in `keys` (the batch's key columns, in key order) as written to `table`, by
    /// whichever road they go in, and answers whether the table is tracked and none of them was
    /// written to it before: then the table holds none of them. `false` means "ask DuckDB". The
    /// table is forgotten when the keys cannot be recorded (other key columns, a cell of another
    /// type than its column) or past [`WrittenKeys::CAP`] (the answer still holds: it is about what
    /// was written before). Called before the rows go in, so what is kept stays a superset.
    pub(crate) fn write(&mut self, table: &str, keys: &dyn KeyRows) -> bool {
        let Some(t) = self.tables.get_mut(table) else {
            return false;
        };
        let before = t.prints.len();
        let mut all_new = true;
        let fingerprinted = t.columns == keys.columns()
            && for_each_print(keys, |p| {
                if !t.prints.insert(p) {
                    all_new = false;
                }
            });
        self.held += t.prints.len() - before;
        if !fingerprinted || self.held > Self::CAP {
            self.forget(table);
        }
        fingerprinted && all_new
    }

    /// Stops tracking `table`: DuckDB checks its keys from now on.
    pub(crate) fn forget(&mut self, table: &str) {
        if let Some(t) = self.tables.remove(table) {
            self.held -= t.prints.len();
        }
    }

    /// Fingerprints held, all tables together.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held
    }
}

/// Calls `f` with the fingerprint of each row's key; `false` (having stopped) when a cell is NULL
/// or not of its column's type, where DuckDB's equality and the fingerprint could disagree.
fn for_each_print(keys: &dyn KeyRows, mut f: impl FnMut(u64)) -> bool {
    let types: Vec<ColumnType> = keys.columns().iter().map(|(_, t)| *t).collect();
    keys.each(&mut |cells| {
        let print = if let ([CellRef::BigInt(v)], [ColumnType::BigInt]) = (cells, &types[..]) {
            *v as u64
        } else {
            let mut h = std::hash::DefaultHasher::new();
            for (cell, ty) in cells.iter().zip(&types) {
                match (cell, ty) {
                    (CellRef::BigInt(v), ColumnType::BigInt) => v.hash(&mut h),
                    (CellRef::Timestamp(v), ColumnType::Timestamp) => v.hash(&mut h),
                    (CellRef::Boolean(v), ColumnType::Boolean) => v.hash(&mut h),
                    (CellRef::Text(s), ColumnType::Text) => s.hash(&mut h),
                    // DuckDB's `=` holds for 0.0 and -0.0, and for NaN and NaN.
                    (CellRef::Double(v), ColumnType::Double) => {
                        let v = if *v == 0.0 {
                            0.0
                        } else if v.is_nan() {
                            f64::NAN
                        } else {
                            *v
                        };
                        v.to_bits().hash(&mut h)
                    }
                    _ => return Err(()),
                }
            }
            h.finish()
        };
        f(print);
        Ok(())
    })
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key rows as a test writes them.
    struct Keys(Vec<(String, ColumnType)>, Vec<Vec<CellRef<'static>>>);

    impl KeyRows for Keys {
        fn columns(&self) -> &[(String, ColumnType)] {
            &self.0
        }

        fn each(&self, f: &mut dyn FnMut(&[CellRef<'_>]) -> Result<(), ()>) -> Result<(), ()> {
            self.1.iter().try_for_each(|row| f(row))
        }
    }

    fn keys(columns: &[(&str, ColumnType)], rows: &[Vec<CellRef<'static>>]) -> Keys {
        Keys(
            columns.iter().map(|(c, t)| ((*c).to_owned(), *t)).collect(),
            rows.to_vec(),
        )
    }

    fn ids(values: &[i64]) -> Keys {
        let rows: Vec<Vec<CellRef<'static>>> = values.iter().map(|&v| vec![CellRef::BigInt(v)]).collect();
        keys(&[("id", ColumnType::BigInt)], &rows)
    }

    #[test]
    fn only_a_tracked_table_whose_keys_were_never_written_is_all_new() {
        let mut w = WrittenKeys::default();
        assert!(!w.write("t", &ids(&[3])), "an untracked table is asked");
        assert_eq!(w.held(), 0, "and nothing is kept for it");
        w.created("t", ids(&[]).columns());
        assert!(w.write("t", &ids(&[2, 1])), "a new table holds nothing");
        assert_eq!(w.held(), 2);
        assert!(w.write("t", &ids(&[3])));
        assert!(!w.write("t", &ids(&[4, 2])), "key 2 was written");
        assert!(!w.write("u", &ids(&[5])), "another table is not tracked");
        assert_eq!(w.held(), 4, "4 is kept though 2 was known");
        assert!(!w.write("t", &ids(&[0, 1])));
        assert!(w.write("t", &ids(&[5, 6])));
        // Created again (a commit that created it failed and is retried): it starts empty.
        w.created("t", ids(&[]).columns());
        assert_eq!(w.held(), 0);
        assert!(w.write("t", &ids(&[1, 2, 4])));
        // Other key columns: forgotten.
        let named = keys(&[("name", ColumnType::Text)], &[vec![CellRef::Text("x")]]);
        assert!(!w.write("t", &named));
        assert_eq!(w.held(), 0);
        assert!(!w.write("t", &ids(&[7])));
    }

    #[test]
    fn keys_duckdb_finds_equal_have_equal_fingerprints() {
        let cols = [("a", ColumnType::Double), ("b", ColumnType::Text)];
        let written = keys(
            &cols,
            &[
                vec![CellRef::Double(0.0), CellRef::Text("x")],
                vec![CellRef::Double(f64::NAN), CellRef::Text("y")],
            ],
        );
        let mut w = WrittenKeys::default();
        w.created("t", written.columns());
        assert!(w.write("t", &written));
        let negative_zero = keys(&cols, &[vec![CellRef::Double(-0.0), CellRef::Text("x")]]);
        assert!(!w.write("t", &negative_zero));
        let other_nan = f64::from_bits(f64::NAN.to_bits() ^ 1);
        assert!(other_nan.is_nan());
        assert!(!w.write(
            "t",
            &keys(&cols, &[vec![CellRef::Double(other_nan), CellRef::Text("y")]])
        ));
        assert!(w.write(
            "t",
            &keys(&cols, &[vec![CellRef::Double(0.0), CellRef::Text("y")]])
        ));
        assert!(w.write(
            "t",
            &keys(&cols, &[vec![CellRef::Double(1.0), CellRef::Text("x")]])
        ));
        assert_eq!(w.held(), 4);
    }

    #[test]
    fn a_cell_of_another_type_than_its_column_is_never_called_new() {
        let id = [("id", ColumnType::Double)];
        let mut w = WrittenKeys::default();
        w.created("t", keys(&id, &[]).columns());
        assert!(w.write("t", &keys(&id, &[vec![CellRef::Double(1.0)]])));
        assert!(!w.write("t", &keys(&id, &[vec![CellRef::BigInt(1)]])));
        assert_eq!(w.held(), 0, "the table is forgotten");
        assert!(!w.write("t", &keys(&id, &[vec![CellRef::Double(2.0)]])));
        w.created("t", keys(&id, &[]).columns());
        assert!(!w.write("t", &keys(&id, &[vec![CellRef::Null]])));
        assert_eq!(w.held(), 0, "forgotten again");
    }

    #[test]
    fn past_the_cap_a_table_is_forgotten() {
        let mut w = WrittenKeys::default();
        w.created("t", ids(&[]).columns());
        w.created("u", ids(&[]).columns());
        assert!(w.write("u", &ids(&[1])));
        w.held = WrittenKeys::CAP - 2;
        assert!(
            w.write("t", &ids(&[1, 2, 3])),
            "the answer is about what was written before"
        );
        assert!(!w.tables.contains_key("t") && w.tables.contains_key("u"));
        assert!(!w.write("t", &ids(&[9])));
        assert_eq!(w.held(), WrittenKeys::CAP - 2, "what the table held is let go");
    }
}
