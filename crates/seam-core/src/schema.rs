//! The subset of JSON Schema that Singer uses.
//!
//! `type` may be a single name or an array (`["null", "string"]`); `format: date-time` marks
//! timestamps; objects have `properties`, arrays `items`; `anyOf` offers alternatives; `$ref`s point at
//! `#/definitions/...` or at named shared schemas and are resolved before a schema is emitted (Singer
//! requires resolved schemas). Keywords seam does not interpret are kept verbatim in `extra`.

use indexmap::IndexMap;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use thiserror::Error;

/// A JSON type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JsonType {
    /// `null`
    Null,
    /// `boolean`
    Boolean,
    /// `integer`
    Integer,
    /// `number`
    Number,
    /// `string`
    String,
    /// `object`
    Object,
    /// `array`
    Array,
}

impl JsonType {
    /// The name as written in a schema.
    pub fn as_str(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Object => "object",
            JsonType::Array => "array",
        }
    }

    fn parse(s: &str) -> Option<JsonType> {
        Some(match s {
            "null" => JsonType::Null,
            "boolean" => JsonType::Boolean,
            "integer" => JsonType::Integer,
            "number" => JsonType::Number,
            "string" => JsonType::String,
            "object" => JsonType::Object,
            "array" => JsonType::Array,
            _ => return None,
        })
    }
}

/// The `type` keyword: one name or a list of names. Kept in the form it was written in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeSet {
    types: Vec<JsonType>,
    was_list: bool,
}

impl TypeSet {
    /// A single type.
    pub fn one(t: JsonType) -> Self {
        TypeSet {
            types: vec![t],
            was_list: false,
        }
    }

    /// A list of types, written as an array.
    pub fn of(types: &[JsonType]) -> Self {
        TypeSet {
            types: types.to_vec(),
            was_list: true,
        }
    }

    /// `[null, t]`.
    pub fn nullable(t: JsonType) -> Self {
        TypeSet::of(&[JsonType::Null, t])
    }

    /// The types, in the order written.
    pub fn types(&self) -> &[JsonType] {
        &self.types
    }

    /// True when no type was given (any value is allowed).
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// True when `t` is one of the types.
    pub fn contains(&self, t: JsonType) -> bool {
        self.types.contains(&t)
    }
}

impl Serialize for TypeSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.was_list && self.types.len() == 1 {
            s.serialize_str(self.types[0].as_str())
        } else {
            let names: Vec<&str> = self.types.iter().map(|t| t.as_str()).collect();
            names.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for TypeSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let parse =
            |s: &str| JsonType::parse(s).ok_or_else(|| de::Error::custom(format!("unknown JSON type {s:?}")));
        match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => Ok(TypeSet {
                types: vec![parse(&s)?],
                was_list: false,
            }),
            OneOrMany::Many(v) => Ok(TypeSet {
                types: v.iter().map(|s| parse(s)).collect::<Result<_, _>>()?,
                was_list: true,
            }),
        }
    }
}

/// An object schema's `properties`, in order. Looked up once per field of every record a loader
/// flattens, so hashed with foldhash rather than the standard library's SipHash.
pub type Properties = IndexMap<String, Schema, foldhash::fast::RandomState>;

/// A JSON schema (Singer subset).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Schema {
    /// `type`.
    #[serde(rename = "type", default, skip_serializing_if = "TypeSet::is_empty")]
    pub types: TypeSet,
    /// `format` (`date-time` is the one Singer cares about).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `properties` of an object, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Properties>,
    /// `items` of an array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<Schema>>,
    /// `anyOf` alternatives.
    #[serde(rename = "anyOf", default, skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<Schema>>,
    /// `$ref`, before resolution.
    #[serde(rename = "$ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Every other keyword, verbatim (`description`, `enum`, `additionalProperties`, `definitions`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a `$ref` could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaError {
    /// The reference names nothing known.
    #[error("unresolved $ref {0:?}")]
    UnresolvedRef(String),
    /// References refer to each other without end.
    #[error("$ref {0:?} refers to itself (directly or through others)")]
    Cycle(String),
    /// A definition is not a valid schema.
    #[error("definition {name:?} is not a valid schema: {message}")]
    BadDefinition {
        /// The reference.
        name: String,
        /// What was wrong.
        message: String,
    },
}

impl Schema {
    /// A schema of the given type set.
    pub fn of_type(types: TypeSet) -> Self {
        Schema {
            types,
            ..Schema::default()
        }
    }

