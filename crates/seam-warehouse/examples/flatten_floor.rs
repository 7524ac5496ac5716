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
    println!("skip  {skip:.3} s  {:.2}x floor", skip / floor);
    println!("floor {floor:.3} s  1.00x floor  ({cells} cells)");
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
