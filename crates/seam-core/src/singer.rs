//! Singer messages with the Singer specification's exact wire format, and a streaming line codec.
//!
//! One JSON object per line. `type` is matched case-insensitively; message types seam does not know
//! are tolerated ([`Message::Unknown`]) as the spec requires. RECORD bodies are kept as raw JSON
//! ([`RawValue`]) so a tap can pass a record from an API page to stdout without re-encoding it, and a
//! target parses it only once, where it flattens it.

use crate::schema::Schema;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::io::{self, BufRead, Write};
use thiserror::Error;

mod scan;

/// A RECORD message.
#[derive(Debug, Clone)]
pub struct RecordMessage {
    /// The stream (table) the record belongs to.
    pub stream: String,
    /// The record: a JSON object, kept as raw text.
    pub record: Box<RawValue>,
    /// The table version this record belongs to (full-table streams).
    pub version: Option<i64>,
    /// When the record was extracted.
    pub time_extracted: Option<DateTime<Utc>>,
}

impl RecordMessage {
    /// Builds a record message from a JSON value.
    pub fn from_value(stream: impl Into<String>, record: &Value) -> Result<Self, serde_json::Error> {
        Ok(RecordMessage {
            stream: stream.into(),
            record: serde_json::value::to_raw_value(record)?,
            version: None,
            time_extracted: None,
        })
    }

    /// Parses the record body.
    pub fn value(&self) -> Result<serde_json::Map<String, Value>, serde_json::Error> {
        serde_json::from_str(self.record.get())
    }
}

/// A SCHEMA message.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaMessage {
    /// The stream the schema describes.
    pub stream: String,
    /// The JSON schema of the stream's records (an object at the top level).
    pub schema: Schema,
    /// Top-level properties forming the primary key; may be empty.
    pub key_properties: Vec<String>,
    /// Properties the tap bookmarks on, when it says.
    pub bookmark_properties: Option<Vec<String>>,
}

/// A Singer message.
#[derive(Debug, Clone)]
pub enum Message {
    /// RECORD.
    Record(RecordMessage),
    /// SCHEMA (boxed: schemas are large and rare, records small and many).
    Schema(Box<SchemaMessage>),
    /// STATE: the tap's bookmarks, to be persisted once every record before it is durable.
    State {
        /// The state value (tap-defined; seam's sources use [`crate::state::State`]).
        value: Value,
    },
    /// ACTIVATE_VERSION: rows of other versions of this stream may now be dropped.
    ActivateVersion {
        /// The stream.
        stream: String,
        /// The version that is now the table.
        version: i64,
    },
    /// A message type seam does not know; tolerated, passed over.
    Unknown {
        /// Its `type` as written.
        message_type: String,
    },
}

impl Message {
    /// The stream a message concerns, if any.
    pub fn stream(&self) -> Option<&str> {
        match self {
            Message::Record(r) => Some(&r.stream),
            Message::Schema(s) => Some(&s.stream),
            Message::ActivateVersion { stream, .. } => Some(stream),
            Message::State { .. } | Message::Unknown { .. } => None,
        }
    }

    /// Parses one line. Errors carry no line number; [`MessageReader`] adds it.
    pub fn parse(line: &str) -> Result<Message, MessageError> {
        if let Some(record) = Self::parse_record_line(line) {
            return Ok(record);
        }
        Self::from_wire(serde_json::from_str(line).map_err(MessageError::Json)?)
    }

    /// A RECORD line read on the fast road ([`scan`]), which checks the line and reads its envelope
    /// in one pass. `None` where that road does not lead to a record message; [`Message::parse`]
    /// then reads the line the general way, for its message or its error.
    fn parse_record_line(line: &str) -> Option<Message> {
        let parts = scan::record_line(line)?;
        let time_extracted = match parts.time_extracted {
            Some(t) => Some(parse_time(t).ok()?),
            None => None,
        };
        // SAFETY: `from_string_unchecked` asks for one well-formed JSON value with no whitespace
        // around it: `record_line` promises that of the record it returns, which it has checked as
        // serde_json checks a value it skips (and serde_json, in debug builds, so every test,
        // parses the text again and panics if it is not exactly one value).
        #[allow(unsafe_code)]
        let record = unsafe { RawValue::from_string_unchecked(parts.record.to_owned()) };
        Some(Message::Record(RecordMessage {
            stream: parts.stream.to_owned(),
            record,
            version: parts.version,
            time_extracted,
        }))
    }

