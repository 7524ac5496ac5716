//! What a connector declares about itself: its type, the name users see, and its settings, with the
//! secret ones marked. The service validates an integration's settings against it without IO, lists
//! it (`GET /v4/source-types`, as JSON Schema), and seals the secret settings apart from the others.
//!
//! Contract: a spec is plain data plus an optional [`ConnectorSpec::rules`] function for what one
//! property cannot say alone (formats, "this one or that pair"). Validation never does IO; a failure
//! is one message that names the property and says what to enter.

use serde_json::{json, Map, Value};

/// The JSON type of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    /// A string.
    String,
    /// An integer.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A number.
    Number,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
}

impl PropertyType {
    fn json_name(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Integer => "integer",
            PropertyType::Boolean => "boolean",
            PropertyType::Number => "number",
            PropertyType::Array => "array",
            PropertyType::Object => "object",
        }
    }

    fn admits(self, v: &Value) -> bool {
        match self {
            PropertyType::String => v.is_string(),
            PropertyType::Integer => v.is_i64() || v.is_u64(),
            PropertyType::Boolean => v.is_boolean(),
            PropertyType::Number => v.is_number(),
            PropertyType::Array => v.is_array(),
            PropertyType::Object => v.is_object(),
        }
    }

    /// The type a JSON Schema `type` names (the first non-null one of a list).
    pub fn from_json_schema(t: &Value) -> Option<PropertyType> {
        let name = match t {
            Value::String(s) => s.as_str(),
            Value::Array(list) => list.iter().filter_map(Value::as_str).find(|s| *s != "null")?,
            _ => return None,
        };
        Some(match name {
            "string" => PropertyType::String,
            "integer" => PropertyType::Integer,
            "boolean" => PropertyType::Boolean,
            "number" => PropertyType::Number,
            "array" => PropertyType::Array,
            "object" => PropertyType::Object,
            _ => return None,
        })
    }
}

/// One setting of a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertySpec {
    /// Its key in `properties`.
    pub name: String,
    /// The form's label.
    pub title: String,
    /// What to enter, in the user's words (ends the "is required" message).
    pub description: String,
    /// Its JSON type.
    pub kind: PropertyType,
    /// Every integration of the connector must have it.
    pub required: bool,
    /// A secret: sealed with the credentials, never sent back (JSON Schema's `writeOnly`).
    pub secret: bool,
    /// Changing it points the integration at another account (Zendesk's `subdomain`): the rows
    /// already loaded belong to the old one, so a change resets every bookmark, with the caller's
    /// confirmation.
    pub identity: bool,
}

impl PropertySpec {
    /// An optional, non-secret string setting.
    pub fn string(name: &str, title: &str, description: &str) -> PropertySpec {
        PropertySpec {
            name: name.to_owned(),
            title: title.to_owned(),
            description: description.to_owned(),
            kind: PropertyType::String,
            required: false,
            secret: false,
            identity: false,
        }
    }

    /// The same setting, required.
    pub fn required(mut self) -> PropertySpec {
        self.required = true;
        self
    }

    /// The same setting, secret.
    pub fn secret(mut self) -> PropertySpec {
        self.secret = true;
        self
    }

    /// The same setting, naming the account (see [`PropertySpec::identity`]).
    pub fn identity(mut self) -> PropertySpec {
        self.identity = true;
        self
    }

    /// The same setting, of type `kind`.
    pub fn of_type(mut self, kind: PropertyType) -> PropertySpec {
        self.kind = kind;
        self
    }

    /// Checks one value against the setting's type; `null` is always accepted (it unsets).
    pub fn check(&self, v: &Value) -> Result<(), String> {
        if v.is_null() || self.kind.admits(v) {
            Ok(())
        } else {
            Err(format!(
                "{} must be a{} {} or null, not {v}",
                self.name,
                if matches!(
                    self.kind,
                    PropertyType::Integer | PropertyType::Array | PropertyType::Object
                ) {
                    "n"
                } else {
                    ""
                },
                self.kind.json_name()
            ))
        }
    }
}

/// Rules over a connector's settings as a whole: the non-secret settings, and whether a secret
/// setting is set. Returns the message the user reads.
pub type Rules = fn(&Map<String, Value>, &dyn Fn(&str) -> bool) -> Result<(), String>;

/// What a connector declares about itself.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    /// Its type, as integrations and the API name it: `platform.zendesk`, `singer.NAME`.
    pub type_name: String,
    /// The name users see ("Zendesk Support").
    pub display_name: String,
    /// Its settings, in the order a form shows them.
    pub properties: Vec<PropertySpec>,
    /// Rules beyond each setting's own, checked after them.
    pub rules: Option<Rules>,
    /// Settings it does not declare are accepted as they are, non-secret (a Singer tap without a
    /// spec file: its config is one JSON object, which the tap itself checks).
    pub open: bool,
}

