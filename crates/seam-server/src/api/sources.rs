//! `/v4/sources`: integrations (Stitch's sources), their settings and connection checks.

use super::extract::Body;
use super::extract::Path;
use super::{opt_time, parse_id, parse_json, time};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Datelike as _, NaiveDate, TimeZone as _, Utc};
use seam_core::naming;
use seam_core::ConnectorSpec;
use seam_metastore::{
    CheckStatus, ConnectionCheck, Credentials, Integration, IntegrationProperties, IntegrationUpdate,
    NewIntegration,
};
use seam_runtime::scheduler::{
    consecutive_failures, integration_status, parse_quartz_cron, validate_frequency, Schedule, ScheduleError,
    DEFAULT_FREQUENCY_MINUTES,
};
use seam_zendesk::spec::TYPE as ZENDESK_TYPE;
use serde_json::{json, Map, Value};
use tracing::info;

/// Keys every integration's `properties` may hold, whatever its connector: the start date and the
/// schedule. The connector's own settings come from its spec.
const SCHEDULE_KEYS: [&str; 4] = [
    "start_date",
    "frequency_in_minutes",
    "anchor_time",
    "cron_expression",
];

/// Keys the API writes into a source's `properties` itself: never a setting, not even of an open spec.
const SHOWN_KEYS: [&str; 2] = ["credentials_set", "auth_method"];

/// The spec of connector type `kind`, or a clear error naming the known types.
pub fn connector<'a>(state: &'a AppState, kind: &str) -> Result<&'a ConnectorSpec, ApiError> {
    state
        .connectors
        .iter()
        .find(|c| c.type_name == kind)
        .ok_or_else(|| {
            let known: Vec<&str> = state.connectors.iter().map(|c| c.type_name.as_str()).collect();
            ApiError::InvalidBody(format!(
                "unknown source type {kind}: seam knows {}",
                known.join(", ")
            ))
        })
}

fn parse_time(field: &str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = v.parse::<NaiveDate>() {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    Err(ApiError::InvalidProperties(format!(
        "{field} {v:?} is not an ISO 8601 time: use e.g. 2025-01-01T00:00:00Z"
    )))
}

fn default_start_date(now: DateTime<Utc>) -> DateTime<Utc> {
    let d = now.date_naive();
    // One year back; Feb 29 falls back to Feb 28.
    let back = d
        .with_year(d.year() - 1)
        .or_else(|| d.pred_opt().and_then(|p| p.with_year(p.year() - 1)))
        .unwrap_or(d);
    Utc.from_utc_datetime(&back.and_time(chrono::NaiveTime::MIN))
}

fn schedule_error(e: ScheduleError) -> ApiError {
    match e {
        e @ ScheduleError::Cron { .. } => ApiError::InvalidCronExpression(e.to_string()),
        e => ApiError::InvalidProperties(e.to_string()),
    }
}

fn string_or_null<'a>(key: &str, v: &'a Value) -> Result<Option<&'a str>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.as_str())),
        _ => Err(ApiError::InvalidProperties(format!(
            "{key} must be a string or null"
        ))),
    }
}

