//! Working on records as raw JSON text, so the hot path never builds a `serde_json::Value`.
//!
//! Pages are parsed once into borrowed [`RawValue`]s (or an object's [`Members`], each value raw);
//! the few fields seam needs (id, timestamps) are read into small structs; records are passed
//! through as text, or rebuilt from their members' raw values ([`RawObject`]) where a stream cuts
//! members out or adds its own.

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The fields of a record seam looks at. Everything else is skipped while scanning.
#[derive(Debug, Default, Deserialize)]
pub struct Head<'a> {
    /// `id`.
    #[serde(default)]
    pub id: Option<u64>,
    /// `name` (tags' key).
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    /// `updated_at`.
    #[serde(default, borrow)]
    pub updated_at: Option<Cow<'a, str>>,
    /// `created_at`.
    #[serde(default, borrow)]
    pub created_at: Option<Cow<'a, str>>,
    /// `deleted_at`.
    #[serde(default, borrow)]
    pub deleted_at: Option<Cow<'a, str>>,
    /// `time` (ticket metric events).
    #[serde(default, borrow)]
    pub time: Option<Cow<'a, str>>,
    /// `generated_timestamp` (tickets, unix seconds).
    #[serde(default)]
    pub generated_timestamp: Option<i64>,
    /// `status` (tickets: `deleted` marks a soft-deleted ticket).
    #[serde(default, borrow)]
    pub status: Option<Cow<'a, str>>,
}

impl Head<'_> {
    /// The named timestamp field as unix seconds, if present and parseable.
    pub fn epoch(&self, field: &str) -> Option<i64> {
        let s = match field {
            "updated_at" => self.updated_at.as_deref(),
            "created_at" => self.created_at.as_deref(),
            "deleted_at" => self.deleted_at.as_deref(),
            "time" => self.time.as_deref(),
            "generated_timestamp" => return self.generated_timestamp,
            _ => None,
        }?;
        parse_epoch(s)
    }
}

/// Parses an RFC 3339 time into unix seconds.
pub fn parse_epoch(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

/// Formats unix seconds the way Zendesk and tap-zendesk write times: `2024-01-01T00:00:00Z`.
pub fn iso(epoch: i64) -> String {
    DateTime::<Utc>::from_timestamp(epoch, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An object's members in the order its text gives them, values left raw. A name given twice keeps
/// its first place and takes its last value, as serde_json's own map does.
///
/// A list, looked up by comparing names: the objects parsed into these (every ticket event, a few per
/// audit, and each list page) have a handful of members, and an `IndexMap` (a hash table and its
/// growth for each, every name hashed) was ~7% of `seam tap zendesk`'s instructions (2k tickets).
/// Repeated names are looked for pair by pair in objects of up to [`Members::FEW`] members, with a
/// hash set in larger ones, so that no object costs more than its size.
#[derive(Debug, Default)]
pub struct Members<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// Up to this many members, repeated names are looked for pair by pair.
    const FEW: usize = 32;

    /// The value of the member named `name`.
    pub fn get(&self, name: &str) -> Option<&&'a RawValue> {
        self.0.iter().find(|(k, _)| &*k.0 == name).map(|(_, v)| v)
    }

    /// The members in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key<'a>, &&'a RawValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names in order.
    pub fn keys(&self) -> impl Iterator<Item = &Key<'a>> {
        self.0.iter().map(|(k, _)| k)
    }

    /// `members` as read, each name once: a repeated name keeps its first place and its last value.
    fn from_read(members: Vec<(Key<'a>, &'a RawValue)>) -> Self {
        let repeated = if members.len() <= Self::FEW {
            members
                .iter()
                .enumerate()
                .any(|(i, (k, _))| members[..i].iter().any(|(seen, _)| seen == k))
        } else {
            let mut seen = std::collections::HashSet::with_capacity_and_hasher(
                members.len(),
                foldhash::fast::RandomState::default(),
            );
            !members.iter().all(|(k, _)| seen.insert(&*k.0))
        };
        if !repeated {
            return Members(members);
        }
        let mut once: IndexMap<Key<'a>, &'a RawValue, foldhash::fast::RandomState> = IndexMap::default();
        for (k, v) in members {
            once.insert(k, v);
        }
        Members(once.into_iter().collect())
    }
}

