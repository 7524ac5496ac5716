//! Per-ticket endpoints and the account-wide audit list.
//!
//! - `/api/v2/tickets/{id}`, `/api/v2/tickets/{id}/audits`, `/api/v2/tickets/{id}/comments`,
//!   `/api/v2/tickets/{id}/metrics`: 404 `RecordNotFound` for unknown and deleted tickets; archived
//!   tickets still answer (<https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_audits/>).
//! - `/api/v2/ticket_audits`: newest first, `limit` (default and max 1000) and `cursor`;
//!   `before_url` / `before_cursor` lead to older audits, `after_url` / `after_cursor` to newer
//!   ones; audits of archived (and deleted) tickets are not included.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Reply, Sim};
use crate::error::ApiError;
use crate::pagination::{paginate, parse_position, position_cursor, Item, ListRequest, Params};

fn live(sim: &Sim, tid: u64) -> Result<(), ApiError> {
    match sim.store.read().ticket(tid) {
        Some(m) if !m.deleted => Ok(()),
        _ => Err(ApiError::record_not_found()),
    }
}

/// `GET /api/v2/tickets/{id}`.
pub fn show(sim: &Sim, tid: u64) -> Result<Reply, ApiError> {
    live(sim, tid)?;
    let store = sim.store.read();
    let rec = store.tickets.get(tid).ok_or_else(ApiError::record_not_found)?;
    Ok(Reply::ok(format!("{{\"ticket\":{}}}", rec.json)))
}

fn audit_items(sim: &Sim, tid: u64) -> Vec<Item> {
    let store = sim.store.read();
    store
        .audits_by_ticket
        .get(&tid)
        .into_iter()
        .flatten()
        .filter_map(|aid| store.audits.get(*aid))
        .map(|r| Item::by_id(r.id, r.json.clone()))
        .collect()
}

/// `GET /api/v2/tickets/{id}/audits`.
pub fn audits(sim: &Sim, tid: u64, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    live(sim, tid)?;
    let items = audit_items(sim, tid);
    let req = ListRequest {
        key: "audits",
        origin,
        path,
        params: p,
        offset_limit: sim.config.offset_pagination_limit,
    };
    paginate(&req, &items).map(Reply::ok)
}

/// `GET /api/v2/tickets/{id}/comments`: the Comment events of the ticket's audits.
pub fn comments(sim: &Sim, tid: u64, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    live(sim, tid)?;
    let mut items = Vec::new();
    for a in audit_items(sim, tid) {
        let Ok(audit) = serde_json::from_str::<Value>(&a.json) else {
            continue;
        };
        for e in audit["events"].as_array().into_iter().flatten() {
            if e["type"] != "Comment" {
                continue;
            }
            let mut c = e.clone();
            c["via"] = audit["via"].clone();
            c["created_at"] = audit["created_at"].clone();
            c["metadata"] = audit["metadata"].clone();
            let id = c["id"].as_u64().unwrap_or(0);
            items.push(Item::by_id(id, Arc::from(c.to_string())));
        }
    }
    let req = ListRequest {
        key: "comments",
        origin,
        path,
        params: p,
        offset_limit: sim.config.offset_pagination_limit,
    };
    paginate(&req, &items).map(Reply::ok)
}

/// `GET /api/v2/tickets/{id}/metrics`.
pub fn metrics(sim: &Sim, tid: u64) -> Result<Reply, ApiError> {
    live(sim, tid)?;
    let store = sim.store.read();
    let ms = store
        .metric_set_by_ticket
        .get(&tid)
        .and_then(|id| store.metric_sets.get(*id))
        .ok_or_else(ApiError::record_not_found)?;
    Ok(Reply::ok(format!("{{\"ticket_metric\":{}}}", ms.json)))
}

/// `GET /api/v2/ticket_audits`.
pub fn all_audits(sim: &Sim, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    let limit = p.int("limit")?.map_or(1000, |n| (n.max(1) as usize).min(1000));
    let store = sim.store.read();
    let visible = |r: &&crate::data::Rec| {
        let tid = store.audit_meta.get(&r.id).map_or(0, |m| m.ticket_id);
        store.ticket(tid).is_some_and(|m| !m.deleted && !m.archived)
    };
    let (page, older, newer): (Vec<&crate::data::Rec>, bool, bool) = match p.get("cursor") {
        None => {
            let mut it = store.audits.newest_first().filter(visible);
            let page: Vec<_> = it.by_ref().take(limit).collect();
            let older = it.next().is_some();
            (page, older, false)
        }
        Some(c) => {
            let Some((dir, ts, id)) = parse_position(c) else {
                return Err(ApiError::invalid_value("Invalid cursor"));
            };
            if dir == 'b' {
                let mut it = store.audits.before((ts, id)).filter(visible);
                let page: Vec<_> = it.by_ref().take(limit).collect();
                let older = it.next().is_some();
                (page, older, true)
            } else {
                let mut it = store.audits.after(Some((ts, id))).filter(visible);
                let mut page: Vec<_> = it.by_ref().take(limit).collect();
                let newer = it.next().is_some();
                page.reverse();
                (page, true, newer)
            }
        }
    };
    let before = page
        .last()
        .filter(|_| older)
        .map(|r| position_cursor('b', r.ts, r.id));
    let after = page
        .first()
        .filter(|_| newer)
        .map(|r| position_cursor('a', r.ts, r.id));
    let url = |c: &Option<String>| {
        c.as_ref()
            .map(|c| p.url(origin, path, &[("cursor", Some(c.clone()))]))
    };
    let audits: Vec<&str> = page.iter().map(|r| &*r.json).collect();
    let body = format!(
        "{{\"audits\":[{}],\"before_url\":{},\"before_cursor\":{},\"after_url\":{},\"after_cursor\":{}}}",
        audits.join(","),
        json!(url(&before)),
        json!(before),
        json!(url(&after)),
        json!(after)
    );
    Ok(Reply::ok(body))
}
