//! The RECORD line's fast road: one pass that checks a line as JSON and reads its envelope.
//!
//! Read the general way, a RECORD line's record was checked twice before any of it was loaded:
//! serde_json scanned it to find where it ends (keeping it as a `RawValue`), and the loader parsed
//! it again to flatten it. With the envelope, that first reading was a fifth of `seam target
//! postgres`'s instructions (a 2k-ticket Zendesk stream, callgrind), serde_json's string scanning
//! most of it. This scanner does the same checks in one pass, for the lines it knows; every other
//! line goes the general way, whose message or error is the reference (a property test holds the
//! two to the same answers). It is cheaper than serde_json's skipping by about a third, not more:
//! both pay per token and per string, and a line of a Zendesk stream has ~150 of them in 1 KB. With
//! the reader's other two changes (line ends found with `memchr`, UTF-8 checked with vector
//! instructions), `seam target postgres` ran 1,468M → 1,338M instructions on that stream; on a
//! 20k-ticket stream (interleaved pairs timed from outside, 2026-12-05) it spent 0.93× the client CPU,
//! `seam target duckdb` 0.96×.

/// A RECORD line's parts, read by [`record_line`].
#[derive(Debug, PartialEq)]
pub(super) struct RecordLine<'a> {
    /// `stream`: a string without escapes.
    pub stream: &'a str,
    /// `record`'s text: an object, no whitespace around it.
    pub record: &'a str,
    /// `version`: absent, `null` or an integer `i64` holds.
    pub version: Option<i64>,
    /// `time_extracted`'s text: absent, `null` or a string without escapes.
    pub time_extracted: Option<&'a str>,
}

/// `line` as a RECORD message, when it is one JSON object that serde_json would read and this
/// scanner can tell: no byte below 0x20 anywhere (JSON refuses them in strings; between tokens a
/// tab or a CR is allowed, but Singer taps write spaces), no member name with an escape, `type` a
/// string that is `RECORD` in any case, `stream` and `record` present, each member the general
/// road reads (`type`, `stream`, `record`, `version`, `time_extracted`) at most once and of the
/// simple form [`RecordLine`] says, and none of the members only other messages have.
///
/// `Some` is a promise: the whole line is well-formed JSON, checked as serde_json checks a value it
/// skips (strings' escapes, numbers' grammar, literals, brackets and commas), and the general road
/// reads the same record from it. `None` promises nothing: read the line the general way.
pub(super) fn record_line(line: &str) -> Option<RecordLine<'_>> {
    let b = line.as_bytes();
    if has_control(b) {
        return None;
    }
    let mut s = Scanner { b, i: 0 };
    let (mut ty, mut stream, mut record, mut version, mut time) = (None, None, None, None, None);
    s.spaces();
    s.eat(b'{')?;
    s.spaces();
    loop {
        s.eat(b'"')?;
        let name = s.i;
        if s.string_rest()? {
            return None;
        }
        let name = b.get(name..s.i - 1)?;
        s.spaces();
        s.eat(b':')?;
        s.spaces();
        let start = s.i;
        s.value()?;
        let text = line.get(start..s.i)?;
        let slot = match name {
            b"type" => &mut ty,
            b"stream" => &mut stream,
            b"record" => &mut record,
            b"version" => &mut version,
            b"time_extracted" => &mut time,
            b"schema" | b"key_properties" | b"bookmark_properties" | b"value" => return None,
            _ => &mut None,
        };
        if slot.replace(text).is_some() {
            return None;
        }
        s.spaces();
        match s.next()? {
            b',' => s.spaces(),
            b'}' => break,
            _ => return None,
        }
    }
    s.spaces();
    if s.i != b.len() || !plain_string(ty?)?.eq_ignore_ascii_case("RECORD") {
        return None;
    }
    let record = record?;
    if !record.starts_with('{') {
        return None;
    }
    Some(RecordLine {
        stream: plain_string(stream?)?,
        record,
        version: match version {
            None | Some("null") => None,
            // serde_json reads `-0` as a float, which no `i64` takes.
            Some(n) if n.starts_with("-0") => return None,
            Some(n) => Some(n.parse().ok()?),
        },
        time_extracted: match time {
            None | Some("null") => None,
            Some(t) => Some(plain_string(t)?),
        },
    })
}

