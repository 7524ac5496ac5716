//! seam's service: the REST API (Stitch Connect API v4 shape) over the metastore and the scheduler.
//!
//! # API (design note — the dashboard builds against this; keep it true)
//!
//! Auth: every `/v4/*` route needs `Authorization: Bearer <token>`. A token is created on first start
//! and printed once; only its SHA-256 is stored. `seam token create|list|revoke` manage tokens (a
//! revoked token is refused at once). `/health`, `/openapi.json` and `/metrics` are public.
//! Errors are always JSON, axum's own rejections included: `{"error": "<Code>", "data": {"message":
//! "<what to fix>"}}` with codes `InvalidName`, `InvalidDisplayName`, `InvalidBody`, `InvalidQuery`,
//! `InvalidProperties`, `InvalidCronExpression` (400), `Unauthorized` (401), `NotFound` (404),
//! `MethodNotAllowed` (405, with `Allow`), `ResetRequired`, `Conflict`, `NotConfigured` (409),
//! `PayloadTooLarge` (413, bodies over 1 MiB), `UnsupportedMediaType` (415: a body must be sent as
//! `application/json`), `InternalError` (500). Times are RFC 3339 UTC strings. `/openapi.json` has the
//! JSON Schema of every request and response body below (`api::schemas`).
//!
//! | route | body → response |
//! |---|---|
//! | `GET /health` | `{"status":"ok","version":"0.1.0"}` |
//! | `GET /openapi.json` | OpenAPI 3.1 document listing every route |
//! | `GET /metrics` | Prometheus text |
//! | `POST /v4/sources` | `SourceCreate` → 201 `Source`; starts a connection check + discovery |
//! | `GET /v4/sources` | `[Source]` (not deleted) |
//! | `GET /v4/sources/{id}` | `Source` (deleted ones too, with `deleted_at`) |
//! | `PUT /v4/sources/{id}` | `SourceUpdate` → `Source`; credential/subdomain changes re-run the check |
//! | `DELETE /v4/sources/{id}` | → `Source` with `deleted_at`; warehouse schema and data stay |
//! | `GET /v4/sources/{id}/last-connection-check` | `ConnectionCheck` (404 before the first) |
//! | `POST /v4/sources/{id}/check` | → 202 `ConnectionCheck` (status `running`): run check + discovery again |
//! | `GET /v4/sources/{id}/streams` | `[StreamSummary]` (empty until discovery succeeded) |
//! | `PUT /v4/sources/{id}/streams` | `{"streams":[{"tap_stream_id":"tickets","metadata":[{"breadcrumb":[],"metadata":{"selected":true}},{"breadcrumb":["properties","subject"],"metadata":{"selected":false}}]}]}` → `[StreamSummary]` |
//! | `GET /v4/sources/{id}/streams/{stream}` | `StreamDetail` |
//! | `PUT /v4/sources/{id}/streams/{stream}` | `{"metadata":[breadcrumb entries as above]}` → `StreamDetail` |
//! | `POST /v4/sources/{id}/sync` | Run Extraction Now → 202 `{"job_id":7,"job_name":"1.7.sync","status":"running"}`; 409 `Conflict` if one runs, 409 `NotConfigured` if nothing is selected |
//! | `DELETE /v4/sources/{id}/sync` | Stop Extraction → 202 `{"job_id":7,"stopping":true}`; 404 if none runs. The job ends `cancelled` within seconds (the source gets a few seconds to stop at a safe point, then is abandoned); committed rows and bookmarks are kept |
//! | `GET /v4/sources/{id}/extractions` | `[Extraction]` newest first (`?limit=`, default 50) |
//! | `GET /v4/sources/{id}/extractions/current` | `Progress` of the running job; 404 when none runs |
//! | `GET /v4/sources/{id}/extractions/{job_id}` | `Extraction` |
//! | `GET /v4/sources/{id}/extractions/{job_id}/logs` | `{"job_name":..,"lines":[{"timestamp","location","level","message","line"}],"errors":[line...]}`; `?format=text` gives the raw Stitch lines |
//! | `GET /v4/sources/{id}/loads` | `[Load]` one per table (`?period=24h|this_billing|prev_billing`, default `this_billing`) |
//! | `GET /v4/usage` | `Usage` |
//! | `GET /v4/settings` / `PUT /v4/settings` | `{"row_limit":5000000,"stop_replication_at_limit":false,"notification_webhook_url":null}` (PUT: any subset) |
//! | `GET /v4/notifications` | `[Notification]` newest first (`?include_dismissed=true`) |
//! | `POST /v4/notifications/{id}/dismiss` | → 204 |
//!
//! Shapes:
//! - `SourceCreate`: `{"display_name":"Stitch Zendesk","name":"optional_schema_name","type":"platform.zendesk",
//!   "properties":{"subdomain":"acme","email":"agent@acme.com","api_token":"…"|"access_token":"…",
//!   "start_date":"2025-12-01T00:00:00Z","frequency_in_minutes":"30","anchor_time":null,"cron_expression":null}}`.
//!   `start_date` defaults to one year back (midnight UTC); `frequency_in_minutes` (string or number) to 30,
//!   one of 30/60/180/360/720/1440; `anchor_time` needs ≥ 60; `cron_expression` is Quartz (6 or 7 fields,
//!   seconds `0`, exactly one of day-of-month/day-of-week `?`, UTC) and wins over frequency.
//! - `SourceUpdate`: only `display_name`, `properties` (partial; same keys as create), `paused_at`
//!   (any time = paused, `null` = resume), and `confirm_reset` (must be `true` when `start_date` or
//!   `subdomain` changes: the change clears every bookmark and re-replicates everything — a new
//!   subdomain is another Zendesk account, whose ids would overwrite this one's rows; without it → 409
//!   `ResetRequired`).
//! - `Source`: `{"id":1,"type":"platform.zendesk","display_name":..,"name":"stitch_zendesk",
//!   "properties":{"subdomain","email","start_date","frequency_in_minutes":"30","anchor_time","cron_expression",
//!   "auth_method":"api_token"|"access_token"},"created_at","updated_at","paused_at",
//!   "system_paused_at":null,"deleted_at","check_job_name":"1.3.check",
//!   "status":"Pending"|"Not Configured"|"Active"|"Paused"|"Failing","sync_status":"In Progress"|"Not Syncing"|"Idle",
//!   "last_sync_started_at","last_sync_completed_at","consecutive_failures":0,
//!   "schedule":{"type":"frequency"|"anchor"|"cron","next_fire_time":..|null},
//!   "report_card":{"type":"platform.zendesk","current_step":3,"current_step_type":"field_selection",
//!   "steps":[{"type":"form","is_complete":true},{"type":"discover_schema",..},{"type":"field_selection",..},{"type":"fully_configured",..}]}}`.
//!   Credentials are never returned.
//! - `ConnectionCheck`: `{"name":"1.3.check","mode":"check","status":"running"|"succeeded"|"failed","message":"Success!"|<cause>,
//!   "start_time","completion_time","error":false,"check_exit_status":0|1|null,"check_error_message",
//!   "discovery_exit_status","discovery_error_message","tap_exit_status","tap_error_message",
//!   "target_exit_status":null,"target_error_message":null}`.
//! - `StreamSummary`: `{"tap_stream_id","stream_name","selected","replication_method","replication_key",
//!   "key_properties":[..],"parent":null,"field_count","selected_field_count"}`;
//!   `StreamDetail` adds `"schema"`, `"metadata":[{"breadcrumb","metadata"}]` and
//!   `"fields":[{"name","type":["null","string"],"inclusion":"automatic"|"available"|"unsupported","selected"}]`.
//! - `Extraction`: `{"job_id","job_name","source_id","tap_name":"tap-zendesk","trigger":"scheduled"|"manual",
//!   "status":"running"|"succeeded"|"succeeded_with_warnings"|"failed"|"cancelled","start_time","completion_time",
//!   "discovery_exit_status","discovery_description","tap_exit_status","tap_description","target_exit_status",
//!   "target_description","error_message","warning_message","rows_loaded"}`. `succeeded_with_warnings`: data
//!   was replicated, but something may require your attention — `warning_message` names the selected tables
//!   the source skipped and why (e.g. a 403 for a feature the Zendesk plan lacks); it counts as a success for
//!   the schedule, backoff and the source's `status`. `error_message` is set on `failed` (a panic in seam
//!   included: the job ends failed with its message, never stays `running`).
//! - `Progress`: `{"source_id","job_id","job_name","phase":"discovery"|"extraction"|"finishing","current_stream",
//!   "records_extracted","rows_loaded","records_by_stream":{"tickets":120},"started_at","stopping":false,
//!   "waiting_on_warehouse_secs":null|12}` (seconds the run has waited on the warehouse, once past 5 s).
//! - `Load`: `{"source_id","source_name","stream_name","rows_loaded","last_batch_loaded_at",
//!   "max_bookmark_value":"updated_at: …"|"Bookmark Unavailable","error_state":null|{"message"},"last_job_id"}`.
//! - `Usage`: `{"billing_period":{"start","end"},"row_limit","stop_replication_at_limit","rows_used","percent_used",
//!   "by_source":[{"source_id","name","display_name","rows"}],"by_table":[{"source_id","table_name","rows"}] (most first),
//!   "by_day":[{"day":"2026-12-01","rows"}]}`.
//! - `Notification`: `{"id","level":"info"|"warning"|"critical","code","source_id","subject","message",
//!   "created_at","dismissed_at"}`.
//!
//! Jobs: a job is discovery → extraction → loading (see `seam_runtime::job`); its moving parts come
//! from a `ConnectorFactory` ([`connectors::DefaultFactory`]: Zendesk + DuckDB/PostgreSQL). Metrics:
//! `seam_jobs_total{source_id,outcome}`, `seam_rows_loaded_total{source_id}`,
//! `seam_source_api_requests_total{source_id}`, `seam_source_api_rate_limited_total{source_id}`,
//! `seam_http_requests_total{route,status}` (`route` is `"<METHOD> <route template>"`; methods HTTP
//! does not define are `OTHER`).
//!
//! UI: [`app`] merges the API router with an optional UI router (a `ui` module may add one); the API
//! owns `/v4`, `/health`, `/openapi.json`, `/metrics`, everything else is free for the dashboard.

pub mod api;
pub mod auth;
pub mod connectors;
pub mod datadir;
pub mod error;
pub mod notify;
pub mod service;
pub mod state;
pub mod ui;

pub use error::ApiError;
pub use service::{SecurityConfig, Service, ServiceConfig, ServiceError};
pub use state::AppState;

use axum::Router;

/// The whole HTTP app: the API, plus the dashboard's router when one exists (a `ui` module provides
/// `ui::router() -> Router` and is merged here; the API owns `/v4`, `/health`, `/openapi.json`,
/// `/metrics`). Unknown paths get a JSON 404.
pub fn app(state: AppState) -> Router {
    api::router(state.clone())
        .merge(ui::router(state))
        .fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route: see /openapi.json".to_owned())
}