/// Applies a (partial) `properties` object onto `current` (or defaults when creating) and onto the
/// credentials: the schedule's keys here, the connector's settings as its `spec` says (secret ones
/// into `credentials`); validates every rule. Returns the new properties.
fn apply_properties(
    spec: &ConnectorSpec,
    current: Option<&IntegrationProperties>,
    credentials: &mut Credentials,
    map: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<IntegrationProperties, ApiError> {
    let invalid = ApiError::InvalidProperties;
    if let Some(shown) = map.keys().find(|k| SHOWN_KEYS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "{shown} is not a setting: seam shows it, it cannot be set"
        )));
    }
    if let Some(unknown) = map
        .keys()
        .find(|k| !SCHEDULE_KEYS.contains(&k.as_str()) && !spec.open && spec.property(k).is_none())
    {
        let mut keys: Vec<&str> = spec.properties.iter().map(|p| p.name.as_str()).collect();
        keys.extend(SCHEDULE_KEYS);
        return Err(invalid(format!(
            "unknown property {unknown}: properties may only include {}",
            keys.join(", ")
        )));
    }
    let mut p = current.cloned().unwrap_or(IntegrationProperties {
        start_date: default_start_date(now),
        frequency_in_minutes: DEFAULT_FREQUENCY_MINUTES,
        anchor_time: None,
        cron_expression: None,
        config: Map::new(),
    });
    for (key, v) in map {
        if SCHEDULE_KEYS.contains(&key.as_str()) {
            continue;
        }
        let property = spec.property(key);
        if let Some(property) = property {
            property.check(v).map_err(invalid)?;
        }
        if property.is_some_and(|p| p.secret) {
            credentials.set(key, string_or_null(key, v)?.map(Into::into));
        } else if v.is_null() || v == "" {
            p.config.remove(key);
        } else {
            p.config.insert(key.clone(), v.clone());
        }
    }
    for (key, v) in map {
        match key.as_str() {
            "start_date" => {
                let Some(s) = string_or_null(key, v)? else {
                    p.start_date = default_start_date(now);
                    continue;
                };
                let t = parse_time("start_date", s)?;
                if t.time() != chrono::NaiveTime::MIN {
                    return Err(ApiError::InvalidProperties(format!(
                        "start_date {s:?} must be at midnight UTC, e.g. {}",
                        time(Utc.from_utc_datetime(&t.date_naive().and_time(chrono::NaiveTime::MIN)))
                    )));
                }
                if t > now {
                    return Err(ApiError::InvalidProperties(format!(
                        "start_date {s:?} is in the future"
                    )));
                }
                p.start_date = t;
            }
            "frequency_in_minutes" => {
                let minutes = match v {
                    Value::Null => DEFAULT_FREQUENCY_MINUTES,
                    Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
                    Value::String(s) => s.trim().parse().unwrap_or(0),
                    _ => 0,
                };
                p.frequency_in_minutes = validate_frequency(minutes).map_err(|_| {
                    schedule_error(ScheduleError::Frequency {
                        value: v.to_string().trim_matches('"').to_owned(),
                    })
                })?;
            }
            "anchor_time" => {
                p.anchor_time = string_or_null(key, v)?
                    .map(|s| parse_time("anchor_time", s))
                    .transpose()?;
            }
            "cron_expression" => {
                p.cron_expression = match string_or_null(key, v)?.map(str::trim).filter(|s| !s.is_empty()) {
                    Some(c) => {
                        parse_quartz_cron(c).map_err(schedule_error)?;
                        Some(c.to_owned())
                    }
                    None => None,
                };
            }
            _ => {}
        }
    }
    spec.validate(&p.config, &|name| credentials.get(name).is_some())
        .map_err(invalid)?;
    Schedule::from_properties(&p).map_err(schedule_error)?;
    Ok(p)
}

fn check_display_name(display_name: &str) -> Result<String, ApiError> {
    if display_name.trim().is_empty() {
        return Err(ApiError::InvalidDisplayName(
            "display_name is required".to_owned(),
        ));
    }
    naming::schema_name(display_name).map_err(|e| match e {
        naming::NamingError::Empty { .. } => ApiError::InvalidDisplayName(e.to_string()),
        other => ApiError::InvalidName(other.to_string()),
    })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    display_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    properties: Map<String, Value>,
}

/// `GET /v4/source-types`: the registry, each connector with its settings as JSON Schema.
pub async fn types(State(state): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        state
            .connectors
            .iter()
            .map(|c| {
                json!({
                    "type": c.type_name,
                    "display_name": c.display_name,
                    "properties_schema": c.json_schema(),
                })
            })
            .collect(),
    ))
}

/// `POST /v4/sources`.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<impl IntoResponse, ApiError> {
    let body: CreateBody = parse_json(&headers, &body)?;
    let kind = body.kind.unwrap_or_else(|| ZENDESK_TYPE.to_owned());
    let spec = connector(&state, &kind)?;
    let display_name = body.display_name.unwrap_or_default();
    let derived = check_display_name(&display_name)?;
    let name = match body.name.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(explicit) => {
            naming::validate_schema_name(explicit).map_err(|e| ApiError::InvalidName(e.to_string()))?
        }
        None => derived,
    };
    let now = state.clock.now();
    let mut credentials = Credentials::default();
    let properties = apply_properties(spec, None, &mut credentials, &body.properties, now)?;
    let new = NewIntegration {
        display_name: display_name.trim().to_owned(),
        name: name.clone(),
        kind,
        properties,
        sealed_credentials: Vec::new(),
        created_at: now,
    };
    // Credentials are sealed bound to the id the integration gets, in the same transaction.
    let integration = state
        .metastore
        .create_integration_sealed(new, &state.cipher, &credentials)
        .await
        .map_err(|e| match e {
            seam_metastore::MetastoreError::NameTaken { name: taken } if body.name.is_none() => {
                ApiError::InvalidName(format!(
                    "non-unique name after deriving it from display_name ({display_name} -> {taken})"
                ))
            }
            other => other.into(),
        })?;
    info!(source_id = integration.id, name = %integration.name, "integration created");
    state.scheduler.start_check(integration.id).await?;
    state.scheduler.changed();
    Ok((
        StatusCode::CREATED,
        Json(source_json(&state, &integration).await?),
    ))
}

