//! Simulator-only admin paths (never authenticated, rate limited, faulted or counted):
//!
//! | method | path | effect |
//! |---|---|---|
//! | GET | `/__sim/clock` | `{"now": sim-now, "offset": seconds}` |
//! | POST | `/__sim/clock/advance?seconds=N` | moves sim-now forward by N seconds |
//! | POST | `/__sim/mutate?count=N` | applies N mutations stamped with sim-now (default 10) |
//! | GET | `/__sim/truth[?stream=S]` | ground truth (see [`crate::data::truth`]) |
//! | GET | `/__sim/stats` | request accounting (see [`crate::stats`]) |
//! | POST | `/__sim/stats/reset` | clears the stats |
//! | GET / POST | `/__sim/faults` | reads / replaces the [`crate::faults::FaultConfig`] (JSON body), per-path rules included |
//! | GET / POST / DELETE | `/__sim/faults/paths` | reads / replaces / clears only the per-path rules: a JSON array of [`crate::faults::PathFault`], e.g. `[{"path": "/api/v2/tags.json", "status": 403}]` |
//! | POST | `/__sim/rate_limit/reset` | forgets the current rate-limit windows |

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::faults::{FaultConfig, PathFault};
use crate::pagination::Params;
use crate::routes::Sim;

fn respond(status: StatusCode, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

fn bad(msg: &str) -> Response {
    respond(StatusCode::BAD_REQUEST, &json!({"error": msg}))
}

/// Handles a `/__sim/*` request.
pub async fn handle(sim: &Arc<Sim>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let params = Params::parse(req.uri().query());
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/__sim/clock") => respond(
            StatusCode::OK,
            &json!({"now": sim.clock.now(), "offset": sim.clock.offset()}),
        ),
        (Method::POST, "/__sim/clock/advance") => {
            let Ok(Some(secs)) = params.int("seconds") else {
                return bad("seconds is required");
            };
            sim.clock.advance(secs);
            respond(
                StatusCode::OK,
                &json!({"now": sim.clock.now(), "offset": sim.clock.offset()}),
            )
        }
        (Method::POST, "/__sim/mutate") => {
            let Ok(count) = params.int("count") else {
                return bad("count must be an integer");
            };
            let summary = crate::mutate_now(sim, count.unwrap_or(10).max(0) as usize);
            respond(StatusCode::OK, &summary)
        }
        (Method::GET, "/__sim/truth") => {
            let sim = sim.clone();
            let stream = params.get("stream").map(str::to_owned);
            let v = tokio::task::spawn_blocking(move || {
                let store = sim.store.read();
                match stream {
                    Some(s) => crate::data::truth::stream_truth(&store, &s),
                    None => Some(crate::data::truth::truth(&store)),
                }
            })
            .await;
            match v {
                Ok(Some(v)) => respond(StatusCode::OK, &v),
                Ok(None) => respond(StatusCode::NOT_FOUND, &json!({"error": "unknown stream"})),
                Err(e) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": e.to_string()}),
                ),
            }
        }
        (Method::GET, "/__sim/stats") => respond(StatusCode::OK, &sim.stats.snapshot()),
        (Method::POST, "/__sim/stats/reset") => {
            sim.stats.reset();
            respond(StatusCode::OK, &json!({"ok": true}))
        }
        (Method::GET, "/__sim/faults") => respond(StatusCode::OK, &json!(sim.faults.get())),
        (Method::POST, "/__sim/faults") => {
            let Ok(bytes) = to_bytes(req.into_body(), 1 << 20).await else {
                return bad("unreadable body");
            };
            match serde_json::from_slice::<FaultConfig>(&bytes) {
                Ok(cfg) => {
                    if let Err(e) = cfg.paths.iter().try_for_each(PathFault::validate) {
                        return bad(&e);
                    }
                    sim.faults.set(cfg.clone());
                    respond(StatusCode::OK, &json!(cfg))
                }
                Err(e) => bad(&format!("invalid fault config: {e}")),
            }
        }
        (Method::GET, "/__sim/faults/paths") => respond(StatusCode::OK, &json!(sim.faults.get().paths)),
        (Method::POST, "/__sim/faults/paths") => {
            let Ok(bytes) = to_bytes(req.into_body(), 1 << 20).await else {
                return bad("unreadable body");
            };
            match serde_json::from_slice::<Vec<PathFault>>(&bytes) {
                Ok(paths) => {
                    if let Err(e) = paths.iter().try_for_each(PathFault::validate) {
                        return bad(&e);
                    }
                    sim.faults.set_paths(paths.clone());
                    respond(StatusCode::OK, &json!(paths))
                }
                Err(e) => bad(&format!("invalid path faults (a JSON array of rules): {e}")),
            }
        }
        (Method::DELETE, "/__sim/faults/paths") => {
            sim.faults.set_paths(Vec::new());
            respond(StatusCode::OK, &json!([]))
        }
        (Method::POST, "/__sim/rate_limit/reset") => {
            sim.limiter.reset();
            respond(StatusCode::OK, &json!({"ok": true}))
        }
        _ => respond(StatusCode::NOT_FOUND, &json!({"error": "unknown admin path"})),
    }
}
