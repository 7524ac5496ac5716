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
//!   of names, types, collisions or NULs, no times parsed, no keys, no system cells, no subtable
//!   key columns, nothing to take back — so no loader can be this cheap: a bound, not a design.
//! - `least`: the floor plus what an exact load cannot skip, done as cheaply as this file knows
//!   (schema types checked per value, repeated fields caught, escapes undone and searched for a
//!   NUL, times parsed, cells logged for taking a record back, each record's key looked up among
//!   the batch's, system cells for every row and parent keys and levels for subtable rows): what
//!   seam's staging could cost (see the `least` module for what it leaves out).
//! - `seam`: [`Stager::stage`] of the records, in batches of 20,000 records as `seam target`
//!   gathers them at most (flattening, each record's key, its system cells, de-duplication).
//!
//! Prints each pass's fastest of RUNS (default 5) in seconds of this one thread, and each against
//! `floor`. Read the records from a stream `seam tap zendesk` wrote, e.g. `scripts/bench_load.sh`'s.
//!
//! `cargo run --release -p seam-warehouse --example flatten_floor -- stream.jsonl`

use seam_core::singer::{parse_line, Message};
use seam_core::RecordMessage;
use seam_warehouse::flatten::{Layout, NameRules};
use seam_warehouse::stage::Stager;
use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Records a batch holds at most, as `seam target` stages them.
const BATCH_RECORDS: usize = 20_000;

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
    let (floor, cells) = fastest(&mut || Ok(floor_pass(&records)))?;
    let (seam, staged) = fastest(&mut || {
        let mut stager = Stager::new(NameRules::POSTGRES, HashSet::new());
        for s in &schemas {
            stager.register(s);
        }
        // An empty warehouse, as a first load sees it: records keep no JSON they do not need.
        stager.know_layout(&Layout::default());
        let mut staged = 0;
        for chunk in records.chunks(BATCH_RECORDS) {
            for r in chunk {
                stager.stage(&r.stream, std::slice::from_ref(r))?;
            }
            staged += stager.take_batch().staged_records();
        }
        Ok(staged)
    })?;
    let (least, least_cells) = fastest(&mut || Ok(least::pass(&schemas, &records).0))?;
    let refused = least::pass(&schemas, &records).1;
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

/// The `floor` pass over every record; the number of cells it pushed.
fn floor_pass(records: &[RecordMessage]) -> usize {
    let mut floor = Floor::default();
    let mut streams: HashMap<&str, u32> = HashMap::new();
    for r in records {
        let next = floor.places as u32;
        let place = *streams.entry(&r.stream).or_insert(next);
        if place == next {
            floor.new_place();
        }
        let row = floor.next_row(place);
        let mut text = Text {
            b: r.record.get().as_bytes(),
            at: 0,
        };
        floor.object(&mut text, place, row);
    }
    floor.columns.iter().map(|c| c.rows.len()).sum()
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

/// A column's values and their rows.
#[derive(Default)]
struct Buffer {
    rows: Vec<u32>,
    ints: Vec<i64>,
    text: Vec<u8>,
    ends: Vec<u32>,
}

/// Where each key's column and nested place are, and the buffers.
#[derive(Default)]
struct Floor {
    /// `(place, key)` → (column, the place of its nested object or array elements).
    columns_of: HashMap<(u32, Vec<u8>), (u32, u32)>,
    /// Per place: the keys met in its last object, in order.
    order: Vec<Vec<(Vec<u8>, u32, u32)>>,
    /// Rows so far per place (for a stream or an array's elements: its table's rows).
    rows: Vec<u32>,
    places: usize,
    columns: Vec<Buffer>,
}

impl Floor {
    fn new_place(&mut self) -> u32 {
        self.order.push(Vec::new());
        self.rows.push(0);
        self.places += 1;
        (self.places - 1) as u32
    }

    fn next_row(&mut self, place: u32) -> u32 {
        let rows = &mut self.rows[place as usize];
        *rows += 1;
        *rows - 1
    }

    fn object(&mut self, t: &mut Text<'_>, place: u32, row: u32) {
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
            let key = t.string();
            t.spaces();
            t.at += 1;
            let hit = self.order[place as usize]
                .get(i)
                .filter(|(k, ..)| k == key)
                .map(|&(_, c, p)| (c, p));
            let (column, nested) = match hit {
                Some(hit) => hit,
                None => {
                    let found = match self.columns_of.get(&(place, key.to_vec())) {
                        Some(&found) => found,
                        None => {
                            let found = (self.columns.len() as u32, self.new_place());
                            self.columns.push(Buffer::default());
                            self.columns_of.insert((place, key.to_vec()), found);
                            found
                        }
                    };
                    let order = &mut self.order[place as usize];
                    order.truncate(i);
                    order.push((key.to_vec(), found.0, found.1));
                    found
                }
            };
            i += 1;
            self.value(t, column, nested, row);
        }
    }

    /// A value of `column` in `row`; a nested object's fields go to place `nested` (the same row),
    /// an array's elements to rows of their own there.
    fn value(&mut self, t: &mut Text<'_>, column: u32, nested: u32, row: u32) {
        t.spaces();
        match t.peek() {
            b'{' => self.object(t, nested, row),
            b'[' => {
                t.at += 1;
                loop {
                    t.spaces();
                    match t.peek() {
                        b']' => {
                            t.at += 1;
                            return;
                        }
                        b',' => t.at += 1,
                        _ => {
                            let element = self.next_row(nested);
                            self.value(t, column, nested, element);
                        }
                    }
                }
            }
            b'"' => {
                let s = t.string();
                let c = &mut self.columns[column as usize];
                c.rows.push(row);
                c.text.extend_from_slice(s);
                c.ends.push(c.text.len() as u32);
            }
            b'n' => t.at += 4,
            b't' | b'f' => {
                let v = i64::from(t.peek() == b't');
                t.at += if v == 1 { 4 } else { 5 };
                self.put_int(column, row, v);
            }
            _ => {
                let negative = t.peek() == b'-';
                t.at += usize::from(negative);
                let mut v: i64 = 0;
                while let d @ b'0'..=b'9' = t.peek() {
                    v = v.wrapping_mul(10).wrapping_add(i64::from(d - b'0'));
                    t.at += 1;
                }
                while let b'.' | b'e' | b'E' | b'+' | b'-' | b'0'..=b'9' = t.peek() {
                    t.at += 1;
                }
                self.put_int(column, row, if negative { -v } else { v });
            }
        }
    }

    fn put_int(&mut self, column: u32, row: u32, v: i64) {
        let c = &mut self.columns[column as usize];
        c.rows.push(row);
        c.ints.push(v);
    }
}

