//! `/health`, `/openapi.json`, `/metrics`, and the request counter.

use super::{schemas, ParamKind, QueryParam, Success, ROUTES};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// `GET /health`.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Every status an API operation can answer with besides its success: the body is always `Error`.
const ERROR_STATUSES: [(u16, &str); 9] = [
    (
        400,
        "The request is invalid: a body, query string or property breaks a rule",
    ),
    (401, "Missing or unknown API token"),
    (404, "No such resource"),
    (405, "The path does not accept this method (see the Allow header)"),
    (
        409,
        "Conflicts with the current state (ResetRequired, Conflict, NotConfigured)",
    ),
    (413, "The body is too large"),
    (415, "The body is not sent as application/json"),
    (429, "Too many requests"),
    (500, "A failure inside seam"),
];

fn query_param(q: &QueryParam) -> Value {
    let schema = match q.kind {
        ParamKind::Integer { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        ParamKind::Boolean => json!({"type": "boolean"}),
        ParamKind::OneOf(values) => json!({"type": "string", "enum": values}),
    };
    json!({"name": q.name, "in": "query", "required": false, "description": q.description, "schema": schema})
}

/// A path parameter: ids are whole numbers; the example (integration 1, its job 1, stream tickets)
/// is what a first integration has.
fn path_param(name: &str) -> Value {
    let (schema, example) = match name {
        "id" | "job_id" => (json!({"type": "integer", "minimum": 1}), json!(1)),
        "stream" => (json!({"type": "string"}), json!("tickets")),
        _ => (json!({"type": "string"}), Value::Null),
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema, "example": example})
}

fn success_response(success: Success) -> (u16, Value) {
    let json_content = |schema: &str| json!({"application/json": {"schema": schemas::reference(schema)}});
    let text_content = json!({"text/plain": {"schema": {"type": "string"}}});
    match success {
        Success::Json(status, schema) => (
            status,
            json!({"description": "OK", "content": json_content(schema)}),
        ),
        Success::JsonOrText(status, schema) => {
            let mut content = json_content(schema);
            if let (Value::Object(c), Value::Object(t)) = (&mut content, text_content) {
                c.extend(t);
            }
            (status, json!({"description": "OK", "content": content}))
        }
        Success::Text(status) => (status, json!({"description": "OK", "content": text_content})),
        Success::Empty(status) => (status, json!({"description": "Done (no body)"})),
    }
}

/// The OpenAPI 3.1 document, built from [`ROUTES`] (hand-built: the route table is the single source,
/// which a derive-based generator would duplicate as annotations on every handler). Every operation
/// lists its path and query parameters, its request body schema, its success response's schema and
/// every error status (all in the `Error` shape); the schemas are [`schemas::components`].
pub fn openapi_document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(path_param)
            .collect();
        params.extend(r.query.iter().map(query_param));
        let mut responses = Map::new();
        let (status, ok) = success_response(r.success);
        responses.insert(status.to_string(), ok);
        for (status, description) in ERROR_STATUSES {
            if status == 401 && !r.auth {
                continue;
            }
            responses.insert(
                status.to_string(),
                json!({"description": description, "content": {"application/json": {"schema": schemas::reference("Error")}}}),
            );
        }
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '.', '-'], "_")),
            "parameters": params,
            "responses": responses,
        });
        if let Some(body) = r.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schemas::reference(body)}}});
        }
        op["security"] = if r.auth {
            json!([{"bearer": []}])
        } else {
            json!([])
        };
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(r.method.to_owned(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "seam API", "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted replication of SaaS data into your warehouse; modelled on Stitch's Connect API v4."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas::components(),
        },
    })
}

