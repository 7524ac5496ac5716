//! `/v4/notifications`: the in-app list.

use super::extract::{Path, Query};
use super::{opt_time, parse_id, time};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use seam_metastore::Notification;
use serde::Deserialize;
use serde_json::{json, Value};

/// The JSON shape of a notification (also what the webhook receives).
pub fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "level": n.level.as_str(),
        "code": n.code,
        "source_id": n.integration_id,
        "subject": n.subject,
        "message": n.message,
        "created_at": time(n.created_at),
        "dismissed_at": opt_time(n.dismissed_at),
    })
}

/// `?include_dismissed=true&limit=`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    include_dismissed: Option<bool>,
    limit: Option<u32>,
}

/// `GET /v4/notifications`.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let list = state
        .metastore
        .list_notifications(
            q.include_dismissed.unwrap_or(false),
            q.limit.unwrap_or(100).min(1000),
        )
        .await?;
    Ok(Json(Value::Array(list.iter().map(notification_json).collect())))
}

/// `POST /v4/notifications/{id}/dismiss`.
pub async fn dismiss(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "notification")?;
    state
        .metastore
        .dismiss_notification(id, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
