//! PostgreSQL's binary `COPY` format, written from staged rows a column at a time.
//!
//! The format (<https://www.postgresql.org/docs/current/sql-copy.html>, "Binary Format"): a
//! signature, flags and a header extension length; then each row as a 16-bit field count and, per
//! field, a 32-bit length (-1 for NULL) and the value's bytes; then a field count of -1.
//!
//! Staged rows are held by column ([`crate::columns`]) and most of a Zendesk table's cells are
//! NULL, so the encoder never walks rows × columns: it sizes each row from the columns' values,
//! fills a chunk's rows with NULL fields (0xff bytes), then writes each column's values into their
//! rows. Field `j` of a row starts at the row's start + 2 + 4 × `j` + the bytes of the row's values
//! in the columns before `j`: one running offset per row, moved on only by values.

use crate::columns::{TableRows, ValuesRef};
use crate::error::WarehouseError;
use seam_core::{DestinationError, ErrorKind};

/// PostgreSQL's binary timestamps count microseconds from 2000-01-01 00:00:00; seam's
/// [`crate::flatten::Cell::Timestamp`] from 1970-01-01 00:00:00 (both UTC, no time zone).
pub(super) const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The signature that opens PostgreSQL's binary `COPY` format, then its flags and the length of its
/// header extension (both zero).
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Bytes encoded before they go to the server.
pub(super) const COPY_CHUNK: usize = 256 * 1024;

/// A timestamp in PostgreSQL's binary format; `None` (NULL) before its range. Flattening keeps
/// years 1..=9999, far inside both ranges: an overflow cannot happen, and is never a panic.
pub(super) fn pg_micros(us: i64) -> Option<i64> {
    us.checked_sub(PG_EPOCH_OFFSET_MICROS)
}

/// A row that cannot be encoded: an internal inconsistency, never outside input (flattening caps
/// what reaches a cell).
fn encode_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DestinationError {
    DestinationError::new(
        ErrorKind::Internal,
        WarehouseError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
    )
}

