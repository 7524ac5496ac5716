//! The HTTP front: one handler that applies, in order, the account (Host) check, authentication,
//! rate limits, plan / role gates and injected faults, then routes by path and records stats.
//! `/__sim/*` admin paths bypass all of it.

pub mod exports;
pub mod lists;
pub mod tickets;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use parking_lot::{Mutex, RwLock};
use rand_chacha::ChaCha8Rng;

use crate::auth::{check_host, Credentials, HostCheck};
use crate::clock::Clock;
use crate::data::Store;
use crate::error::ApiError;
use crate::faults::{FaultKind, Faults};
use crate::pagination::Params;
use crate::rate_limit::{Decision, EndpointClass, Quota, RateLimiter};
use crate::stats::{template, Stats};
use crate::{Role, SimConfig};
use exports::{CursorExport, TimeExport};

/// Shared simulator state.
#[derive(Debug)]
pub struct Sim {
    /// Startup configuration.
    pub config: SimConfig,
    /// The account data.
    pub store: RwLock<Store>,
    /// Virtual clock.
    pub clock: Clock,
    /// Rate limiter.
    pub limiter: RateLimiter,
    /// Request accounting.
    pub stats: Stats,
    /// Fault injection.
    pub faults: Faults,
    /// RNG for mutations.
    pub mutation_rng: Mutex<ChaCha8Rng>,
    /// Accepted credentials.
    pub credentials: Credentials,
    /// `http://ip:port` the simulator listens on.
    pub base_url: String,
}

/// A successful answer body.
#[derive(Debug)]
pub struct Reply {
    /// Status (200 unless stated).
    pub status: StatusCode,
    /// JSON body.
    pub body: String,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn ok(body: String) -> Self {
        Self {
            status: StatusCode::OK,
            body,
        }
    }
}

const JSON: &str = "application/json; charset=utf-8";

fn build(status: StatusCode, content_type: &str, body: Body, headers: &[(&'static str, String)]) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert("content-type", v);
    }
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    resp
}

fn error_response(e: ApiError) -> Response {
    build(e.status, e.content_type, Body::from(e.body), &e.headers)
}

fn quota_headers(q: &Quota) -> Vec<(&'static str, String)> {
    vec![
        ("x-rate-limit", q.limit.to_string()),
        ("x-rate-limit-remaining", q.remaining.to_string()),
        ("ratelimit-limit", q.limit.to_string()),
        ("ratelimit-remaining", q.remaining.to_string()),
        ("ratelimit-reset", q.reset_secs.to_string()),
    ]
}

/// The endpoint group a path belongs to, for `--gate` (e.g. `sla_policies`, `ticket_forms`,
/// `talk`, `custom_fields`); otherwise the first path segment after `/api/v2/`.
pub fn gate_group(tpl: &str) -> &str {
    let rel = tpl.strip_prefix("/api/v2/").unwrap_or(tpl);
    if rel.starts_with("slas/") {
        "sla_policies"
    } else if rel.starts_with("channels/voice") {
        "talk"
    } else if rel.starts_with("user_fields") || rel.starts_with("organization_fields") {
        "custom_fields"
    } else if rel.starts_with("business_hours") {
        "schedules"
    } else {
        rel.split('/').next().unwrap_or(rel)
    }
}

fn class_of(tpl: &str) -> EndpointClass {
    if tpl.starts_with("/api/v2/incremental/") {
        EndpointClass::IncrementalExport
    } else if tpl == "/api/v2/tickets/{id}/audits" {
        EndpointClass::TicketAudits
    } else {
        EndpointClass::Other
    }
}

/// Entry point for every request.
pub async fn dispatch(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/__sim/") || path == "/__sim" {
        return crate::admin::handle(&sim, req).await;
    }
    let tpl = template(&path);
    let info = ReqInfo {
        host: req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned),
        auth: req
            .headers()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned),
        is_get: req.method() == Method::GET,
        query: req.uri().query().map(str::to_owned),
    };
    drop(req);
    let (status, faulted, resp) = match sim.faults.path_draw(&path, &tpl) {
        None => api(&sim, &info, &path, &tpl).await,
        Some(rule) => {
            if rule.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(rule.delay_ms)).await;
            }
            let (status, faulted, mut resp) = match rule.status {
                // Credentials and the account are checked first, as for any other answer.
                Some(s) => match authenticate(&sim, &info) {
                    Err(e) => (e.status.as_u16(), false, error_response(e)),
                    Ok(()) => (s, true, error_response(ApiError::injected(s))),
                },
                None => api(&sim, &info, &path, &tpl).await,
            };
            let h = resp.headers_mut();
            for (k, v) in &rule.headers {
                if let (Ok(k), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    h.insert(k, v);
                }
            }
            (status, faulted || !rule.headers.is_empty(), resp)
        }
    };
    sim.stats.record(&tpl, status, faulted);
    resp
}

