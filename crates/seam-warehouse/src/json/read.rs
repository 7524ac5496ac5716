//! A reader of a record's JSON text for flattening while it is parsed: its tokens one by one
//! ([`Reader::token`], [`Reader::member`], [`Reader::key`], [`Reader::element`]), and, on top of
//! them, the calls `serde_json::Deserializer::from_str` makes on a visitor, for less work, or
//! [`Unread`].
//!
//! Flattening reads records already checked as JSON (a `RawValue`), so this reader does little
//! more than find each token: a string's end eight bytes at a time (unescaping it, when it has
//! escapes, as serde_json does), an integer of up to 18 digits read as it is scanned, literals by
//! their bytes, and a key the caller expects by comparing the text with it ([`Reader::key_is`]).
//! Any other number it hands to serde_json on the number's own text, so numbers come out as
//! serde_json gives them. Anything unusual (a byte below 0x20 in a string, a `\u0000`, a lone
//! surrogate, nesting past [`MAX_DEPTH`], text that is not JSON) stops it with [`Unread`], and
//! flattening then takes the parsed tree's road, where serde_json decides. The tests hold it to
//! serde_json's calls on random values, and to refusing what serde_json refuses.
//!
//! In place of serde_json's parser it took a 2k-ticket `seam sync` into PostgreSQL from 1,670M to
//! 1,607M instructions (flattening 798M → 734M) and `seam target postgres` from 1,338M to 1,274M
//! (callgrind): serde_json's own steps (its scratch buffer, its checks of text already checked,
//! its position keeping) were ~12% of flattening, strings with escapes unescaped by serde_json on
//! their own (a `String` each) cost more than they saved. Read token by token instead of through
//! serde's visitors, with expected keys compared in place, the stager's pass over a 2k-ticket
//! stream went from 758M to 691M instructions.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The reader stopped: the text is not one it reads the short way (see the module's doc).
#[derive(Debug)]
pub(crate) struct Unread;

impl fmt::Display for Unread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not read the short way")
    }
}

impl std::error::Error for Unread {}

impl de::Error for Unread {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Unread
    }
}

/// What [`Reader::token`] met: a scalar, or the start of an object or an array (entered: read
/// its members with [`Reader::key`], its elements with [`Reader::element`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Token<'de> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    /// A string without escapes, lent from the text.
    Borrowed(&'de str),
    /// A string with escapes: its text, unescaped, is [`Reader::unescaped`] until the next token.
    Unescaped,
    Object,
    Array,
}

/// Deepest nesting read (serde_json refuses from 128 levels); deeper text is left to the tree.
const MAX_DEPTH: u32 = 100;

const ONES: u64 = u64::MAX / 255;
const HIGH: u64 = ONES << 7;

/// Reads one JSON value from a text, borrowing strings without escapes from it.
pub(crate) struct Reader<'de> {
    text: &'de str,
    at: usize,
    depth: u32,
    /// A string's text once unescaped.
    scratch: String,
}

impl<'de> Reader<'de> {
    #[cfg(test)]
    pub(crate) fn new(text: &'de str) -> Self {
        Self::with_scratch(text, String::new())
    }

    /// A reader that unescapes strings into `scratch` (a buffer kept from an earlier reader).
    pub(crate) fn with_scratch(text: &'de str, scratch: String) -> Self {
        Reader {
            text,
            at: 0,
            depth: 0,
            scratch,
        }
    }

    /// The unescaping buffer, for the next reader.
    pub(crate) fn into_scratch(self) -> String {
        self.scratch
    }