/// A JSON string's contents, when it is a string without escapes.
fn plain_string(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// How deep arrays and objects may nest in a record this scanner reads (deeper: the general way).
const MAX_DEPTH: u32 = 64;

/// Whether `b` holds a byte below 0x20, looked for 32 bytes at a time.
fn has_control(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(32);
    let any = |c: &[u8]| c.iter().fold(false, |found, &x| found | (x < 0x20));
    chunks.by_ref().any(any) || any(chunks.remainder())
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// Skips spaces: with no byte below 0x20 in the line, the only whitespace JSON has.
    #[inline(always)]
    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// One value, nested no deeper than [`MAX_DEPTH`]: a loop over the tokens with the open
    /// brackets kept as bits (1 for an object), not a call for each value.
    fn value(&mut self) -> Option<()> {
        let mut open: u64 = 0;
        let mut depth = 0;
        loop {
            match self.next()? {
                b'"' => {
                    self.string_rest()?;
                }
                c @ (b'{' | b'[') => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return None;
                    }
                    let object = c == b'{';
                    open = open << 1 | u64::from(object);
                    self.spaces();
                    if self.peek()? == if object { b'}' } else { b']' } {
                        self.i += 1;
                        depth -= 1;
                        open >>= 1;
                    } else {
                        if object {
                            self.name()?;
                        }
                        continue;
                    }
                }
                b't' => self.literal(b"rue")?,
                b'f' => self.literal(b"alse")?,
                b'n' => self.literal(b"ull")?,
                b'-' => self.number()?,
                b'0'..=b'9' => {
                    self.i -= 1;
                    self.number()?;
                }
                _ => return None,
            }
            // After a value: close what it ends, or go on to the next one.
            loop {
                if depth == 0 {
                    return Some(());
                }
                self.spaces();
                let object = open & 1 == 1;
                match self.next()? {
                    b',' => {
                        self.spaces();
                        if object {
                            self.name()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                depth -= 1;
                open >>= 1;
            }
        }
    }

    /// A member's name and its colon, up to its value.
    #[inline(always)]
    fn name(&mut self) -> Option<()> {
        self.eat(b'"')?;
        self.string_rest()?;
        self.spaces();
        self.eat(b':')?;
        self.spaces();
        Some(())
    }

    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.i + rest.len();
        (self.b.get(self.i..end)? == rest).then(|| self.i = end)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// A number after its sign: `0` or a digit string not starting with `0`, then an optional
    /// fraction and exponent, each with at least one digit (serde_json's grammar).
    fn number(&mut self) -> Option<()> {
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        // After `0`, another digit would be a second leading zero; the caller refuses it, as
        // anything but a comma, a bracket or a space after a value.
        Some(())
    }

    /// The rest of a string after its opening quote: escapes as JSON has them (serde_json, skipping
    /// a value, checks a `\u` escape's four hex digits, not what they stand for). The next quote
    /// or backslash is looked for eight bytes at a time (most strings are short names: `memchr2`
    /// costs more to set up than it saves on them). `Some(true)` when the string held an escape.
    #[inline(always)]
    fn string_rest(&mut self) -> Option<bool> {
        const ONES: u64 = u64::MAX / 255;
        const HIGH: u64 = ONES << 7;
        let mut escaped = false;
        loop {
            let mut rest = self.b.get(self.i..)?;
            while let Some((eight, tail)) = rest.split_first_chunk::<8>() {
                let x = u64::from_le_bytes(*eight);
                let quote = x ^ (ONES * u64::from(b'"'));
                let backslash = x ^ (ONES * u64::from(b'\\'));
                // A zero byte in either (Mycroft): its lowest is the first quote or backslash.
                let found =
                    (quote.wrapping_sub(ONES) & !quote | backslash.wrapping_sub(ONES) & !backslash) & HIGH;
                if found != 0 {
                    self.i += found.trailing_zeros() as usize / 8;
                    break;
                }
                self.i += 8;
                rest = tail;
            }
            match self.next()? {
                b'"' => return Some(escaped),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let end = self.i + 4;
                        if !self.b.get(self.i..end)?.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i = end;
                    }
                    _ => return None,
                },
                _ => continue,
            }
            escaped = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    /// The parts of a RECORD line.
    type Parts = (String, String, Option<i64>, Option<String>);

    /// What this scanner reads from `line`.
    fn scanned(line: &str) -> Option<Parts> {
        let r = record_line(line)?;
        let time = r.time_extracted.map(str::to_owned);
        Some((r.stream.to_owned(), r.record.to_owned(), r.version, time))
    }

    /// What serde_json reads from `line`, as the general road reads its envelope (a line with a
    /// record that is no object, or of another type, is not a RECORD line).
    fn by_serde(line: &str) -> Option<Parts> {
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            #[serde(rename = "type")]
            ty: String,
            stream: String,
            #[serde(borrow)]
            record: &'a RawValue,
            version: Option<i64>,
            time_extracted: Option<String>,
            // Read only so that serde_json checks their types, as the general road does.
            #[allow(dead_code)]
            schema: Option<&'a RawValue>,
            #[allow(dead_code)]
            key_properties: Option<Vec<String>>,
            #[allow(dead_code)]
            bookmark_properties: Option<Vec<String>>,
            #[allow(dead_code)]
            value: Option<&'a RawValue>,
        }
        let e: Envelope<'_> = serde_json::from_str(line).ok()?;
        let record = e.record.get();
        (e.ty.eq_ignore_ascii_case("RECORD") && record.starts_with('{'))
            .then(|| (e.stream, record.to_owned(), e.version, e.time_extracted))
    }

    #[test]
    fn reads_usual_lines() {
        for line in [
            r#"{"type":"RECORD","stream":"s","record":{"id":1,"a":[1,-2.5e3,true,null,"x\"y\\\u00e9"]},"version":3}"#,
            r#"{"type": "record", "stream": "s", "record": {"id": 1, "b": {"c": [{}, []]}}, "time_extracted": "2024-01-01T00:00:00Z"}"#,
            r#"  {"record":{},"version":null,"stream":"s","x":{"type":1},"time_extracted":null,"type":"Record"}  "#,
        ] {
            assert!(record_line(line).is_some(), "{line}");
            assert_eq!(scanned(line), by_serde(line), "{line}");
        }
    }

    #[test]
    fn leaves_lines_it_does_not_know_to_the_general_road() {
        let lines = [
            // Not a RECORD, a record that is not an object, members missing or twice.
            r#"{"type":"STATE","value":{}}"#,
            r#"{"type":"RECORD","stream":"s","record":[1]}"#,
            r#"{"type":"RECORD","record":{}}"#,
            r#"{"stream":"s","record":{}}"#,
            r#"{"type":"RECORD","stream":"s","record":{},"record":{}}"#,
            r#"{"type":"RECORD","stream":"s","stream":"s","record":{}}"#,
            // Members other messages have; a name, a stream or a time with an escape; a version
            // that is no integer `i64` holds.
            r#"{"type":"RECORD","stream":"s","record":{},"key_properties":[]}"#,
            r#"{"type":"RECORD","str\u0065am":"s","record":{}}"#,
            r#"{"type":"RECORD","stream":"s","record":{},"str\u0065am":"t"}"#,
            r#"{"type":"RECORD","stream":"\u0073","record":{}}"#,
            r#"{"type":"RECORD","stream":"s","record":{},"time_extracted":"\u0032"}"#,
            r#"{"type":"RECORD","stream":"s","record":{},"version":1.0}"#,
            r#"{"type":"RECORD","stream":"s","record":{},"version":99999999999999999999}"#,
            r#"{"type":"RECORD","stream":"s","record":{},"version":"3"}"#,
            r#"{"type":"RECORD","stream":"s","record":{},"version":-0}"#,
            // A tab between tokens (valid JSON, but not this scanner's), and in a string (not JSON).
            "{\"type\":\"RECORD\",\"stream\":\"s\",\t\"record\":{}}",
            "{\"type\":\"RECORD\",\"stream\":\"s\",\"record\":{\"a\":\"\t\"}}",
            // Not JSON.
            r#"{"type":"RECORD","stream":"s","record":{"a":01}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":1.}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":1e}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":-}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":"\x"}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":"\u12g4"}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":tru}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":1,}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":[1,]}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":[1}}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":{"b":1]}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":[,1]}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":{,"b":1}}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":{"b"}}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a" 1}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":1}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":1}} x"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":"unterminated}}"#,
            r#"{"type":"RECORD","stream":"s","record":{},}"#,
        ];
        for line in lines {
            assert_eq!(record_line(line), None, "{line}");
        }
        let deep = format!(
            r#"{{"type":"RECORD","stream":"s","record":{{"a":{}1{}}}}}"#,
            "[".repeat(80),
            "]".repeat(80)
        );
        assert!(by_serde(&deep).is_some());
        assert_eq!(record_line(&deep), None);
    }

    /// Bytes that make and break JSON, for lines built at random.
    fn json_piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\"",
            "\\",
            "\\\"",
            "\\u00e9",
            "\\u12",
            "\\n",
            "\\x",
            "\"record\"",
            "\"a\"",
            "\"é\"",
            "0",
            "1",
            "-",
            ".",
            "e",
            "E+",
            "01",
            "1.5",
            "-0",
            "true",
            "tru",
            "null",
            "false",
            "\t",
            "\u{1}",
            "x",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Whatever the line, `Some` only where serde_json reads it as a RECORD line, and then
        /// what serde_json reads.
        #[test]
        fn never_promises_what_serde_json_refuses(
            pieces in prop::collection::vec(json_piece(), 0..40),
        ) {
            let line = format!(r#"{{"type":"RECORD","stream":"s","record":{{{}}}}}"#, pieces.concat());
            if let Some(parts) = scanned(&line) {
                prop_assert_eq!(Some(parts), by_serde(&line), "{}", line);
            }
        }

        /// Records one edit away from well-formed (a byte that matters to JSON put in, taken out
        /// or in place of another): `Some` only where serde_json reads the line too, alike.
        #[test]
        fn near_misses_are_caught(
            record in any_object(),
            at in any::<prop::sample::Index>(),
            edit in 0..3u8,
            piece in json_piece(),
        ) {
            let line = format!(r#"{{"type":"RECORD","stream":"s","record":{record},"version":12}}"#);
            let mut line = line.into_bytes();
            let at = at.index(line.len());
            match edit {
                0 => { line.splice(at..at, piece.bytes()); }
                1 => { line.remove(at); }
                _ => { line.splice(at..at + 1, piece.bytes()); }
            }
            // Edits inside a multi-byte character are not lines at all.
            if let Ok(line) = String::from_utf8(line) {
                if let Some(parts) = scanned(&line) {
                    prop_assert_eq!(Some(parts), by_serde(&line), "{}", line);
                }
            }
        }

        /// Every object serde_json writes, and writes with spaces, is read on this road.
        #[test]
        fn reads_every_record_serde_json_writes(record in any_object()) {
            let compact = format!(r#"{{"type":"RECORD","stream":"s","record":{record}}}"#);
            let read = record_line(&compact).map(|r| r.record.to_owned());
            prop_assert_eq!(read, Some(record.to_string()));
            let pretty = serde_json::to_string_pretty(&record).unwrap_or_default().replace('\n', " ");
            let spaced = format!(r#"{{ "type" : "RECORD" , "stream" : "s" , "record" : {pretty} }}"#);
            let read = record_line(&spaced).map(|r| r.record);
            prop_assert_eq!(read, Some(pretty.as_str()));
        }
    }

    fn any_object() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        prop::collection::btree_map(any::<String>(), value, 0..6)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
    }
}
