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
use seam_metastore::{
    CheckStatus, ConnectionCheck, Credentials, Integration, IntegrationProperties, IntegrationUpdate,
    NewIntegration, ZENDESK_TYPE,
};
use seam_runtime::scheduler::{
    consecutive_failures, integration_status, parse_quartz_cron, validate_frequency, Schedule, ScheduleError,
    DEFAULT_FREQUENCY_MINUTES,
};
use serde_json::{json, Map, Value};
use tracing::info;

/// Keys a `properties` object may hold.
const PROPERTY_KEYS: [&str; 8] = [
    "subdomain",
    "email",
    "api_token",
    "access_token",
    "start_date",
    "frequency_in_minutes",
    "anchor_time",
    "cron_expression",
];

/// Checks a Zendesk site prefix: `[a-z0-9][a-z0-9-]*`, at most 63 characters. This is what keeps seam
/// from being aimed at any host other than `<prefix>.zendesk.com`.
pub fn validate_subdomain(s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidProperties(format!(
            "subdomain {s:?} is invalid: enter only the Zendesk site prefix (acme for acme.zendesk.com): lowercase \
             letters, digits and '-', starting with a letter or digit"
        )))
    }
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
/// credentials; validates every rule. Returns the new properties and whether the start date changed.
fn apply_properties(
    current: Option<&IntegrationProperties>,
    credentials: &mut Credentials,
    map: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<IntegrationProperties, ApiError> {
    if let Some(unknown) = map.keys().find(|k| !PROPERTY_KEYS.contains(&k.as_str())) {
        return Err(ApiError::InvalidProperties(format!(
            "unknown property {unknown}: properties may only include {}",
            PROPERTY_KEYS.join(", ")
        )));
    }
    let mut p = current.cloned().unwrap_or(IntegrationProperties {
        subdomain: String::new(),
        email: None,
        start_date: default_start_date(now),
        frequency_in_minutes: DEFAULT_FREQUENCY_MINUTES,
        anchor_time: None,
        cron_expression: None,
    });
    for (key, v) in map {
        match key.as_str() {
            "subdomain" => {
                let s = string_or_null(key, v)?.unwrap_or_default();
                validate_subdomain(s)?;
                p.subdomain = s.to_owned();
            }
            "email" => {
                p.email = match string_or_null(key, v)? {
                    Some(e) if e.contains('@') && !e.chars().any(char::is_whitespace) => Some(e.to_owned()),
                    Some(e) => {
                        return Err(ApiError::InvalidProperties(format!(
                            "email {e:?} is not an email address"
                        )))
                    }
                    None => None,
                }
            }
            "api_token" => {
                credentials.api_token = string_or_null(key, v)?.filter(|s| !s.is_empty()).map(Into::into);
            }
            "access_token" => {
                credentials.access_token = string_or_null(key, v)?.filter(|s| !s.is_empty()).map(Into::into);
            }
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
    if p.subdomain.is_empty() {
        return Err(ApiError::InvalidProperties(
            "properties.subdomain is required: the Zendesk site prefix (acme for acme.zendesk.com)"
                .to_owned(),
        ));
    }
    if credentials.access_token.is_none() && (credentials.api_token.is_none() || p.email.is_none()) {
        return Err(ApiError::InvalidProperties(
            "credentials are required: give properties.email and properties.api_token, or properties.access_token \
             (OAuth)"
                .to_owned(),
        ));
    }
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

/// `POST /v4/sources`.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<impl IntoResponse, ApiError> {
    let body: CreateBody = parse_json(&headers, &body)?;
    let kind = body.kind.unwrap_or_else(|| ZENDESK_TYPE.to_owned());
    if kind != ZENDESK_TYPE {
        return Err(ApiError::InvalidBody(format!(
            "unknown source type {kind}: seam knows {ZENDESK_TYPE}"
        )));
    }
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
    let properties = apply_properties(None, &mut credentials, &body.properties, now)?;
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
        Some(Value::Object(map)) => apply_properties(Some(&current.properties), &mut credentials, map, now)?,
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
    // A new start date re-replicates from it; a new subdomain is another Zendesk account whose ids
    // would overwrite the old account's rows under the same keys. Both reset every bookmark, so both
    // need the caller's confirmation.
    let start_date_changed = properties.start_date != current.properties.start_date;
    let subdomain_changed = properties.subdomain != current.properties.subdomain;
    let reset = start_date_changed || subdomain_changed;
    if reset && !confirm_reset {
        let what = match (start_date_changed, subdomain_changed) {
            (true, true) => format!(
                "changing start_date from {} to {} and subdomain from {} to {}",
                time(current.properties.start_date),
                time(properties.start_date),
                current.properties.subdomain,
                properties.subdomain
            ),
            (true, false) => format!(
                "changing start_date from {} to {}",
                time(current.properties.start_date),
                time(properties.start_date)
            ),
            _ => format!(
                "changing subdomain from {} to {} points this integration at another Zendesk account (its \
                 records would overwrite this account's rows with the same ids in schema {}); it",
                current.properties.subdomain, properties.subdomain, current.name
            ),
        };
        return Err(ApiError::ResetRequired(format!(
            "{what} resets every bookmark and re-replicates all data from the start date (this counts toward row \
             usage and cannot be undone): repeat the request with \"confirm_reset\": true"
        )));
    }
    let connection_changed = credentials != before_credentials
        || properties.subdomain != current.properties.subdomain
        || properties.email != current.properties.email;
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
            start_date_changed, subdomain_changed, "bookmarks reset, full re-replication queued"
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
    state.scheduler.stop(current.id);
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

/// Stitch's source object, with seam's status fields. Never includes credentials.
pub async fn source_json(state: &AppState, i: &Integration) -> Result<Value, ApiError> {
    let jobs = state.metastore.list_jobs(i.id, 20).await?;
    let running = state.scheduler.is_running(i.id);
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
    let auth_method = match credentials {
        Some(Credentials {
            access_token: Some(_),
            ..
        }) => "access_token",
        Some(_) => "api_token",
        None => "unreadable",
    };
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
    let p = &i.properties;
    Ok(json!({
        "id": i.id,
        "type": i.kind,
        "display_name": i.display_name,
        "name": i.name,
        "properties": {
            "subdomain": p.subdomain,
            "email": p.email,
            "start_date": time(p.start_date),
            "frequency_in_minutes": p.frequency_in_minutes.to_string(),
            "anchor_time": opt_time(p.anchor_time),
            "cron_expression": p.cron_expression,
            "auth_method": auth_method,
        },
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
    fn subdomains_cannot_name_another_host() {
        for ok in ["acme", "acme-eu", "a1", "0day"] {
            assert!(validate_subdomain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-acme",
            "Acme",
            "acme.evil.com",
            "acme/..",
            "127.0.0.1",
            "a b",
            "acme:80",
            "évil",
        ] {
            assert!(validate_subdomain(bad).is_err(), "{bad}");
        }
    }

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