    /// The message a line's envelope says.
    fn from_wire(raw: WireIn<'_>) -> Result<Message, MessageError> {
        let ty = raw.message_type.as_ref();
        let missing = |field: &'static str| MessageError::MissingField {
            message_type: ty.to_ascii_uppercase(),
            field,
        };
        if ty.eq_ignore_ascii_case("RECORD") {
            let record = raw.record.ok_or_else(|| missing("record"))?;
            if !record.get().trim_start().starts_with('{') {
                return Err(MessageError::RecordNotObject);
            }
            let time_extracted = match raw.time_extracted {
                Some(s) => Some(parse_time(&s).map_err(|_| MessageError::BadTimeExtracted(s.clone()))?),
                None => None,
            };
            Ok(Message::Record(RecordMessage {
                stream: raw.stream.ok_or_else(|| missing("stream"))?,
                record,
                version: raw.version,
                time_extracted,
            }))
        } else if ty.eq_ignore_ascii_case("SCHEMA") {
            let schema = raw.schema.ok_or_else(|| missing("schema"))?;
            let schema: Schema = serde_json::from_str(schema.get()).map_err(MessageError::Json)?;
            Ok(Message::Schema(Box::new(SchemaMessage {
                stream: raw.stream.ok_or_else(|| missing("stream"))?,
                schema,
                key_properties: raw.key_properties.ok_or_else(|| missing("key_properties"))?,
                bookmark_properties: raw.bookmark_properties,
            })))
        } else if ty.eq_ignore_ascii_case("STATE") {
            let value = raw.value.ok_or_else(|| missing("value"))?;
            Ok(Message::State {
                value: serde_json::from_str(value.get()).map_err(MessageError::Json)?,
            })
        } else if ty.eq_ignore_ascii_case("ACTIVATE_VERSION") {
            Ok(Message::ActivateVersion {
                stream: raw.stream.ok_or_else(|| missing("stream"))?,
                version: raw.version.ok_or_else(|| missing("version"))?,
            })
        } else {
            Ok(Message::Unknown {
                message_type: ty.to_owned(),
            })
        }
    }

    /// Writes the message as one line (with the trailing newline).
    pub fn write_line<W: Write>(&self, out: &mut W) -> io::Result<()> {
        match self {
            Message::Record(r) => {
                // Written by hand: the record is spliced in raw, never re-encoded.
                out.write_all(b"{\"type\":\"RECORD\",\"stream\":")?;
                serde_json::to_writer(&mut *out, &r.stream)?;
                out.write_all(b",\"record\":")?;
                write_raw_on_one_line(out, r.record.get())?;
                if let Some(v) = r.version {
                    write!(out, ",\"version\":{v}")?;
                }
                if let Some(t) = r.time_extracted {
                    write!(out, ",\"time_extracted\":\"{}\"", format_time(t))?;
                }
                out.write_all(b"}\n")
            }
            Message::Schema(s) => {
                let wire = SchemaOut {
                    message_type: "SCHEMA",
                    stream: &s.stream,
                    schema: &s.schema,
                    key_properties: &s.key_properties,
                    bookmark_properties: s.bookmark_properties.as_deref(),
                };
                serde_json::to_writer(&mut *out, &wire)?;
                out.write_all(b"\n")
            }
            Message::State { value } => {
                out.write_all(b"{\"type\":\"STATE\",\"value\":")?;
                serde_json::to_writer(&mut *out, value)?;
                out.write_all(b"}\n")
            }
            Message::ActivateVersion { stream, version } => {
                out.write_all(b"{\"type\":\"ACTIVATE_VERSION\",\"stream\":")?;
                serde_json::to_writer(&mut *out, stream)?;
                writeln!(out, ",\"version\":{version}}}")
            }
            // Nothing to say about a message we did not understand; it is not re-emitted.
            Message::Unknown { .. } => Ok(()),
        }
    }

    /// The message as a line of text without the newline.
    pub fn to_line(&self) -> String {
        let mut buf = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_line(&mut buf);
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Writes raw JSON text without line breaks: a pretty-printed API body passed through raw must not
/// split a message over several lines. In JSON, CR and LF can only be whitespace between tokens
/// (inside strings they are escaped), so spaces in their place keep the value.
///
/// The search for a line break is `memchr2` (many bytes at a time): a byte-by-byte search, over
/// every byte of every record, was 15% of `seam tap zendesk`'s instructions (2k tickets).
fn write_raw_on_one_line<W: Write>(out: &mut W, raw: &str) -> io::Result<()> {
    let bytes = raw.as_bytes();
    if memchr::memchr2(b'\n', b'\r', bytes).is_none() {
        return out.write_all(bytes);
    }
    let flat: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect();
    out.write_all(&flat)
}

/// Formats a time the way Singer taps do: RFC 3339, UTC, microseconds, `Z`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 time into UTC.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    if let Some(t) = parse_utc(s) {
        return Ok(t);
    }
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

