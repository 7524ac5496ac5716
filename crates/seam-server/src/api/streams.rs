//! `/v4/sources/{id}/streams`: the discovered catalog and the user's table and field selection.
//!
//! Selection is written as Singer metadata breadcrumbs: `[]` for the stream, `["properties", field]`
//! for a field; only the `selected` key may be set. Primary keys (and replication keys) are
//! `automatic` and stay selected whatever is asked. De-selecting never touches warehouse data.

use super::extract::Body;
use super::extract::Path;
use super::parse_json;
use super::sources::load_live;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use seam_core::catalog::{CatalogEntry, Inclusion, SELECTED};
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

fn apply(entry: &mut CatalogEntry, patches: &[MetadataPatch]) -> Result<(), ApiError> {
    for patch in patches {
        if let Some(key) = patch.metadata.keys().find(|k| k.as_str() != SELECTED) {
            return Err(ApiError::InvalidBody(format!(
                "metadata key {key} cannot be set: only \"selected\" is writable"
            )));
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