/// Encodes the loaded rows of `rows` (their columns in order) in chunks of about `chunk` bytes
/// (a row is never split; a row larger than `chunk` is a chunk of its own) and hands each to
/// `out`, the first opening with the format's header and the last closing with its trailer.
/// Nothing is handed over for a table without rows.
pub(crate) fn encode(
    rows: &TableRows<'_>,
    chunk: usize,
    mut out: impl FnMut(&[u8]) -> Result<(), DestinationError>,
) -> Result<(), DestinationError> {
    let n = rows.row_count() as usize;
    if rows.is_empty() || n == 0 {
        return Ok(());
    }
    let width = rows.columns.len();
    let count = i16::try_from(width)
        .map_err(|_| encode_error(format!("{width} columns do not fit one postgresql row")))?
        .to_be_bytes();
    let mut columns = Vec::with_capacity(width);
    for j in 0..width {
        let c = rows
            .values(j)
            .ok_or_else(|| encode_error("a column without its values"))?;
        let values = match c.values {
            ValuesRef::BigInt(v) | ValuesRef::Timestamp(v) => v.len(),
            ValuesRef::Double(v) => v.len(),
            ValuesRef::Boolean(v) => v.len(),
            ValuesRef::Text { bytes, ends } => {
                let ordered = ends.windows(2).all(|w| w[0] <= w[1]);
                if !ordered || ends.last().is_some_and(|&e| e as usize > bytes.len()) {
                    return Err(encode_error("a text past its column's bytes"));
                }
                ends.len()
            }
        };
        let ascending = c.rows.windows(2).all(|w| w[0] < w[1]);
        if values != c.rows.len() || !ascending || c.rows.last().is_some_and(|&r| r as usize >= n) {
            return Err(encode_error("a column's values out of step with its rows"));
        }
        columns.push(c);
    }

    // Each loaded row's bytes (0: not loaded); from here on every row and value index is in range
    // (rows ascending and below `n`, as many as the values; texts' ends ascending within the bytes).
    let mut place = vec![2 + 4 * width; n];
    if let Some(live) = rows.live_mask() {
        for (p, live) in place.iter_mut().zip(live) {
            if !live {
                *p = 0;
            }
        }
    }
    for c in &columns {
        let mut add = |r: u32, len: usize| {
            let p = &mut place[r as usize];
            if *p != 0 {
                *p += len;
            }
        };
        match c.values {
            ValuesRef::BigInt(_) | ValuesRef::Double(_) => c.rows.iter().for_each(|&r| add(r, 8)),
            ValuesRef::Boolean(_) => c.rows.iter().for_each(|&r| add(r, 1)),
            ValuesRef::Timestamp(v) => {
                for (&r, &us) in c.rows.iter().zip(v) {
                    if pg_micros(us).is_some() {
                        add(r, 8);
                    }
                }
            }
            ValuesRef::Text { ends, .. } => {
                let mut start = 0;
                for (&r, &end) in c.rows.iter().zip(ends) {
                    let len = (end as usize).saturating_sub(start);
                    if i32::try_from(len).is_err() {
                        return Err(encode_error("a value longer than 2 GiB does not fit postgresql"));
                    }
                    add(r, len);
                    start = end as usize;
                }
            }
        }
    }

    // Room for a chunk and the row that crosses its end, kept for every chunk.
    let (total, largest) = place.iter().fold((0, 0), |(t, l), &p| (t + p, l.max(p)));
    let mut buf: Vec<u8> = Vec::with_capacity(total.min(chunk + largest) + COPY_SIGNATURE.len() + 2);
    buf.extend_from_slice(COPY_SIGNATURE);
    // Per column: its next value, and where that value's text starts.
    let mut next = vec![(0usize, 0usize); width];
    let mut first = 0;
    while first < n {
        // This chunk's rows, `first..last`; `place` turns from each row's size into where its next
        // value goes, less 4 × that value's column (0 still: not loaded).
        let start = buf.len();
        let mut end = start;
        let mut last = first;
        while last < n && end - start < chunk {
            let size = place[last];
            if size != 0 {
                place[last] = end + 2;
                end += size;
            }
            last += 1;
        }
        buf.resize(end, 0xff);
        for &p in &place[first..last] {
            if p != 0 {
                buf[p - 2..p].copy_from_slice(&count);
            }
        }
        for (j, (c, (k, text))) in columns.iter().zip(next.iter_mut()).enumerate() {
            let field = 4 * j;
            let stop = c.rows.partition_point(|&r| (r as usize) < last);
            let rows = c.rows.get(*k..stop).unwrap_or_default();
            match c.values {
                ValuesRef::BigInt(v) => {
                    for (&r, &x) in rows.iter().zip(&v[*k..stop]) {
                        put_fixed(&mut buf, &mut place, field, r, x.to_be_bytes());
                    }
                }
                ValuesRef::Double(v) => {
                    for (&r, &x) in rows.iter().zip(&v[*k..stop]) {
                        put_fixed(&mut buf, &mut place, field, r, x.to_be_bytes());
                    }
                }
                ValuesRef::Boolean(v) => {
                    for (&r, &x) in rows.iter().zip(&v[*k..stop]) {
                        put_fixed(&mut buf, &mut place, field, r, [u8::from(x)]);
                    }
                }
                ValuesRef::Timestamp(v) => {
                    for (&r, &us) in rows.iter().zip(&v[*k..stop]) {
                        if let Some(pg) = pg_micros(us) {
                            put_fixed(&mut buf, &mut place, field, r, pg.to_be_bytes());
                        }
                    }
                }
                ValuesRef::Text { bytes, ends } => {
                    let bytes = bytes.as_bytes();
                    for (&r, &e) in rows.iter().zip(&ends[*k..stop]) {
                        let e = e as usize;
                        let value = &bytes[(*text).min(e)..e];
                        let p = &mut place[r as usize];
                        if *p != 0 {
                            let at = *p + field;
                            // Lengths were checked above to fit an i32.
                            buf[at..at + 4].copy_from_slice(&(value.len() as i32).to_be_bytes());
                            buf[at + 4..at + 4 + value.len()].copy_from_slice(value);
                            *p += value.len();
                        }
                        *text = e;
                    }
                }
            }
            *k = stop;
        }
        if last == n {
            buf.extend_from_slice(&(-1i16).to_be_bytes());
        }
        out(&buf)?;
        buf.clear();
        first = last;
    }
    Ok(())
}

/// Writes a fixed-size value of row `r` into field `field / 4` of the row (see [`encode`]).
#[inline(always)]
fn put_fixed<const N: usize>(buf: &mut [u8], place: &mut [usize], field: usize, r: u32, value: [u8; N]) {
    let p = &mut place[r as usize];
    if *p != 0 {
        let at = *p + field;
        let f = &mut buf[at..at + 4 + N];
        f[..4].copy_from_slice(&(N as i32).to_be_bytes());
        f[4..].copy_from_slice(&value);
        *p += N;
    }
}