/// `YYYY-MM-DDTHH:MM:SS[.f…]Z`, the form sources write their times in, read without chrono's
/// general parser (which costs several hundred instructions a time, and a loader reads every
/// timestamp of every record); `None` for anything else, which [`parse_time`] hands to chrono to
/// read or refuse. Its answers are chrono's (the test `utc_times_read_as_chrono_reads_them`).
fn parse_utc(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return None;
    }
    let digits = |d: &[u8]| -> Option<u32> {
        d.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let second = digits(&b[17..19])?;
    // A leap second (60) is chrono's to read.
    if second > 59 {
        return None;
    }
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', f @ ..] if (1..=9).contains(&f.len()) => digits(f)? * 10u32.pow(9 - f.len() as u32),
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(digits(&b[0..4])?).ok()?,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )?;
    let time = date.and_hms_nano_opt(digits(&b[11..13])?, digits(&b[14..16])?, second, nanos)?;
    Some(DateTime::from_naive_utc_and_offset(time, Utc))
}

#[derive(Deserialize)]
struct WireIn<'a> {
    #[serde(rename = "type", borrow)]
    message_type: std::borrow::Cow<'a, str>,
    stream: Option<String>,
    record: Option<Box<RawValue>>,
    schema: Option<Box<RawValue>>,
    key_properties: Option<Vec<String>>,
    bookmark_properties: Option<Vec<String>>,
    /// `"value": null` is a STATE with a null value (taps write it when they have no bookmarks yet),
    /// not a STATE without one.
    #[serde(default, deserialize_with = "present")]
    value: Option<Box<RawValue>>,
    version: Option<i64>,
    time_extracted: Option<String>,
}

/// A field that is present, `null` included (plain `Option` reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

#[derive(Serialize)]
struct SchemaOut<'a> {
    #[serde(rename = "type")]
    message_type: &'static str,
    stream: &'a str,
    schema: &'a Schema,
    key_properties: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    bookmark_properties: Option<&'a [String]>,
}

/// Why a line is not a valid Singer message.
#[derive(Debug, Error)]
pub enum MessageError {
    /// Not JSON, or not the shape of a message.
    #[error("not a valid Singer message: {0}")]
    Json(#[source] serde_json::Error),
    /// A required field is absent.
    #[error("{message_type} message has no {field:?}")]
    MissingField {
        /// The message type.
        message_type: String,
        /// The field.
        field: &'static str,
    },
    /// `record` is not a JSON object.
    #[error("RECORD message's \"record\" is not a JSON object")]
    RecordNotObject,
    /// `time_extracted` is not RFC 3339.
    #[error("time_extracted {0:?} is not an RFC 3339 time")]
    BadTimeExtracted(String),
}

/// An error reading a stream of messages, with the line it happened on.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The input could not be read.
    #[error("reading line {line}: {source}")]
    Io {
        /// 1-based line number.
        line: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A line is not a valid message.
    #[error("line {line}: {source}")]
    Malformed {
        /// 1-based line number.
        line: u64,
        /// The cause.
        #[source]
        source: MessageError,
    },
}

impl ReadError {
    /// The 1-based line number the error is about.
    pub fn line(&self) -> u64 {
        match self {
            ReadError::Io { line, .. } | ReadError::Malformed { line, .. } => *line,
        }
    }
}

/// The longest line (one message) a [`MessageReader`] or a tap's output is read to, in bytes: 64
/// MiB, above Stitch's own limit on a record (20 MB, "A single record is larger than the Stitch API
/// limit of 20 Mb"). A longer line fails the read rather than growing memory without bound.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Reads Singer messages one line at a time; never holds more than one line of input, and no line of
/// more than [`MAX_LINE_BYTES`] (an error says which line). Blank lines are skipped.
#[derive(Debug)]
pub struct MessageReader<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    max_line: usize,
}

impl<R: BufRead> MessageReader<R> {
    /// Reads from `input`.
    pub fn new(input: R) -> Self {
        MessageReader {
            input,
            line: 0,
            buf: Vec::new(),
            max_line: MAX_LINE_BYTES,
        }
    }

