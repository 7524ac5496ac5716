//! Zendesk's error responses, status codes and bodies as the API returns them.
//!
//! Bodies follow <https://developer.zendesk.com/api-reference/introduction/errors/> (and, where the
//! docs give no body, what clients in the wild parse: see each constructor).

use axum::http::StatusCode;
use serde_json::json;

/// An error answer: status, body, and optional extra headers.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Response body (JSON unless `content_type` says otherwise).
    pub body: String,
    /// Content type of `body`.
    pub content_type: &'static str,
    /// Extra response headers.
    pub headers: Vec<(&'static str, String)>,
}

const JSON: &str = "application/json; charset=utf-8";

impl ApiError {
    fn json(status: StatusCode, body: serde_json::Value) -> Self {
        Self {
            status,
            body: body.to_string(),
            content_type: JSON,
            headers: Vec::new(),
        }
    }

    /// 401 for missing or wrong credentials: `{"error":"Couldn't authenticate you"}`.
    pub fn unauthorized() -> Self {
        let mut e = Self::json(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Couldn't authenticate you"}),
        );
        e.headers
            .push(("www-authenticate", "Basic realm=\"Web Password\"".to_owned()));
        e
    }

    /// 403 for a plan-gated or role-gated endpoint (the body tap-zendesk logs for ticket_forms /
    /// sla_policies on plans without them).
    pub fn forbidden() -> Self {
        Self::json(
            StatusCode::FORBIDDEN,
            json!({"error": {"title": "Forbidden", "message": "You do not have access to this page. Please contact the account owner of this help desk for further help."}}),
        )
    }

    /// 404 for an unknown or deleted record.
    pub fn record_not_found() -> Self {
        Self::json(
            StatusCode::NOT_FOUND,
            json!({"error": "RecordNotFound", "description": "Not found"}),
        )
    }

    /// 404 for a path the API does not have.
    pub fn invalid_endpoint() -> Self {
        Self::json(
            StatusCode::NOT_FOUND,
            json!({"error": "InvalidEndpoint", "description": "Not found"}),
        )
    }

    /// 404 HTML page for a subdomain that has no Zendesk account.
    pub fn no_such_account(sub: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            body: format!(
                "<!DOCTYPE html><html><head><title>Help Center Closed | Zendesk</title></head><body><h1>Oops! This help center no longer exists</h1><p>The help center at {sub}.zendesk.com does not exist.</p></body></html>"
            ),
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
        }
    }

    /// 405 for write methods (the simulator is read-only through the API).
    pub fn method_not_allowed() -> Self {
        Self::json(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "MethodNotAllowed", "description": "The simulator only serves GET requests on /api/v2"}),
        )
    }

    /// 422 `InvalidValue` with a description, as the incremental exports answer bad parameters,
    /// e.g. `Too recent start_time. Use a start_time older than 1 minute`.
    pub fn invalid_value(description: &str) -> Self {
        Self::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "InvalidValue", "description": description}),
        )
    }

    /// 400 for bad pagination parameters (`page[size]` over 100, offset past the limit).
    pub fn bad_pagination(description: &str) -> Self {
        Self::json(
            StatusCode::BAD_REQUEST,
            json!({"error": "InvalidPaginationParameter", "description": description}),
        )
    }

    /// 400 for a malformed request.
    pub fn bad_request(description: &str) -> Self {
        Self::json(
            StatusCode::BAD_REQUEST,
            json!({"error": "InvalidValue", "description": description}),
        )
    }

    /// 429 from the API rate limiter, with `Retry-After` in seconds.
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::json(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"}),
        );
        e.headers.push(("retry-after", retry_after.to_string()));
        e
    }

    /// The answer of a [`crate::faults::PathFault`] with `status`: 403 and 404 as Zendesk words
    /// them, 429 with the API rate limiter's body (headers come from the rule), 503 as the service
    /// unavailable body, other 5xx as an internal error, anything else as a generic error.
    pub fn injected(status: u16) -> Self {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match status {
            403 => Self::forbidden(),
            404 => Self::record_not_found(),
            429 => Self::json(
                code,
                json!({"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"}),
            ),
            503 => Self::json(
                code,
                json!({"error": "ServiceUnavailable", "description": "Service temporarily unavailable"}),
            ),
            500..=599 => Self::json(
                code,
                json!({"error": "InternalServerError", "description": "Something went wrong"}),
            ),
            _ => Self::json(
                code,
                json!({"error": "InjectedFault", "description": format!("zendesk-sim answers {status} for this path (/__sim/faults/paths)")}),
            ),
        }
    }

    /// 429 from Zendesk's edge protection: no `Retry-After` header (airbytehq/airbyte#14253).
    pub fn edge_rate_limited() -> Self {
        Self::json(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"detail": "Rate limited by Zendesk edge protection", "status": 429, "title": "Too Many Requests"}),
        )
    }
}
