//! How far seam's flattening is from a floor: the records of a Singer stream staged by seam
//! (flattened into column buffers, keys, system cells, batches), against two passes over the same
//! record texts that do less than any loader must.
//!
//! ```text
//! flatten_floor STREAM.jsonl [RUNS]
//! ```
//!
//! - `skip`: serde_json checks each record and skips it (`IgnoredAny`): parsing alone.
//! - `floor`: each record walked once, every scalar pushed into its column's buffer, the column
//!   found from the keys met at the same place in the last object (else a hash lookup), as a
//!   loader would at the least. It does none of what makes a load exact — no unescaping, no checks
//!   of types, collisions or NULs, no times parsed, no keys, no system cells, no subtable key
//!   columns, nothing to take back — so no loader can be this cheap: a bound, not a design.
//! - `least`: the same walk plus what an exact load cannot skip, done as cheaply as this file knows
//!   (schema types checked per value, repeated fields caught, escapes undone and searched for a
//!   NUL, times parsed, cells logged for taking a record back, each record's key looked up among
//!   the batch's, system cells for every row and parent keys and levels for subtable rows): what
//!   seam's staging could cost (the `walk` module says what it leaves out).
//! - `seam`: [`Stager::stage`] of the records, handed over in runs of one stream's records (1,000
//!   at most, as seam's loader hands them over) and batches of 20,000 records (as `seam target`
//!   gathers them at most): flattening, each record's key, its system cells, de-duplication.
//!
//! Prints each pass's fastest of RUNS (default 5) in seconds of this one thread, and each against
//! `floor`. Read the records from a stream `seam tap zendesk` wrote, e.g. `scripts/bench_load.sh`'s.
//!
//! `cargo run --release -p seam-warehouse --example flatten_floor -- stream.jsonl`

use seam_core::singer::{parse_line, Message};
use seam_core::RecordMessage;
use seam_warehouse::flatten::{Layout, NameRules};
use seam_warehouse::stage::Stager;
use std::collections::HashSet;
use std::error::Error;
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Records a batch holds at most, as `seam target` stages them.
const BATCH_RECORDS: usize = 20_000;

/// Records of one stream seam's loader hands the destination at once, at most.
const RUN_RECORDS: usize = 1_000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: flatten_floor STREAM.jsonl [RUNS]")?;
    let runs: usize = args.get(2).map_or(Ok(5), |r| r.parse())?;
    let text = std::fs::read(path)?;
    let mut schemas = Vec::new();
    let mut records: Vec<RecordMessage> = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        match parse_line(line, i as u64 + 1) {
            Some(Ok((_, Message::Schema(s)))) => schemas.push(s),
            Some(Ok((_, Message::Record(r)))) => records.push(r),
            Some(Ok(_)) | None => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
    let bytes: usize = records.iter().map(|r| r.record.get().len()).sum();
    println!(
        "{} records, {} bytes of record JSON, {} schemas",
        records.len(),
        bytes,
        schemas.len()
    );

    let fastest = |f: &mut dyn FnMut() -> Result<usize>| -> Result<(f64, usize)> {
        let mut best = f64::INFINITY;
        let mut out = 0;
        for _ in 0..runs {
            let start = Instant::now();
            out = f()?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        Ok((best, out))
    };
    let (skip, _) = fastest(&mut || {
        for r in &records {
            let _: serde::de::IgnoredAny = serde_json::from_str(r.record.get())?;
        }
        Ok(0)
    })?;
    let (floor, cells) = fastest(&mut || Ok(walk::pass::<false>(&schemas, &records).0))?;
    let (seam, staged) = fastest(&mut || {
        let mut stager = Stager::new(NameRules::POSTGRES, HashSet::new());
        for s in &schemas {
            stager.register(s);
        }
        // An empty warehouse, as a first load sees it: records keep no JSON they do not need.
        stager.know_layout(&Layout::default());
        let mut staged = 0;
        for chunk in records.chunks(BATCH_RECORDS) {
            // As seam's loader hands them over: runs of one stream's records, 1,000 at most.
            for run in chunk.chunk_by(|a, b| a.stream == b.stream) {
                for part in run.chunks(RUN_RECORDS) {
                    stager.stage(&part[0].stream, part)?;
                }
            }
            staged += stager.take_batch().staged_records();
        }
        Ok(staged)
    })?;
    let (least, least_cells) = fastest(&mut || Ok(walk::pass::<true>(&schemas, &records).0))?;
    let refused = walk::pass::<true>(&schemas, &records).1;
    println!("skip  {skip:.3} s  {:.2}x floor", skip / floor);
    println!("floor {floor:.3} s  1.00x floor  ({cells} cells)");
    println!(
        "least {least:.3} s  {:.2}x floor  ({least_cells} cells, {refused} refused)",
        least / floor
    );
    println!(
        "seam  {seam:.3} s  {:.2}x floor  ({staged} records staged)",
        seam / floor
    );
    Ok(())
}

/// A record's text, read forward.
struct Text<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Text<'a> {
    fn peek(&self) -> u8 {
        self.b.get(self.at).copied().unwrap_or(b'}')
    }

    fn spaces(&mut self) {
        while let b' ' | b'\n' | b'\r' | b'\t' = self.peek() {
            self.at += 1;
        }
    }

    /// The string whose quote is next, escapes left in; its closing quote found eight bytes at a
    /// time, as seam's reader finds it.
    fn string(&mut self) -> &'a [u8] {
        const ONES: u64 = u64::MAX / 255;
        const HIGH: u64 = ONES << 7;
        self.at += 1;
        let start = self.at;
        loop {
            while let Some(eight) = self.b.get(self.at..self.at + 8) {
                let mut word = [0; 8];
                word.copy_from_slice(eight);
                let x = u64::from_le_bytes(word);
                let quote = x ^ (ONES * u64::from(b'"'));
                let backslash = x ^ (ONES * u64::from(b'\\'));
                let found =
                    (quote.wrapping_sub(ONES) & !quote | backslash.wrapping_sub(ONES) & !backslash) & HIGH;
                if found != 0 {
                    self.at += found.trailing_zeros() as usize / 8;
                    break;
                }
                self.at += 8;
            }
            match self.b.get(self.at) {
                Some(b'"') | None => {
                    let s = self.b.get(start..self.at).unwrap_or_default();
                    self.at += 1;
                    return s;
                }
                Some(b'\\') => self.at += 2,
                Some(_) => self.at += 1,
            }
        }
    }
}

