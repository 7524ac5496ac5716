//! Stream schemas: JSON files under `schemas/` (shapes of Zendesk's documented objects, property
//! names compatible with tap-zendesk's so a switching user keeps their columns), embedded in the
//! binary, `$ref`s to `schemas/shared/*.json` resolved. User and organization custom fields are typed
//! at discovery from the account's field definitions ([`custom_field_schema`]).

use seam_core::schema::{JsonType, Properties, Schema, SchemaError};
use serde_json::{Map, Value};
use std::collections::HashMap;

const SHARED: &[(&str, &str)] = &[
    ("shared/via.json", include_str!("../schemas/shared/via.json")),
    (
        "shared/metadata.json",
        include_str!("../schemas/shared/metadata.json"),
    ),
    (
        "shared/attachments.json",
        include_str!("../schemas/shared/attachments.json"),
    ),
    (
        "shared/conditions.json",
        include_str!("../schemas/shared/conditions.json"),
    ),
    (
        "shared/actions.json",
        include_str!("../schemas/shared/actions.json"),
    ),
];

const STREAM_SCHEMAS: &[(&str, &str)] = &[
    ("automations", include_str!("../schemas/automations.json")),
    ("brands", include_str!("../schemas/brands.json")),
    ("custom_roles", include_str!("../schemas/custom_roles.json")),
    ("deleted_tickets", include_str!("../schemas/deleted_tickets.json")),
    ("deleted_users", include_str!("../schemas/deleted_users.json")),
    (
        "group_memberships",
        include_str!("../schemas/group_memberships.json"),
    ),
    ("groups", include_str!("../schemas/groups.json")),
    ("macros", include_str!("../schemas/macros.json")),
    (
        "organization_fields",
        include_str!("../schemas/organization_fields.json"),
    ),
    (
        "organization_memberships",
        include_str!("../schemas/organization_memberships.json"),
    ),
    ("organizations", include_str!("../schemas/organizations.json")),
    (
        "satisfaction_ratings",
        include_str!("../schemas/satisfaction_ratings.json"),
    ),
    ("schedules", include_str!("../schemas/schedules.json")),
    ("sla_policies", include_str!("../schemas/sla_policies.json")),
    ("tags", include_str!("../schemas/tags.json")),
    (
        "talk_phone_numbers",
        include_str!("../schemas/talk_phone_numbers.json"),
    ),
    ("ticket_audits", include_str!("../schemas/ticket_audits.json")),
    ("ticket_comments", include_str!("../schemas/ticket_comments.json")),
    ("ticket_fields", include_str!("../schemas/ticket_fields.json")),
    ("ticket_forms", include_str!("../schemas/ticket_forms.json")),
    (
        "ticket_metric_events",
        include_str!("../schemas/ticket_metric_events.json"),
    ),
    ("ticket_metrics", include_str!("../schemas/ticket_metrics.json")),
    ("tickets", include_str!("../schemas/tickets.json")),
    ("triggers", include_str!("../schemas/triggers.json")),
    ("user_fields", include_str!("../schemas/user_fields.json")),
    ("user_identities", include_str!("../schemas/user_identities.json")),
    ("users", include_str!("../schemas/users.json")),
    ("views", include_str!("../schemas/views.json")),
];

fn parse(name: &str, text: &str) -> Result<Schema, SchemaError> {
    serde_json::from_str(text).map_err(|e| SchemaError::BadDefinition {
        name: name.to_owned(),
        message: e.to_string(),
    })
}

/// The resolved schema of a stream, or `None` for a stream seam does not know.
pub fn stream_schema(stream: &str) -> Option<Result<Schema, SchemaError>> {
    let (_, text) = STREAM_SCHEMAS.iter().find(|(n, _)| *n == stream)?;
    Some((|| {
        let mut shared = HashMap::new();
        for (name, text) in SHARED {
            shared.insert((*name).to_owned(), parse(name, text)?);
        }
        let mut s = parse(stream, text)?;
        s.resolve_refs(&shared)?;
        Ok(s)
    })())
}

/// The JSON type of a custom field value, from its definition's `type`: text, textarea and regexp
/// are strings; integer; decimal is a number; checkbox a boolean; date a `format: date` string;
/// dropdown (`tagger`) a string without an `enum` (a new option must not fail the load until the next
/// discovery); multiselect an array of strings; lookup an integer (the related record's id).
/// Unknown types accept any value.
pub fn custom_field_schema(field_type: &str) -> Schema {
    match field_type {
        "text" | "textarea" | "regexp" | "dropdown" | "tagger" => Schema::nullable(JsonType::String),
        "integer" | "lookup" => Schema::nullable(JsonType::Integer),
        "decimal" => Schema::nullable(JsonType::Number),
        "checkbox" => Schema::nullable(JsonType::Boolean),
        "date" => Schema {
            format: Some("date".into()),
            ..Schema::nullable(JsonType::String)
        },
        "multiselect" => Schema::array(Schema::nullable(JsonType::String)),
        _ => Schema::default(),
    }
}

/// Types the `property` object (`user_fields` / `organization_fields`) of `schema` from field
/// definitions `(key, type)`. Keys not in the definitions are still allowed (`additionalProperties`).
pub fn apply_custom_fields(schema: &mut Schema, property: &str, definitions: &[(String, String)]) {
    let mut props = Properties::default();
    for (key, ty) in definitions {
        props.insert(key.clone(), custom_field_schema(ty));
    }
    let mut extra = Map::new();
    extra.insert("additionalProperties".into(), Value::Bool(true));
    let typed = Schema {
        properties: Some(props),
        extra,
        ..Schema::nullable(JsonType::Object)
    };
    if let Some(p) = schema.properties.as_mut() {
        p.insert(property.to_owned(), typed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_loads_resolved_and_has_its_keys() {
        for (name, _) in STREAM_SCHEMAS {
            let s = stream_schema(name)
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(s.is_resolved(), "{name}");
            let key = if *name == "tags" { "name" } else { "id" };
            assert!(s.property(key).is_some(), "{name} has no {key}");
        }
        assert!(stream_schema("nope").is_none());
        let t = stream_schema("tickets").unwrap().unwrap();
        assert!(t.property("via").unwrap().property("channel").is_some());
        assert!(
            t.property("fields").is_none(),
            "the duplicate fields array is removed"
        );
        // custom_fields values are kept as delivered: any type.
        let cf = t.property("custom_fields").unwrap().items.as_ref().unwrap();
        assert!(cf.property("value").unwrap().types.is_empty());
    }

    #[test]
    fn custom_fields_are_typed() {
        assert_eq!(
            custom_field_schema("decimal").non_null_types(),
            vec![JsonType::Number]
        );
        assert_eq!(
            custom_field_schema("lookup").non_null_types(),
            vec![JsonType::Integer]
        );
        assert_eq!(
            custom_field_schema("checkbox").non_null_types(),
            vec![JsonType::Boolean]
        );
        assert_eq!(
            custom_field_schema("multiselect").non_null_types(),
            vec![JsonType::Array]
        );
        let d = custom_field_schema("dropdown");
        assert!(!d.extra.contains_key("enum"), "dropdowns are not enum-locked");
        let mut users = stream_schema("users").unwrap().unwrap();
        apply_custom_fields(&mut users, "user_fields", &[("vip".into(), "checkbox".into())]);
        let uf = users.property("user_fields").unwrap();
        assert_eq!(
            uf.property("vip").unwrap().non_null_types(),
            vec![JsonType::Boolean]
        );
    }
}
