//! The API's error: Stitch's JSON shape, `{"error": "<Code>", "data": {"message": "..."}}`, everywhere.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use seam_metastore::MetastoreError;
use seam_runtime::scheduler::SchedulerError;
use serde_json::json;
use thiserror::Error;
use tracing::error;

/// An API error. The message tells the caller what to fix; it never holds a credential.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The schema name is invalid or taken (400).
    #[error("{0}")]
    InvalidName(String),
    /// The display name is invalid (400).
    #[error("{0}")]
    InvalidDisplayName(String),
    /// The body is not what the route accepts (400).
    #[error("{0}")]
    InvalidBody(String),
    /// A property breaks its rule (400).
    #[error("{0}")]
    InvalidProperties(String),
    /// The cron expression is invalid (400).
    #[error("{0}")]
    InvalidCronExpression(String),
    /// No or wrong bearer token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// No such resource (404).
    #[error("{0}")]
    NotFound(String),
    /// Changing the start date needs `confirm_reset: true` (409).
    #[error("{0}")]
    ResetRequired(String),
    /// The request conflicts with the current state, e.g. a job already runs (409).
    #[error("{0}")]
    Conflict(String),
    /// Nothing is selected (409).
    #[error("{0}")]
    NotConfigured(String),
    /// A failure inside seam (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Stitch's code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidName(_) => "InvalidName",
            ApiError::InvalidDisplayName(_) => "InvalidDisplayName",
            ApiError::InvalidBody(_) => "InvalidBody",
            ApiError::InvalidProperties(_) => "InvalidProperties",
            ApiError::InvalidCronExpression(_) => "InvalidCronExpression",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::NotFound(_) => "NotFound",
            ApiError::ResetRequired(_) => "ResetRequired",
            ApiError::Conflict(_) => "Conflict",
            ApiError::NotConfigured(_) => "NotConfigured",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidName(_)
            | ApiError::InvalidDisplayName(_)
            | ApiError::InvalidBody(_)
            | ApiError::InvalidProperties(_)
            | ApiError::InvalidCronExpression(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::ResetRequired(_) | ApiError::Conflict(_) | ApiError::NotConfigured(_) => {
                StatusCode::CONFLICT
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A source that does not exist.
    pub fn source_not_found(id: impl std::fmt::Display) -> Self {
        ApiError::NotFound(format!("source {id} not found"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(m) = &self {
            error!(error = %m, "internal error answering a request");
        }
        let body = json!({"error": self.code(), "data": {"message": self.to_string()}});
        (self.status(), axum::Json(body)).into_response()
    }
}

impl From<MetastoreError> for ApiError {
    fn from(e: MetastoreError) -> Self {
        match e {
            MetastoreError::NameTaken { name } => ApiError::InvalidName(format!("non-unique name ({name})")),
            MetastoreError::NotFound { what, id } => ApiError::NotFound(format!("{what} {id} not found")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::NotFound(id) => ApiError::source_not_found(id),
            e @ SchedulerError::AlreadyRunning { .. } => ApiError::Conflict(e.to_string()),
            e @ SchedulerError::NotConfigured(_) => ApiError::NotConfigured(e.to_string()),
            e @ SchedulerError::ShuttingDown => ApiError::Conflict(e.to_string()),
            SchedulerError::Metastore(m) => m.into(),
        }
    }
}