/// The `floor` and `least` passes: one walk over each record's text, the checks an exact load
/// cannot skip compiled in (`CHECKED`, the `least` pass) or out (the `floor`).
///
/// Both: each record walked once; each field's column found from the keys met at the same place
/// in the last object (else a hash lookup); every scalar pushed into its column's buffer with its
/// row; an object's fields into the same row under their place, an array's elements into rows of a
/// subtable (objects' fields there, anything else in its `value` column); batches of
/// [`BATCH_RECORDS`] records whose buffers are cleared, not freed.
///
/// `least` adds, per value: its kind checked against its column's schema types (read once per
/// column), a field met twice in a row caught, a string with escapes unescaped and searched for a
/// NUL, a `date-time` string parsed into a time (seam's own parser), a float read as one, the
/// cell's buffer logged so its record could be taken back; per record, its key read and looked up
/// among the batch's; per row, five system cells; per subtable row, its parent's key and its level.
/// It leaves out what costs once per column or only off the usual road: naming columns, type
/// splits, building tables, keeping rejected records' JSON.
mod walk {
    use super::{Text, BATCH_RECORDS};
    use seam_core::schema::{JsonType, Schema};
    use seam_core::singer::{parse_time, SchemaMessage};
    use seam_core::RecordMessage;
    use seam_warehouse::flatten::FastHash;
    use std::collections::HashMap;

    type Map<K, V> = HashMap<K, V, FastHash>;

    const NULL: u8 = 1;
    const BOOL: u8 = 2;
    const INT: u8 = 4;
    const NUM: u8 = 8;
    const STR: u8 = 16;
    const OBJ: u8 = 32;
    const ARR: u8 = 64;

    /// The kinds of value a column's schema allows (a null always: it is a NULL cell).
    fn allowed(s: Option<&Schema>) -> u8 {
        let Some(s) = s.filter(|s| !s.types.is_empty()) else {
            return 0x7f;
        };
        let mut m = NULL;
        for (t, bit) in [
            (JsonType::Boolean, BOOL),
            (JsonType::Integer, INT),
            (JsonType::Number, NUM | INT),
            (JsonType::String, STR),
            (JsonType::Object, OBJ),
            (JsonType::Array, ARR),
        ] {
            if s.allows(t) {
                m |= bit;
            }
        }
        m
    }

