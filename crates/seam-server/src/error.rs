//! The API's error: Stitch's JSON shape, `{"error": "<Code>", "data": {"message": "..."}}`, everywhere.

use axum::http::header::{ALLOW, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
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
    /// The query string is not what the route accepts (400).
    #[error("{0}")]
    InvalidQuery(String),
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
    /// The path exists but not with this method (405); `allow` lists the methods it serves.
    #[error("this route does not accept that method: use {allow} (see /openapi.json)")]
    MethodNotAllowed {
        /// The `Allow` header's value.
        allow: String,
    },
    /// The body is too large (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not JSON (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many requests (429); try again after `retry_after_secs`.
    #[error("{message}")]
    TooManyRequests {
        /// What happened.
        message: String,
        /// The `Retry-After` header's value.
        retry_after_secs: u64,
    },
    /// An error answer from below the handlers (axum, tower), re-worded in this shape.
    #[error("{message}")]
    Http {
        /// Its status.
        status: StatusCode,
        /// What happened.
        message: String,
    },
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
            ApiError::InvalidQuery(_) => "InvalidQuery",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::PayloadTooLarge(_) => "PayloadTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Http { status, .. } => status_code_name(*status),
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
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidProperties(_)
            | ApiError::InvalidCronExpression(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::ResetRequired(_) | ApiError::Conflict(_) | ApiError::NotConfigured(_) => {
                StatusCode::CONFLICT
            }
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Http { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A source that does not exist.
    pub fn source_not_found(id: impl std::fmt::Display) -> Self {
        ApiError::NotFound(format!("source {id} not found"))
    }
}

/// The code of an error answer that came from below the handlers, by status.
fn status_code_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "InvalidBody",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::REQUEST_TIMEOUT => "RequestTimeout",
        StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        s if s.is_server_error() => "InternalError",
        _ => "InvalidRequest",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(m) = &self {
            error!(error = %m, "internal error answering a request");
        }
        let body = json!({"error": self.code(), "data": {"message": self.to_string()}});
        let mut response = (self.status(), axum::Json(body)).into_response();
        match &self {
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    response.headers_mut().insert(ALLOW, v);
                }
            }
            ApiError::TooManyRequests { retry_after_secs, .. } => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
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