/// `GET /v4/sources`.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for i in state.metastore.list_integrations(false).await? {
        out.push(source_json(&state, &i).await?);
    }
    Ok(Json(Value::Array(out)))
}

async fn load(state: &AppState, raw: &str) -> Result<Integration, ApiError> {
    let id = parse_id(raw, "source")?;
    state
        .metastore
        .get_integration(id)
        .await?
        .ok_or_else(|| ApiError::source_not_found(id))
}

/// Loads a source that is not deleted.
pub async fn load_live(state: &AppState, raw: &str) -> Result<Integration, ApiError> {
    let i = load(state, raw).await?;
    if i.deleted_at.is_some() {
        return Err(ApiError::source_not_found(i.id));
    }
    Ok(i)
}

/// `GET /v4/sources/{id}`.
pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let i = load(&state, &id).await?;
    Ok(Json(source_json(&state, &i).await?))
}

const PUT_KEYS: [&str; 4] = ["display_name", "properties", "paused_at", "confirm_reset"];

/// `PUT /v4/sources/{id}`.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let current = load_live(&state, &id).await?;
    let body: Map<String, Value> = parse_json(&headers, &body)?;
    if body.keys().any(|k| !PUT_KEYS.contains(&k.as_str())) {
        return Err(ApiError::InvalidBody(
            "PUT body many only include the keys: display_name, properties, and paused_at (and confirm_reset)"
                .to_owned(),
        ));
    }
    let confirm_reset = match body.get("confirm_reset") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(other) => {
            return Err(ApiError::InvalidBody(format!(
                "confirm_reset must be true or false, not {other}"
            )))
        }
    };
    let now = state.clock.now();
    let display_name = match body.get("display_name") {
        None => current.display_name.clone(),
        Some(Value::String(d)) => {
            check_display_name(d)
                .map_err(|_| ApiError::InvalidDisplayName(format!("invalid display_name ({d})")))?;
            d.trim().to_owned()
        }
        Some(other) => {
            return Err(ApiError::InvalidDisplayName(format!(
                "invalid display_name ({other})"
            )))
        }
    };
    let mut credentials = state
        .cipher
        .open(current.id, &current.sealed_credentials)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let before_credentials = credentials.clone();
    let properties = match body.get("properties") {
        None => current.properties.clone(),
        Some(Value::Object(map)) => {
            let spec = connector(&state, &current.kind)?;
            apply_properties(spec, Some(&current.properties), &mut credentials, map, now)?
        }
        Some(_) => return Err(ApiError::InvalidBody("properties must be an object".to_owned())),
    };
    let paused_at = match body.get("paused_at") {
        None => current.paused_at,
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            current
                .paused_at
                .unwrap_or(parse_time("paused_at", s).map_err(|_| {
                    ApiError::InvalidBody(format!("paused_at {s:?} is not an ISO 8601 time"))
                })?),
        ),
        Some(other) => {
            return Err(ApiError::InvalidBody(format!(
                "paused_at must be an ISO 8601 time or null, not {other}"
            )))
        }
    };
    // A new start date re-replicates from it; a new account (Zendesk's subdomain: a setting the
    // connector marks as naming the account) has ids that would overwrite the old account's rows under
    // the same keys. Both reset every bookmark, so both need the caller's confirmation.
    let start_date_changed = properties.start_date != current.properties.start_date;
    let spec = connector(&state, &current.kind).ok();
    let account_changes: Vec<String> = spec
        .map(|spec| {
            spec.properties
                .iter()
                .filter(|p| p.identity)
                .filter_map(|p| {
                    let (old, new) = (
                        current.properties.config.get(&p.name),
                        properties.config.get(&p.name),
                    );
                    (old != new).then(|| {
                        let shown =
                            |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("(none)").to_owned();
                        format!("{} from {} to {}", p.name, shown(old), shown(new))
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let account_changed = !account_changes.is_empty();
    let reset = start_date_changed || account_changed;
    if reset && !confirm_reset {
        let start_date = format!(
            "start_date from {} to {}",
            time(current.properties.start_date),
            time(properties.start_date)
        );
        let what = match (start_date_changed, account_changed) {
            (true, true) => format!("changing {start_date} and {}", account_changes.join(" and ")),
            (true, false) => format!("changing {start_date}"),
            _ => format!(
                "changing {} points this integration at another {} account (its records would overwrite \
                 this account's rows with the same ids in schema {}); it",
                account_changes.join(" and "),
                spec.map_or("source", |s| s.display_name.as_str()),
                current.name
            ),
        };
        return Err(ApiError::ResetRequired(format!(
            "{what} resets every bookmark and re-replicates all data from the start date (this counts toward row \
             usage and cannot be undone): repeat the request with \"confirm_reset\": true"
        )));
    }
    let connection_changed =
        credentials != before_credentials || properties.config != current.properties.config;
    let sealed = if credentials != before_credentials {
        state
            .cipher
            .seal(current.id, &credentials)
            .map_err(|e| ApiError::Internal(e.to_string()))?
    } else {
        current.sealed_credentials.clone()
    };
    let updated = state
        .metastore
        .update_integration(
            current.id,
            IntegrationUpdate {
                display_name,
                properties,
                sealed_credentials: sealed,
                paused_at,
                updated_at: now,
            },
        )
        .await?;
    if reset {
        state.metastore.set_state(current.id, None).await?;
        info!(
            source_id = current.id,
            start_date_changed, account_changed, "bookmarks reset, full re-replication queued"
        );
    }
    if connection_changed {
        state.scheduler.start_check(current.id).await?;
    }
    state.scheduler.changed();
    Ok(Json(source_json(&state, &updated).await?))
}

/// `DELETE /v4/sources/{id}`.
pub async fn delete_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let current = load_live(&state, &id).await?;
    state.scheduler.stop(current.id).await;
    let deleted = state
        .metastore
        .delete_integration(current.id, state.clock.now())
        .await?;
    info!(source_id = deleted.id, name = %deleted.name, "integration deleted; its warehouse schema is kept");
    state.scheduler.changed();
    Ok(Json(source_json(&state, &deleted).await?))
}

/// `GET /v4/sources/{id}/last-connection-check`.
pub async fn last_check(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let i = load(&state, &id).await?;
    let check = state
        .metastore
        .last_check(i.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("source {} has no connection check yet", i.id)))?;
    Ok(Json(check_json(&check)))
}

/// `POST /v4/sources/{id}/check`.
pub async fn recheck(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let i = load_live(&state, &id).await?;
    let check = state.scheduler.start_check(i.id).await?;
    Ok((StatusCode::ACCEPTED, Json(check_json(&check))))
}

/// Stitch's connection-check object.
pub fn check_json(c: &ConnectionCheck) -> Value {
    let error =
        c.check_exit_status.is_some_and(|s| s != 0) || c.discovery_exit_status.is_some_and(|s| s != 0);
    let message = match c.status {
        CheckStatus::Running => "Checking the connection and discovering tables".to_owned(),
        CheckStatus::Succeeded => "Success!".to_owned(),
        CheckStatus::Failed => c
            .check_error_message
            .clone()
            .or_else(|| c.discovery_error_message.clone())
            .unwrap_or_else(|| "the connection check failed".to_owned()),
    };
    json!({
        "name": format!("{}.{}.check", c.integration_id, c.id),
        "mode": "check",
        "status": c.status.as_str(),
        "message": message,
        "start_time": time(c.start_time),
        "completion_time": opt_time(c.completion_time),
        "error": error,
        "check_exit_status": c.check_exit_status,
        "check_error_message": c.check_error_message,
        "discovery_exit_status": c.discovery_exit_status,
        "discovery_error_message": c.discovery_error_message,
        "tap_exit_status": c.check_exit_status,
        "tap_error_message": c.check_error_message,
        "target_exit_status": Value::Null,
        "target_error_message": Value::Null,
    })
}

/// An integration's `properties` as the API shows them: the connector's non-secret settings (null
/// when unset), the schedule, and which secret settings are set (`credentials_set`), never their
/// values. Zendesk's also say how it signs in (`auth_method`).
fn properties_json(state: &AppState, i: &Integration, credentials: Option<&Credentials>) -> Value {
    let p = &i.properties;
    let mut out = Map::new();
    let spec = state.connectors.iter().find(|c| c.type_name == i.kind);
    for property in spec.iter().flat_map(|s| &s.properties).filter(|p| !p.secret) {
        out.insert(
            property.name.clone(),
            p.config.get(&property.name).cloned().unwrap_or(Value::Null),
        );
    }
    // Settings the connector no longer declares stay visible rather than vanish.
    for (k, v) in &p.config {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    out.insert("start_date".into(), json!(time(p.start_date)));
    out.insert(
        "frequency_in_minutes".into(),
        json!(p.frequency_in_minutes.to_string()),
    );
    out.insert("anchor_time".into(), json!(opt_time(p.anchor_time)));
    out.insert("cron_expression".into(), json!(p.cron_expression));
    out.insert(
        "credentials_set".into(),
        json!(credentials.map(|c| c.iter().map(|(k, _)| k).collect::<Vec<_>>())),
    );
    if i.kind == ZENDESK_TYPE {
        let auth_method = match credentials {
            Some(c) if c.get("access_token").is_some() => "access_token",
            Some(_) => "api_token",
            None => "unreadable",
        };
        out.insert("auth_method".into(), json!(auth_method));
    }
    Value::Object(out)
}

/// Stitch's source object, with seam's status fields. Never includes credentials.
pub async fn source_json(state: &AppState, i: &Integration) -> Result<Value, ApiError> {
    let jobs = state.metastore.list_jobs(i.id, 20).await?;
    let running = state.scheduler.is_running(i.id).await;
    let status = integration_status(i, &jobs);
    let next = if i.deleted_at.is_some() {
        None
    } else {
        state.scheduler.next_fire_time(i).await?
    };
    // A time in the past means "due now".
    let now = state.clock.now();
    let next = next.map(|t| t.max(now));
    let check = state.metastore.last_check(i.id).await?;
    let credentials = state.cipher.open(i.id, &i.sealed_credentials).ok();
    let last_started = jobs.first().map(|j| j.start_time);
    let last_completed = jobs.iter().find_map(|j| j.completion_time);
    let sync_status = if running {
        "In Progress"
    } else if i.paused_at.is_some() || !i.is_configured() {
        "Not Syncing"
    } else {
        "Idle"
    };
    let schedule_kind = Schedule::from_properties(&i.properties)
        .map(|s| s.kind())
        .unwrap_or("frequency");
    let check_ok = check.as_ref().is_some_and(|c| c.status == CheckStatus::Succeeded);
    let discovered = i.catalog.is_some();
    let configured = i.is_configured();
    let steps = [
        ("form", true),
        ("discover_schema", discovered || check_ok),
        ("field_selection", configured),
        ("fully_configured", configured),
    ];
    let current = steps
        .iter()
        .position(|(_, done)| !done)
        .unwrap_or(steps.len() - 1);
    Ok(json!({
        "id": i.id,
        "type": i.kind,
        "display_name": i.display_name,
        "name": i.name,
        "properties": properties_json(state, i, credentials.as_ref()),
        "created_at": time(i.created_at),
        "updated_at": time(i.updated_at),
        "paused_at": opt_time(i.paused_at),
        "system_paused_at": Value::Null,
        "deleted_at": opt_time(i.deleted_at),
        "status": status.as_str(),
        "sync_status": sync_status,
        "last_sync_started_at": opt_time(last_started),
        "last_sync_completed_at": opt_time(last_completed),
        "consecutive_failures": consecutive_failures(&jobs),
        "check_job_name": check.as_ref().map(|c| format!("{}.{}.check", c.integration_id, c.id)),
        "schedule": {"type": schedule_kind, "next_fire_time": opt_time(next)},
        "report_card": {
            "type": i.kind,
            "current_step": current + 1,
            "current_step_type": steps[current].0,
            "steps": steps.iter().map(|(t, done)| json!({"type": t, "is_complete": done})).collect::<Vec<_>>(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_start_date_is_a_year_back_at_midnight() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 1, 13, 5, 0)
            .single()
            .expect("valid");
        assert_eq!(
            default_start_date(now),
            Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0)
                .single()
                .expect("valid")
        );
        let leap = Utc
            .with_ymd_and_hms(2028, 2, 29, 1, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(
            default_start_date(leap),
            Utc.with_ymd_and_hms(2027, 2, 28, 0, 0, 0)
                .single()
                .expect("valid")
        );
    }
}