/// The account (Host) and credential checks every API request passes first.
fn authenticate(sim: &Sim, req: &ReqInfo) -> Result<(), ApiError> {
    if let HostCheck::UnknownAccount(sub) = check_host(req.host.as_deref(), &sim.config.subdomain) {
        return Err(ApiError::no_such_account(&sub));
    }
    if !sim.credentials.check(req.auth.as_deref()) {
        return Err(ApiError::unauthorized());
    }
    Ok(())
}

/// The parts of a request the API path needs (taken out so nothing non-`Sync` crosses an await).
#[derive(Debug)]
struct ReqInfo {
    host: Option<String>,
    auth: Option<String>,
    is_get: bool,
    query: Option<String>,
}

async fn api(sim: &Arc<Sim>, req: &ReqInfo, path: &str, tpl: &str) -> (u16, bool, Response) {
    let host = req.host.clone();
    if let Err(e) = authenticate(sim, req) {
        return (e.status.as_u16(), false, error_response(e));
    }
    let quota = match sim.limiter.check(class_of(tpl)) {
        Decision::Allowed(q) => q,
        Decision::Limited { retry_after, quota } => {
            let mut e = if sim.config.edge_429_without_retry_after {
                ApiError::edge_rate_limited()
            } else {
                ApiError::rate_limited(retry_after)
            };
            e.headers.extend(quota_headers(&quota));
            return (429, false, error_response(e));
        }
    };
    let mut headers = quota_headers(&quota);
    let group = gate_group(tpl);
    let admin_only = tpl.starts_with("/api/v2/incremental/");
    if sim.config.gated.iter().any(|g| g == group) || (admin_only && sim.config.role == Role::Agent) {
        let mut e = ApiError::forbidden();
        e.headers.append(&mut headers);
        return (403, false, error_response(e));
    }
    let draw = sim.faults.draw();
    if draw.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(draw.delay_ms)).await;
    }
    match draw.fault {
        Some(FaultKind::Status500) => {
            let body = r#"{"error":"InternalServerError","description":"Something went wrong"}"#;
            return (
                500,
                true,
                build(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    JSON,
                    Body::from(body),
                    &headers,
                ),
            );
        }
        Some(FaultKind::Status502) => {
            let body = "<html><body><h1>502 Bad Gateway</h1></body></html>";
            return (
                502,
                true,
                build(StatusCode::BAD_GATEWAY, "text/html", Body::from(body), &headers),
            );
        }
        Some(FaultKind::Status503) => {
            headers.push(("retry-after", "1".to_owned()));
            let body = r#"{"error":"ServiceUnavailable","description":"Service temporarily unavailable"}"#;
            return (
                503,
                true,
                build(StatusCode::SERVICE_UNAVAILABLE, JSON, Body::from(body), &headers),
            );
        }
        Some(FaultKind::Status504) => {
            let body = "<html><body><h1>504 Gateway Time-out</h1></body></html>";
            return (
                504,
                true,
                build(
                    StatusCode::GATEWAY_TIMEOUT,
                    "text/html",
                    Body::from(body),
                    &headers,
                ),
            );
        }
        _ => {}
    }
    let origin = match &host {
        Some(h) => format!("http://{h}"),
        None => sim.base_url.clone(),
    };
    let params = Params::parse(req.query.as_deref());
    let result = if req.is_get {
        route(sim, path, tpl, &params, &origin)
    } else {
        Err(ApiError::method_not_allowed())
    };
    let reply = match result {
        Ok(r) => r,
        Err(mut e) => {
            e.headers.append(&mut headers);
            return (e.status.as_u16(), false, error_response(e));
        }
    };
    let status = reply.status.as_u16();
    match draw.fault {
        Some(FaultKind::Truncated) => (
            status,
            true,
            build(
                reply.status,
                JSON,
                Body::from(crate::faults::truncate(&reply.body)),
                &headers,
            ),
        ),
        Some(FaultKind::Malformed) => (
            status,
            true,
            build(
                reply.status,
                JSON,
                Body::from(crate::faults::malform(&reply.body)),
                &headers,
            ),
        ),
        Some(FaultKind::Reset) => {
            // Send part of the body, then fail the stream: hyper drops the connection mid-body.
            use futures::StreamExt;
            let head = bytes::Bytes::from(crate::faults::truncate(&reply.body));
            let first = futures::stream::iter([Ok::<bytes::Bytes, std::io::Error>(head)]);
            let fail = futures::stream::once(async {
                // Let the headers and the first bytes reach the client before the reset.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated connection reset",
                ))
            });
            let body = Body::from_stream(first.chain(fail));
            (status, true, build(reply.status, JSON, body, &headers))
        }
        _ => (
            status,
            false,
            build(reply.status, JSON, Body::from(reply.body), &headers),
        ),
    }
}

fn parse_id(s: &str) -> Option<u64> {
    s.strip_suffix(".json").unwrap_or(s).parse().ok()
}