/// The `least` pass: the floor plus what an exact load cannot skip, done the cheapest way this
/// file knows, to see how much of seam's cost above the floor those checks explain. Per value: the
/// column's schema types (read once per column) checked against the value's kind, a field met
/// twice in a row caught, strings with escapes unescaped and searched for a NUL, `date-time`
/// strings parsed into times (seam's own parser), numbers read as integers or floats, and each
/// cell's buffer logged so a record could be taken back. Per record: its key read and looked up
/// among the batch's keys. Per row: five system cells; per subtable row, its parent's key and its
/// level. Batches of [`BATCH_RECORDS`] records, the buffers cleared (not freed) between them. It
/// does not build seam's tables, split types, name columns or keep rejected records' JSON.
mod least {
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

    fn allowed(s: Option<&Schema>) -> u8 {
        let Some(s) = s else { return 0x7f };
        if s.types.is_empty() {
            return 0x7f;
        }
        // A null is a NULL cell whatever the schema says.
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

    struct Place<'s> {
        order: Vec<(Vec<u8>, u32, u32)>,
        /// The `value` column of a subtable's scalar elements, once one was met.
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
    pub struct Least<'s> {
        columns_of: Map<(u32, Vec<u8>), (u32, u32)>,
        places: Vec<Place<'s>>,
        columns: Vec<Column>,
        tables: Vec<Table>,
        log: Vec<u32>,
        opened: Vec<(u32, u32)>,
        keys: Map<Vec<u8>, u32>,
        scratch: String,
        /// The key of the record being staged, once read.
        parent: i64,
        /// Values of a kind their column's schema does not allow, and fields met twice in a row.
        pub refused: usize,
        pub cells: usize,
    }

    impl<'s> Least<'s> {
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
            self.opened.push((table, t.rows - 1));
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
            let mut key_value = None;
            self.parent = -1;
            self.object(&mut text, place, row, Some((key.as_bytes(), &mut key_value)));
            let mut k = Vec::with_capacity(16);
            k.extend_from_slice(r.stream.as_bytes());
            k.push(0);
            k.extend_from_slice(&key_value.unwrap_or(-1).to_le_bytes());
            let index = self.keys.len() as u32;
            self.keys.insert(k, index);
            // The record stays: its rows get their system cells.
            for &(t, _) in &self.opened {
                let system = &mut self.tables[t as usize].system;
                for (i, v) in [sequence, 1, 2, 3, 4].into_iter().enumerate() {
                    system[i].push(v);
                }
            }
            self.opened.clear();
            self.log.clear();
        }

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
                    let table = p.table;
                    let nested_schema = schema.and_then(|s| {
                        if s.allows(JsonType::Array) {
                            s.items.as_deref()
                        } else {
                            Some(s)
                        }
                    });
                    let nested_table = if schema.is_some_and(|s| s.allows(JsonType::Array)) {
                        self.new_table()
                    } else {
                        table
                    };
                    let nested = self.new_place(nested_schema, nested_table);
                    self.columns.push(Column {
                        allows: allowed(schema),
                        date_time: schema.is_some_and(Schema::is_date_time),
                        ..Column::default()
                    });
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