    #[derive(Default)]
    struct Column {
        rows: Vec<u32>,
        ints: Vec<i64>,
        floats: Vec<f64>,
        text: Vec<u8>,
        ends: Vec<u32>,
        allows: u8,
        date_time: bool,
        stamp: u32,
    }

    impl Column {
        fn new(schema: Option<&Schema>) -> Column {
            Column {
                allows: allowed(schema),
                date_time: schema.is_some_and(Schema::is_date_time),
                ..Column::default()
            }
        }
    }

    struct Place<'s> {
        /// The keys met in its last object, in order, with their column and nested place.
        order: Vec<(Vec<u8>, u32, u32)>,
        /// The `value` column of a subtable's other elements, once one was met.
        value: Option<u32>,
        schema: Option<&'s Schema>,
        table: u32,
    }

    #[derive(Default)]
    struct Table {
        rows: u32,
        /// `_sdc_sequence`, `_sdc_batched_at`, `_sdc_received_at`, `_sdc_extracted_at`,
        /// `_sdc_table_version`; then a subtable's parent key and level.
        system: [Vec<i64>; 7],
    }

    #[derive(Default)]
    struct Walk<'s, const CHECKED: bool> {
        columns_of: Map<(u32, Vec<u8>), (u32, u32)>,
        places: Vec<Place<'s>>,
        columns: Vec<Column>,
        tables: Vec<Table>,
        /// The buffers the record being staged wrote to (`least`).
        log: Vec<u32>,
        /// The rows the record being staged opened (`least`).
        opened: Vec<u32>,
        keys: Map<Vec<u8>, u32>,
        scratch: String,
        /// The key of the record being staged, once read (`least`).
        parent: i64,
        /// Values of a kind their column's schema does not allow, fields met twice in a row,
        /// strings with a NUL, times that do not parse (`least`).
        refused: usize,
        cells: usize,
    }

    impl<'s, const CHECKED: bool> Walk<'s, CHECKED> {
        fn new_place(&mut self, schema: Option<&'s Schema>, table: u32) -> u32 {
            self.places.push(Place {
                order: Vec::new(),
                value: None,
                schema,
                table,
            });
            (self.places.len() - 1) as u32
        }

        fn new_table(&mut self) -> u32 {
            self.tables.push(Table::default());
            (self.tables.len() - 1) as u32
        }

        fn open_row(&mut self, table: u32) -> u32 {
            let t = &mut self.tables[table as usize];
            t.rows += 1;
            if CHECKED {
                self.opened.push(table);
            }
            t.rows - 1
        }

        fn clear(&mut self) {
            for c in &mut self.columns {
                self.cells += c.rows.len();
                c.rows.clear();
                c.ints.clear();
                c.floats.clear();
                c.text.clear();
                c.ends.clear();
                c.stamp = 0;
            }
            for t in &mut self.tables {
                t.rows = 0;
                t.system.iter_mut().for_each(Vec::clear);
            }
            self.keys.clear();
        }

        /// Stages one record of a stream whose top place is `place` and key property `key`.
        fn record(&mut self, r: &RecordMessage, place: u32, key: &str, sequence: i64) {
            let table = self.places[place as usize].table;
            let row = self.open_row(table);
            let mut text = Text {
                b: r.record.get().as_bytes(),
                at: 0,
            };
            self.parent = -1;
            self.object(&mut text, place, row, key.as_bytes());
            if !CHECKED {
                return;
            }
            let mut k = Vec::with_capacity(16);
            k.extend_from_slice(r.stream.as_bytes());
            k.push(0);
            k.extend_from_slice(&self.parent.to_le_bytes());
            let index = self.keys.len() as u32;
            self.keys.insert(k, index);
            // The record stays: its rows get their system cells.
            for &t in &self.opened {
                let system = &mut self.tables[t as usize].system;
                for (i, v) in [sequence, 1, 2, 3, 4].into_iter().enumerate() {
                    system[i].push(v);
                }
            }
            self.opened.clear();
            self.log.clear();
        }

        /// The column and nested place of the `i`-th field of an object at `place`, named `key`.
        fn column(&mut self, place: u32, i: usize, key: &[u8]) -> (u32, u32) {
            let p = &self.places[place as usize];
            if let Some(&(_, c, n)) = p.order.get(i).filter(|(k, ..)| k == key) {
                return (c, n);
            }
            let found = match self.columns_of.get(&(place, key.to_vec())) {
                Some(&found) => found,
                None => {
                    let schema = std::str::from_utf8(key)
                        .ok()
                        .and_then(|k| p.schema.and_then(|s| s.property(k)));
                    let array = schema.is_some_and(|s| s.allows(JsonType::Array));
                    let nested_schema = if array {
                        schema.and_then(|s| s.items.as_deref())
                    } else {
                        schema
                    };
                    let table = if array { self.new_table() } else { p.table };
                    let nested = self.new_place(nested_schema, table);
                    self.columns.push(Column::new(schema));
                    let found = ((self.columns.len() - 1) as u32, nested);
                    self.columns_of.insert((place, key.to_vec()), found);
                    found
                }
            };
            let order = &mut self.places[place as usize].order;
            order.truncate(i);
            order.push((key.to_vec(), found.0, found.1));
            found
        }

        /// The `value` column of the subtable elements at `place` that are not objects.
        fn value_column(&mut self, place: u32) -> u32 {
            if let Some(c) = self.places[place as usize].value {
                return c;
            }
            self.columns.push(Column::new(self.places[place as usize].schema));
            let c = (self.columns.len() - 1) as u32;
            self.places[place as usize].value = Some(c);
            c
        }

        /// The object whose `{` is next, its fields in `row`; `key` names the record's key field
        /// (nothing below the top).
        fn object(&mut self, t: &mut Text<'_>, place: u32, row: u32, key: &[u8]) {
            t.at += 1;
            let mut i = 0;
            loop {
                t.spaces();
                match t.peek() {
                    b'}' => {
                        t.at += 1;
                        return;
                    }
                    b',' => {
                        t.at += 1;
                        t.spaces();
                    }
                    _ => {}
                }
                let name = t.string();
                t.spaces();
                t.at += 1;
                let (column, nested) = self.column(place, i, name);
                i += 1;
                t.spaces();
                let start = t.at;
                self.value(t, column, nested, row);
                if CHECKED && name == key {
                    // The subtable rows after it carry it (seam's take it from wherever it
                    // stands in the record).
                    self.parent = std::str::from_utf8(&t.b[start..t.at])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(-1);
                }
            }
        }

        /// Whether a value of `kind` goes into `column` in `row`; its row is pushed when it does.
        fn cell(&mut self, column: u32, row: u32, kind: u8) -> bool {
            let c = &mut self.columns[column as usize];
            if CHECKED {
                if c.allows & kind == 0 || c.stamp == row + 1 {
                    self.refused += 1;
                    return false;
                }
                c.stamp = row + 1;
                self.log.push(column);
            }
            c.rows.push(row);
            true
        }

        fn value(&mut self, t: &mut Text<'_>, column: u32, nested: u32, row: u32) {
            t.spaces();
            match t.peek() {
                b'{' => {
                    if CHECKED && self.columns[column as usize].allows & OBJ == 0 {
                        self.refused += 1;
                    }
                    self.object(t, nested, row, b"");
                }
                b'[' => self.array(t, column, nested),
                b'"' => self.string(t, column, row),
                b'n' => {
                    t.at += 4;
                    if CHECKED {
                        self.cell(column, row, NULL);
                    }
                }
                b't' | b'f' => {
                    let v = i64::from(t.peek() == b't');
                    t.at += if v == 1 { 4 } else { 5 };
                    if self.cell(column, row, BOOL) {
                        self.columns[column as usize].ints.push(v);
                    }
                }
                _ => self.number(t, column, row),
            }
        }

        /// The array whose `[` is next: each element a row of the subtable at `place`.
        fn array(&mut self, t: &mut Text<'_>, column: u32, place: u32) {
            t.at += 1;
            if CHECKED && self.columns[column as usize].allows & ARR == 0 {
                self.refused += 1;
            }
            let table = self.places[place as usize].table;
            let mut index = 0;
            loop {
                t.spaces();
                match t.peek() {
                    b']' => {
                        t.at += 1;
                        return;
                    }
                    b',' => t.at += 1,
                    _ => {
                        let element = self.open_row(table);
                        if CHECKED {
                            let system = &mut self.tables[table as usize].system;
                            system[5].push(self.parent);
                            system[6].push(index);
                        }
                        index += 1;
                        t.spaces();
                        if t.peek() == b'{' {
                            self.object(t, place, element, b"");
                        } else {
                            let value = self.value_column(place);
                            self.value(t, value, place, element);
                        }
                    }
                }
            }
        }

        fn string(&mut self, t: &mut Text<'_>, column: u32, row: u32) {
            let s = t.string();
            if !self.cell(column, row, STR) {
                return;
            }
            if !CHECKED {
                let c = &mut self.columns[column as usize];
                c.text.extend_from_slice(s);
                c.ends.push(c.text.len() as u32);
                return;
            }
            let text: &[u8] = if s.contains(&b'\\') {
                self.scratch.clear();
                unescape(s, &mut self.scratch);
                if self.scratch.contains('\0') {
                    self.refused += 1;
                }
                self.scratch.as_bytes()
            } else {
                s
            };
            let c = &mut self.columns[column as usize];
            if c.date_time {
                match std::str::from_utf8(text).map(parse_time) {
                    Ok(Ok(time)) => c.ints.push(time.timestamp_micros()),
                    _ => self.refused += 1,
                }
            } else {
                c.text.extend_from_slice(text);
                c.ends.push(c.text.len() as u32);
            }
        }

        fn number(&mut self, t: &mut Text<'_>, column: u32, row: u32) {
            let start = t.at;
            let negative = t.peek() == b'-';
            t.at += usize::from(negative);
            let mut v: i64 = 0;
            while let d @ b'0'..=b'9' = t.peek() {
                v = v.wrapping_mul(10).wrapping_add(i64::from(d - b'0'));
                t.at += 1;
            }
            let float = matches!(t.peek(), b'.' | b'e' | b'E');
            while let b'.' | b'e' | b'E' | b'+' | b'-' | b'0'..=b'9' = t.peek() {
                t.at += 1;
            }
            if CHECKED && float {
                let f: f64 = std::str::from_utf8(&t.b[start..t.at])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default();
                if self.cell(column, row, NUM) {
                    self.columns[column as usize].floats.push(f);
                }
            } else if self.cell(column, row, INT) {
                self.columns[column as usize]
                    .ints
                    .push(if negative { -v } else { v });
            }
        }
    }

    /// JSON's escapes undone, for text already checked.
    fn unescape(s: &[u8], out: &mut String) {
        let mut i = 0;
        while i < s.len() {
            if s[i] != b'\\' {
                let end = s[i..].iter().position(|&b| b == b'\\').map_or(s.len(), |p| i + p);
                out.push_str(std::str::from_utf8(&s[i..end]).unwrap_or_default());
                i = end;
                continue;
            }
            let c = match s.get(i + 1) {
                Some(b'n') => '\n',
                Some(b't') => '\t',
                Some(b'r') => '\r',
                Some(b'b') => '\u{8}',
                Some(b'f') => '\u{c}',
                Some(b'u') => {
                    let c = std::str::from_utf8(s.get(i + 2..i + 6).unwrap_or_default())
                        .ok()
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32)
                        .unwrap_or('\u{fffd}');
                    i += 4;
                    c
                }
                Some(&c) => char::from(c),
                None => break,
            };
            out.push(c);
            i += 2;
        }
    }

    /// One pass over every record, checked (`least`) or not (`floor`): the cells it staged, and
    /// how many values it refused.
    pub fn pass<const CHECKED: bool>(
        schemas: &[Box<SchemaMessage>],
        records: &[RecordMessage],
    ) -> (usize, usize) {
        let mut walk = Walk::<CHECKED>::default();
        let mut streams: Map<&str, (u32, &str)> = Map::default();
        for s in schemas {
            let table = walk.new_table();
            let place = walk.new_place(Some(&s.schema), table);
            let key = s.key_properties.first().map_or("", String::as_str);
            streams.insert(&s.stream, (place, key));
        }
        for (n, r) in records.iter().enumerate() {
            if n % BATCH_RECORDS == 0 {
                walk.clear();
            }
            if let Some(&(place, key)) = streams.get(r.stream.as_str()) {
                walk.record(r, place, key, n as i64);
            }
        }
        walk.clear();
        (walk.cells, walk.refused)
    }
}
