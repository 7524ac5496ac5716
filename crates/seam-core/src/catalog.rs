//! Catalogs in Singer's discovery format, with metadata breadcrumbs and selection helpers.
//!
//! ```json
//! {"streams": [{"tap_stream_id": "tickets", "stream": "tickets", "schema": {...},
//!   "metadata": [{"breadcrumb": [], "metadata": {"selected": true, "table-key-properties": ["id"]}},
//!                {"breadcrumb": ["properties", "subject"], "metadata": {"inclusion": "available"}}]}]}
//! ```

use crate::schema::Schema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Metadata key: the user selected this stream or field.
pub const SELECTED: &str = "selected";
/// Metadata key: `automatic`, `available` or `unsupported`.
pub const INCLUSION: &str = "inclusion";
/// Metadata key: the tap's default selection.
pub const SELECTED_BY_DEFAULT: &str = "selected-by-default";
/// Metadata key: `FULL_TABLE`, `INCREMENTAL` or `LOG_BASED`.
pub const REPLICATION_METHOD: &str = "replication-method";
/// Metadata key: the field that incremental replication bookmarks.
pub const REPLICATION_KEY: &str = "replication-key";
/// Metadata key: the primary key columns.
pub const TABLE_KEY_PROPERTIES: &str = "table-key-properties";
/// Metadata key: fields the replication key may be.
pub const VALID_REPLICATION_KEYS: &str = "valid-replication-keys";
/// Metadata key: the method the tap always uses.
pub const FORCED_REPLICATION_METHOD: &str = "forced-replication-method";
/// Metadata key: the stream this one is a child of.
pub const PARENT_TAP_STREAM_ID: &str = "parent-tap-stream-id";

/// How a stream or field is included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inclusion {
    /// Always emitted (primary keys, replication keys).
    Automatic,
    /// Emitted when selected.
    Available,
    /// Never emitted.
    Unsupported,
}

/// Singer's replication methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplicationMethod {
    /// Every run reads the whole table.
    FullTable,
    /// Every run reads what changed since the bookmark.
    Incremental,
    /// Change-log based (not used by SaaS sources).
    LogBased,
}

/// One metadata entry: a breadcrumb (`[]` for the stream, `["properties", name]` for a field) and its map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataEntry {
    /// Where the metadata applies.
    pub breadcrumb: Vec<String>,
    /// The metadata.
    pub metadata: Map<String, Value>,
}

/// One stream of a catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The tap's id for the stream.
    pub tap_stream_id: String,
    /// The stream name.
    pub stream: String,
    /// The destination table name, when it differs from the stream name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_name: Option<String>,
    /// The stream's schema.
    pub schema: Schema,
    /// Stream and field metadata.
    #[serde(default)]
    pub metadata: Vec<MetadataEntry>,
    /// Legacy top-level key properties (some taps write them here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_properties: Option<Vec<String>>,
    /// Legacy top-level replication key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_key: Option<String>,
    /// Legacy top-level replication method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_method: Option<String>,
}

/// A catalog: the streams a source offers, and what is selected.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Catalog {
    /// The streams.
    pub streams: Vec<CatalogEntry>,
}

fn field_breadcrumb(field: &str) -> Vec<String> {
    vec!["properties".to_owned(), field.to_owned()]
}

impl CatalogEntry {
    /// A stream entry with standard metadata, as singer-python's `get_standard_metadata` writes it:
    /// key fields (and the replication key) `automatic`, every other top-level field `available`.
    pub fn new(
        stream: &str,
        schema: Schema,
        key_properties: &[&str],
        method: ReplicationMethod,
        replication_key: Option<&str>,
    ) -> Self {
        let mut root = Map::new();
        root.insert(TABLE_KEY_PROPERTIES.into(), Value::from(key_properties.to_vec()));
        root.insert(
            FORCED_REPLICATION_METHOD.into(),
            serde_json::to_value(method).unwrap_or(Value::Null),
        );
        if let Some(k) = replication_key {
            root.insert(VALID_REPLICATION_KEYS.into(), Value::from(vec![k]));
        }
        root.insert(INCLUSION.into(), Value::from("available"));
        let mut metadata = vec![MetadataEntry {
            breadcrumb: vec![],
            metadata: root,
        }];
        for name in schema.properties.iter().flat_map(|p| p.keys()) {
            let automatic = key_properties.contains(&name.as_str()) || replication_key == Some(name.as_str());
            let mut m = Map::new();
            m.insert(
                INCLUSION.into(),
                Value::from(if automatic { "automatic" } else { "available" }),
            );
            metadata.push(MetadataEntry {
                breadcrumb: field_breadcrumb(name),
                metadata: m,
            });
        }
        CatalogEntry {
            tap_stream_id: stream.to_owned(),
            stream: stream.to_owned(),
            table_name: None,
            schema,
            metadata,
            key_properties: None,
            replication_key: None,
            replication_method: None,
        }
    }

    fn entry(&self, breadcrumb: &[String]) -> Option<&Map<String, Value>> {
        self.metadata
            .iter()
            .find(|e| e.breadcrumb == breadcrumb)
            .map(|e| &e.metadata)
    }

