//! The REST API, one module per resource. [`ROUTES`] is the one list of routes: the router is built
//! from it and so is the OpenAPI document, so neither can forget one.

pub mod extract;
pub mod extractions;
pub mod loads;
pub mod notifications;
pub mod schemas;
pub mod sources;
pub mod streams;
pub mod system;
pub mod usage;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;
use serde::de::DeserializeOwned;

/// The largest request body the API reads (the biggest real one, a stream selection over every
/// field of every stream, is a few tens of kilobytes); larger ones get 413 `PayloadTooLarge`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A query parameter a route understands.
#[derive(Debug, Clone, Copy)]
pub struct QueryParam {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Its values.
    pub kind: ParamKind,
}

/// The values a query parameter takes.
#[derive(Debug, Clone, Copy)]
pub enum ParamKind {
    /// A whole number in `[min, max]`.
    Integer {
        /// Smallest.
        min: u64,
        /// Largest.
        max: u64,
    },
    /// `true` or `false`.
    Boolean,
    /// One of these words.
    OneOf(&'static [&'static str]),
}

const LIMIT: QueryParam = QueryParam {
    name: "limit",
    description: "at most this many (capped at 1000)",
    kind: ParamKind::Integer {
        min: 0,
        max: u32::MAX as u64,
    },
};
const PERIOD: QueryParam = QueryParam {
    name: "period",
    description: "24h, this_billing (default) or prev_billing",
    kind: ParamKind::OneOf(&["24h", "this_billing", "prev_billing"]),
};
const FORMAT: QueryParam = QueryParam {
    name: "format",
    description: "text: the raw Stitch log lines as text/plain",
    kind: ParamKind::OneOf(&["json", "text"]),
};
const INCLUDE_DISMISSED: QueryParam = QueryParam {
    name: "include_dismissed",
    description: "include dismissed notifications",
    kind: ParamKind::Boolean,
};

