//! JSON Schemas (OpenAPI 3.1 = JSON Schema 2020-12) of every request and response body the API
//! documents in `lib.rs`. [`super::ROUTES`] names them; `/openapi.json` puts them under
//! `components.schemas`. Request schemas are closed (`additionalProperties: false`, as the handlers
//! refuse unknown keys); response schemas list every field the handlers always write and leave room
//! for new ones.

use serde_json::{json, Map, Value};

/// `{"$ref": "#/components/schemas/<name>"}`.
pub fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": reference(name)})
}

fn nullable(ty: &str) -> Value {
    json!({"type": [ty, "null"]})
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn opt_time() -> Value {
    json!({"type": ["string", "null"], "format": "date-time"})
}

/// A closed object whose every property is required.
fn record(properties: Value) -> Value {
    let required: Vec<Value> = properties
        .as_object()
        .map(|m| m.keys().map(|k| Value::String(k.clone())).collect())
        .unwrap_or_default();
    json!({"type": "object", "required": required, "properties": properties})
}

/// Every schema, by name.
pub fn components() -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |name: &str, schema: Value| {
        m.insert(name.to_owned(), schema);
    };

    put(
        "Error",
        json!({"type": "object", "required": ["error", "data"], "properties": {
            "error": {"type": "string", "examples": ["InvalidName", "NotFound", "MethodNotAllowed"]},
            "data": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}}}),
    );
    put(
        "Health",
        record(json!({"status": {"const": "ok"}, "version": {"type": "string"}})),
    );
    put(
        "OpenApiDocument",
        json!({"type": "object", "required": ["openapi", "paths"]}),
    );

    // -- sources --------------------------------------------------------------------------------
    let frequency = json!({"oneOf": [
        {"type": "string", "enum": ["30", "60", "180", "360", "720", "1440"]},
        {"type": "integer", "enum": [30, 60, 180, 360, 720, 1440]},
        {"type": "null"}]});
    put(
        "SourcePropertiesInput",
        json!({"type": "object",
            "description": "the schedule's keys below, and the connector's settings as GET /v4/source-types \
                describes them (for platform.zendesk: subdomain, email, api_token, access_token)",
            "properties": {
            "start_date": {"type": ["string", "null"], "description": "midnight UTC, not in the future"},
            "frequency_in_minutes": frequency,
            "anchor_time": {"type": ["string", "null"], "description": "ISO 8601; needs a frequency of 60 or more"},
            "cron_expression": {"type": ["string", "null"], "description": "Quartz cron, UTC; wins over frequency"}}}),
    );
    put(
        "SourceCreate",
        json!({"type": "object", "additionalProperties": false, "required": ["display_name", "properties"], "properties": {
            "display_name": {"type": "string", "pattern": "[A-Za-z0-9]",
                "description": "shown on the dashboard; the schema name is derived from it"},
            "name": {"type": ["string", "null"], "description": "schema name; derived from display_name when absent"},
            "type": {"type": ["string", "null"], "examples": ["platform.zendesk"]},
            "properties": reference("SourcePropertiesInput")}}),
    );
    put(
        "SourceUpdate",
        json!({"type": "object", "additionalProperties": false, "properties": {
            "display_name": {"type": "string"},
            "properties": reference("SourcePropertiesInput"),
            "paused_at": {"type": ["string", "null"], "description": "any time pauses; null resumes"},
            "confirm_reset": {"type": "boolean",
                "description": "must be true when start_date or a setting naming the account (Zendesk's \
                    subdomain) changes: every bookmark is reset"}}}),
    );
    put(
        "SourceProperties",
        json!({"type": "object",
            "description": "the connector's non-secret settings (null when unset), the schedule, and the names of \
                the secret settings that are set (never their values)",
            "required": ["start_date", "frequency_in_minutes", "anchor_time", "cron_expression", "credentials_set"],
            "properties": {
            "subdomain": {"type": "string", "description": "platform.zendesk"},
            "email": nullable("string"),
            "start_date": time(),
            "frequency_in_minutes": {"type": "string"},
            "anchor_time": opt_time(),
            "cron_expression": nullable("string"),
            "credentials_set": {"type": ["array", "null"], "items": {"type": "string"},
                "description": "null when the credentials cannot be opened with this key"},
            "auth_method": {"enum": ["api_token", "access_token", "unreadable"], "description": "platform.zendesk"}}}),
    );
    put(
        "SourceType",
        record(json!({
            "type": {"type": "string", "examples": ["platform.zendesk"]},
            "display_name": {"type": "string"},
            "properties_schema": {"type": "object",
                "description": "the connector's settings as JSON Schema; secret ones are writeOnly"}})),
    );
    put("SourceTypeList", array_of("SourceType"));
    put(
        "Source",
        record(json!({
            "id": {"type": "integer"},
            "type": {"type": "string"},
            "display_name": {"type": "string"},
            "name": {"type": "string"},
            "properties": reference("SourceProperties"),
            "created_at": time(),
            "updated_at": time(),
            "paused_at": opt_time(),
            "system_paused_at": opt_time(),
            "deleted_at": opt_time(),
            "status": {"enum": ["Pending", "Not Configured", "Active", "Paused", "Failing"]},
            "sync_status": {"enum": ["In Progress", "Not Syncing", "Idle"]},
            "last_sync_started_at": opt_time(),
            "last_sync_completed_at": opt_time(),
            "consecutive_failures": {"type": "integer", "minimum": 0},
            "check_job_name": nullable("string"),
            "schedule": record(json!({"type": {"enum": ["frequency", "anchor", "cron"]}, "next_fire_time": opt_time()})),
            "report_card": record(json!({
                "type": {"type": "string"},
                "current_step": {"type": "integer", "minimum": 1},
                "current_step_type": {"type": "string"},
                "steps": {"type": "array", "items": record(json!({"type": {"type": "string"}, "is_complete": {"type": "boolean"}}))}}))})),
    );
    put("SourceList", array_of("Source"));
    put(
        "ConnectionCheck",
        record(json!({
            "name": {"type": "string"},
            "mode": {"const": "check"},
            "status": {"enum": ["running", "succeeded", "failed"]},
            "message": {"type": "string"},
            "start_time": time(),
            "completion_time": opt_time(),
            "error": {"type": "boolean"},
            "check_exit_status": nullable("integer"),
            "check_error_message": nullable("string"),
            "discovery_exit_status": nullable("integer"),
            "discovery_error_message": nullable("string"),
            "tap_exit_status": nullable("integer"),
            "tap_error_message": nullable("string"),
            "target_exit_status": {"type": "null"},
            "target_error_message": {"type": "null"}})),
    );

    // -- streams --------------------------------------------------------------------------------
    let summary = json!({
        "tap_stream_id": {"type": "string"},
        "stream_name": {"type": "string"},
        "selected": {"type": "boolean"},
        "replication_method": {"type": ["string", "null"]},
        "replication_key": nullable("string"),
        "key_properties": {"type": "array", "items": {"type": "string"}},
        "parent": nullable("string"),
        "field_count": {"type": "integer", "minimum": 0},
        "selected_field_count": {"type": "integer", "minimum": 0}});
    put("StreamSummary", record(summary.clone()));
    put("StreamSummaryList", array_of("StreamSummary"));
    let mut detail = summary.as_object().cloned().unwrap_or_default();
    detail.insert("schema".into(), json!({"type": ["object", "null"]}));
    detail.insert(
        "metadata".into(),
        json!({"type": ["array", "null"], "items": reference("MetadataEntry")}),
    );
    detail.insert(
        "fields".into(),
        json!({"type": "array", "items": record(json!({
            "name": {"type": "string"},
            "type": {},
            "inclusion": {"enum": ["automatic", "available", "unsupported"]},
            "selected": {"type": "boolean"}}))}),
    );
    put("StreamDetail", record(Value::Object(detail)));
    put(
        "MetadataEntry",
        record(
            json!({"breadcrumb": {"type": "array", "items": {"type": "string"}}, "metadata": {"type": "object"}}),
        ),
    );
    let patch = json!({"type": "object", "additionalProperties": false, "required": ["breadcrumb", "metadata"],
        "properties": {
            "breadcrumb": {"type": "array", "items": {"type": "string"}, "maxItems": 2,
                "description": "[] for the stream, [\"properties\", field] for a field"},
            "metadata": {"type": "object", "additionalProperties": false,
                "properties": {"selected": {"type": "boolean"}}}}});
    put("MetadataPatch", patch);
    put(
        "StreamsUpdate",
        json!({"type": "object", "additionalProperties": false, "required": ["streams"], "properties": {
            "streams": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                "required": ["tap_stream_id", "metadata"], "properties": {
                    "tap_stream_id": {"type": "string"},
                    "metadata": {"type": "array", "items": reference("MetadataPatch")}}}}}}),
    );
    put(
        "StreamUpdate",
        json!({"type": "object", "additionalProperties": false, "required": ["metadata"], "properties": {
            "metadata": {"type": "array", "items": reference("MetadataPatch")}}}),
    );

    // -- extractions ----------------------------------------------------------------------------
    put(
        "SyncStarted",
        record(json!({
            "job_id": {"type": "integer"},
            "job_name": {"type": "string"},
            "status": {"enum": ["running", "pending"]},
            "message": {"type": "string"}})),
    );
    put(
        "SyncStopping",
        record(json!({"job_id": {"type": "integer"}, "stopping": {"const": true}})),
    );
    let exit = nullable("integer");
    put(
        "Extraction",
        record(json!({
            "job_id": {"type": "integer"},
            "job_name": {"type": "string"},
            "source_id": {"type": "integer"},
            "tap_name": {"type": "string"},
            "trigger": {"enum": ["scheduled", "manual"]},
            "status": {"enum": ["pending", "running", "succeeded", "succeeded_with_warnings", "failed", "cancelled"]},
            "start_time": time(),
            "completion_time": opt_time(),
            "due_time": opt_time(),
            "worker": nullable("string"),
            "discovery_exit_status": exit,
            "discovery_description": nullable("string"),
            "tap_exit_status": exit,
            "tap_description": nullable("string"),
            "target_exit_status": exit,
            "target_description": nullable("string"),
            "error_message": nullable("string"),
            "warning_message": nullable("string"),
            "rows_loaded": {"type": "integer"}})),
    );
    put("ExtractionList", array_of("Extraction"));
    put(
        "Progress",
        record(json!({
            "source_id": {"type": "integer"},
            "job_id": {"type": "integer"},
            "job_name": {"type": "string"},
            "phase": {"enum": ["discovery", "extraction", "finishing"]},
            "current_stream": nullable("string"),
            "records_extracted": {"type": "integer", "minimum": 0},
            "rows_loaded": {"type": "integer", "minimum": 0},
            "records_by_stream": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            "started_at": time(),
            "stopping": {"type": "boolean"},
            "waiting_on_warehouse_secs": nullable("integer")})),
    );
    put(
        "LogLine",
        record(json!({
            "timestamp": time(),
            "location": {"enum": ["main", "tap", "target"]},
            "level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
            "message": {"type": "string"},
            "line": {"type": "string"}})),
    );
    put(
        "JobLogs",
        record(json!({
            "job_name": {"type": "string"},
            "lines": array_of("LogLine"),
            "errors": array_of("LogLine")})),
    );

    // -- loads, usage, settings, notifications ----------------------------------------------------
    put(
        "Load",
        record(json!({
            "source_id": {"type": "integer"},
            "source_name": {"type": "string"},
            "stream_name": {"type": "string"},
            "rows_loaded": {"type": "integer"},
            "last_batch_loaded_at": opt_time(),
            "max_bookmark_value": {"type": "string"},
            "error_state": {"oneOf": [{"type": "null"}, record(json!({"message": {"type": "string"}}))]},
            "last_job_id": {"type": "integer"}})),
    );
    put("LoadList", array_of("Load"));
    let day = json!({"type": "string", "format": "date"});
    put(
        "Usage",
        record(json!({
            "billing_period": record(json!({"start": day, "end": day})),
            "row_limit": {"type": "integer"},
            "stop_replication_at_limit": {"type": "boolean"},
            "rows_used": {"type": "integer"},
            "percent_used": {"type": "number"},
            "by_source": {"type": "array", "items": record(json!({
                "source_id": {"type": "integer"},
                "name": nullable("string"),
                "display_name": nullable("string"),
                "rows": {"type": "integer"}}))},
            "by_table": {"type": "array", "items": record(json!({
                "source_id": {"type": "integer"},
                "table_name": {"type": "string"},
                "rows": {"type": "integer"}}))},
            "by_day": {"type": "array", "items": record(json!({"day": day, "rows": {"type": "integer"}}))}})),
    );
    put(
        "Settings",
        record(json!({
            "row_limit": {"type": "integer", "minimum": 1},
            "stop_replication_at_limit": {"type": "boolean"},
            "notification_webhook_url": nullable("string")})),
    );
    put(
        "SettingsUpdate",
        json!({"type": "object", "additionalProperties": false, "properties": {
            "row_limit": {"type": "integer", "minimum": 1, "maximum": i64::MAX},
            "stop_replication_at_limit": {"type": "boolean"},
            "notification_webhook_url": {"type": ["string", "null"], "description": "an http or https URL; null removes it"}}}),
    );
    put(
        "Notification",
        record(json!({
            "id": {"type": "integer"},
            "level": {"enum": ["info", "warning", "critical"]},
            "code": {"type": "string"},
            "source_id": nullable("integer"),
            "subject": {"type": "string"},
            "message": {"type": "string"},
            "created_at": time(),
            "dismissed_at": opt_time()})),
    );
    put("NotificationList", array_of("Notification"));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` inside the schemas names a schema that exists.
    #[test]
    fn references_resolve() {
        fn walk(v: &Value, names: &Map<String, Value>) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(r)) = o.get("$ref") {
                        let name = r.trim_start_matches("#/components/schemas/");
                        assert!(names.contains_key(name), "{r}");
                    }
                    o.values().for_each(|v| walk(v, names));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, names)),
                _ => {}
            }
        }
        let all = components();
        walk(&Value::Object(all.clone()), &all);
    }
}
