//! Incremental exports
//! (<https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/>,
//! <https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api/>).
//!
//! Rules shared by all exports, evaluated against sim-now:
//! - items changed within the minute before the request are not returned yet (visible: `ts <= now - 60`);
//! - a `start_time` less than a minute old is rejected: 422
//!   `{"error":"InvalidValue","description":"Too recent start_time. Use a start_time older than 1 minute"}`;
//! - the ticket export filters and orders on `generated_timestamp`, so it returns tickets whose
//!   `updated_at` is older than `start_time`;
//! - deleted tickets come back with `status: "deleted"` unless `exclude_deleted=true`.
//!
//! Cursor-based (`tickets/cursor`, `users/cursor`): the first call sends `start_time`, later calls
//! only `cursor`. Cursors are opaque, stateless (base64 of the last `(timestamp, id)` position), so
//! they stay valid across client restarts; resuming a stored `after_cursor` returns exactly the
//! records changed since (a changed record moves to its new timestamp). `per_page` ≤ 1000
//! (larger values are clamped), default 1000. `after_cursor` / `after_url` are present on every
//! page, including the last (`end_of_stream: true`), for the next poll.
//!
//! Time-based (`tickets`, `users`, `organizations`, `ticket_events`, `ticket_metric_events`):
//! pages of up to `per_page` (default and max 1000) items with `ts >= start_time`, ordered by
//! `(ts, id)`; `end_time` is the timestamp of the last item and `next_page` repeats the request with
//! `start_time=end_time`, so items sharing the boundary second are returned again on the next page
//! (the duplicates the docs tell consumers to remove). When a full page holds a single second (a run
//! longer than a page, e.g. a bulk update), the page is extended to the whole run and `end_time` is
//! that second + 1, so the export moves forward without losing any item. `end_of_stream` is true
//! when nothing visible follows the page.

use serde_json::{json, Value};

use super::{Reply, Sim};
use crate::data::{Rec, Store};
use crate::error::ApiError;
use crate::pagination::{parse_position, position_cursor, Params};

/// Largest export page.
pub const MAX_EXPORT_PAGE: usize = 1000;
/// Items newer than this many seconds are held back.
pub const EXPORT_LAG_SECS: i64 = 60;

/// Which records a cursor export walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorExport {
    /// `/api/v2/incremental/tickets/cursor.json`.
    Tickets,
    /// `/api/v2/incremental/users/cursor.json`.
    Users,
}

/// Which records a time-based export walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeExport {
    /// `/api/v2/incremental/tickets.json`.
    Tickets,
    /// `/api/v2/incremental/users.json`.
    Users,
    /// `/api/v2/incremental/organizations.json`.
    Organizations,
    /// `/api/v2/incremental/ticket_events.json`.
    TicketEvents,
    /// `/api/v2/incremental/ticket_metric_events.json`.
    TicketMetricEvents,
}

fn per_page(p: &Params) -> Result<usize, ApiError> {
    Ok(p.int("per_page")?
        .map_or(MAX_EXPORT_PAGE, |n| (n.max(1) as usize).min(MAX_EXPORT_PAGE)))
}

fn start_time(p: &Params, now: i64) -> Result<i64, ApiError> {
    let Some(st) = p.int("start_time")? else {
        return Err(ApiError::invalid_value("start_time is required"));
    };
    if st > now - EXPORT_LAG_SECS {
        return Err(ApiError::invalid_value(
            "Too recent start_time. Use a start_time older than 1 minute",
        ));
    }
    Ok(st.max(0))
}

/// Appends a ticket's JSON, embedding its `metric_set` when asked
/// (`include=metric_sets` on the incremental ticket export returns each ticket's metric set
/// attached to the ticket: <https://support.zendesk.com/hc/en-us/community/posts/4984355661466>).
fn push_ticket(out: &mut String, store: &Store, rec: &Rec, metric_sets: bool) {
    if metric_sets && !store.ticket(rec.id).is_some_and(|m| m.deleted) {
        let ms = store
            .metric_set_by_ticket
            .get(&rec.id)
            .and_then(|id| store.metric_sets.get(*id));
        if let (Some(ms), Some(head)) = (ms, rec.json.strip_suffix('}')) {
            out.push_str(head);
            out.push_str(",\"metric_set\":");
            out.push_str(&ms.json);
            out.push('}');
            return;
        }
    }
    out.push_str(&rec.json);
}

fn identities_of(store: &Store, users: &[&Rec]) -> String {
    let mut s = String::from("[");
    let mut first = true;
    for u in users {
        for iid in store.identities_by_user.get(&u.id).into_iter().flatten() {
            if let Some(r) = store.identities.get(*iid) {
                if !first {
                    s.push(',');
                }
                first = false;
                s.push_str(&r.json);
            }
        }
    }
    s.push(']');
    s
}

fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// A cursor-based export page.
pub fn cursor_export(
    sim: &Sim,
    kind: CursorExport,
    p: &Params,
    origin: &str,
    path: &str,
) -> Result<Reply, ApiError> {
    let now = sim.clock.now();
    let cutoff = now - EXPORT_LAG_SECS;
    let size = per_page(p)?;
    let store = sim.store.read();
    let coll = match kind {
        CursorExport::Tickets => &store.tickets,
        CursorExport::Users => &store.users,
    };
    let exclude_deleted = kind == CursorExport::Tickets && p.get("exclude_deleted") == Some("true");
    let keep =
        |r: &&Rec| r.ts <= cutoff && !(exclude_deleted && store.ticket(r.id).is_some_and(|m| m.deleted));
    // Records are visited in (ts, id) order, so the first one past the cutoff ends the walk.
    let visible = |r: &&Rec| r.ts <= cutoff;
    let mut page: Vec<&Rec> = Vec::with_capacity(size.min(1024));
    let more;
    match p.get("cursor") {
        Some(c) => {
            let Some((dir, ts, id)) = parse_position(c) else {
                return Err(ApiError::invalid_value("Invalid cursor"));
            };
            if dir == 'a' {
                let mut it = coll.after(Some((ts, id))).take_while(visible).filter(keep);
                page.extend(it.by_ref().take(size));
                more = it.next().is_some();
            } else {
                page.extend(coll.before((ts, id)).filter(keep).take(size));
                page.reverse();
                let pos = page.last().map_or((ts, id), |r| (r.ts, r.id));
                more = coll.after(Some(pos)).take_while(visible).any(|r| keep(&r));
            }
        }
        None => {
            let st = start_time(p, now)?;
            let mut it = coll.since(st).take_while(visible).filter(keep);
            page.extend(it.by_ref().take(size));
            more = it.next().is_some();
        }
    }
    // The after cursor points at the last item returned (or stays where the request was).
    let after_pos = match (page.last(), p.get("cursor").and_then(parse_position)) {
        (Some(r), _) => (r.ts, r.id),
        (None, Some((_, ts, id))) => (ts, id),
        (None, None) => (p.int("start_time")?.unwrap_or(0) - 1, u64::MAX),
    };
    let after = position_cursor('a', after_pos.0, after_pos.1);
    let before = page.first().map(|r| position_cursor('b', r.ts, r.id));
    let keep_params = |c: &str| {
        p.url(
            origin,
            path,
            &[("start_time", None), ("cursor", Some(c.to_owned()))],
        )
    };
    let key = if kind == CursorExport::Tickets {
        "tickets"
    } else {
        "users"
    };
    let metric_sets = kind == CursorExport::Tickets && p.includes("metric_sets");
    let mut out = String::with_capacity(
        page.iter().map(|r| r.json.len() + 1).sum::<usize>() * if metric_sets { 2 } else { 1 } + 512,
    );
    out.push_str("{\"");
    out.push_str(key);
    out.push_str("\":[");
    for (i, r) in page.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_ticket(&mut out, &store, r, metric_sets);
    }
    out.push(']');
    if kind == CursorExport::Users && p.includes("identities") {
        out.push_str(",\"identities\":");
        out.push_str(&identities_of(&store, &page));
    }
    out.push_str(&format!(
        ",\"after_url\":{},\"after_cursor\":{},\"before_url\":{},\"before_cursor\":{},\"end_of_stream\":{}}}",
        json_str(&keep_params(&after)),
        json_str(&after),
        before
            .as_deref()
            .map_or("null".to_owned(), |b| json_str(&keep_params(b))),
        before.as_deref().map_or("null".to_owned(), json_str),
        !more
    ));
    Ok(Reply::ok(out))
}

/// Builds a `ticket_events` item from an audit: `child_events` carry the audit's events, comments
/// only with `include=comment_events`.
fn ticket_event(audit: &str, comments: bool) -> Option<Value> {
    let a: Value = serde_json::from_str(audit).ok()?;
    let via = a["via"]["channel"].as_str().unwrap_or("web");
    let via_label = match via {
        "web" => "Web form",
        "email" => "Mail",
        "api" => "Web service",
        "voice" => "Voice",
        "chat" => "Chat",
        other => other,
    };
    let created = a["created_at"].as_str().unwrap_or_default();
    let mut children = Vec::new();
    for e in a["events"].as_array().into_iter().flatten() {
        let ty = e["type"].as_str().unwrap_or_default();
        if ty == "Comment" {
            if !comments {
                continue;
            }
            let mut c = e.clone();
            c["via"] = json!(via_label);
            c["via_reference_id"] = Value::Null;
            c["created_at"] = json!(created);
            c["event_type"] = json!("Comment");
            children.push(c);
        } else {
            let mut c = json!({"id": e["id"], "via": via_label, "via_reference_id": null, "event_type": ty});
            if let Some(field) = e["field_name"].as_str() {
                c[field] = e["value"].clone();
                if ty == "Change" {
                    c["previous_value"] = e["previous_value"].clone();
                }
            }
            children.push(c);
        }
    }
    let ts = crate::clock::parse_iso(created).unwrap_or(0);
    Some(
        json!({"id": a["id"], "ticket_id": a["ticket_id"], "timestamp": ts, "created_at": created,
        "updater_id": a["author_id"], "via": via_label, "system": a["metadata"]["system"],
        "metadata": a["metadata"]["custom"], "event_type": "Audit", "child_events": children}),
    )
}

