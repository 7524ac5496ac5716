//! Property tests for the Singer line codec (`MessageReader`, `Message::parse`, `Message::write_line`):
//! whatever a tap writes, the reader never panics and says which line is wrong; whatever seam writes
//! is one line that reads back as the same message.

use proptest::prelude::*;
use seam_core::singer::{parse_time, Message, MessageReader, ReadError, RecordMessage};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// What the reader should say about one line: the line's message or error, as comparable text.
#[derive(Debug, PartialEq)]
enum Seen {
    Message(u64, String),
    Malformed(u64, String),
    NotUtf8(u64),
}

/// `input` read through a buffer of `capacity` bytes (a line then comes in several reads of it).
fn seen_from_reader(input: &[u8], capacity: usize) -> Vec<Seen> {
    let mut reader = MessageReader::new(std::io::BufReader::with_capacity(capacity, input));
    let mut out = Vec::new();
    while let Some(item) = reader.next_message() {
        out.push(match item {
            Ok((line, m)) => Seen::Message(line, format!("{m:?}")),
            Err(e @ ReadError::Malformed { .. }) => {
                // The number the error reports is the one in its message.
                assert!(e.to_string().starts_with(&format!("line {}: ", e.line())), "{e}");
                Seen::Malformed(e.line(), e.to_string())
            }
            Err(e @ ReadError::Io { .. }) => {
                assert!(
                    e.to_string().starts_with(&format!("reading line {}: ", e.line())),
                    "{e}"
                );
                Seen::NotUtf8(e.line())
            }
        });
        assert!(out.len() <= input.len() + 1, "the reader does not end");
    }
    out
}

/// The reference: split at `\n` (a last line without one still counts), number from 1, skip lines
/// that are blank once trimmed, parse the rest; a line that is not UTF-8 is an I/O error on its number.
fn seen_by_model(input: &[u8]) -> Vec<Seen> {
    let mut lines: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut out = Vec::new();
    for (i, bytes) in lines.into_iter().enumerate() {
        let n = i as u64 + 1;
        let Ok(text) = std::str::from_utf8(bytes) else {
            out.push(Seen::NotUtf8(n));
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        out.push(match Message::parse(text) {
            Ok(m) => Seen::Message(n, format!("{m:?}")),
            Err(e) => Seen::Malformed(n, format!("line {n}: {e}")),
        });
    }
    out
}

/// Any JSON value, with strings that hold quotes, backslashes, control characters and newlines.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[\"\\\\\n\r\t\u{2028}\u{0}a-z]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((any::<String>(), arb_json()), 0..8).prop_map(|kv| kv.into_iter().collect())
}

/// A time with whole microseconds (what Singer's format carries), 1970..2100.
fn arb_time() -> impl Strategy<Value = chrono::DateTime<chrono::Utc>> {
    (0i64..4_102_444_800_000_000)
        .prop_map(|us| chrono::DateTime::from_timestamp_micros(us).expect("the range is within chrono's"))
}

/// A JSON schema of the kind taps send: an object of typed, possibly nullable, possibly nested properties.
fn arb_schema() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!({"type": "integer"})),
        Just(json!({"type": ["null", "string"]})),
        Just(json!({"type": ["null", "string"], "format": "date-time"})),
        Just(json!({"type": "number"})),
        Just(json!({"type": ["null", "boolean"]})),
        Just(json!({"type": "array", "items": {"type": "string"}})),
        Just(json!({"anyOf": [{"type": "string"}, {"type": "null"}]})),
    ];
    let prop = leaf.prop_recursive(2, 16, 4, |inner| {
        prop::collection::vec(("[a-z_]{1,6}", inner), 1..4).prop_map(|kv| {
            json!({"type": ["null", "object"],
                   "properties": kv.into_iter().collect::<Map<_, _>>()})
        })
    });
    prop::collection::vec(("[a-z_]{1,8}", prop), 0..6)
        .prop_map(|kv| json!({"type": "object", "properties": kv.into_iter().collect::<Map<_, _>>()}))
}