    /// Checks that nothing but whitespace follows the value read.
    pub(crate) fn end(&mut self) -> Result<(), Unread> {
        self.spaces();
        if self.at == self.text.len() {
            Ok(())
        } else {
            Err(Unread)
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    #[inline(always)]
    fn spaces(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> Result<(), Unread> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(Unread)
        }
    }

    /// The string whose opening quote is next: where its text starts and ends (the quotes left
    /// out), and whether it holds an escape.
    #[inline(always)]
    fn string(&mut self) -> Result<(usize, usize, bool), Unread> {
        self.eat(b'"')?;
        let start = self.at;
        let bytes = self.text.as_bytes();
        let mut escaped = false;
        loop {
            let mut rest = bytes.get(self.at..).ok_or(Unread)?;
            while let Some((eight, tail)) = rest.split_first_chunk::<8>() {
                let x = u64::from_le_bytes(*eight);
                let quote = x ^ (ONES * u64::from(b'"'));
                let backslash = x ^ (ONES * u64::from(b'\\'));
                // A zero byte in `quote` or `backslash`, or a byte below 0x20 in `x` (Mycroft's
                // test): the lowest one found is the first such byte.
                let found = (quote.wrapping_sub(ONES) & !quote
                    | backslash.wrapping_sub(ONES) & !backslash
                    | x.wrapping_sub(ONES * 0x20) & !x)
                    & HIGH;
                if found != 0 {
                    self.at += found.trailing_zeros() as usize / 8;
                    break;
                }
                self.at += 8;
                rest = tail;
            }
            match bytes.get(self.at) {
                Some(b'"') => {
                    let end = self.at;
                    self.at += 1;
                    return Ok((start, end, escaped));
                }
                // The escaped character is skipped; `\u`'s four digits are ordinary bytes.
                Some(b'\\') => {
                    escaped = true;
                    self.at += 2;
                }
                Some(&c) if c >= 0x20 => self.at += 1,
                _ => return Err(Unread),
            }
        }
    }

    /// A string's token: lent from the text when it has no escape, else unescaped into the
    /// scratch buffer.
    #[inline(always)]
    fn string_token(&mut self, (start, end, escaped): (usize, usize, bool)) -> Result<Token<'de>, Unread> {
        let text = self.text.get(start..end).ok_or(Unread)?;
        if !escaped {
            return Ok(Token::Borrowed(text));
        }
        unescape(text, &mut self.scratch)?;
        Ok(Token::Unescaped)
    }

