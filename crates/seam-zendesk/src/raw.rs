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

/// An object's members in order, values left raw. Keyed with foldhash rather than the standard
/// library's SipHash: every ticket event and every list item is parsed into one of these, and
/// hashing their keys with SipHash was 2.9% of `seam tap zendesk`'s instructions (2k tickets).
pub type Members<'a> = IndexMap<Key<'a>, &'a RawValue, foldhash::fast::RandomState>;

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
/// 2.6% for the one check of every body. Any other body is parsed as bytes, so it fails with
/// serde_json's own error as it always did.
pub fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_json::Error> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// Parses an object's members without parsing their values.
pub fn members(raw: &RawValue) -> Result<Members<'_>, serde_json::Error> {
    serde_json::from_str(raw.get())
}

/// Writes an object: `first` members, then `rest` (minus keys in `first` and in `drop`).
pub fn write_object(first: &[(&str, &str)], rest: &Members<'_>, drop: &[&str]) -> String {
    let mut out = String::with_capacity(rest.values().map(|v| v.get().len() + 16).sum::<usize>() + 64);
    out.push('{');
    let mut sep = false;
    for (k, v) in first {
        if sep {
            out.push(',');
        }
        sep = true;
        push_key(&mut out, k);
        out.push_str(v);
    }
    for (k, v) in rest {
        if drop.contains(&k.as_ref()) || first.iter().any(|(f, _)| *f == k.as_ref()) {
            continue;
        }
        if sep {
            out.push(',');
        }
        sep = true;
        push_key(&mut out, k);
        out.push_str(v.get());
    }
    out.push('}');
    out
}

fn push_key(out: &mut String, k: &str) {
    if k.bytes().all(|b| b != b'"' && b != b'\\' && b >= 0x20) {
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
    } else {
        out.push_str(&serde_json::Value::from(k).to_string());
        out.push(':');
    }
}

/// Keeps only the members named in `keep` (field selection).
pub fn select_fields(
    record: &RawValue,
    keep: &std::collections::HashSet<String>,
) -> Result<Box<RawValue>, serde_json::Error> {
    let m = members(record)?;
    let mut out = String::with_capacity(record.get().len());
    out.push('{');
    let mut sep = false;
    for (k, v) in &m {
        if !keep.contains(k.as_ref()) {
            continue;
        }
        if sep {
            out.push(',');
        }
        sep = true;
        push_key(&mut out, k);
        out.push_str(v.get());
    }
    out.push('}');
    RawValue::from_string(out)
}

/// A member value of a [`RawObject`]: raw JSON text, or a list of raw values.
#[derive(Debug)]
pub enum Piece<'a> {
    /// Written verbatim.
    Raw(&'a RawValue),
    /// Written as an array of verbatim values.
    List(&'a [Box<RawValue>]),
}

impl serde::Serialize for Piece<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Piece::Raw(r) => r.serialize(s),
            Piece::List(l) => l.serialize(s),
        }
    }
}

/// An object assembled from raw member values. [`RawObject::to_raw`] writes it out without parsing
/// the values again (serde_json writes raw values verbatim and trusts its own output), which keeps
/// large comment bodies from being scanned once more.
#[derive(Debug, Default)]
pub struct RawObject<'a>(pub Vec<(&'a str, Piece<'a>)>);

impl serde::Serialize for RawObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'a> RawObject<'a> {
    /// `first` members, then the members of `rest` not in `first` and not in `drop`.
    pub fn merged(first: &[(&'a str, &'a RawValue)], rest: &'a Members<'a>, drop: &[&str]) -> Self {
        let mut v: Vec<(&'a str, Piece<'a>)> = first.iter().map(|(k, r)| (*k, Piece::Raw(r))).collect();
        for (k, r) in rest {
            let k: &str = k.as_ref();
            if drop.contains(&k) || first.iter().any(|(f, _)| *f == k) {
                continue;
            }
            v.push((k, Piece::Raw(r)));
        }
        RawObject(v)
    }

    /// The object as one raw JSON value.
    pub fn to_raw(&self) -> Result<Box<RawValue>, serde_json::Error> {
        serde_json::value::to_raw_value(self)
    }
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_objects() {
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"id":5,"via":"Web form","body":"h\"i","odd\"key":1}"#).unwrap();
        let m = members(&raw).unwrap();
        let out = write_object(&[("ticket_id", "9"), ("id", "5")], &m, &["via"]);
        assert_eq!(out, r#"{"ticket_id":9,"id":5,"body":"h\"i","odd\"key":1}"#);
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
