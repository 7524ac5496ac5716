//! `/v4/sources/{id}/loads`: per-table loading reports (Stitch's Loads tab).

use super::extract::{Path, Query};
use super::{opt_time, parse_id};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, TimeZone as _, Utc};
use seam_runtime::usage::usage_summary;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `?period=24h|this_billing|prev_billing`.
#[derive(Debug, Deserialize)]
pub struct LoadsQuery {
    period: Option<String>,
}

fn midnight(d: chrono::NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN))
}

/// `GET /v4/sources/{id}/loads`.
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LoadsQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "source")?;
    let integration = state
        .metastore
        .get_integration(id)
        .await?
        .ok_or_else(|| ApiError::source_not_found(id))?;
    let now = state.clock.now();
    let usage = usage_summary(state.metastore.as_ref(), now).await?;
    let this_start = midnight(usage.period_start);
    let (since, until) = match q.period.as_deref().unwrap_or("this_billing") {
        "24h" => (now - Duration::hours(24), None),
        "this_billing" => (this_start, None),
        "prev_billing" => (
            this_start - Duration::days(seam_runtime::usage::BILLING_PERIOD_DAYS),
            Some(this_start),
        ),
        other => {
            return Err(ApiError::InvalidQuery(format!(
                "period {other} is unknown: use 24h, this_billing or prev_billing"
            )))
        }
    };
    let loads = state.metastore.list_loads(id, since).await?;
    // Newest job first: the first row seen per table carries its latest state.
    let mut tables: BTreeMap<String, Value> = BTreeMap::new();
    for l in loads
        .iter()
        .filter(|l| until.is_none_or(|u| l.last_batch_loaded_at.is_none_or(|t| t < u)))
    {
        let entry = tables.entry(l.table_name.clone()).or_insert_with(|| {
            json!({
                "source_id": id,
                "source_name": integration.name,
                "stream_name": l.table_name,
                "rows_loaded": 0,
                "last_batch_loaded_at": Value::Null,
                "max_bookmark_value": Value::Null,
                "error_state": l.error.as_ref().map(|m| json!({"message": m})),
                "last_job_id": l.job_id,
            })
        });
        let Value::Object(m) = entry else { continue };
        let rows = m.get("rows_loaded").and_then(Value::as_i64).unwrap_or(0) + l.rows;
        m.insert("rows_loaded".into(), json!(rows));
        if m.get("last_batch_loaded_at").is_some_and(Value::is_null) {
            if let Some(t) = opt_time(l.last_batch_loaded_at) {
                m.insert("last_batch_loaded_at".into(), json!(t));
            }
        }
        if m.get("max_bookmark_value").is_some_and(Value::is_null) {
            if let Some(b) = &l.max_bookmark {
                m.insert("max_bookmark_value".into(), json!(b));
            }
        }
    }
    let out: Vec<Value> = tables
        .into_values()
        .map(|mut v| {
            if let Value::Object(m) = &mut v {
                if m.get("max_bookmark_value").is_some_and(Value::is_null) {
                    m.insert("max_bookmark_value".into(), json!("Bookmark Unavailable"));
                }
            }
            v
        })
        .collect();
    Ok(Json(Value::Array(out)))
}