    /// A number: an integer of up to 18 digits read here, any other handed to serde_json (so it
    /// comes out as serde_json gives it).
    #[inline(always)]
    fn number(&mut self) -> Result<Token<'de>, Unread> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let negative = bytes.get(start) == Some(&b'-');
        let first = start + usize::from(negative);
        let mut at = first;
        let mut n: u64 = 0;
        while let Some(&c) = bytes.get(at) {
            if !c.is_ascii_digit() || at - first == 18 {
                break;
            }
            n = n * 10 + u64::from(c - b'0');
            at += 1;
        }
        let digits = at - first;
        let plain = digits > 0
            && !matches!(bytes.get(at), Some(b'.' | b'e' | b'E' | b'0'..=b'9'))
            && (digits == 1 || bytes.get(first) != Some(&b'0'))
            // serde_json reads `-0` as a float.
            && !(negative && n == 0);
        if plain {
            self.at = at;
            return Ok(match negative {
                // At most 18 digits: fits an i64 either way.
                true => Token::I64(-(n as i64)),
                false => Token::U64(n),
            });
        }
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = bytes.get(at) {
            at += 1;
        }
        let number: serde_json::Number =
            serde_json::from_str(self.text.get(start..at).ok_or(Unread)?).map_err(|_| Unread)?;
        self.at = at;
        Ok(if let Some(u) = number.as_u64() {
            Token::U64(u)
        } else if let Some(i) = number.as_i64() {
            Token::I64(i)
        } else {
            Token::F64(number.as_f64().ok_or(Unread)?)
        })
    }

    /// The next value's token. An object or an array is entered: its members or elements are
    /// read next, then [`Reader::close`].
    #[inline(always)]
    pub(crate) fn token(&mut self) -> Result<Token<'de>, Unread> {
        self.spaces();
        match self.peek() {
            Some(b'"') => {
                let s = self.string()?;
                self.string_token(s)
            }
            Some(b'{') => {
                self.enter()?;
                Ok(Token::Object)
            }
            Some(b'[') => {
                self.enter()?;
                Ok(Token::Array)
            }
            Some(b't') => {
                self.literal(b"true")?;
                Ok(Token::Bool(true))
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Ok(Token::Bool(false))
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Ok(Token::Null)
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Unread),
        }
    }

    /// The text of the last [`Token::Unescaped`].
    pub(crate) fn unescaped(&self) -> &str {
        &self.scratch
    }

    /// Moves to an entered object's next member (`first`: none read yet), its key to be read
    /// next ([`Reader::key_is`], [`Reader::key`]): `false` at the object's end.
    #[inline(always)]
    pub(crate) fn member(&mut self, first: bool) -> Result<bool, Unread> {
        self.spaces();
        match self.peek() {
            Some(b'}') => return Ok(false),
            Some(b',') if !first => {
                self.at += 1;
                self.spaces();
            }
            _ if first => {}
            _ => return Err(Unread),
        }
        Ok(true)
    }

    /// The member's key (its value to be read next); unescaped, its text is
    /// [`Reader::unescaped`].
    #[inline(always)]
    pub(crate) fn key(&mut self) -> Result<Token<'de>, Unread> {
        let s = self.string()?;
        let key = self.string_token(s)?;
        self.spaces();
        self.eat(b':')?;
        Ok(key)
    }

    /// Whether the member's key is `name` as the text writes it: one comparison in place of
    /// reading the key, for a `name` with no `"`, backslash or control character (the text
    /// escapes those, so such a name is never found here). When it is, the key is read (lent
    /// from the text) and the member's value is next; when not, nothing was read, and
    /// [`Reader::key`] reads the key.
    #[inline(always)]
    pub(crate) fn key_is(&mut self, name: &str) -> Result<Option<&'de str>, Unread> {
        let bytes = self.text.as_bytes();
        let (open, close) = (self.at, self.at + 1 + name.len());
        let key = self
            .text
            .get(open + 1..close)
            .filter(|key| same_bytes(key.as_bytes(), name.as_bytes()));
        let Some(key) = key.filter(|_| bytes.get(open) == Some(&b'"') && bytes.get(close) == Some(&b'"'))
        else {
            return Ok(None);
        };
        self.at = close + 1;
        self.spaces();
        self.eat(b':')?;
        Ok(Some(key))
    }

    /// Moves to an entered array's next element (`first`: none read yet), to be read next with
    /// [`Reader::token`]: `false` at the array's end.
    #[inline(always)]
    pub(crate) fn element(&mut self, first: bool) -> Result<bool, Unread> {
        self.spaces();
        match self.peek() {
            Some(b']') => return Ok(false),
            Some(b',') if !first => self.at += 1,
            _ if first => {}
            _ => return Err(Unread),
        }
        Ok(true)
    }

    /// Hands a token to `visitor` as serde_json's parser would (an object's or array's members
    /// read through it).
    #[inline(always)]
    fn visit<V: Visitor<'de>>(&mut self, token: Token<'de>, visitor: V) -> Result<V::Value, Unread> {
        match token {
            Token::Null => visitor.visit_unit(),
            Token::Bool(b) => visitor.visit_bool(b),
            Token::U64(u) => visitor.visit_u64(u),
            Token::I64(i) => visitor.visit_i64(i),
            Token::F64(f) => visitor.visit_f64(f),
            Token::Borrowed(s) => visitor.visit_borrowed_str(s),
            Token::Unescaped => visitor.visit_str(&self.scratch),
            Token::Object => {
                let value = visitor.visit_map(Members {
                    reader: &mut *self,
                    first: true,
                })?;
                self.close(b'}')?;
                Ok(value)
            }
            Token::Array => {
                let value = visitor.visit_seq(Elements {
                    reader: &mut *self,
                    first: true,
                })?;
                self.close(b']')?;
                Ok(value)
            }
        }
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Result<(), Unread> {
        let end = self.at + word.len();
        if self.text.as_bytes().get(self.at..end) == Some(word) {
            self.at = end;
            Ok(())
        } else {
            Err(Unread)
        }
    }

    /// Enters an object or an array (its opening bracket next).
    #[inline(always)]
    fn enter(&mut self) -> Result<(), Unread> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Unread);
        }
        self.at += 1;
        Ok(())
    }

    /// Leaves the entered object (`b'}'`) or array (`b']'`) whose members or elements were all
    /// read: its closing bracket must be next.
    #[inline(always)]
    pub(crate) fn close(&mut self, close: u8) -> Result<(), Unread> {
        self.spaces();
        self.eat(close)?;
        self.depth -= 1;
        Ok(())
    }
}

/// `a == b` for short texts (field names), compared in place eight bytes at a time (`==` on
/// slices calls `memcmp`, whose call costs more than comparing a name).
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        u64::from_ne_bytes(w)
    };
    let n = a.len();
    if n < 8 {
        if n >= 4 {
            let half = |s: &[u8], i: usize| -> u32 {
                let mut w = [0u8; 4];
                w.copy_from_slice(&s[i..i + 4]);
                u32::from_ne_bytes(w)
            };
            return half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4);
        }
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut i = 0;
    while i + 8 <= n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    // The last eight bytes (overlapping the words above when the length is not a multiple of 8).
    i == n || word(a, n - 8) == word(b, n - 8)
}