/// What a route answers when it succeeds.
#[derive(Debug, Clone, Copy)]
pub enum Success {
    /// JSON of this schema (see [`schemas`]), with this status.
    Json(u16, &'static str),
    /// JSON, or with `?format=text` plain text.
    JsonOrText(u16, &'static str),
    /// Plain text.
    Text(u16),
    /// No body.
    Empty(u16),
}

/// One route: method, path (axum syntax, `{param}`), summary, whether it needs the bearer token, its
/// body and success response (names of [`schemas`]) and query parameters.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// HTTP method, lowercase.
    pub method: &'static str,
    /// Path.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Needs `Authorization: Bearer`.
    pub auth: bool,
    /// The JSON body's schema, when the route reads one.
    pub body: Option<&'static str>,
    /// The query parameters.
    pub query: &'static [QueryParam],
    /// The success response.
    pub success: Success,
}

macro_rules! routes {
    ($( $method:ident $path:literal $auth:literal $summary:literal
        body($body:expr) query($query:expr) => $success:expr, $handler:path ;)*) => {
        /// Every route the API serves.
        pub const ROUTES: &[RouteDoc] = &[
            $( RouteDoc { method: stringify!($method), path: $path, summary: $summary, auth: $auth,
                body: $body, query: $query, success: $success }, )*
        ];

        fn route_table() -> Vec<(&'static str, bool, MethodRouter<AppState>)> {
            vec![ $( ($path, $auth, $method($handler)), )* ]
        }
    };
}

use Success::{Empty, Json, JsonOrText, Text};

routes! {
    get "/health" false "Liveness: the service answers"
        body(None) query(&[]) => Json(200, "Health"), system::health;
    get "/openapi.json" false "This OpenAPI document"
        body(None) query(&[]) => Json(200, "OpenApiDocument"), system::openapi;
    get "/metrics" false "Prometheus metrics"
        body(None) query(&[]) => Text(200), system::metrics;
    get "/v4/source-types" true "Connectors integrations can use, with their settings as JSON Schema"
        body(None) query(&[]) => Json(200, "SourceTypeList"), sources::types;
    post "/v4/sources" true "Create an integration; starts a connection check and discovery"
        body(Some("SourceCreate")) query(&[]) => Json(201, "Source"), sources::create;
    get "/v4/sources" true "List integrations"
        body(None) query(&[]) => Json(200, "SourceList"), sources::list;
    get "/v4/sources/{id}" true "Get an integration"
        body(None) query(&[]) => Json(200, "Source"), sources::get_one;
    put "/v4/sources/{id}" true "Update display_name, properties, paused_at (confirm_reset for a new start_date or account)"
        body(Some("SourceUpdate")) query(&[]) => Json(200, "Source"), sources::update;
    delete "/v4/sources/{id}" true "Delete an integration (warehouse data stays)"
        body(None) query(&[]) => Json(200, "Source"), sources::delete_one;
    get "/v4/sources/{id}/last-connection-check" true "The latest connection check"
        body(None) query(&[]) => Json(200, "ConnectionCheck"), sources::last_check;
    post "/v4/sources/{id}/check" true "Run the connection check and discovery again"
        body(None) query(&[]) => Json(202, "ConnectionCheck"), sources::recheck;
    get "/v4/sources/{id}/streams" true "Discovered streams with their selection"
        body(None) query(&[]) => Json(200, "StreamSummaryList"), streams::list;
    put "/v4/sources/{id}/streams" true "Select streams and fields (metadata breadcrumbs)"
        body(Some("StreamsUpdate")) query(&[]) => Json(200, "StreamSummaryList"), streams::update_many;
    get "/v4/sources/{id}/streams/{stream}" true "One stream: schema, metadata, fields"
        body(None) query(&[]) => Json(200, "StreamDetail"), streams::get_one;
    put "/v4/sources/{id}/streams/{stream}" true "Select one stream and its fields"
        body(Some("StreamUpdate")) query(&[]) => Json(200, "StreamDetail"), streams::update_one;
    post "/v4/sources/{id}/sync" true "Run Extraction Now"
        body(None) query(&[]) => Json(202, "SyncStarted"), extractions::start;
    delete "/v4/sources/{id}/sync" true "Stop Extraction"
        body(None) query(&[]) => Json(202, "SyncStopping"), extractions::stop;
    get "/v4/sources/{id}/extractions" true "Jobs, newest first"
        body(None) query(&[LIMIT]) => Json(200, "ExtractionList"), extractions::list;
    get "/v4/sources/{id}/extractions/current" true "Live progress of the running job"
        body(None) query(&[]) => Json(200, "Progress"), extractions::current;
    get "/v4/sources/{id}/extractions/{job_id}" true "One job"
        body(None) query(&[]) => Json(200, "Extraction"), extractions::get_one;
    get "/v4/sources/{id}/extractions/{job_id}/logs" true "A job's extraction log"
        body(None) query(&[FORMAT]) => JsonOrText(200, "JobLogs"), extractions::logs;
    get "/v4/sources/{id}/loads" true "Loads per table"
        body(None) query(&[PERIOD]) => Json(200, "LoadList"), loads::list;
    get "/v4/usage" true "Row usage in the billing period"
        body(None) query(&[]) => Json(200, "Usage"), usage::usage;
    get "/v4/settings" true "Row limit, stop-at-limit, notification webhook"
        body(None) query(&[]) => Json(200, "Settings"), usage::get_settings;
    put "/v4/settings" true "Change settings"
        body(Some("SettingsUpdate")) query(&[]) => Json(200, "Settings"), usage::put_settings;
    get "/v4/notifications" true "In-app notifications"
        body(None) query(&[INCLUDE_DISMISSED, LIMIT]) => Json(200, "NotificationList"), notifications::list;
    post "/v4/notifications/{id}/dismiss" true "Dismiss a notification"
        body(None) query(&[]) => Empty(204), notifications::dismiss;
}

/// The methods `path` answers, for an `Allow` header (`GET` brings `HEAD`, as axum serves both).
pub fn allowed_methods(path: &str) -> String {
    let mut methods: Vec<String> = Vec::new();
    for r in ROUTES.iter().filter(|r| r.path == path) {
        let m = r.method.to_ascii_uppercase();
        if m == "GET" {
            methods.push("HEAD".to_owned());
        }
        methods.push(m);
    }
    methods.sort();
    methods.dedup();
    methods.join(", ")
}

/// The API router: public routes, and the `/v4` routes behind the bearer token. Every answer the
/// API gives, axum's own rejections included, is JSON in the error shape of [`ApiError`]; a method a
/// path does not serve is 405 with `Allow`.
pub fn router(state: AppState) -> Router {
    let mut public = Router::new();
    let mut private = Router::new();
    let mut paths: Vec<(&'static str, bool, MethodRouter<AppState>)> = Vec::new();
    // Several methods share a path: merge them into one MethodRouter per path.
    for (path, auth, mr) in route_table() {
        if let Some(existing) = paths.iter_mut().find(|(p, _, _)| *p == path) {
            let taken = std::mem::take(&mut existing.2);
            existing.2 = taken.merge(mr);
        } else {
            paths.push((path, auth, mr));
        }
    }
    for (path, auth, mr) in paths {
        let allow = allowed_methods(path);
        let mr = mr.fallback(move || {
            let allow = allow.clone();
            async move { ApiError::MethodNotAllowed { allow } }
        });
        if auth {
            private = private.route(path, mr);
        } else {
            public = public.route(path, mr);
        }
    }
    let private = private.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::auth::require_token,
    ));
    public
        .merge(private)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            system::count_requests,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state)
}

/// Middleware, the last line: an error answer that is not JSON (something below answered in plain
/// text) is rewritten into the API's error shape, keeping its status and headers.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    let mut fresh = ApiError::Http { status, message }.into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            fresh.headers_mut().append(name.clone(), value.clone());
        }
    }
    fresh
}

/// Parses a JSON body; any problem is `InvalidBody` saying what is wrong. A non-empty body must be
/// sent as `Content-Type: application/json` (else 415 `UnsupportedMediaType`).
pub fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::InvalidBody("the request needs a JSON body".to_owned()));
    }
    require_json_content_type(headers)?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidBody(format!("the body is not valid JSON for this route: {e}")))
}

/// A body was sent: it must say it is JSON.
pub fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "the body must be JSON sent with Content-Type: application/json (got {:?})",
            if content_type.is_empty() {
                "none"
            } else {
                content_type
            }
        )))
    }
}

/// Parses a numeric id from the path; anything else is a 404.
pub fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("{what} {raw} not found")))
}

/// RFC 3339 with milliseconds, `Z`.
pub fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// [`time`] for optional times.
pub fn opt_time(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    t.map(time)
}
