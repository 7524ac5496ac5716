//! `/v4/sources/{id}/streams`: the discovered catalog and the user's table and field selection.
//!
//! Selection is written as Singer metadata breadcrumbs: `[]` for the stream, `["properties", field]`
//! for a field. `selected` may be set on both; on the stream, also `replication-method`
//! (`FULL_TABLE` or `INCREMENTAL`, unless the source forces one) and `replication-key` (a top-level
//! field, one of `valid-replication-keys` when the source lists them), as Stitch lets users choose
//! for database sources. Primary keys (and replication keys) are `automatic` and stay selected
//! whatever is asked. De-selecting never touches warehouse data.

use super::extract::Body;
use super::extract::Path;
use super::parse_json;
use super::sources::load_live;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use seam_core::catalog::{
    CatalogEntry, Inclusion, FORCED_REPLICATION_METHOD, REPLICATION_KEY, REPLICATION_METHOD, SELECTED,
    VALID_REPLICATION_KEYS,
};
use seam_core::Catalog;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataPatch {
    breadcrumb: Vec<String>,
    metadata: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamPatch {
    tap_stream_id: String,
    metadata: Vec<MetadataPatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamsBody {
    streams: Vec<StreamPatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OneStreamBody {
    metadata: Vec<MetadataPatch>,
}

fn inclusion_str(i: Inclusion) -> &'static str {
    match i {
        Inclusion::Automatic => "automatic",
        Inclusion::Available => "available",
        Inclusion::Unsupported => "unsupported",
    }
}

fn fields(entry: &CatalogEntry) -> Vec<String> {
    entry
        .schema
        .properties
        .iter()
        .flat_map(|p| p.keys().cloned())
        .collect()
}

fn summary(entry: &CatalogEntry) -> Value {
    let selected = entry.is_selected();
    json!({
        "tap_stream_id": entry.tap_stream_id,
        "stream_name": entry.stream,
        "selected": selected,
        "replication_method": entry.replication_method(),
        "replication_key": entry.replication_key(),
        "key_properties": entry.key_properties(),
        "parent": entry.parent(),
        "field_count": fields(entry).len(),
        "selected_field_count": if selected { entry.selected_fields().len() } else { 0 },
    })
}

fn detail(entry: &CatalogEntry) -> Value {
    let mut v = summary(entry);
    let field_list: Vec<Value> = fields(entry)
        .iter()
        .map(|f| {
            let ty = entry
                .schema
                .property(f)
                .map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
            json!({
                "name": f,
                "type": ty.and_then(|t| t.get("type").cloned()),
                "inclusion": inclusion_str(entry.field_inclusion(f)),
                "selected": entry.is_field_selected(f),
            })
        })
        .collect();
    if let Value::Object(m) = &mut v {
        m.insert(
            "schema".into(),
            serde_json::to_value(&entry.schema).unwrap_or(Value::Null),
        );
        m.insert(
            "metadata".into(),
            serde_json::to_value(&entry.metadata).unwrap_or(Value::Null),
        );
        m.insert("fields".into(), Value::Array(field_list));
    }
    v
}

fn catalog_of(i: &seam_metastore::Integration) -> Result<Catalog, ApiError> {
    i.catalog.clone().ok_or_else(|| {
        ApiError::Conflict(format!(
            "source {} has no discovered streams yet: wait for the connection check to succeed \
             (GET /v4/sources/{}/last-connection-check)",
            i.id, i.id
        ))
    })
}

/// Sets the stream's `replication-method` or `replication-key` from a `[]` patch, after checking it.
fn apply_replication(entry: &mut CatalogEntry, key: &str, v: &Value) -> Result<(), ApiError> {
    let bad = |m: String| {
        Err(ApiError::InvalidBody(format!(
            "stream {}: {m}",
            entry.tap_stream_id
        )))
    };
    match key {
        REPLICATION_METHOD => {
            let Some(method) = v.as_str().filter(|m| ["FULL_TABLE", "INCREMENTAL"].contains(m)) else {
                return bad(format!(
                    "replication-method must be FULL_TABLE or INCREMENTAL, not {v}"
                ));
            };
            let forced = entry
                .stream_metadata(FORCED_REPLICATION_METHOD)
                .and_then(Value::as_str)
                .filter(|f| !f.is_empty());
            if let Some(forced) = forced.filter(|f| *f != method) {
                return bad(format!("the source replicates it {forced} only"));
            }
        }
        _ => {
            let Some(field) = v.as_str() else {
                return bad(format!("replication-key must be a field name, not {v}"));
            };
            if entry.schema.property(field).is_none() {
                return bad(format!("replication-key {field} is not one of its fields"));
            }
            let valid = entry
                .stream_metadata(VALID_REPLICATION_KEYS)
                .and_then(Value::as_array);
            if let Some(valid) = valid.filter(|v| !v.is_empty()) {
                if !valid.iter().any(|k| k == field) {
                    return bad(format!(
                        "replication-key {field} is not one of its valid replication keys ({})",
                        valid
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
    }
    entry.set_stream_metadata(key, v.clone());
    Ok(())
}

fn apply(entry: &mut CatalogEntry, patches: &[MetadataPatch]) -> Result<(), ApiError> {
    for patch in patches {
        let stream_level = patch.breadcrumb.is_empty();
        let writable =
            |k: &str| k == SELECTED || (stream_level && (k == REPLICATION_METHOD || k == REPLICATION_KEY));
        if let Some(key) = patch.metadata.keys().find(|k| !writable(k)) {
            return Err(ApiError::InvalidBody(format!(
                "metadata key {key} cannot be set: only \"selected\" is writable (and on the stream, \
                 \"replication-method\" and \"replication-key\")"
            )));
        }
        if stream_level {
            for key in [REPLICATION_METHOD, REPLICATION_KEY] {
                if let Some(v) = patch.metadata.get(key) {
                    apply_replication(entry, key, v)?;
                }
            }
        }
        let Some(selected) = patch.metadata.get(SELECTED) else {
            continue;
        };
        let Some(selected) = selected.as_bool() else {
            return Err(ApiError::InvalidBody(
                "\"selected\" must be true or false".to_owned(),
            ));
        };
        match patch.breadcrumb.as_slice() {
            [] => {
                if selected
                    && entry.stream_metadata("inclusion").and_then(Value::as_str) == Some("unsupported")
                {
                    return Err(ApiError::InvalidBody(format!(
                        "stream {} is not supported",
                        entry.tap_stream_id
                    )));
                }
                entry.set_selected(selected);
            }
            [props, field] if props == "properties" => {
                if entry.schema.property(field).is_none() {
                    return Err(ApiError::InvalidBody(format!(
                        "stream {} has no field {field}",
                        entry.tap_stream_id
                    )));
                }
                // Automatic fields (primary and replication keys) stay selected: the metadata is stored
                // but has no effect, as in Singer.
                entry.set_field_selected(field, selected);
            }
            other => {
                return Err(ApiError::InvalidBody(format!(
                    "breadcrumb {other:?} is not a stream ([]) or a top-level field ([\"properties\", name])"
                )))
            }
        }
    }
    Ok(())
}

/// `GET /v4/sources/{id}/streams`.
pub async fn list(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let i = load_live(&state, &id).await?;
    let streams = i
        .catalog
        .as_ref()
        .map(|c| c.streams.iter().map(summary).collect())
        .unwrap_or_default();
    Ok(Json(Value::Array(streams)))
}

/// `GET /v4/sources/{id}/streams/{stream}`.
pub async fn get_one(
    State(state): State<AppState>,
    Path((id, stream)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let i = load_live(&state, &id).await?;
    let catalog = catalog_of(&i)?;
    let entry = catalog
        .get(&stream)
        .ok_or_else(|| ApiError::NotFound(format!("stream {stream} not found")))?;
    Ok(Json(detail(entry)))
}

/// `PUT /v4/sources/{id}/streams`.
pub async fn update_many(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let body: StreamsBody = parse_json(&headers, &body)?;
    let i = load_live(&state, &id).await?;
    let mut catalog = catalog_of(&i)?;
    for patch in &body.streams {
        let entry = catalog
            .get_mut(&patch.tap_stream_id)
            .ok_or_else(|| ApiError::InvalidBody(format!("stream {} not found", patch.tap_stream_id)))?;
        apply(entry, &patch.metadata)?;
    }
    state.metastore.set_catalog(i.id, &catalog).await?;
    state.scheduler.changed();
    Ok(Json(Value::Array(catalog.streams.iter().map(summary).collect())))
}

/// `PUT /v4/sources/{id}/streams/{stream}`.
pub async fn update_one(
    State(state): State<AppState>,
    Path((id, stream)): Path<(String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let body: OneStreamBody = parse_json(&headers, &body)?;
    let i = load_live(&state, &id).await?;
    let mut catalog = catalog_of(&i)?;
    let entry = catalog
        .get_mut(&stream)
        .ok_or_else(|| ApiError::NotFound(format!("stream {stream} not found")))?;
    apply(entry, &body.metadata)?;
    let out = detail(entry);
    state.metastore.set_catalog(i.id, &catalog).await?;
    state.scheduler.changed();
    Ok(Json(out))
}
