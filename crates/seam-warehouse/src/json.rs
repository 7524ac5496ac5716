//! A JSON tree that borrows from the text it was parsed from: what flattening walks instead of
//! `serde_json::Value`, which allocates a `String` for every key and every text value of every record.
//! Most records are flattened while they are parsed, with no tree at all (`flatten::streaming`); the
//! tree is for the ones that pass hands back, and for the few fields read before a record's key.
//!
//! It reads exactly what `serde_json` (with its `preserve_order` and `float_roundtrip` features, as
//! the workspace builds it) reads: the same numbers, the same text, object keys in document order,
//! and a key given twice keeps its first position and its last value. Written back
//! ([`serde::Serialize`]), it gives the same text `serde_json::to_string` gives for the `Value`.

pub(crate) mod read;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Number;
use std::borrow::Cow;
use std::fmt;

/// A JSON value; text is borrowed from the parsed string unless it had escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it.
    Number(Number),
    /// A string.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object: its fields in document order, each key once.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses `text`, borrowing from it.
    pub fn parse(text: &'a str) -> Result<Json<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a field of an object (`None` for a missing field or a non-object).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Objects up to this many fields look for a repeated key by a scan; larger ones by a set.
const SCAN_FIELDS: usize = 32;

/// A key's quick fingerprint (length, first and last byte): a scan compares the text only when two
/// fingerprints agree.
fn fingerprint(key: &str) -> u64 {
    let b = key.as_bytes();
    (b.len() as u64)
        | (u64::from(b.first().copied().unwrap_or(0)) << 32)
        | (u64::from(b.last().copied().unwrap_or(0)) << 40)
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json<'de>, E> {
        // serde_json never reads a non-finite number from text; refuse one rather than invent a value.
        Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut fields: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        let mut prints: Vec<u64> = Vec::new();
        let mut set: Option<std::collections::HashMap<Cow<'de, str>, usize, crate::flatten::FastHash>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: Json<'de> = map.next_value()?;
            let key = key.0;
            // A repeated key keeps its first position and takes the last value (serde_json's map).
            let earlier = match &mut set {
                Some(set) => set.get(&key).copied(),
                None => {
                    let print = fingerprint(&key);
                    let found = prints
                        .iter()
                        .zip(&fields)
                        .position(|(p, (k, _))| *p == print && *k == key);
                    prints.push(print);
                    found
                }
            };
            if let Some(i) = earlier {
                if set.is_none() {
                    prints.pop();
                }
                fields[i].1 = value;
                continue;
            }
            if let Some(set) = &mut set {
                set.insert(key.clone(), fields.len());
            } else if fields.len() == SCAN_FIELDS {
                let mut s: std::collections::HashMap<Cow<'de, str>, usize, crate::flatten::FastHash> = fields
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), i))
                    .collect();
                s.insert(key.clone(), fields.len());
                set = Some(s);
                prints = Vec::new();
            }
            fields.push((key, value));
        }
        Ok(Json::Object(fields))
    }
}

/// An object key, borrowed when it has no escapes.
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(t) => s.serialize_str(t),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(&**k, v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Reads `text` both ways and checks the trees agree (through their written form).
    fn same_as_serde(text: &str) {
        let ours = Json::parse(text).map(|j| serde_json::to_string(&j).unwrap());
        let theirs = serde_json::from_str::<Value>(text).map(|v| serde_json::to_string(&v).unwrap());
        match (ours, theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "for {text}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("for {text}: ours {a:?}, serde_json {b:?}"),
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"b": 1, "a": [1, 2.5, -0.0, 1e300, 18446744073709551615, -9223372036854775808]}"#,
            r#"{"esc": "tab\tquote\"uni\u00e9\ud83d\ude00", "k\"ey": null, "t": true, "f": false}"#,
            r#"{"dup": 1, "x": 2, "dup": 3}"#,
            r#"{"nested": {"dup": [1], "dup": {"a": {}}}, "e": [], "o": {}}"#,
            r#"[1, "two", {"three": 3}]"#,
            r#"{"big": 1e400}"#,
            r#"{"trailing": 1,}"#,
            r#"{"unterminated": "x}"#,
            "0.1",
            "\"lone\"",
        ] {
            same_as_serde(text);
        }
    }

    #[test]
    fn repeated_keys_keep_first_place_and_last_value_in_large_objects() {
        let mut fields: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
        fields.push("\"k3\": \"late\"".into());
        fields.push("\"k39\": null".into());
        let text = format!("{{{}}}", fields.join(", "));
        same_as_serde(&text);
        let j = Json::parse(&text).unwrap();
        assert_eq!(j.get("k3"), Some(&Json::String("late".into())));
        let Json::Object(f) = j else { panic!("an object") };
        assert_eq!(f.len(), 40);
        assert_eq!(f[3].0, "k3");
    }

    #[test]
    fn text_without_escapes_is_borrowed() {
        let j = Json::parse(r#"{"plain": "abc", "esc": "a\nb"}"#).unwrap();
        let Json::Object(f) = j else { panic!("an object") };
        assert!(matches!(f[0].0, Cow::Borrowed(_)));
        assert!(matches!(f[0].1, Json::String(Cow::Borrowed("abc"))));
        assert!(matches!(f[1].1, Json::String(Cow::Owned(_))));
    }

    /// Random JSON values: every kind of number, text with characters to escape (control ones
    /// too), objects with repeated and escaped keys, nested a few levels.
    pub(super) fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-100_000i64..100_000).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\"\\\\\t\n\r\u{8}\u{c}/\u{e9}\u{1f600}\u{1}\u{0}]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[ab\"\\\\é]{0,3}", inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_round_trips_like_serde_json(v in value()) {
            same_as_serde(&serde_json::to_string(&v).unwrap());
        }

        #[test]
        fn objects_with_repeated_keys_read_like_serde_json(keys in prop::collection::vec("[abc]{1,2}", 0..50)) {
            let body: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("\"{k}\": {i}")).collect();
            same_as_serde(&format!("{{{}}}", body.join(",")));
        }
    }
}