    /// The same, refusing lines of more than `max` bytes (their newline aside).
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.max_line = max;
        self
    }

    /// The number of the last line read (1-based).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The input it reads (e.g. to see what its buffer holds).
    pub fn get_ref(&self) -> &R {
        &self.input
    }

    /// The next message with the line number it came from, or `None` at the end of input.
    pub fn next_message(&mut self) -> Option<Result<(u64, Message), ReadError>> {
        loop {
            self.buf.clear();
            self.line += 1;
            match read_line(&mut self.input, &mut self.buf, self.max_line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    return Some(Err(ReadError::Io {
                        line: self.line,
                        source,
                    }))
                }
            }
            if let Some(read) = parse_line(&self.buf, self.line) {
                return Some(read);
            }
        }
    }
}

/// The message of line number `line` (its bytes, `\n` or not), as [`MessageReader`] reads it;
/// `None` for a blank line.
pub fn parse_line(bytes: &[u8], line: u64) -> Option<Result<(u64, Message), ReadError>> {
    // The vector check says only whether the line is UTF-8; the standard one, where not.
    let text = simdutf8::basic::from_utf8(bytes)
        .or_else(|_| std::str::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)));
    let text = match text {
        Ok(text) => text.trim(),
        Err(source) => return Some(Err(ReadError::Io { line, source })),
    };
    if text.is_empty() {
        return None;
    }
    Some(
        Message::parse(text)
            .map(|m| (line, m))
            .map_err(|source| ReadError::Malformed { line, source }),
    )
}

/// Appends the next line of `input` to `buf` (after what it holds), its `\n` included; the number
/// of bytes read, 0 at the end; an `InvalidData` error once the line holds more than `max` bytes
/// besides its `\n` or `\r\n`.
/// `BufRead::read_line` looks for the line's end with the standard library's portable search, a
/// word at a time (2.7% of `seam target postgres`'s instructions on a 2k-ticket stream, callgrind);
/// `memchr` uses the processor's vector instructions.
pub fn read_line<R: BufRead>(input: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let mut read = 0;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(read);
        }
        let (taken, done) = match memchr::memchr(b'\n', available) {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..taken]);
        input.consume(taken);
        read += taken;
        let ending = match (done, buf.ends_with(b"\r\n")) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        if read - ending > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the line is longer than {max} bytes, the most seam reads as one message (Stitch \
                     refuses a record of more than 20 MB)"
                ),
            ));
        }
        if done {
            return Ok(read);
        }
    }
}