/// Reading the format back, for tests here and elsewhere in the crate.
#[cfg(test)]
pub(crate) mod decode {
    /// The rows of a binary `COPY` stream: per row, each field's bytes (`None`: NULL).
    pub(crate) fn rows(stream: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
        assert_eq!(&stream[..super::COPY_SIGNATURE.len()], super::COPY_SIGNATURE);
        let mut at = super::COPY_SIGNATURE.len();
        let mut take = |n: usize| {
            let s = &stream[at..at + n];
            at += n;
            s
        };
        let mut out = Vec::new();
        loop {
            let count = i16::from_be_bytes(take(2).try_into().unwrap());
            if count == -1 {
                break;
            }
            let mut row = Vec::new();
            for _ in 0..count {
                let len = i32::from_be_bytes(take(4).try_into().unwrap());
                row.push((len >= 0).then(|| take(len as usize).to_vec()));
            }
            out.push(row);
        }
        assert_eq!(at, stream.len(), "nothing after the trailer");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::load::PgCell;
    use super::*;
    use crate::columns::StreamBatch;
    use crate::flatten::{flatten_into, CellRef, Layout, NameRules, StreamSpec, SystemCells};
    use bytes::BytesMut;
    use postgres::types::{IsNull, ToSql, Type};
    use seam_core::{RecordMessage, SchemaMessage};
    use serde_json::json;
    use std::sync::Arc;

    /// What the driver writes for `cell` in a `type` column (`None`: NULL).
    fn drivers(cell: CellRef<'_>, ty: &Type) -> Option<Vec<u8>> {
        let mut buf = BytesMut::new();
        match PgCell(cell).to_sql_checked(ty, &mut buf).unwrap() {
            IsNull::Yes => None,
            IsNull::No => Some(buf.to_vec()),
        }
    }

    /// Every table's rows come out as the driver encodes each cell, row after row with NULLs
    /// where a row has no value, whatever the chunk size (one row, a few rows, all), with rows
    /// replaced within the batch left out and no chunk holding more than one row past the size.
    #[test]
    fn rows_are_the_drivers_encoding_at_any_chunk_size() {
        let schema = SchemaMessage {
            stream: "tickets".into(),
            schema: serde_json::from_value(json!({"type": "object", "properties": {
                "id": {"type": "integer"},
                "price": {"type": ["null", "number"]},
                "open": {"type": ["null", "boolean"]},
                "at": {"type": ["null", "string"], "format": "date-time"},
                "note": {"type": ["null", "string"]},
                "tags": {"type": ["null", "array"], "items": {"type": "string"}},
                "via": {"type": ["null", "object"], "properties": {"channel": {"type": ["null", "string"]}}}
            }}))
            .unwrap(),
            key_properties: vec!["id".into()],
            bookmark_properties: None,
        };
        let spec = StreamSpec::new(&schema, false, &NameRules::POSTGRES);
        let long = "ü".repeat(3_000);
        let records = [
            json!({"id": 1, "price": 1.5, "open": true, "at": "2024-01-02T03:04:05.678901Z", "note": "héllo", "tags": ["a", ""]}),
            json!({"id": 2, "note": "", "via": {"channel": "web"}}),
            json!({"id": 3, "price": -0.0, "open": false, "note": long, "tags": []}),
            json!({"id": 1, "price": 2.5, "note": "replaces the first", "tags": ["b"]}),
            json!({"id": 4}),
            json!({"id": 5, "at": "0001-01-01T00:00:00Z", "price": 1e300, "tags": ["c", "d", "e"]}),
        ];
        let mut batch = StreamBatch::default();
        for (i, r) in records.iter().enumerate() {
            let rec = RecordMessage::from_value("tickets", r).unwrap();
            let sys = SystemCells {
                sequence: i as i64,
                batched_at: chrono::Utc::now(),
            };
            let done = flatten_into(&spec, &NameRules::POSTGRES, &rec, &sys, &mut batch).unwrap();
            batch.finish_record(done, i as i64, Some(rec.record.get()));
        }
        let id = ["id".to_owned()];
        let mut layout = Layout::default();
        batch.plan_ddl(&mut layout, &|_| &id[..], &[], &mut Vec::new());
        let mut seen = 0;
        for t in batch.tables() {
            let rows = batch.table_rows(t, &layout, &Arc::from([]));
            let types: Vec<Type> = rows
                .columns
                .iter()
                .map(|(_, ty)| super::super::load::pg_type(*ty))
                .collect();
            let mut expected = Vec::new();
            rows.for_each_row(|cells| {
                expected.push(
                    cells
                        .iter()
                        .zip(&types)
                        .map(|(c, ty)| drivers(*c, ty))
                        .collect::<Vec<_>>(),
                );
                Ok::<(), ()>(())
            })
            .unwrap();
            assert!(
                t.name.as_ref() != "tickets" || expected.len() == 5,
                "one row replaced"
            );
            let largest = expected
                .iter()
                .map(|r| {
                    2 + r
                        .iter()
                        .map(|f| 4 + f.as_ref().map_or(0, Vec::len))
                        .sum::<usize>()
                })
                .max()
                .unwrap();
            for chunk in [1, 40, 200, 1 << 20] {
                let mut chunks = Vec::new();
                encode(&rows, chunk, |c| {
                    chunks.push(c.to_vec());
                    Ok(())
                })
                .unwrap();
                let whole = chunks.concat();
                assert_eq!(
                    decode::rows(&whole),
                    expected,
                    "{} in {chunk}-byte chunks",
                    t.name
                );
                if chunk == 1 {
                    assert_eq!(chunks.len(), expected.len(), "a row per chunk");
                }
                let header = COPY_SIGNATURE.len() + 2;
                assert!(chunks.iter().all(|c| c.len() < chunk + largest + header));
            }
            seen += 1;
        }
        assert_eq!(seen, 2, "tickets and tickets__tags");
    }
}
