//! Jobs: Run Extraction Now / Stop Extraction, the Extractions list, live progress and logs.

use super::extract::{Path, Query};
use super::sources::load_live;
use super::{opt_time, parse_id, time};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use seam_metastore::{Job, JobStatus, LogLevel};
use serde::Deserialize;
use serde_json::{json, Value};

fn exit_description(status: Option<i32>) -> Option<&'static str> {
    status.map(|s| {
        if s == 0 {
            "Completed successfully"
        } else {
            "Failed"
        }
    })
}

/// Stitch's extraction object.
pub fn extraction_json(j: &Job) -> Value {
    json!({
        "job_id": j.id,
        "job_name": j.job_name,
        "source_id": j.integration_id,
        "tap_name": "tap-zendesk",
        "trigger": j.trigger.as_str(),
        "status": j.status.as_str(),
        "start_time": time(j.start_time),
        "completion_time": opt_time(j.completion_time),
        "discovery_exit_status": j.discovery_exit_status,
        "discovery_description": exit_description(j.discovery_exit_status),
        "tap_exit_status": j.tap_exit_status,
        "tap_description": exit_description(j.tap_exit_status),
        "target_exit_status": j.target_exit_status,
        "target_description": exit_description(j.target_exit_status),
        "error_message": j.error_message,
        "warning_message": j.warning_message,
        "rows_loaded": j.rows_loaded,
        // Where jobs go through the queue: when the job was due, and the worker that runs it.
        "due_time": opt_time(j.due_time),
        "worker": j.worker,
    })
}

/// `POST /v4/sources/{id}/sync`.
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let i = load_live(&state, &id).await?;
    let job = state.scheduler.run_now(i.id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({"job_id": job.id, "job_name": job.job_name, "status": job.status.as_str(),
            "message": if job.status == JobStatus::Pending {
                "Extraction queued: the next free worker starts it"
            } else {
                "Extraction starting now"
            }}),
        ),
    ))
}

/// `DELETE /v4/sources/{id}/sync`.
pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let i = load_live(&state, &id).await?;
    let job_id = state
        .scheduler
        .stop(i.id)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no extraction is running for source {}", i.id)))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": job_id, "stopping": true})),
    ))
}

/// `?limit=`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
}

/// `GET /v4/sources/{id}/extractions`.
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "source")?;
    state
        .metastore
        .get_integration(id)
        .await?
        .ok_or_else(|| ApiError::source_not_found(id))?;
    let jobs = state
        .metastore
        .list_jobs(id, q.limit.unwrap_or(50).min(1000))
        .await?;
    Ok(Json(Value::Array(jobs.iter().map(extraction_json).collect())))
}

/// `GET /v4/sources/{id}/extractions/current`.
pub async fn current(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let i = load_live(&state, &id).await?;
    let progress = state
        .scheduler
        .progress(i.id)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no extraction is running for source {}", i.id)))?;
    let mut v = serde_json::to_value(&progress).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        m.insert("started_at".into(), Value::String(time(progress.started_at)));
        m.insert("source_id".into(), json!(i.id));
    }
    Ok(Json(v))
}

async fn job_of(state: &AppState, id: &str, job_id: &str) -> Result<Job, ApiError> {
    let id = parse_id(id, "source")?;
    let job_id = parse_id(job_id, "extraction")?;
    match state.metastore.get_job(job_id).await? {
        Some(j) if j.integration_id == id => Ok(j),
        _ => Err(ApiError::NotFound(format!(
            "extraction {job_id} of source {id} not found"
        ))),
    }
}

/// `GET /v4/sources/{id}/extractions/{job_id}`.
pub async fn get_one(
    State(state): State<AppState>,
    Path((id, job_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(extraction_json(&job_of(&state, &id, &job_id).await?)))
}

/// `?format=text`.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    format: Option<String>,
}

/// `GET /v4/sources/{id}/extractions/{job_id}/logs`.
pub async fn logs(
    State(state): State<AppState>,
    Path((id, job_id)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let text = match q.format.as_deref() {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return Err(ApiError::InvalidQuery(format!(
                "format {other} is unknown: use json (the default) or text"
            )))
        }
    };
    let job = job_of(&state, &id, &job_id).await?;
    let lines = state.metastore.job_logs(job.id).await?;
    if text {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    let as_json = |l: &seam_metastore::LogLine| {
        json!({"timestamp": time(l.at), "location": l.location.as_str(), "level": l.level.as_str(),
            "message": l.message, "line": l.to_string()})
    };
    let errors: Vec<Value> = lines
        .iter()
        .filter(|l| l.level >= LogLevel::Error)
        .map(as_json)
        .collect();
    Ok(Json(json!({
        "job_name": job.job_name,
        "lines": lines.iter().map(as_json).collect::<Vec<_>>(),
        "errors": errors,
    }))
    .into_response())
}
