//! Errors talking to Zendesk, each with the [`ErrorKind`] that drives retries.

use crate::headers::Asked;
use seam_core::{Classify, ErrorKind, SourceError};
use std::time::Duration;
use thiserror::Error;

/// A request to Zendesk failed. Messages name the endpoint and say what to fix.
#[derive(Debug, Error)]
pub enum ApiError {
    /// 401 with an API token.
    #[error(
        "zendesk rejected the API token for {email} (401): check the email and token in Integration Settings"
    )]
    BadApiToken {
        /// The API user's email.
        email: String,
    },
    /// 401 with an OAuth token.
    #[error("zendesk rejected the OAuth access token (401): reconnect the integration to get a new token")]
    BadOAuthToken,
    /// The subdomain has no Zendesk account.
    #[error("zendesk account {subdomain}.zendesk.com does not exist (404): check the subdomain in Integration Settings")]
    UnknownAccount {
        /// The configured subdomain.
        subdomain: String,
    },
    /// 403: the plan or the user's role does not give access.
    #[error("zendesk denied access to {path} (403): {message}")]
    Forbidden {
        /// The endpoint.
        path: String,
        /// Zendesk's explanation.
        message: String,
    },
    /// 404 for a record (e.g. a deleted ticket's audits).
    #[error("zendesk has no {path} (404)")]
    NotFound {
        /// The endpoint.
        path: String,
    },
    /// 429.
    #[error("zendesk rate limit reached on {path} (429){}", retry_after.as_ref().map(|a| format!(", retry after {}", a.said)).unwrap_or_default())]
    RateLimited {
        /// The endpoint.
        path: String,
        /// The `Retry-After` header, when sent and readable.
        retry_after: Option<Asked>,
    },
    /// Zendesk asked for a wait longer than seam accepts (`max_rate_limit_wait_seconds`).
    #[error("zendesk asked seam to wait {} before {before} ({}), more than the {} s limit (max_rate_limit_wait_seconds): the next scheduled run tries again", asked.said, asked.header, limit.as_secs())]
    WaitTooLong {
        /// What seam was about to do, e.g. `retrying /api/v2/tags.json`.
        before: String,
        /// What Zendesk asked for.
        asked: Asked,
        /// The longest wait seam accepts.
        limit: Duration,
    },
    /// The read was cancelled while seam waited (on Zendesk, the rate limiter, a backoff or the
    /// output). Streams treat it as a stop, not a failure.
    #[error("the read was cancelled while waiting on {waiting_on}")]
    Cancelled {
        /// What seam was waiting on.
        waiting_on: String,
    },
    /// 5xx (and 409, which Zendesk uses for transient conflicts).
    #[error("zendesk answered {status} for {path}: {snippet}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The endpoint.
        path: String,
        /// The start of the body.
        snippet: String,
    },
    /// Timeout, reset, refused connection, body cut off.
    #[error("request to zendesk {path} failed: {source}")]
    Network {
        /// The endpoint.
        path: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The body is not the JSON expected (truncated or malformed).
    #[error("zendesk sent a malformed or truncated body for {path}: {source}")]
    Malformed {
        /// The endpoint.
        path: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Another 4xx: the request itself is wrong.
    #[error("zendesk rejected {path} ({status}): {snippet}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The endpoint.
        path: String,
        /// The start of the body.
        snippet: String,
    },
}

impl Classify for ApiError {
    fn kind(&self) -> ErrorKind {
        match self {
            ApiError::BadApiToken { .. } | ApiError::BadOAuthToken | ApiError::Forbidden { .. } => {
                ErrorKind::Auth
            }
            ApiError::UnknownAccount { .. } => ErrorKind::Config,
            ApiError::RateLimited { retry_after, .. } => ErrorKind::RateLimited {
                retry_after: retry_after.as_ref().map(|a| a.wait),
            },
            ApiError::WaitTooLong { asked, .. } => ErrorKind::RateLimited {
                retry_after: Some(asked.wait),
            },
            ApiError::Server { .. } | ApiError::Network { .. } | ApiError::Malformed { .. } => {
                ErrorKind::Transient
            }
            ApiError::NotFound { .. } | ApiError::Rejected { .. } | ApiError::Cancelled { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

impl ApiError {
    /// True for a 403 (a plan-gated or role-gated endpoint).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, ApiError::Forbidden { .. })
    }

    /// True when the read was cancelled (a stop, not a failure).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ApiError::Cancelled { .. })
    }

    /// True for a 404 on a record.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::NotFound { .. })
    }

    /// True when an export refused a `start_time` under a minute old (nothing to read yet).
    pub fn is_too_recent_start_time(&self) -> bool {
        matches!(self, ApiError::Rejected { status: 422, snippet, .. } if snippet.contains("Too recent start_time"))
    }

    /// True when a stored export cursor was refused.
    pub fn is_invalid_cursor(&self) -> bool {
        matches!(self, ApiError::Rejected { status: 400 | 422, snippet, .. } if snippet.to_ascii_lowercase().contains("cursor"))
    }
}

impl From<ApiError> for SourceError {
    fn from(e: ApiError) -> Self {
        SourceError::new(e.kind(), e)
    }
}