    /// `{"type": ["null", t]}`.
    pub fn nullable(t: JsonType) -> Self {
        Schema::of_type(TypeSet::nullable(t))
    }

    /// `{"type": ["null", "string"], "format": "date-time"}`.
    pub fn nullable_date_time() -> Self {
        Schema {
            format: Some("date-time".into()),
            ..Schema::nullable(JsonType::String)
        }
    }

    /// A nullable object with the given properties.
    pub fn object(properties: impl IntoIterator<Item = (String, Schema)>) -> Self {
        Schema {
            properties: Some(properties.into_iter().collect()),
            ..Schema::nullable(JsonType::Object)
        }
    }

    /// A nullable array of `items`.
    pub fn array(items: Schema) -> Self {
        Schema {
            items: Some(Box::new(items)),
            ..Schema::nullable(JsonType::Array)
        }
    }

    /// True when `null` is allowed (explicitly, through `anyOf`, or because no type is given).
    pub fn is_nullable(&self) -> bool {
        if let Some(alts) = &self.any_of {
            return alts.iter().any(Schema::is_nullable);
        }
        self.types.is_empty() || self.types.contains(JsonType::Null)
    }

    /// True for `format: date-time` strings.
    pub fn is_date_time(&self) -> bool {
        self.format.as_deref() == Some("date-time")
    }

    /// The non-null types this schema allows, `anyOf` alternatives included, in order of appearance.
    pub fn non_null_types(&self) -> Vec<JsonType> {
        let mut out = Vec::new();
        self.collect_types(&mut out);
        out
    }

    /// True when this schema allows `t` (not null), `anyOf` alternatives included: what
    /// `non_null_types().contains(&t)` says, without building the list.
    pub fn allows(&self, t: JsonType) -> bool {
        (t != JsonType::Null && self.types.types().contains(&t))
            || self.any_of.iter().flatten().any(|alt| alt.allows(t))
    }

    fn collect_types(&self, out: &mut Vec<JsonType>) {
        for t in self.types.types() {
            if *t != JsonType::Null && !out.contains(t) {
                out.push(*t);
            }
        }
        for alt in self.any_of.iter().flatten() {
            alt.collect_types(out);
        }
    }

    /// A property of an object schema.
    pub fn property(&self, name: &str) -> Option<&Schema> {
        self.properties.as_ref()?.get(name)
    }

    /// Resolves every `$ref` in place: `#/definitions/NAME` against this schema's own `definitions`,
    /// any other reference against `shared` (e.g. `"shared/via.json"` → its schema). The `definitions`
    /// keyword is removed afterwards, so the result is self-contained as Singer requires.
    pub fn resolve_refs(&mut self, shared: &HashMap<String, Schema>) -> Result<(), SchemaError> {
        let mut defs: HashMap<String, Schema> = shared.clone();
        if let Some(Value::Object(map)) = self.extra.remove("definitions") {
            for (name, v) in map {
                let s: Schema = serde_json::from_value(v).map_err(|e| SchemaError::BadDefinition {
                    name: name.clone(),
                    message: e.to_string(),
                })?;
                defs.insert(format!("#/definitions/{name}"), s);
            }
        }
        let mut stack = Vec::new();
        self.resolve_with(&defs, &mut stack)
    }

    fn resolve_with(
        &mut self,
        defs: &HashMap<String, Schema>,
        stack: &mut Vec<String>,
    ) -> Result<(), SchemaError> {
        if let Some(r) = self.reference.take() {
            if stack.contains(&r) {
                return Err(SchemaError::Cycle(r));
            }
            let target = defs
                .get(&r)
                .ok_or_else(|| SchemaError::UnresolvedRef(r.clone()))?;
            let mut resolved = target.clone();
            stack.push(r);
            resolved.resolve_with(defs, stack)?;
            stack.pop();
            // Keywords written next to the $ref (e.g. a description) win over the target's.
            let own_extra = std::mem::take(&mut self.extra);
            *self = resolved;
            self.extra.extend(own_extra);
            return Ok(());
        }
        for p in self.properties.iter_mut().flat_map(|m| m.values_mut()) {
            p.resolve_with(defs, stack)?;
        }
        if let Some(items) = &mut self.items {
            items.resolve_with(defs, stack)?;
        }
        for alt in self.any_of.iter_mut().flatten() {
            alt.resolve_with(defs, stack)?;
        }
        Ok(())
    }