    fn entry_mut(&mut self, breadcrumb: Vec<String>) -> &mut Map<String, Value> {
        if let Some(i) = self.metadata.iter().position(|e| e.breadcrumb == breadcrumb) {
            return &mut self.metadata[i].metadata;
        }
        self.metadata.push(MetadataEntry {
            breadcrumb,
            metadata: Map::new(),
        });
        let last = self.metadata.len() - 1;
        &mut self.metadata[last].metadata
    }

    /// Stream-level metadata value.
    pub fn stream_metadata(&self, key: &str) -> Option<&Value> {
        self.entry(&[])?.get(key)
    }

    /// Sets a stream-level metadata value.
    pub fn set_stream_metadata(&mut self, key: &str, value: Value) {
        self.entry_mut(vec![]).insert(key.to_owned(), value);
    }

    /// Field-level metadata value.
    pub fn field_metadata(&self, field: &str, key: &str) -> Option<&Value> {
        self.entry(&field_breadcrumb(field))?.get(key)
    }

    /// Sets a field-level metadata value.
    pub fn set_field_metadata(&mut self, field: &str, key: &str, value: Value) {
        self.entry_mut(field_breadcrumb(field))
            .insert(key.to_owned(), value);
    }

    /// True when the stream is selected (`selected: true`, or the legacy `selected-by-default`
    /// when the user said nothing).
    pub fn is_selected(&self) -> bool {
        if self.stream_inclusion() == Some(Inclusion::Unsupported) {
            return false;
        }
        match self.stream_metadata(SELECTED).and_then(Value::as_bool) {
            Some(s) => s,
            None => self
                .stream_metadata(SELECTED_BY_DEFAULT)
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// Selects or de-selects the stream.
    pub fn set_selected(&mut self, selected: bool) {
        self.set_stream_metadata(SELECTED, Value::Bool(selected));
    }

    fn stream_inclusion(&self) -> Option<Inclusion> {
        self.stream_metadata(INCLUSION)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// A field's inclusion (`available` when unstated).
    pub fn field_inclusion(&self, field: &str) -> Inclusion {
        self.field_metadata(field, INCLUSION)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or(Inclusion::Available)
    }

    /// Whether a top-level field is emitted, by singer-python's `should_sync_field` rule:
    /// `automatic` always; `unsupported` never; otherwise its `selected`, falling back to
    /// `selected-by-default`, and to true (a selected stream without field choices syncs every field).
    pub fn is_field_selected(&self, field: &str) -> bool {
        match self.field_inclusion(field) {
            Inclusion::Automatic => true,
            Inclusion::Unsupported => false,
            Inclusion::Available => match self.field_metadata(field, SELECTED).and_then(Value::as_bool) {
                Some(s) => s,
                None => self
                    .field_metadata(field, SELECTED_BY_DEFAULT)
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            },
        }
    }

    /// Selects or de-selects a field. Automatic fields stay selected whatever is asked.
    pub fn set_field_selected(&mut self, field: &str, selected: bool) {
        self.set_field_metadata(field, SELECTED, Value::Bool(selected));
    }

    /// The selected top-level fields, in schema order.
    pub fn selected_fields(&self) -> Vec<&str> {
        self.schema
            .properties
            .iter()
            .flat_map(|p| p.keys())
            .filter(|f| self.is_field_selected(f))
            .map(String::as_str)
            .collect()
    }

    /// The primary key: `table-key-properties`, or the legacy top-level `key_properties`.
    pub fn key_properties(&self) -> Vec<String> {
        if let Some(Value::Array(keys)) = self.stream_metadata(TABLE_KEY_PROPERTIES) {
            return keys
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
        }
        self.key_properties.clone().unwrap_or_default()
    }

    /// The replication method: the user's `replication-method`, else the forced one, else legacy.
    pub fn replication_method(&self) -> Option<ReplicationMethod> {
        let parse = |v: &Value| serde_json::from_value(v.clone()).ok();
        self.stream_metadata(REPLICATION_METHOD)
            .and_then(parse)
            .or_else(|| self.stream_metadata(FORCED_REPLICATION_METHOD).and_then(parse))
            .or_else(|| {
                self.replication_method
                    .as_deref()
                    .and_then(|m| parse(&Value::from(m)))
            })
    }

    /// The replication key: `replication-key`, else the only valid replication key, else legacy.
    pub fn replication_key(&self) -> Option<String> {
        if let Some(k) = self.stream_metadata(REPLICATION_KEY).and_then(Value::as_str) {
            return Some(k.to_owned());
        }
        if let Some(Value::Array(keys)) = self.stream_metadata(VALID_REPLICATION_KEYS) {
            if let [Value::String(k)] = keys.as_slice() {
                return Some(k.clone());
            }
        }
        self.replication_key.clone()
    }

    /// The parent stream, for child streams.
    pub fn parent(&self) -> Option<&str> {
        self.stream_metadata(PARENT_TAP_STREAM_ID).and_then(Value::as_str)
    }

    /// The schema restricted to the selected fields.
    pub fn selected_schema(&self) -> Schema {
        let mut schema = self.schema.clone();
        if let Some(props) = &mut schema.properties {
            props.retain(|name, _| self.is_field_selected(name));
        }
        schema
    }
}

impl Catalog {
    /// The entry for a stream id.
    pub fn get(&self, tap_stream_id: &str) -> Option<&CatalogEntry> {
        self.streams.iter().find(|s| s.tap_stream_id == tap_stream_id)
    }

    /// The mutable entry for a stream id.
    pub fn get_mut(&mut self, tap_stream_id: &str) -> Option<&mut CatalogEntry> {
        self.streams.iter_mut().find(|s| s.tap_stream_id == tap_stream_id)
    }

    /// The selected streams, in catalog order.
    pub fn selected(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.streams.iter().filter(|s| s.is_selected())
    }

    /// Selects every stream (what a tap does when run without a catalog).
    pub fn select_all(&mut self) {
        for s in &mut self.streams {
            s.set_selected(true);
        }
    }

    /// Copies the user's choices (`selected` on streams and fields, `replication-method`,
    /// `replication-key`) from `previous` onto this freshly discovered catalog. Streams and fields that
    /// are new stay as discovery left them.
    pub fn carry_selection_from(&mut self, previous: &Catalog) {
        for entry in &mut self.streams {
            let Some(old) = previous.get(&entry.tap_stream_id) else {
                continue;
            };
            for key in [SELECTED, REPLICATION_METHOD, REPLICATION_KEY] {
                if let Some(v) = old.stream_metadata(key) {
                    entry.set_stream_metadata(key, v.clone());
                }
            }
            let fields: Vec<String> = entry
                .schema
                .properties
                .iter()
                .flat_map(|p| p.keys().cloned())
                .collect();
            for f in fields {
                if let Some(v) = old.field_metadata(&f, SELECTED) {
                    entry.set_field_metadata(&f, SELECTED, v.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::JsonType;
    use serde_json::json;

    fn tickets() -> CatalogEntry {
        let schema = Schema::object([
            ("id".to_string(), Schema::nullable(JsonType::Integer)),
            ("subject".to_string(), Schema::nullable(JsonType::String)),
            (
                "generated_timestamp".to_string(),
                Schema::nullable(JsonType::Integer),
            ),
        ]);
        CatalogEntry::new(
            "tickets",
            schema,
            &["id"],
            ReplicationMethod::Incremental,
            Some("generated_timestamp"),
        )
    }

    #[test]
    fn standard_metadata() {
        let e = tickets();
        assert_eq!(e.key_properties(), vec!["id"]);
        assert_eq!(e.replication_method(), Some(ReplicationMethod::Incremental));
        assert_eq!(e.replication_key().as_deref(), Some("generated_timestamp"));
        assert_eq!(e.field_inclusion("id"), Inclusion::Automatic);
        assert_eq!(e.field_inclusion("generated_timestamp"), Inclusion::Automatic);
        assert_eq!(e.field_inclusion("subject"), Inclusion::Available);
        assert!(!e.is_selected(), "streams are not selected by default");
    }

    #[test]
    fn selection_helpers() {
        let mut e = tickets();
        e.set_selected(true);
        assert!(e.is_selected());
        assert_eq!(e.selected_fields(), vec!["id", "subject", "generated_timestamp"]);
        e.set_field_selected("subject", false);
        e.set_field_selected("id", false);
        assert_eq!(
            e.selected_fields(),
            vec!["id", "generated_timestamp"],
            "automatic fields stay"
        );
        let s = e.selected_schema();
        assert!(s.property("subject").is_none());
        e.set_stream_metadata(INCLUSION, json!("unsupported"));
        assert!(!e.is_selected());
    }

    #[test]
    fn round_trips_singer_json_and_reads_legacy_keys() {
        let v = json!({"streams": [{"tap_stream_id": "users", "stream": "users", "key_properties": ["id"],
            "replication_key": "updated_at", "replication_method": "INCREMENTAL",
            "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]}]});
        let c: Catalog = serde_json::from_value(v.clone()).unwrap();
        let u = c.get("users").unwrap();
        assert!(u.is_selected());
        assert_eq!(u.key_properties(), vec!["id"]);
        assert_eq!(u.replication_key().as_deref(), Some("updated_at"));
        assert_eq!(u.replication_method(), Some(ReplicationMethod::Incremental));
        assert_eq!(serde_json::to_value(&c).unwrap(), v);
        assert_eq!(c.selected().count(), 1);
    }

    #[test]
    fn carries_selection_over_rediscovery() {
        let mut old = Catalog {
            streams: vec![tickets()],
        };
        old.streams[0].set_selected(true);
        old.streams[0].set_field_selected("subject", false);
        let mut fresh = Catalog {
            streams: vec![tickets()],
        };
        fresh.carry_selection_from(&old);
        assert!(fresh.streams[0].is_selected());
        assert!(!fresh.streams[0].is_field_selected("subject"));
    }
}