impl<'b, 'a> IntoIterator for &'b Members<'a> {
    type Item = (&'b Key<'a>, &'b &'a RawValue);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'b, (Key<'a>, &'a RawValue)>,
        fn(&'b (Key<'a>, &'a RawValue)) -> (&'b Key<'a>, &'b &'a RawValue),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
                while let Some(member) = map.next_entry::<Key<'a>, &'a RawValue>()? {
                    members.push(member);
                }
                Ok(Members::from_read(members))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A JSON string — an object member's name, or a string value — borrowed from the JSON text, or
/// owned when the text escapes a character in it. (serde reads a `Cow<str>` map key as an owned
/// `String` whatever the text: one allocation per member of every object parsed.) Hashes and
/// compares as its `str`, so a [`Members`] is looked up by `&str`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key<'a>(pub Cow<'a, str>);

impl std::borrow::Borrow<str> for Key<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Key<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Key<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> serde::de::Visitor<'de> for Name {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Name).map(Key)
    }
}

/// Parses an API response body. A body that is UTF-8 (every Zendesk body) is checked once, whole,
/// and parsed as text; parsed as bytes instead, serde_json checks as UTF-8, one by one, each raw
/// value (every record) and each string it lends: 5.7% of `seam tap zendesk`'s instructions, against
/// 2.6% for the one check of every body (checked with vector instructions, `simdutf8`, a fraction
/// of that). Any other body is parsed as bytes, so it fails with serde_json's own error as it always
/// did.
pub fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_json::Error> {
    match simdutf8::basic::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// Parses an object's members without parsing their values.
pub fn members(raw: &RawValue) -> Result<Members<'_>, serde_json::Error> {
    serde_json::from_str(raw.get())
}

fn push_key(out: &mut String, k: &str) {
    if plain_key(k) {
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
    } else {
        out.push_str(&json_string(k));
        out.push(':');
    }
}

/// A name JSON writes between quotes as it is: no quote, backslash or control character (the only
/// characters serde_json escapes).
fn plain_key(k: &str) -> bool {
    // No early exit: the compiler checks many bytes at a time.
    !k.bytes().fold(false, |escape, b| {
        escape | (b == b'"') | (b == b'\\') | (b < 0x20)
    })
}

/// Keeps only the members named in `keep` (field selection).
pub fn select_fields(
    record: &RawValue,
    keep: &std::collections::HashSet<String>,
) -> Result<Box<RawValue>, serde_json::Error> {
    let m = members(record)?;
    let kept = m
        .iter()
        .filter(|(k, _)| keep.contains(k.as_ref()))
        .map(|(k, v)| (k.as_ref(), Piece::Raw(v)))
        .collect();
    Ok(RawObject(kept).to_raw())
}

/// A member value of a [`RawObject`]: raw JSON text, or a list of raw values.
#[derive(Debug)]
pub enum Piece<'a> {
    /// Written verbatim.
    Raw(&'a RawValue),
    /// Written as an array of verbatim values.
    List(&'a [Box<RawValue>]),
}

impl Piece<'_> {
    /// The length of the text [`Piece::push`] writes.
    fn len(&self) -> usize {
        match self {
            Piece::Raw(r) => r.get().len(),
            // `[`, the values, a comma between each two, `]`.
            Piece::List(l) => 2 + l.iter().map(|r| r.get().len()).sum::<usize>() + l.len().saturating_sub(1),
        }
    }

    /// Writes the value as serde_json writes it (compact).
    fn push(&self, out: &mut String) {
        match self {
            Piece::Raw(r) => out.push_str(r.get()),
            Piece::List(l) => {
                out.push('[');
                for (i, r) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(r.get());
                }
                out.push(']');
            }
        }
    }
}

/// An object assembled from raw member values. [`RawObject::to_raw`] writes it out without parsing
/// the values again, which keeps large comment bodies from being scanned once more.
#[derive(Debug, Default)]
pub struct RawObject<'a>(pub Vec<(&'a str, Piece<'a>)>);