    /// True when no `$ref` remains anywhere in the schema.
    pub fn is_resolved(&self) -> bool {
        self.reference.is_none()
            && self
                .properties
                .iter()
                .flat_map(|m| m.values())
                .all(Schema::is_resolved)
            && self.items.as_ref().is_none_or(|i| i.is_resolved())
            && self.any_of.iter().flatten().all(Schema::is_resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_type_forms_and_keeps_them() {
        let s: Schema = serde_json::from_value(json!({"type": "integer"})).unwrap();
        assert_eq!(s.types.types(), &[JsonType::Integer]);
        assert!(!s.is_nullable());
        let s: Schema =
            serde_json::from_value(json!({"type": ["null", "string"], "format": "date-time"})).unwrap();
        assert!(s.is_nullable() && s.is_date_time());
        assert_eq!(s.non_null_types(), vec![JsonType::String]);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"type": ["null", "string"], "format": "date-time"})
        );
        assert!(serde_json::from_value::<Schema>(json!({"type": "strnig"})).is_err());
    }

    #[test]
    fn any_of_contributes_types() {
        let s: Schema = serde_json::from_value(
            json!({"anyOf": [{"type": "null"}, {"type": "integer"}, {"type": ["string"]}]}),
        )
        .unwrap();
        assert!(s.is_nullable());
        assert_eq!(s.non_null_types(), vec![JsonType::Integer, JsonType::String]);
        // `allows` answers what the list says, nested alternatives included, and never for null.
        let nested: Schema = serde_json::from_value(
            json!({"type": ["null", "boolean"], "anyOf": [{"anyOf": [{"type": ["null", "number"]}]}]}),
        )
        .unwrap();
        for schema in [&s, &nested] {
            for t in [
                JsonType::Null,
                JsonType::Boolean,
                JsonType::Integer,
                JsonType::Number,
                JsonType::String,
                JsonType::Object,
                JsonType::Array,
            ] {
                assert_eq!(schema.allows(t), schema.non_null_types().contains(&t), "{t:?}");
            }
        }
        assert!(nested.allows(JsonType::Number) && nested.allows(JsonType::Boolean));
        assert!(!nested.allows(JsonType::Null) && !nested.allows(JsonType::Integer));
    }

    #[test]
    fn keeps_unknown_keywords_and_property_order() {
        let v = json!({"type": "object", "description": "d", "properties": {"z": {"type": "string"}, "a": {"type": "integer", "minimum": 0}}});
        let s: Schema = serde_json::from_value(v.clone()).unwrap();
        let keys: Vec<&String> = s.properties.as_ref().unwrap().keys().collect();
        assert_eq!(keys, vec!["z", "a"]);
        assert_eq!(serde_json::to_value(&s).unwrap(), v);
    }

    #[test]
    fn resolves_local_and_shared_refs() {
        let mut s: Schema = serde_json::from_value(json!({
            "type": "object",
            "definitions": {"id": {"type": ["null", "integer"]}},
            "properties": {
                "id": {"$ref": "#/definitions/id"},
                "via": {"$ref": "shared/via.json", "description": "how"},
                "list": {"type": "array", "items": {"$ref": "#/definitions/id"}}
            }
        }))
        .unwrap();
        let via: Schema = serde_json::from_value(
            json!({"type": ["null", "object"], "properties": {"channel": {"type": ["null", "string"]}}}),
        )
        .unwrap();
        let shared = HashMap::from([("shared/via.json".to_string(), via)]);
        assert!(!s.is_resolved());
        s.resolve_refs(&shared).unwrap();
        assert!(s.is_resolved());
        assert!(!s.extra.contains_key("definitions"));
        assert_eq!(
            s.property("id").unwrap().non_null_types(),
            vec![JsonType::Integer]
        );
        let via = s.property("via").unwrap();
        assert!(via.property("channel").is_some());
        assert_eq!(via.extra["description"], "how");
    }

    #[test]
    fn unresolved_and_cyclic_refs_are_errors() {
        let mut s: Schema =
            serde_json::from_value(json!({"properties": {"x": {"$ref": "nope.json"}}})).unwrap();
        assert_eq!(
            s.resolve_refs(&HashMap::new()),
            Err(SchemaError::UnresolvedRef("nope.json".into()))
        );
        let mut s: Schema = serde_json::from_value(json!({
            "definitions": {"a": {"properties": {"b": {"$ref": "#/definitions/a"}}}},
            "properties": {"x": {"$ref": "#/definitions/a"}}
        }))
        .unwrap();
        assert!(matches!(
            s.resolve_refs(&HashMap::new()),
            Err(SchemaError::Cycle(_))
        ));
    }
}