/// `GET /openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// `GET /metrics`: this process's counters, and the job queue as the metastore holds it (shared by
/// every process of a cluster).
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.telemetry.render();
    match state.metastore.queue_stats().await {
        Ok(q) => text.push_str(&render_queue(&q, state.clock.now())),
        Err(e) => tracing::warn!(error = %e, "could not read the job queue for /metrics"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The job queue's gauges in Prometheus text.
fn render_queue(q: &seam_metastore::QueueStats, now: chrono::DateTime<chrono::Utc>) -> String {
    use std::fmt::Write as _;
    let seconds = |d: chrono::TimeDelta| d.num_milliseconds() as f64 / 1000.0;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, lines: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in lines {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    gauge(
        "seam_queue_pending_jobs",
        "Jobs queued and waiting for a worker.",
        &[(String::new(), q.pending as f64)],
    );
    gauge(
        "seam_queue_oldest_pending_seconds",
        "How late the longest-waiting queued job is (0 when none waits).",
        &[(
            String::new(),
            q.oldest_pending_due
                .map_or(0.0, |due| seconds(now - due).max(0.0)),
        )],
    );
    let running: Vec<(String, f64)> = q
        .running_by_worker
        .iter()
        .map(|(w, n)| {
            (
                format!("{{worker=\"{}\"}}", w.replace(['\\', '"', '\n'], "_")),
                *n as f64,
            )
        })
        .collect();
    gauge("seam_jobs_running", "Jobs running, by worker.", &running);
    if let Some(end) = q.soonest_lease_end {
        gauge(
            "seam_queue_soonest_lease_end_seconds",
            "Seconds until the first running job's lease runs out unless renewed (negative: overdue, its \
             worker is gone and the job is about to be resumed elsewhere).",
            &[(String::new(), seconds(end - now))],
        );
    }
    let mut late: Vec<f64> = q.start_lateness.iter().map(|d| seconds(*d)).collect();
    late.sort_by(f64::total_cmp);
    if !late.is_empty() {
        let at = |p: f64| {
            late.get(((late.len() - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let _ = writeln!(
            out,
            "# HELP seam_queue_start_lateness_seconds How late the latest queued jobs started (start minus \
             due), over the last {} started.",
            late.len()
        );
        let _ = writeln!(out, "# TYPE seam_queue_start_lateness_seconds summary");
        for q in [0.5, 0.99] {
            let _ = writeln!(
                out,
                "seam_queue_start_lateness_seconds{{quantile=\"{q}\"}} {}",
                at(q)
            );
        }
        let _ = writeln!(
            out,
            "seam_queue_start_lateness_seconds_sum {}",
            late.iter().sum::<f64>()
        );
        let _ = writeln!(out, "seam_queue_start_lateness_seconds_count {}", late.len());
    }
    out
}

/// The `method` label of a request: the methods HTTP defines, anything else `OTHER` (a client may
/// send any token as a method; each would otherwise be a new time series).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Middleware: counts requests by method, route template (never the raw path: ids would each make a
/// series) and status.
pub async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    state
        .telemetry
        .http_request(&format!("{method} {route}"), response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn the_queue_renders_as_gauges() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).single().unwrap();
        let q = seam_metastore::QueueStats {
            pending: 3,
            oldest_pending_due: Some(now - chrono::Duration::seconds(42)),
            running_by_worker: vec![("w1".into(), 2), ("we\"ird\nname".into(), 1)],
            soonest_lease_end: Some(now - chrono::Duration::milliseconds(1500)),
            start_lateness: (1..=100).map(chrono::Duration::seconds).collect(),
        };
        let text = render_queue(&q, now);
        for line in [
            "seam_queue_pending_jobs 3",
            "seam_queue_oldest_pending_seconds 42",
            "seam_jobs_running{worker=\"w1\"} 2",
            "seam_jobs_running{worker=\"we_ird_name\"} 1",
            "seam_queue_soonest_lease_end_seconds -1.5",
            "# TYPE seam_jobs_running gauge",
            "seam_queue_start_lateness_seconds{quantile=\"0.5\"} 51",
            "seam_queue_start_lateness_seconds{quantile=\"0.99\"} 99",
            "seam_queue_start_lateness_seconds_count 100",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
        }
        let idle = render_queue(&seam_metastore::QueueStats::default(), now);
        assert!(idle.contains("seam_queue_oldest_pending_seconds 0\n"), "{idle}");
        assert!(!idle.contains("soonest_lease_end"), "{idle}");
        assert!(!idle.contains("lateness"), "{idle}");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        for m in ["XYZ", "get", "PROPFIND", "BREW"] {
            let method = Method::from_bytes(m.as_bytes()).expect("a token");
            assert_eq!(method_label(&method), "OTHER", "{m}");
        }
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }
}