impl<'a> RawObject<'a> {
    /// `first` members, then the members of `rest` not in `first` and not in `drop`.
    pub fn merged(first: &[(&'a str, &'a RawValue)], rest: &'a Members<'a>, drop: &[&str]) -> Self {
        let mut v: Vec<(&'a str, Piece<'a>)> = Vec::with_capacity(first.len() + rest.len());
        v.extend(first.iter().map(|(k, r)| (*k, Piece::Raw(r))));
        for (k, r) in rest {
            let k: &str = k.as_ref();
            if drop.contains(&k) || first.iter().any(|(f, _)| *f == k) {
                continue;
            }
            v.push((k, Piece::Raw(r)));
        }
        RawObject(v)
    }

    /// The object as one raw JSON value: the text serde_json writes for it (compact, names escaped
    /// as serde_json escapes them, values verbatim), in a string allocated once at its exact length.
    /// Through `serde_json::value::to_raw_value` the text grew from 128 bytes by doubling, each step
    /// a copy, and was shrunk to fit at the end: building records took 18% of `seam tap zendesk`'s
    /// instructions on a 2k-ticket account (7.7% of `seam sync`'s); now 11% (4.5%), most of it
    /// copying the values.
    pub fn to_raw(&self) -> Box<RawValue> {
        // `"name":` and the value for each member, a comma between each two, and the braces: the
        // exact length unless a name has characters to escape (then the string grows once more).
        let len = 2
            + self.0.iter().map(|(k, v)| k.len() + 3 + v.len()).sum::<usize>()
            + self.0.len().saturating_sub(1);
        let mut out = String::with_capacity(len);
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_key(&mut out, k);
            v.push(&mut out);
        }
        out.push('}');
        // SAFETY: `from_string_unchecked` asks for one well-formed JSON value with no whitespace
        // around it. `out` is an object: braces around members separated by commas, each a name
        // written by `push_key` (a JSON string: quoted, escaped by serde_json where needed) and a
        // colon, then a value made only of `RawValue`s (each one well-formed JSON value, by that
        // type's own invariant) alone or as a bracketed, comma-separated list. Debug builds (every
        // test) have serde_json parse each such string and panic if it is not exactly one value.
        #[allow(unsafe_code)]
        unsafe {
            RawValue::from_string_unchecked(out)
        }
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The same object written by serde_json itself: what `to_raw` wrote before it sized its text.
    struct BySerde<'a>(&'a RawObject<'a>);

