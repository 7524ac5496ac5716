//! `/v4/usage` and `/v4/settings`: row usage in the billing period, the row limit and the webhook.

use super::extract::Body;
use super::parse_json;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use seam_runtime::notify::SETTING_WEBHOOK_URL;
use seam_runtime::usage::{usage_summary, DEFAULT_ROW_LIMIT, SETTING_ROW_LIMIT, SETTING_STOP_AT_LIMIT};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// `GET /v4/usage`.
pub async fn usage(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    let summary = usage_summary(state.metastore.as_ref(), now).await?;
    let rows = state
        .metastore
        .usage(summary.period_start, summary.period_end)
        .await?;
    let integrations = state.metastore.list_integrations(true).await?;
    let mut by_source: BTreeMap<i64, i64> = BTreeMap::new();
    let mut by_table: BTreeMap<(i64, String), i64> = BTreeMap::new();
    let mut by_day: BTreeMap<String, i64> = BTreeMap::new();
    for r in &rows {
        *by_source.entry(r.integration_id).or_default() += r.rows;
        *by_table
            .entry((r.integration_id, r.table_name.clone()))
            .or_default() += r.rows;
        *by_day.entry(r.day.to_string()).or_default() += r.rows;
    }
    let source_info = |id: i64| integrations.iter().find(|i| i.id == id);
    let mut sources: Vec<Value> = by_source
        .iter()
        .map(|(id, rows)| {
            let i = source_info(*id);
            json!({"source_id": id, "name": i.map(|i| i.name.clone()), "display_name": i.map(|i| i.display_name.clone()),
                "rows": rows})
        })
        .collect();
    sources.sort_by_key(|v| std::cmp::Reverse(v["rows"].as_i64().unwrap_or(0)));
    let mut tables: Vec<(&(i64, String), &i64)> = by_table.iter().collect();
    tables.sort_by_key(|(_, rows)| std::cmp::Reverse(**rows));
    Ok(Json(json!({
        "billing_period": {"start": summary.period_start.to_string(), "end": summary.period_end.to_string()},
        "row_limit": summary.row_limit,
        "stop_replication_at_limit": summary.stop_replication_at_limit,
        "rows_used": summary.rows_used,
        "percent_used": (summary.percent_used() * 100.0).round() / 100.0,
        "by_source": sources,
        "by_table": tables.iter().map(|((id, t), rows)| json!({"source_id": id, "table_name": t, "rows": rows}))
            .collect::<Vec<_>>(),
        "by_day": by_day.iter().map(|(d, rows)| json!({"day": d, "rows": rows})).collect::<Vec<_>>(),
    })))
}

async fn settings_json(state: &AppState) -> Result<Value, ApiError> {
    let m = &state.metastore;
    let limit = m
        .get_setting(SETTING_ROW_LIMIT)
        .await?
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(DEFAULT_ROW_LIMIT);
    let stop = m
        .get_setting(SETTING_STOP_AT_LIMIT)
        .await?
        .is_some_and(|s| s == "true");
    let url = m
        .get_setting(SETTING_WEBHOOK_URL)
        .await?
        .filter(|s| !s.is_empty());
    Ok(json!({"row_limit": limit, "stop_replication_at_limit": stop, "notification_webhook_url": url}))
}

/// `GET /v4/settings`.
pub async fn get_settings(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(settings_json(&state).await?))
}

/// `PUT /v4/settings`.
pub async fn put_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let body: Map<String, Value> = parse_json(&headers, &body)?;
    let mut writes: Vec<(&str, String)> = Vec::new();
    for (k, v) in &body {
        match (k.as_str(), v) {
            ("row_limit", Value::Number(n)) if n.as_i64().is_some_and(|n| n > 0) => {
                writes.push((SETTING_ROW_LIMIT, n.to_string()));
            }
            ("row_limit", _) => {
                return Err(ApiError::InvalidBody(
                    "row_limit must be a positive integer".to_owned(),
                ))
            }
            ("stop_replication_at_limit", Value::Bool(b)) => {
                writes.push((SETTING_STOP_AT_LIMIT, b.to_string()))
            }
            ("stop_replication_at_limit", _) => {
                return Err(ApiError::InvalidBody(
                    "stop_replication_at_limit must be true or false".to_owned(),
                ))
            }
            ("notification_webhook_url", Value::Null) => writes.push((SETTING_WEBHOOK_URL, String::new())),
            ("notification_webhook_url", Value::String(u)) => {
                let parsed = reqwest::Url::parse(u).map_err(|e| {
                    ApiError::InvalidBody(format!("notification_webhook_url {u:?} is not a URL: {e}"))
                })?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(ApiError::InvalidBody(
                        "notification_webhook_url must be an http or https URL with a host".to_owned(),
                    ));
                }
                crate::notify::check_target(&parsed, &state.security.webhooks)
                    .await
                    .map_err(|e| ApiError::InvalidBody(e.to_string()))?;
                writes.push((SETTING_WEBHOOK_URL, u.clone()));
            }
            ("notification_webhook_url", _) => {
                return Err(ApiError::InvalidBody(
                    "notification_webhook_url must be a URL or null".to_owned(),
                ))
            }
            (other, _) => {
                return Err(ApiError::InvalidBody(format!(
                "unknown setting {other}: use row_limit, stop_replication_at_limit, notification_webhook_url"
            )))
            }
        }
    }
    for (k, v) in writes {
        state.metastore.set_setting(k, &v).await?;
    }
    state.scheduler.changed();
    Ok(Json(settings_json(&state).await?))
}