/// Routes an authenticated GET.
fn route(
    sim: &Sim,
    path: &str,
    tpl: &str,
    p: &Params,
    origin: &str,
) -> Result<crate::routes::Reply, ApiError> {
    let rel = tpl
        .strip_prefix("/api/v2/")
        .ok_or_else(ApiError::invalid_endpoint)?;
    let canonical = format!("/api/v2/{}.json", rel);
    let _ = path;
    match rel {
        "incremental/tickets/cursor" => {
            return exports::cursor_export(sim, CursorExport::Tickets, p, origin, &canonical)
        }
        "incremental/users/cursor" => {
            return exports::cursor_export(sim, CursorExport::Users, p, origin, &canonical)
        }
        "incremental/tickets" => {
            return exports::time_export(sim, TimeExport::Tickets, p, origin, &canonical)
        }
        "incremental/users" => return exports::time_export(sim, TimeExport::Users, p, origin, &canonical),
        "incremental/organizations" => {
            return exports::time_export(sim, TimeExport::Organizations, p, origin, &canonical)
        }
        "incremental/ticket_events" => {
            return exports::time_export(sim, TimeExport::TicketEvents, p, origin, &canonical)
        }
        "incremental/ticket_metric_events" => {
            return exports::time_export(sim, TimeExport::TicketMetricEvents, p, origin, &canonical)
        }
        "tickets" => return lists::tickets(sim, p, origin, &canonical),
        "users" => return lists::users(sim, p, origin, &canonical),
        "organizations" => return lists::organizations(sim, p, origin, &canonical),
        "tags" => return lists::tags(sim, p, origin, &canonical),
        "ticket_metrics" => return lists::ticket_metrics(sim, p, origin, &canonical),
        "satisfaction_ratings" => return lists::satisfaction_ratings(sim, p, origin, &canonical),
        "deleted_tickets" => return lists::deleted_tickets(sim, p, origin, &canonical),
        "deleted_users" => return lists::deleted_users(sim, p, origin, &canonical),
        "slas/policies" => return Ok(lists::sla_policies(sim)),
        "ticket_audits" => return tickets::all_audits(sim, p, origin, &canonical),
        "users/me" => return Ok(me(sim)),
        "account/settings" => return Ok(account_settings(sim)),
        _ => {}
    }
    if let Some(r) = lists::plain(sim, rel, p, origin, &canonical) {
        return r;
    }
    // Per-ticket paths: take the id from the real path.
    let segs: Vec<&str> = path.trim_start_matches("/api/v2/").split('/').collect();
    if segs.first() == Some(&"tickets") {
        let id = segs
            .get(1)
            .and_then(|s| parse_id(s))
            .ok_or_else(ApiError::invalid_endpoint)?;
        let real = format!(
            "/api/v2/tickets/{id}/{}.json",
            segs.get(2)
                .map(|s| s.trim_end_matches(".json"))
                .unwrap_or_default()
        );
        return match rel {
            "tickets/{id}" => tickets::show(sim, id),
            "tickets/{id}/audits" => tickets::audits(sim, id, p, origin, &real),
            "tickets/{id}/comments" => tickets::comments(sim, id, p, origin, &real),
            "tickets/{id}/metrics" => tickets::metrics(sim, id),
            _ => Err(ApiError::invalid_endpoint()),
        };
    }
    Err(ApiError::invalid_endpoint())
}

fn me(sim: &Sim) -> Reply {
    let store = sim.store.read();
    match store.users.get(store.me_id) {
        Some(r) => Reply::ok(format!("{{\"user\":{}}}", r.json)),
        None => Reply::ok("{\"user\":null}".to_owned()),
    }
}

fn account_settings(sim: &Sim) -> Reply {
    let body = serde_json::json!({"settings": {
        "branding": {"header_color": "03363D", "page_background_color": "333333", "tab_background_color": "7FA239", "text_color": "FFFFFF"},
        "apps": {"use": true, "create_private": true, "create_public": false},
        "tickets": {"comments_public_by_default": true, "list_newest_comments_first": true, "collaboration": true,
            "private_attachments": false, "agent_collision": true, "tagging": true, "list_empty_views": true,
            "maximum_personal_views_to_list": 8, "status_hold": true, "has_color_text": true},
        "chat": {"enabled": false}, "voice": {"enabled": true},
        "localization": {"locale_ids": [1]},
        "lotus": {"prefer_lotus": true},
        "statistics": {"forum": true, "search": true},
        "user": {"tagging": true, "time_zone_selection": true, "language_selection": true},
        "active_features": {"on_hold_status": true, "user_tagging": true, "ticket_forms": !sim.config.gated.iter().any(|g| g == "ticket_forms"),
            "business_hours": true, "satisfaction_ratings": true, "sla_policies": !sim.config.gated.iter().any(|g| g == "sla_policies")},
        "subdomain": sim.config.subdomain,
    }});
    Reply::ok(body.to_string())
}