    impl serde::Serialize for BySerde<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(self.0 .0.len()))?;
            for (k, v) in &self.0 .0 {
                match v {
                    Piece::Raw(r) => m.serialize_entry(k, r)?,
                    Piece::List(l) => m.serialize_entry(k, l)?,
                }
            }
            m.end()
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::vec(("\\PC{0,6}", inner), 0..4)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// A record is written exactly as serde_json writes the same members: names with quotes,
        /// backslashes, control and non-ASCII characters, repeated names, raw values of every kind,
        /// and lists empty, of one and of several values; and the text is one JSON value.
        #[test]
        fn records_are_written_as_serde_json_writes_them(
            members in prop::collection::vec(
                (
                    prop_oneof!["[a-z_]{0,12}", "\\PC{0,8}", "[\"\\\\\u{0}-\u{1f}a]{1,4}"],
                    prop::collection::vec(json_value(), 0..4),
                    any::<bool>(),
                ),
                0..8,
            )
        ) {
            let values: Vec<Vec<Box<RawValue>>> = members
                .iter()
                .map(|(_, vs, _)| vs.iter().map(|v| serde_json::value::to_raw_value(v).unwrap()).collect())
                .collect();
            let null = RawValue::NULL;
            let object = RawObject(
                members
                    .iter()
                    .zip(&values)
                    .map(|((k, _, list), vs)| {
                        let piece = if *list {
                            Piece::List(vs)
                        } else {
                            Piece::Raw(vs.first().map_or(null, |v| &**v))
                        };
                        (k.as_str(), piece)
                    })
                    .collect(),
            );
            let ours = object.to_raw();
            prop_assert_eq!(ours.get(), serde_json::to_string(&BySerde(&object)).unwrap());
            let back: Box<RawValue> = serde_json::from_str(ours.get()).unwrap();
            prop_assert_eq!(back.get(), ours.get());
        }
    }

    #[test]
    fn rebuilds_objects() {
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"id":5,"via":"Web form","body":"h\"i","odd\"key":1}"#).unwrap();
        let m = members(&raw).unwrap();
        let (nine, five) = (
            RawValue::from_string("9".into()).unwrap(),
            RawValue::from_string("5".into()).unwrap(),
        );
        let out = RawObject::merged(&[("ticket_id", &*nine), ("id", &*five)], &m, &["via"]).to_raw();
        assert_eq!(out.get(), r#"{"ticket_id":9,"id":5,"body":"h\"i","odd\"key":1}"#);
        let keep = ["id".to_string()].into_iter().collect();
        assert_eq!(select_fields(&raw, &keep).unwrap().get(), r#"{"id":5}"#);
    }

    #[test]
    fn member_names_borrow_from_the_text_unless_escaped() {
        let text = r#"{"plain":1,"esc\u0061ped":2,"quo\"te":3,"plain":4}"#;
        let m: Members = parse_body(text.as_bytes()).unwrap();
        let names: Vec<(&str, bool)> = m
            .keys()
            .map(|k| (k.as_ref(), matches!(k.0, Cow::Borrowed(_))))
            .collect();
        // A repeated name keeps its first place and takes the last value, as before.
        assert_eq!(names, [("plain", true), ("escaped", false), ("quo\"te", false)]);
        assert_eq!(m.get("plain").map(|v| v.get()), Some("4"));
        assert_eq!(m.get("escaped").map(|v| v.get()), Some("2"));
        assert_eq!(m.get("quo\"te").map(|v| v.get()), Some("3"));
        assert!(m.get("esc\\u0061ped").is_none());
        // The same members from bytes (serde_json's own road) and through `members`.
        let from_bytes: Members = serde_json::from_slice(text.as_bytes()).unwrap();
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        for other in [from_bytes, members(&raw).unwrap()] {
            let a: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
            let b: Vec<(&str, &str)> = other.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
            assert_eq!(a, b);
        }
        assert!(parse_body::<Members>(br#"{"a":1,2:3}"#).is_err());
        assert!(parse_body::<Members>(br#"[1]"#).is_err());
    }

    proptest! {
        /// Objects of any size, names repeated or not, read as serde_json reads them into its own
        /// map: each name once, in its first place, with its last value.
        #[test]
        fn members_read_as_serde_json_reads_an_object(
            names in prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "id", "é", "q\"", "x1", "x2"]), 0..80),
            spread in prop::collection::vec(0..200u32, 80),
        ) {
            // Names drawn from a few (many repeats) or made distinct with a number (none).
            let names: Vec<String> = names
                .iter()
                .zip(&spread)
                .map(|(n, k)| if k % 3 == 0 { (*n).to_owned() } else { format!("{n}{k}") })
                .collect();
            let text = format!(
                "{{{}}}",
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("{}:{i}", serde_json::Value::from(n.as_str())))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let ours: Members = parse_body(text.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let theirs: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let ours: Vec<(String, String)> = ours.iter().map(|(k, v)| (k.to_string(), v.get().to_owned())).collect();
            let theirs: Vec<(String, String)> = theirs.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
            prop_assert_eq!(ours, theirs, "{}", text);
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_fails_as_serde_json_fails_it() {
        let body = b"{\"a\":\"\xff\"}";
        let ours = parse_body::<Members>(body).unwrap_err().to_string();
        let theirs = serde_json::from_slice::<Members>(body).unwrap_err().to_string();
        assert_eq!(ours, theirs);
        // Valid UTF-8 parses the same either way.
        let good = "{\"a\":\"é\",\"b\":[1,{\"c\":null}]}".as_bytes();
        let ours: serde_json::Value = parse_body(good).unwrap();
        let theirs: serde_json::Value = serde_json::from_slice(good).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn times() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_epoch("2024-01-01T00:00:00Z"), Some(1_704_067_200));
        assert_eq!(parse_epoch("2024-01-01T01:00:00+01:00"), Some(1_704_067_200));
    }
}