        fn object(
            &mut self,
            t: &mut Text<'_>,
            place: u32,
            row: u32,
            mut key: Option<(&[u8], &mut Option<i64>)>,
        ) {
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
                if let Some((k, v)) = key.as_mut() {
                    if *k == name {
                        **v = std::str::from_utf8(&t.b[start..t.at])
                            .ok()
                            .and_then(|s| s.parse().ok());
                        // The subtable rows after it carry it (seam's take the key from wherever
                        // it stands in the record).
                        self.parent = v.unwrap_or(-1);
                    }
                }
            }
        }

        fn value_column(&mut self, place: u32) -> u32 {
            if let Some(c) = self.places[place as usize].value {
                return c;
            }
            let schema = self.places[place as usize].schema;
            self.columns.push(Column {
                allows: allowed(schema),
                date_time: schema.is_some_and(Schema::is_date_time),
                ..Column::default()
            });
            let c = (self.columns.len() - 1) as u32;
            self.places[place as usize].value = Some(c);
            c
        }

        fn cell(&mut self, column: u32, row: u32, kind: u8) -> bool {
            let c = &mut self.columns[column as usize];
            if c.allows & kind == 0 || c.stamp == row + 1 {
                self.refused += 1;
                return false;
            }
            c.stamp = row + 1;
            c.rows.push(row);
            self.log.push(column);
            true
        }

        fn value(&mut self, t: &mut Text<'_>, column: u32, nested: u32, row: u32) {
            t.spaces();
            match t.peek() {
                b'{' => {
                    let c = &self.columns[column as usize];
                    if c.allows & OBJ == 0 {
                        self.refused += 1;
                    }
                    self.object(t, nested, row, None);
                }
                b'[' => {
                    t.at += 1;
                    if self.columns[column as usize].allows & ARR == 0 {
                        self.refused += 1;
                    }
                    let table = self.places[nested as usize].table;
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
                                let s = &mut self.tables[table as usize].system;
                                s[5].push(self.parent);
                                s[6].push(index);
                                index += 1;
                                t.spaces();
                                if t.peek() == b'{' {
                                    self.object(t, nested, element, None);
                                } else {
                                    let value = self.value_column(nested);
                                    self.value(t, value, nested, element);
                                }
                            }
                        }
                    }
                }
                b'"' => {
                    let s = t.string();
                    if !self.cell(column, row, STR) {
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
                b'n' => {
                    t.at += 4;
                    self.cell(column, row, NULL);
                }
                b't' | b'f' => {
                    let v = i64::from(t.peek() == b't');
                    t.at += if v == 1 { 4 } else { 5 };
                    if self.cell(column, row, BOOL) {
                        self.columns[column as usize].ints.push(v);
                    }
                }
                _ => {
                    let start = t.at;
                    let negative = t.peek() == b'-';
                    t.at += usize::from(negative);
                    let mut v: i64 = 0;
                    while let d @ b'0'..=b'9' = t.peek() {
                        v = v.wrapping_mul(10).wrapping_add(i64::from(d - b'0'));
                        t.at += 1;
                    }
                    if let b'.' | b'e' | b'E' = t.peek() {
                        while let b'.' | b'e' | b'E' | b'+' | b'-' | b'0'..=b'9' = t.peek() {
                            t.at += 1;
                        }
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
        }
    }

    /// JSON's escapes, for text already checked.
    fn unescape(s: &[u8], out: &mut String) {
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'\\' => {
                    let c = match s.get(i + 1) {
                        Some(b'n') => '\n',
                        Some(b't') => '\t',
                        Some(b'r') => '\r',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'u') => {
                            let hex = std::str::from_utf8(s.get(i + 2..i + 6).unwrap_or_default())
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32)
                                .unwrap_or('\u{fffd}');
                            i += 4;
                            hex
                        }
                        Some(&c) => char::from(c),
                        None => break,
                    };
                    out.push(c);
                    i += 2;
                }
                _ => {
                    let end = s[i..].iter().position(|&b| b == b'\\').map_or(s.len(), |p| i + p);
                    out.push_str(std::str::from_utf8(&s[i..end]).unwrap_or_default());
                    i = end;
                }
            }
        }
    }

    /// The `least` pass over every record; the number of cells it staged.
    pub fn pass(schemas: &[Box<SchemaMessage>], records: &[RecordMessage]) -> (usize, usize) {
        let mut least = Least::default();
        let mut streams: Map<&str, (u32, &str)> = Map::default();
        for s in schemas {
            let table = least.new_table();
            let place = least.new_place(Some(&s.schema), table);
            let key = s.key_properties.first().map_or("", String::as_str);
            streams.insert(&s.stream, (place, key));
        }
        for (n, r) in records.iter().enumerate() {
            if n % BATCH_RECORDS == 0 {
                least.clear();
            }
            let Some(&(place, key)) = streams.get(r.stream.as_str()) else {
                continue;
            };
            least.record(r, place, key, n as i64);
        }
        least.clear();
        (least.cells, least.refused)
    }
}