/// Writes the text of a string (between its quotes, escapes in it) into `out` unescaped, as
/// serde_json unescapes it: a `\u` escape of a surrogate must be one of a pair; `\u0000` stops
/// the reader (a NUL is refused, by the tree).
fn unescape(text: &str, out: &mut String) -> Result<(), Unread> {
    out.clear();
    // Unescaped, a text is never longer.
    out.reserve(text.len());
    let mut rest = text;
    while let Some(i) = backslash(rest.as_bytes()) {
        let (plain, escape) = rest.split_at_checked(i).ok_or(Unread)?;
        out.push_str(plain);
        let bytes = escape.as_bytes();
        let (c, used) = match bytes.get(1) {
            Some(b'"') => ('"', 2),
            Some(b'\\') => ('\\', 2),
            Some(b'/') => ('/', 2),
            Some(b'b') => ('\u{8}', 2),
            Some(b'f') => ('\u{c}', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(b'u') => {
                let high = hex4(bytes.get(2..6))?;
                match high {
                    0xD800..=0xDBFF => {
                        if bytes.get(6..8) != Some(b"\\u") {
                            return Err(Unread);
                        }
                        let low = hex4(bytes.get(8..12))?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(Unread);
                        }
                        let c = 0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                        (char::from_u32(c).ok_or(Unread)?, 12)
                    }
                    0xDC00..=0xDFFF => return Err(Unread),
                    // A NUL, which no warehouse stores: the tree refuses the record. So no text the
                    // reader hands over holds one (raw control characters stop it too).
                    0 => return Err(Unread),
                    _ => (char::from_u32(u32::from(high)).ok_or(Unread)?, 6),
                }
            }
            _ => return Err(Unread),
        };
        out.push(c);
        rest = escape.get(used..).ok_or(Unread)?;
    }
    out.push_str(rest);
    Ok(())
}

/// Where the first backslash in `bytes` is, looked for eight bytes at a time (the runs between
/// escapes are short: a search set up for each one costs more).
#[inline(always)]
fn backslash(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    let mut rest = bytes;
    while let Some((eight, tail)) = rest.split_first_chunk::<8>() {
        let x = u64::from_le_bytes(*eight) ^ (ONES * u64::from(b'\\'));
        let found = x.wrapping_sub(ONES) & !x & HIGH;
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
        rest = tail;
    }
    rest.iter().position(|&b| b == b'\\').map(|i| at + i)
}

/// Four hex digits.
fn hex4(digits: Option<&[u8]>) -> Result<u16, Unread> {
    let digits = digits.ok_or(Unread)?;
    let mut n: u16 = 0;
    for &d in digits {
        let v = (d as char).to_digit(16).ok_or(Unread)?;
        n = n * 16 + v as u16;
    }
    Ok(n)
}