/// A line of a tap's output: valid messages of every type, near-misses, garbage, blanks.
fn arb_line() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        (any::<String>(), arb_object())
            .prop_map(|(s, r)| { json!({"type": "RECORD", "stream": s, "record": r}).to_string() }),
        arb_json().prop_map(|v| json!({"type": "STATE", "value": v}).to_string()),
        (any::<String>(), any::<i64>())
            .prop_map(|(s, v)| json!({"type": "ACTIVATE_VERSION", "stream": s, "version": v}).to_string()),
        ("[a-z]{1,6}", arb_schema()).prop_map(|(s, schema)| {
            json!({"type": "SCHEMA", "stream": s, "schema": schema, "key_properties": []}).to_string()
        }),
        "[A-Za-z_]{0,12}".prop_map(|t| json!({"type": t}).to_string()),
    ];
    let near_miss = prop_oneof![
        Just(r#"{"type":"RECORD","stream":"s"}"#.to_owned()),
        Just(r#"{"type":"RECORD","stream":"s","record":[1]}"#.to_owned()),
        Just(r#"{"type":"RECORD","stream":"s","record":{},"time_extracted":"yesterday"}"#.to_owned()),
        Just(r#"{"type":"SCHEMA","stream":"s","schema":{"type":"object"}}"#.to_owned()),
        Just(r#"{"type":"STATE"}"#.to_owned()),
        Just(r#"{"type":"ACTIVATE_VERSION","stream":"s","version":1.5}"#.to_owned()),
        Just(r#"{"stream":"s"}"#.to_owned()),
        Just("[]".to_owned()),
        Just(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))),
        Just(format!(
            r#"{{"type":"RECORD","stream":"s","record":{}1{}}}"#,
            r#"{"a":"#.repeat(5_000),
            "}".repeat(5_000)
        )),
    ];
    prop_oneof![
        4 => valid.prop_map(String::into_bytes),
        2 => near_miss.prop_map(String::into_bytes),
        1 => "[ \t\r]{0,3}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => valid_then_cut(),
    ]
}

/// A valid RECORD line cut short, or with a byte that is not UTF-8 in it.
fn valid_then_cut() -> impl Strategy<Value = Vec<u8>> {
    (arb_object(), any::<prop::sample::Index>(), any::<bool>()).prop_map(|(r, at, invalid)| {
        let mut line = json!({"type": "RECORD", "stream": "s", "record": r})
            .to_string()
            .into_bytes();
        let i = at.index(line.len());
        if invalid {
            line.insert(i, 0xff);
        } else {
            line.truncate(i);
        }
        line
    })
}

/// Lines joined with `\n` or `\r\n`, with or without a final newline.
fn arb_input() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((arb_line(), any::<bool>()), 0..12),
        any::<bool>(),
    )
        .prop_map(|(lines, final_newline)| {
            let mut out = Vec::new();
            let n = lines.len();
            for (i, (line, crlf)) in lines.into_iter().enumerate() {
                out.extend_from_slice(&line);
                if i + 1 < n || final_newline {
                    out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                }
            }
            out
        })
}

/// Writes a message and checks it is exactly one line; returns the line without its newline.
fn one_line(m: &Message) -> String {
    let mut buf = Vec::new();
    m.write_line(&mut buf).expect("writing to a Vec");
    let text = String::from_utf8(buf).expect("seam writes UTF-8");
    let body = text.strip_suffix('\n').expect("a message ends with a newline");
    assert!(
        !body.contains('\n') && !body.contains('\r'),
        "a message written over several lines: {body:?}"
    );
    body.to_owned()
}

fn reparse(line: &str) -> Message {
    let input = format!("{line}\n");
    let mut reader = MessageReader::new(input.as_bytes());
    match reader.next_message() {
        Some(Ok((1, m))) => {
            assert!(reader.next_message().is_none(), "one line, one message");
            m
        }
        other => panic!("{line:?} does not read back: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Arbitrary bytes: no panic, the reader ends, and every message and error sits on the right line.
    #[test]
    fn arbitrary_bytes_never_panic_and_lines_are_numbered_right(
        input in prop::collection::vec(any::<u8>(), 0..300),
        capacity in 1..40usize,
    ) {
        prop_assert_eq!(seen_from_reader(&input, capacity), seen_by_model(&input));
    }

    /// A tap's output of valid, broken and blank lines (CRLF too): each message or error names its
    /// line, whether a line comes in one read or in several.
    #[test]
    fn mixed_tap_output_is_read_line_by_line(input in arb_input(), capacity in 1..40usize) {
        let expected = seen_by_model(&input);
        prop_assert_eq!(&seen_from_reader(&input, 1 << 16), &expected);
        prop_assert_eq!(seen_from_reader(&input, capacity), expected);
    }

    /// Any text at all: `Message::parse` returns, never panics.
    #[test]
    fn parse_never_panics(text in any::<String>()) {
        let _ = Message::parse(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// RECORD: one line, and the same stream, record, version and time come back — also when the
    /// record's raw JSON was pretty-printed (taps pass API bodies through without re-encoding).
    #[test]
    fn records_round_trip_on_one_line(
        stream in any::<String>(),
        record in arb_object(),
        version in any::<Option<i64>>(),
        time in prop::option::of(arb_time()),
        pretty in any::<bool>(),
    ) {
        let value = Value::Object(record);
        let raw = if pretty {
            serde_json::to_string_pretty(&value).expect("a Value serialises")
        } else {
            value.to_string()
        };
        let message = Message::Record(RecordMessage {
            stream: stream.clone(),
            record: RawValue::from_string(raw).expect("valid JSON"),
            version,
            time_extracted: time,
        });
        let line = one_line(&message);
        let Message::Record(back) = reparse(&line) else { panic!("not a RECORD: {line}") };
        prop_assert_eq!(&back.stream, &stream);
        prop_assert_eq!(Value::Object(back.value().expect("an object")), value);
        prop_assert_eq!(back.version, version);
        prop_assert_eq!(back.time_extracted, time);
        // Writing what was read gives the same line.
        prop_assert_eq!(one_line(&Message::Record(back)), line);
    }

    /// STATE: any JSON value comes back equal.
    #[test]
    fn states_round_trip(value in arb_json()) {
        let line = one_line(&Message::State { value: value.clone() });
        let Message::State { value: back } = reparse(&line) else { panic!("not a STATE: {line}") };
        prop_assert_eq!(back, value);
    }

    /// ACTIVATE_VERSION: stream and version come back.
    #[test]
    fn activate_version_round_trips(stream in any::<String>(), version in any::<i64>()) {
        let line = one_line(&Message::ActivateVersion { stream: stream.clone(), version });
        let Message::ActivateVersion { stream: s, version: v } = reparse(&line) else {
            panic!("not an ACTIVATE_VERSION: {line}")
        };
        prop_assert_eq!((s, v), (stream, version));
    }

    /// SCHEMA: the message read back equals the one written, and writes the same line.
    #[test]
    fn schemas_round_trip(
        stream in "[a-z_]{1,12}",
        schema in arb_schema(),
        keys in prop::collection::vec("[a-z_]{1,6}", 0..3),
        bookmarks in prop::option::of(prop::collection::vec("[a-z_]{1,6}", 0..2)),
    ) {
        let mut wire = json!({"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": keys});
        if let Some(b) = &bookmarks {
            wire["bookmark_properties"] = json!(b);
        }
        let Message::Schema(first) = Message::parse(&wire.to_string()).expect("a valid SCHEMA") else {
            panic!("not a SCHEMA")
        };
        let line = one_line(&Message::Schema(first.clone()));
        let Message::Schema(back) = reparse(&line) else { panic!("not a SCHEMA: {line}") };
        prop_assert_eq!(&back, &first);
        prop_assert_eq!(one_line(&Message::Schema(back)), line);
    }
}

#[test]
fn time_extracted_with_nanoseconds_is_written_to_the_microsecond() {
    // Taps may send more digits than Singer's format keeps; one write settles the value.
    let line = r#"{"type":"RECORD","stream":"s","record":{},"time_extracted":"2024-01-02T03:04:05.123456789+02:00"}"#;
    let Message::Record(r) = Message::parse(line).unwrap() else {
        panic!("a RECORD")
    };
    let written = one_line(&Message::Record(r));
    assert!(
        written.ends_with(r#""time_extracted":"2024-01-02T01:04:05.123456Z"}"#),
        "{written}"
    );
    let Message::Record(again) = reparse(&written) else {
        panic!("a RECORD")
    };
    assert_eq!(
        again.time_extracted,
        Some(parse_time("2024-01-02T01:04:05.123456Z").unwrap())
    );
}