impl<R: BufRead> Iterator for MessageReader<R> {
    type Item = Result<Message, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_message().map(|r| r.map(|(_, m)| m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;
    use serde_json::json;

    const SPEC_EXAMPLE: &str = r#"{"type":"SCHEMA","stream":"users","key_properties":["id"],"schema":{"required":["id"],"type":"object","properties":{"id":{"type":"integer"}}}}
{"type":"RECORD","stream":"users","record":{"id":1,"name":"Chris"}}

{"type":"STATE","value":{"users":2,"locations":1}}
"#;

    /// A line of more than the limit fails the read, naming the line, whatever the input's buffer;
    /// a line at the limit is read.
    #[test]
    fn a_line_longer_than_the_limit_fails_the_read_naming_it() {
        let record = |pad: usize| {
            let head = r#"{"type":"RECORD","stream":"s","record":{"id":1,"v":""#;
            let tail = r#""}}"#;
            format!("{head}{}{tail}", "x".repeat(pad - head.len() - tail.len()))
        };
        let input = format!("{}\n{}\r\n{}\n", record(60), record(100), record(101));
        for capacity in [7, 64, 4096] {
            let reader = std::io::BufReader::with_capacity(capacity, input.as_bytes());
            let mut reader = MessageReader::new(reader).with_max_line_bytes(100);
            assert_eq!(reader.next_message().unwrap().unwrap().0, 1);
            assert_eq!(
                reader.next_message().unwrap().unwrap().0,
                2,
                "a line at the limit"
            );
            let e = reader.next_message().unwrap().unwrap_err();
            assert_eq!(e.line(), 3, "{e}");
            let text = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(text.contains("longer than 100 bytes"), "{e}: {text}");
        }
        assert_eq!(MessageReader::new(&b""[..]).max_line, MAX_LINE_BYTES);
    }

    proptest::proptest! {
        /// Times in the form sources write (and near misses: other separators and offsets, out of
        /// range fields, long fractions, leap seconds) read as chrono reads them.
        #[test]
        fn utc_times_read_as_chrono_reads_them(
            s in "[0-9]{4}-[0-1][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,12})?(Z|z|\\+00:00|-05:30|)",
        ) {
            let chrono = DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc));
            proptest::prop_assert_eq!(parse_time(&s).ok(), chrono.as_ref().ok().copied(), "{}", s);
            if let Some(t) = parse_utc(&s) {
                proptest::prop_assert_eq!(Some(t), chrono.ok(), "{}", s);
            }
        }

        /// A line reads as the same message, or the same error, whichever road it takes: envelopes
        /// with and without what a RECORD needs, in any order, records well-formed or not.
        #[test]
        fn both_roads_read_a_line_alike(
            members in (
                proptest::sample::select(vec![
                    r#""type":"RECORD""#, r#""type": "record""#, r#""type":"STATE""#, r#""typ\u0065":"RECORD""#, "",
                ]),
                proptest::sample::select(vec![r#""stream":"s""#, r#""stream":5"#, r#""stream":"\u0073""#, ""]),
                proptest::sample::select(vec![r#""version":3"#, r#""version":"3""#, r#""version":null"#, r#""version":-0"#, ""]),
                proptest::sample::select(vec![
                    r#""time_extracted":"2024-01-02T03:04:05Z""#, r#""time_extracted":"soon""#,
                    r#""time_extracted":null"#, "",
                ]),
                proptest::sample::select(vec![
                    r#""value":{}"#, r#""extra":[1,{"a":null}]"#, r#""record":{"id":1}"#, r#""key_properties":[]"#,
                    r#""schema":5"#, r#""stream":"t""#, r#""str\u0065am":"t""#, "", "",
                ]),
            ).prop_map(|(a, b, c, d, e)| vec![a, b, c, d, e]).prop_shuffle(),
            record in r#"\{("id":(1|-0|01|1\.5e3|"x\\"y")(,"a":\[(true|null|\{\})?\])?)?\}? ?"#,
        ) {
            let mut parts: Vec<String> = members.iter().filter(|m| !m.is_empty()).map(|m| (*m).to_owned()).collect();
            parts.push(format!(r#""record":{record}"#));
            let line = format!("{{{}}}", parts.join(","));
            let general = serde_json::from_str(&line).map_err(MessageError::Json).and_then(Message::from_wire);
            proptest::prop_assert_eq!(
                format!("{:?}", Message::parse(&line)),
                format!("{general:?}"),
                "{}", line
            );
        }
    }

    /// The usual forms take the fast road, and read what chrono reads.
    #[test]
    fn usual_times_take_the_fast_road() {
        for s in [
            "2024-01-02T03:04:05Z",
            "2024-02-29T23:59:59.5Z",
            "1999-12-31T00:00:00.123456Z",
            "0001-01-01T00:00:00.000000001Z",
        ] {
            let chrono = DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
            assert_eq!(parse_utc(s), Some(chrono), "{s}");
        }
        for s in [
            "2023-02-29T00:00:00Z",
            "2024-01-02T24:00:00Z",
            "2024-01-02T03:04:60Z",
            "2024-01-02 03:04:05Z",
        ] {
            assert_eq!(parse_utc(s), None, "{s}");
        }
    }

    #[test]
    fn reads_the_spec_example() {
        let msgs: Vec<Message> = MessageReader::new(SPEC_EXAMPLE.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(msgs.len(), 3);
        let Message::Schema(s) = &msgs[0] else {
            panic!("schema first")
        };
        assert_eq!(s.stream, "users");
        assert_eq!(s.key_properties, vec!["id"]);
        let Message::Record(r) = &msgs[1] else {
            panic!("record second")
        };
        assert_eq!(r.value().unwrap()["name"], "Chris");
        let Message::State { value } = &msgs[2] else {
            panic!("state third")
        };
        assert_eq!(value, &json!({"users":2,"locations":1}));
    }

    #[test]
    fn type_is_case_insensitive_and_unknown_types_are_tolerated() {
        let m = Message::parse(r#"{"type":"record","stream":"s","record":{}}"#).unwrap();
        assert!(matches!(m, Message::Record(_)));
        let m = Message::parse(r#"{"type":"BATCH","stream":"s","filepath":"x"}"#).unwrap();
        assert!(matches!(m, Message::Unknown { message_type } if message_type == "BATCH"));
    }

    #[test]
    fn malformed_line_names_its_number() {
        let input = "{\"type\":\"STATE\",\"value\":{}}\n{\"type\":\"RECORD\",\"stream\":\"s\"\n";
        let mut r = MessageReader::new(input.as_bytes());
        assert!(r.next().unwrap().is_ok());
        let err = r.next().unwrap().unwrap_err();
        assert_eq!(err.line(), 2);
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let err = Message::parse(r#"{"type":"RECORD","stream":"s"}"#).unwrap_err();
        assert!(err.to_string().contains("\"record\""), "{err}");
        assert!(matches!(
            Message::parse(r#"{"type":"RECORD","stream":"s","record":[1]}"#),
            Err(MessageError::RecordNotObject)
        ));
    }

    #[test]
    fn writes_exact_wire_format_and_round_trips() {
        let mut rec = RecordMessage::from_value("tickets", &json!({"id": 1, "subject": "héllo 🎉"})).unwrap();
        rec.version = Some(7);
        rec.time_extracted = Some(parse_time("2017-11-20T16:45:33Z").unwrap());
        let line = Message::Record(rec).to_line();
        assert_eq!(
            line,
            r#"{"type":"RECORD","stream":"tickets","record":{"id":1,"subject":"héllo 🎉"},"version":7,"time_extracted":"2017-11-20T16:45:33.000000Z"}"#
        );
        let back = Message::parse(&line).unwrap();
        let Message::Record(r) = back else { panic!() };
        assert_eq!(r.version, Some(7));
        assert_eq!(r.value().unwrap()["subject"], "héllo 🎉");

        let av = Message::ActivateVersion {
            stream: "tags".into(),
            version: 3,
        };
        assert_eq!(
            av.to_line(),
            r#"{"type":"ACTIVATE_VERSION","stream":"tags","version":3}"#
        );
        let st = Message::State {
            value: json!({"bookmarks": {}}),
        };
        assert_eq!(st.to_line(), r#"{"type":"STATE","value":{"bookmarks":{}}}"#);
    }

    #[test]
    fn a_pretty_printed_raw_record_is_written_on_one_line() {
        // Line breaks of each kind, alone and together, first and last, and none at all.
        for raw in [
            "{\n  \"id\": 1,\r\n  \"note\": \"a\\nb\"\n}",
            "{\"id\": 1,\r\"note\": \"a\\nb\"}",
            "{\"id\": 1,\n\"note\": \"a\\nb\"}\r",
            "\r\n{\"id\": 1, \"note\": \"a\\nb\"}",
            "{\"id\": 1, \"note\": \"a\\nb\"}",
        ] {
            let rec = RecordMessage {
                stream: "s".into(),
                record: RawValue::from_string(raw.to_owned()).unwrap(),
                version: None,
                time_extracted: None,
            };
            let line = Message::Record(rec).to_line();
            assert!(!line.contains(['\n', '\r']), "{line:?}");
            let Message::Record(back) = Message::parse(&line).unwrap() else {
                panic!("a RECORD")
            };
            assert_eq!(back.value().unwrap()["note"], "a\nb", "{raw:?}");
            assert_eq!(back.value().unwrap()["id"], 1, "{raw:?}");
        }
    }

    #[test]
    fn a_null_state_value_is_a_state() {
        let m = Message::parse(r#"{"type":"STATE","value":null}"#).unwrap();
        assert!(matches!(m, Message::State { value: Value::Null }), "{m:?}");
        assert!(Message::parse(r#"{"type":"STATE"}"#).is_err());
    }

    #[test]
    fn numbers_keep_their_exact_value() {
        // The shortest text of a double reads back as that same double (serde_json's default
        // parser is one bit off for this one).
        let x = 2.404546821196881e-102_f64;
        let m = Message::parse(&format!(r#"{{"type":"STATE","value":{x}}}"#)).unwrap();
        let Message::State { value } = m else {
            panic!("a STATE")
        };
        assert_eq!(value.as_f64(), Some(x));
    }

    #[test]
    fn schema_message_round_trips() {
        let line = r#"{"type":"SCHEMA","stream":"tickets","schema":{"type":["null","object"],"properties":{"id":{"type":"integer"},"updated_at":{"type":["null","string"],"format":"date-time"}}},"key_properties":["id"],"bookmark_properties":["generated_timestamp"]}"#;
        let m = Message::parse(line).unwrap();
        assert_eq!(m.to_line(), line);
    }
}