impl<'de> Deserializer<'de> for &mut Reader<'de> {
    type Error = Unread;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unread> {
        let token = self.token()?;
        self.visit(token, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unread> {
        self.spaces();
        if self.peek() != Some(b'{') {
            return Err(Unread);
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unread> {
        self.spaces();
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct struct enum identifier ignored_any
    }
}

/// An object's members.
struct Members<'a, 'de> {
    reader: &'a mut Reader<'de>,
    first: bool,
}

impl<'de> MapAccess<'de> for Members<'_, 'de> {
    type Error = Unread;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Unread> {
        let r = &mut *self.reader;
        if !r.member(self.first)? {
            return Ok(None);
        }
        self.first = false;
        let key = seed.deserialize(KeyReader { reader: &mut *r })?;
        r.spaces();
        r.eat(b':')?;
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Unread> {
        seed.deserialize(&mut *self.reader)
    }
}

/// An array's elements.
struct Elements<'a, 'de> {
    reader: &'a mut Reader<'de>,
    first: bool,
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Unread;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Unread> {
        let r = &mut *self.reader;
        if !r.element(self.first)? {
            return Ok(None);
        }
        self.first = false;
        seed.deserialize(&mut *r).map(Some)
    }
}

/// An object's key: a string (whatever the visitor asks for, as serde_json's keys).
struct KeyReader<'a, 'de> {
    reader: &'a mut Reader<'de>,
}

impl<'de> Deserializer<'de> for KeyReader<'_, 'de> {
    type Error = Unread;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unread> {
        let s = self.reader.string()?;
        let token = self.reader.string_token(s)?;
        self.reader.visit(token, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::tests::value;
    use proptest::prelude::*;

    /// Every call a visitor gets, written down.
    #[derive(Debug, PartialEq)]
    enum Call {
        U64(u64),
        I64(i64),
        F64(u64),
        Bool(bool),
        Unit,
        Borrowed(String),
        Str(String),
        Map,
        Key,
        Seq,
        End,
    }

    struct Record<'a>(&'a mut Vec<Call>);

    impl<'de> DeserializeSeed<'de> for Record<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Record<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("anything")
        }
        fn visit_u64<E>(self, v: u64) -> Result<(), E> {
            self.0.push(Call::U64(v));
            Ok(())
        }
        fn visit_i64<E>(self, v: i64) -> Result<(), E> {
            self.0.push(Call::I64(v));
            Ok(())
        }
        fn visit_f64<E>(self, v: f64) -> Result<(), E> {
            self.0.push(Call::F64(v.to_bits()));
            Ok(())
        }
        fn visit_bool<E>(self, v: bool) -> Result<(), E> {
            self.0.push(Call::Bool(v));
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            self.0.push(Call::Unit);
            Ok(())
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
            self.0.push(Call::Borrowed(v.to_owned()));
            Ok(())
        }
        fn visit_str<E>(self, v: &str) -> Result<(), E> {
            self.0.push(Call::Str(v.to_owned()));
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.0.push(Call::Map);
            while map.next_key_seed(KeyRecord(&mut *self.0))?.is_some() {
                map.next_value_seed(Record(&mut *self.0))?;
            }
            self.0.push(Call::End);
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.0.push(Call::Seq);
            while seq.next_element_seed(Record(&mut *self.0))?.is_some() {}
            self.0.push(Call::End);
            Ok(())
        }
    }

    /// A key, read as flattening reads keys (`deserialize_str`).
    struct KeyRecord<'a>(&'a mut Vec<Call>);

    impl<'de> DeserializeSeed<'de> for KeyRecord<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            self.0.push(Call::Key);
            d.deserialize_str(Record(self.0))
        }
    }

    /// The calls each reader makes for `text`, or `None` where it stops.
    fn ours(text: &str) -> Option<Vec<Call>> {
        let mut calls = Vec::new();
        let mut r = Reader::new(text);
        Record(&mut calls).deserialize(&mut r).ok()?;
        r.end().ok()?;
        Some(calls)
    }

    fn theirs(text: &str) -> Option<Vec<Call>> {
        let mut calls = Vec::new();
        let mut d = serde_json::Deserializer::from_str(text);
        Record(&mut calls).deserialize(&mut d).ok()?;
        d.end().ok()?;
        Some(calls)
    }

    /// Where the reader reads, it reads as serde_json; where serde_json refuses, so does it.
    fn same(text: &str) -> bool {
        let ours = ours(text);
        let theirs = theirs(text);
        if theirs.is_none() {
            assert_eq!(ours, None, "read what serde_json refuses: {text:?}");
        }
        if let Some(ours) = &ours {
            assert_eq!(Some(ours), theirs.as_ref(), "for {text:?}");
        }
        ours.is_some()
    }

    #[test]
    fn reads_usual_records_the_short_way() {
        for text in [
            r#"{"id":1,"url":"https://x/1.json","via":{"channel":"web","source":{"from":{},"rel":null}},"tags":["a","b"],"n":-5,"t":true,"f":false,"z":null,"e":[],"o":{}}"#,
            r#" { "a" : [ 1 , 2 ] , "b" : { } } "#,
            "{\"x\":\"a\\nb \\u00e9\\ud83d\\ude00 \\\"q\\\"\",\"k\\\"ey\":1}",
            r#"{"all":"\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00\u0001","\u0061\/":"\/"}"#,
            r#"{"big":123456789012345678,"neg":-123456789012345678,"zero":0,"one":1}"#,
            r#"{"f":1.5,"e":1e3,"E":-2E-3,"huge":123456789012345678901234567890,"u":18446744073709551615,"i":-9223372036854775808,"m0":-0,"m0f":-0.0}"#,
            "[]",
            "\"lone\"",
            "12",
        ] {
            assert!(same(text), "left to the tree: {text}");
        }
    }

    #[test]
    fn stops_where_serde_json_refuses_or_where_it_does_not_read() {
        for text in [
            r#"{"a":1,}"#,
            r#"{"a":1 "b":2}"#,
            r#"[1,]"#,
            r#"[1 2]"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"x"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"nul\u{0}\"}",
            r#"{"a":"nul\u0000"}"#,
            r#"{"nul\u0000":1}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":1e400}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud83d"}"#,
            r#"{"a":"\ud83dx"}"#,
            r#"{"a":"\ud83d\u0041"}"#,
            r#"{"a":"\u00g1"}"#,
            r#"{"a":"\u00"}"#,
            r#"{"a":1}}"#,
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            r#"{1:2}"#,
            r#"{"a":[}"#,
            r#"{"a":-}"#,
            "",
        ] {
            same(text);
            assert_eq!(ours(text), None, "read {text:?}");
        }
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_DEPTH as usize + 1),
            "]".repeat(MAX_DEPTH as usize + 1)
        );
        assert_eq!(ours(&deep), None);
        let fits = format!(
            "{}{}",
            "[".repeat(MAX_DEPTH as usize),
            "]".repeat(MAX_DEPTH as usize)
        );
        assert!(same(&fits));
    }

    /// A key is found in the text only as the text writes it; otherwise nothing is read and the
    /// key is read as usual.
    #[test]
    fn keys_are_found_as_the_text_writes_them() {
        let mut r = Reader::new(r#"{"ab": 1, "\u0061b": 2, "a": 3}"#);
        assert_eq!(r.token().ok(), Some(Token::Object));
        assert!(r.member(true).unwrap());
        assert_eq!(r.key_is("a").unwrap(), None);
        assert_eq!(r.key_is("abc").unwrap(), None);
        assert_eq!(r.key_is("ab").unwrap(), Some("ab"));
        assert_eq!(r.token().ok(), Some(Token::U64(1)));
        assert!(r.member(false).unwrap());
        assert_eq!(r.key_is("ab").unwrap(), None);
        assert_eq!(r.key().ok(), Some(Token::Unescaped));
        assert_eq!(r.unescaped(), "ab");
        assert_eq!(r.token().ok(), Some(Token::U64(2)));
        assert!(r.member(false).unwrap());
        assert_eq!(r.key_is("a").unwrap(), Some("a"));
        assert_eq!(r.token().ok(), Some(Token::U64(3)));
        assert!(!r.member(false).unwrap());
        assert!(r.close(b'}').is_ok());
        assert!(r.end().is_ok());
    }

    /// JSON-breaking pieces, for text that is mostly not JSON.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "{", "}", "[", "]", ",", ":", " ", "\"", "\\", "\"a\"", "1", "-", "0", "01", ".5", "e3", "-0",
            "true", "nul", "null", "\u{0}", "\t", "\\u00e9", "\\ud83d", "\\udc00", "\\ude00", "\\b", "\\/",
            "\\f", "\\r", "\\x", "x",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Every value serde_json writes is read, compact or spaced, with serde_json's calls.
        #[test]
        fn reads_as_serde_json_reads(v in value()) {
            let compact = serde_json::to_string(&v).unwrap();
            // A NUL (`\u0000`) is the one thing left to the tree.
            prop_assert!(same(&compact) || compact.contains("\\u0000"), "left {} to the tree", compact);
            same(&serde_json::to_string_pretty(&v).unwrap());
        }

        /// On text that is mostly not JSON it never reads what serde_json refuses, nor reads
        /// otherwise.
        #[test]
        fn never_reads_otherwise(pieces in prop::collection::vec(piece(), 0..24)) {
            same(&pieces.concat());
        }

        /// Values one byte away from well-formed.
        #[test]
        fn near_misses_are_caught(v in value(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
            let mut text = serde_json::to_string(&v).unwrap().into_bytes();
            if !text.is_empty() {
                let i = at.index(text.len());
                text[i] = b;
            }
            if let Ok(text) = String::from_utf8(text) {
                same(&text);
            }
        }
    }
}