impl ConnectorSpec {
    /// The setting named `name`.
    pub fn property(&self, name: &str) -> Option<&PropertySpec> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// Validates a connector's settings as a whole: `config` holds the non-secret ones (each already
    /// of its type, see [`PropertySpec::check`]), `has_secret` says whether a secret one is set.
    /// A required setting that is missing, a non-secret key the spec does not know, then the
    /// connector's own rules.
    pub fn validate(
        &self,
        config: &Map<String, Value>,
        has_secret: &dyn Fn(&str) -> bool,
    ) -> Result<(), String> {
        if let Some(unknown) = config
            .keys()
            .find(|k| self.property(k).map_or(!self.open, |p| p.secret))
        {
            return Err(format!(
                "unknown property {unknown}: {} has no such setting",
                self.display_name
            ));
        }
        for p in self.properties.iter().filter(|p| p.required) {
            let set = if p.secret {
                has_secret(&p.name)
            } else {
                config.get(&p.name).is_some_and(|v| !v.is_null() && v != "")
            };
            if !set {
                return Err(format!("properties.{} is required: {}", p.name, p.description));
            }
        }
        match self.rules {
            Some(rules) => rules(config, has_secret),
            None => Ok(()),
        }
    }

    /// The settings as a JSON Schema object; secret settings are `writeOnly`.
    pub fn json_schema(&self) -> Value {
        let mut properties = Map::new();
        for p in &self.properties {
            let mut s = json!({"type": p.kind.json_name(), "title": p.title, "description": p.description});
            if p.secret {
                s["writeOnly"] = json!(true);
            }
            properties.insert(p.name.clone(), s);
        }
        let required: Vec<&str> = self
            .properties
            .iter()
            .filter(|p| p.required)
            .map(|p| p.name.as_str())
            .collect();
        json!({"type": "object", "properties": properties, "required": required,
            "additionalProperties": self.open})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ConnectorSpec {
        ConnectorSpec {
            type_name: "test.kind".into(),
            display_name: "Test".into(),
            properties: vec![
                PropertySpec::string("host", "Host", "the server's name").required(),
                PropertySpec::string("port", "Port", "the port").of_type(PropertyType::Integer),
                PropertySpec::string("password", "Password", "the password")
                    .secret()
                    .required(),
            ],
            rules: Some(|config, _| match config.get("port").and_then(Value::as_i64) {
                Some(p) if p > 65535 => Err(format!("port {p} is above 65535")),
                _ => Ok(()),
            }),
            open: false,
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn validates_required_unknown_and_the_connectors_rules() {
        let s = spec();
        let yes = |_: &str| true;
        let no = |_: &str| false;
        assert_eq!(s.validate(&map(json!({"host": "h", "port": 5432})), &yes), Ok(()));
        assert_eq!(
            s.validate(&map(json!({"port": 5432})), &yes),
            Err("properties.host is required: the server's name".into())
        );
        assert_eq!(
            s.validate(&map(json!({"host": ""})), &yes),
            Err("properties.host is required: the server's name".into())
        );
        assert_eq!(
            s.validate(&map(json!({"host": "h"})), &no),
            Err("properties.password is required: the password".into())
        );
        assert_eq!(
            s.validate(&map(json!({"host": "h", "password": "x"})), &yes),
            Err("unknown property password: Test has no such setting".into()),
            "a secret never sits with the non-secret settings"
        );
        assert_eq!(
            s.validate(&map(json!({"host": "h", "colour": 1})), &yes),
            Err("unknown property colour: Test has no such setting".into())
        );
        assert_eq!(
            s.validate(&map(json!({"host": "h", "port": 70000})), &yes),
            Err("port 70000 is above 65535".into())
        );
    }

    #[test]
    fn checks_types_and_accepts_null() {
        let s = spec();
        let port = s.property("port").expect("port");
        assert_eq!(port.check(&json!(1)), Ok(()));
        assert_eq!(port.check(&Value::Null), Ok(()));
        assert_eq!(
            port.check(&json!("1")),
            Err("port must be an integer or null, not \"1\"".into())
        );
        assert_eq!(
            s.property("host").expect("host").check(&json!(true)),
            Err("host must be a string or null, not true".into())
        );
    }

    #[test]
    fn renders_json_schema_with_secrets_write_only() {
        let schema = spec().json_schema();
        assert_eq!(schema["required"], json!(["host", "password"]));
        assert_eq!(schema["properties"]["port"]["type"], "integer");
        assert_eq!(schema["properties"]["password"]["writeOnly"], true);
        assert!(schema["properties"]["host"].get("writeOnly").is_none());
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn an_open_spec_takes_settings_it_does_not_declare() {
        let open = ConnectorSpec { open: true, ..spec() };
        let config = map(json!({"host": "h", "colour": 1}));
        assert_eq!(open.validate(&config, &|_| true), Ok(()));
        assert_eq!(
            open.validate(&map(json!({"host": "h", "password": "x"})), &|_| true),
            Err("unknown property password: Test has no such setting".into()),
            "a declared secret still never sits with the other settings"
        );
        assert_eq!(open.json_schema()["additionalProperties"], true);
    }
}