/// A time-based export page.
pub fn time_export(
    sim: &Sim,
    kind: TimeExport,
    p: &Params,
    origin: &str,
    path: &str,
) -> Result<Reply, ApiError> {
    let now = sim.clock.now();
    let cutoff = now - EXPORT_LAG_SECS;
    let st = start_time(p, now)?;
    let size = per_page(p)?;
    let store = sim.store.read();
    let (coll, key) = match kind {
        TimeExport::Tickets => (&store.tickets, "tickets"),
        TimeExport::Users => (&store.users, "users"),
        TimeExport::Organizations => (&store.organizations, "organizations"),
        TimeExport::TicketEvents => (&store.audits, "ticket_events"),
        TimeExport::TicketMetricEvents => (&store.metric_events, "ticket_metric_events"),
    };
    let exclude_deleted = kind == TimeExport::Tickets && p.get("exclude_deleted") == Some("true");
    let keep = |r: &&Rec| !(exclude_deleted && store.ticket(r.id).is_some_and(|m| m.deleted));
    let mut it = coll
        .since(st)
        .take_while(|r| r.ts <= cutoff)
        .filter(keep)
        .peekable();
    let mut page: Vec<&Rec> = it.by_ref().take(size).collect();
    let mut end_time = page.last().map_or(st, |r| r.ts);
    if page.len() == size {
        let first_ts = page.first().map_or(st, |r| r.ts);
        if first_ts == end_time {
            // A whole page in one second: take the rest of the run and move past it.
            while let Some(r) = it.next_if(|r| r.ts == end_time) {
                page.push(r);
            }
            end_time += 1;
        }
    }
    let more = it.peek().is_some();
    let mut out = String::with_capacity(page.iter().map(|r| r.json.len() + 1).sum::<usize>() + 512);
    out.push_str("{\"");
    out.push_str(key);
    out.push_str("\":[");
    let metric_sets = kind == TimeExport::Tickets && p.includes("metric_sets");
    let comments = p.includes("comment_events");
    for (i, r) in page.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match kind {
            TimeExport::TicketEvents => {
                if let Some(ev) = ticket_event(&r.json, comments) {
                    out.push_str(&ev.to_string());
                }
            }
            TimeExport::Tickets => push_ticket(&mut out, &store, r, metric_sets),
            _ => out.push_str(&r.json),
        }
    }
    out.push(']');
    if kind == TimeExport::Users && p.includes("identities") {
        out.push_str(",\"identities\":");
        out.push_str(&identities_of(&store, &page));
    }
    let next = p.url(origin, path, &[("start_time", Some(end_time.to_string()))]);
    out.push_str(&format!(
        ",\"next_page\":{},\"count\":{},\"end_of_stream\":{},\"end_time\":{}}}",
        json_str(&next),
        page.len(),
        !more,
        end_time
    ));
    Ok(Reply::ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_events_hide_comments_unless_asked() {
        let audit = json!({"id": 7, "ticket_id": 3, "created_at": "2024-01-02T03:04:05Z", "author_id": 9,
        "via": {"channel": "email"}, "metadata": {"system": {"ip_address": "1.2.3.4"}, "custom": {}},
        "events": [
            {"id": 1, "type": "Comment", "body": "hi ✨", "public": true, "audit_id": 7},
            {"id": 2, "type": "Change", "field_name": "status", "value": "open", "previous_value": "new"}
        ]})
        .to_string();
        let without = ticket_event(&audit, false).unwrap();
        assert_eq!(without["child_events"].as_array().unwrap().len(), 1);
        assert_eq!(without["child_events"][0]["status"], "open");
        assert_eq!(without["child_events"][0]["previous_value"], "new");
        assert_eq!(without["timestamp"], 1_704_164_645);
        assert_eq!(without["via"], "Mail");
        let with = ticket_event(&audit, true).unwrap();
        assert_eq!(with["child_events"][0]["event_type"], "Comment");
        assert_eq!(with["child_events"][0]["body"], "hi ✨");
    }
}
