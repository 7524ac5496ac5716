//! The REST API, one module per resource. [`ROUTES`] is the one list of routes: the router is built
//! from it and so is the OpenAPI document, so neither can forget one.

pub mod extractions;
pub mod loads;
pub mod notifications;
pub mod sources;
pub mod streams;
pub mod system;
pub mod usage;

use crate::error::ApiError;
use crate::state::AppState;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;
use serde::de::DeserializeOwned;

/// One route: method, path (axum syntax, `{param}`), summary, whether it needs the bearer token.
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
}

macro_rules! routes {
    ($( $method:ident $path:literal $auth:literal $summary:literal => $handler:path ;)*) => {
        /// Every route the API serves.
        pub const ROUTES: &[RouteDoc] = &[
            $( RouteDoc { method: stringify!($method), path: $path, summary: $summary, auth: $auth }, )*
        ];

        fn route_table() -> Vec<(&'static str, bool, MethodRouter<AppState>)> {
            vec![ $( ($path, $auth, $method($handler)), )* ]
        }
    };
}

routes! {
    get "/health" false "Liveness: the service answers" => system::health;
    get "/openapi.json" false "This OpenAPI document" => system::openapi;
    get "/metrics" false "Prometheus metrics" => system::metrics;
    post "/v4/sources" true "Create an integration; starts a connection check and discovery" => sources::create;
    get "/v4/sources" true "List integrations" => sources::list;
    get "/v4/sources/{id}" true "Get an integration" => sources::get_one;
    put "/v4/sources/{id}" true "Update display_name, properties, paused_at (confirm_reset for a new start_date)" => sources::update;
    delete "/v4/sources/{id}" true "Delete an integration (warehouse data stays)" => sources::delete_one;
    get "/v4/sources/{id}/last-connection-check" true "The latest connection check" => sources::last_check;
    post "/v4/sources/{id}/check" true "Run the connection check and discovery again" => sources::recheck;
    get "/v4/sources/{id}/streams" true "Discovered streams with their selection" => streams::list;
    put "/v4/sources/{id}/streams" true "Select streams and fields (metadata breadcrumbs)" => streams::update_many;
    get "/v4/sources/{id}/streams/{stream}" true "One stream: schema, metadata, fields" => streams::get_one;
    put "/v4/sources/{id}/streams/{stream}" true "Select one stream and its fields" => streams::update_one;
    post "/v4/sources/{id}/sync" true "Run Extraction Now" => extractions::start;
    delete "/v4/sources/{id}/sync" true "Stop Extraction" => extractions::stop;
    get "/v4/sources/{id}/extractions" true "Jobs, newest first" => extractions::list;
    get "/v4/sources/{id}/extractions/current" true "Live progress of the running job" => extractions::current;
    get "/v4/sources/{id}/extractions/{job_id}" true "One job" => extractions::get_one;
    get "/v4/sources/{id}/extractions/{job_id}/logs" true "A job's extraction log" => extractions::logs;
    get "/v4/sources/{id}/loads" true "Loads per table" => loads::list;
    get "/v4/usage" true "Row usage in the billing period" => usage::usage;
    get "/v4/settings" true "Row limit, stop-at-limit, notification webhook" => usage::get_settings;
    put "/v4/settings" true "Change settings" => usage::put_settings;
    get "/v4/notifications" true "In-app notifications" => notifications::list;
    post "/v4/notifications/{id}/dismiss" true "Dismiss a notification" => notifications::dismiss;
}

/// The API router: public routes, and the `/v4` routes behind the bearer token.
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
        let mr = mr.fallback(method_not_allowed);
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
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::NotFound("this route does not accept that method: see /openapi.json".to_owned())
}

/// Parses a JSON body; any problem is `InvalidBody` saying what is wrong.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::InvalidBody("the request needs a JSON body".to_owned()));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidBody(format!("the body is not valid JSON for this route: {e}")))
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
