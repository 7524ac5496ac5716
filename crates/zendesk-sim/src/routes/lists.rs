//! List endpoints with cursor and offset pagination (see [`crate::pagination`]), and the
//! unpaginated SLA policies list.

use super::{Reply, Sim};
use crate::clock::parse_iso;
use crate::data::Collection;
use crate::error::ApiError;
use crate::pagination::{paginate, Item, ListRequest, Params};

/// A plain list resource: request path (without `/api/v2/` and `.json`), store stream, JSON key.
pub const PLAIN_LISTS: &[(&str, &str, &str)] = &[
    ("groups", "groups", "groups"),
    ("group_memberships", "group_memberships", "group_memberships"),
    (
        "organization_memberships",
        "organization_memberships",
        "organization_memberships",
    ),
    ("macros", "macros", "macros"),
    ("ticket_fields", "ticket_fields", "ticket_fields"),
    ("ticket_forms", "ticket_forms", "ticket_forms"),
    ("user_fields", "user_fields", "user_fields"),
    (
        "organization_fields",
        "organization_fields",
        "organization_fields",
    ),
    ("brands", "brands", "brands"),
    ("custom_roles", "custom_roles", "custom_roles"),
    ("business_hours/schedules", "schedules", "schedules"),
    ("automations", "automations", "automations"),
    ("triggers", "triggers", "triggers"),
    ("views", "views", "views"),
    (
        "channels/voice/phone_numbers",
        "talk_phone_numbers",
        "phone_numbers",
    ),
];

fn all(c: &Collection) -> Vec<Item> {
    c.iter().map(|r| Item::by_id(r.id, r.json.clone())).collect()
}

fn respond(
    sim: &Sim,
    key: &str,
    p: &Params,
    origin: &str,
    path: &str,
    items: &[Item],
) -> Result<Reply, ApiError> {
    let req = ListRequest {
        key,
        origin,
        path,
        params: p,
        offset_limit: sim.config.offset_pagination_limit,
    };
    paginate(&req, items).map(Reply::ok)
}

/// A plain list by its path (relative to `/api/v2/`), or `None` if it is not one.
pub fn plain(sim: &Sim, rel: &str, p: &Params, origin: &str, path: &str) -> Option<Result<Reply, ApiError>> {
    let (_, stream, key) = PLAIN_LISTS.iter().find(|(r, _, _)| *r == rel)?;
    let items = {
        let store = sim.store.read();
        store.list(stream).map(all).unwrap_or_default()
    };
    Some(respond(sim, key, p, origin, path, &items))
}

/// `GET /api/v2/slas/policies`: no pagination.
pub fn sla_policies(sim: &Sim) -> Reply {
    let store = sim.store.read();
    let items: Vec<&str> = store
        .list("sla_policies")
        .map(|c| c.iter().map(|r| &*r.json).collect())
        .unwrap_or_default();
    Reply::ok(format!(
        "{{\"sla_policies\":[{}],\"next_page\":null,\"previous_page\":null,\"count\":{}}}",
        items.join(","),
        items.len()
    ))
}

/// `GET /api/v2/tags`: `{name, count}` records, most used first as Zendesk lists them.
pub fn tags(sim: &Sim, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    let mut tags: Vec<(String, u64)> = sim
        .store
        .read()
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    tags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let items: Vec<Item> = tags
        .iter()
        .enumerate()
        .map(|(i, (name, count))| Item {
            key: format!("{i:020}"),
            json: std::sync::Arc::from(serde_json::json!({"name": name, "count": count}).to_string()),
        })
        .collect();
    respond(sim, "tags", p, origin, path, &items)
}

/// `GET /api/v2/tickets`: excludes archived and deleted tickets.
pub fn tickets(sim: &Sim, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    let items: Vec<Item> = {
        let store = sim.store.read();
        store
            .tickets
            .iter()
            .filter(|r| store.ticket(r.id).is_some_and(|m| !m.deleted && !m.archived))
            .map(|r| Item::by_id(r.id, r.json.clone()))
            .collect()
    };
    respond(sim, "tickets", p, origin, path, &items)
}

/// `GET /api/v2/users`: excludes soft-deleted users (they are in `/api/v2/deleted_users`).
pub fn users(sim: &Sim, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    let items: Vec<Item> = {
        let store = sim.store.read();
        store
            .users
            .iter()
            .filter(|r| !store.deleted_user_ids.contains(&r.id))
            .map(|r| Item::by_id(r.id, r.json.clone()))
            .collect()
    };
    respond(sim, "users", p, origin, path, &items)
}

/// `GET /api/v2/deleted_users`.
pub fn deleted_users(sim: &Sim, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    let items: Vec<Item> = {
        let store = sim.store.read();
        store
            .deleted_user_ids
            .iter()
            .filter_map(|id| store.users.get(*id))
            .map(|r| Item::by_id(r.id, r.json.clone()))
            .collect()
    };
    respond(sim, "deleted_users", p, origin, path, &items)
}

/// `GET /api/v2/organizations`: excludes deleted organizations.
pub fn organizations(sim: &Sim, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    let items: Vec<Item> = {
        let store = sim.store.read();
        store
            .organizations
            .iter()
            .filter(|r| !store.deleted_org_ids.contains(&r.id))
            .map(|r| Item::by_id(r.id, r.json.clone()))
            .collect()
    };
    respond(sim, "organizations", p, origin, path, &items)
}

/// `GET /api/v2/deleted_tickets`.
pub fn deleted_tickets(sim: &Sim, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    let items = all(&sim.store.read().deleted_tickets);
    respond(sim, "deleted_tickets", p, origin, path, &items)
}

/// `GET /api/v2/ticket_metrics`: metric sets of tickets that are not deleted.
pub fn ticket_metrics(sim: &Sim, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    let items: Vec<Item> = {
        let store = sim.store.read();
        let mut v: Vec<Item> = store
            .metric_set_by_ticket
            .iter()
            .filter(|(tid, _)| store.ticket(**tid).is_some_and(|m| !m.deleted))
            .filter_map(|(_, ms)| store.metric_sets.get(*ms))
            .map(|r| Item::by_id(r.id, r.json.clone()))
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    };
    respond(sim, "ticket_metrics", p, origin, path, &items)
}

/// `GET /api/v2/satisfaction_ratings`: `start_time` / `end_time` (unix seconds) filter on `updated_at`.
pub fn satisfaction_ratings(sim: &Sim, p: &Params, origin: &str, path: &str) -> Result<Reply, ApiError> {
    let start = p.int("start_time")?;
    let end = p.int("end_time")?;
    let items: Vec<Item> = {
        let store = sim.store.read();
        store
            .list("satisfaction_ratings")
            .map(|c| {
                c.iter()
                    .filter(|r| start.is_none_or(|s| r.ts >= s) && end.is_none_or(|e| r.ts <= e))
                    .map(|r| Item::by_id(r.id, r.json.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let _ = parse_iso;
    respond(sim, "satisfaction_ratings", p, origin, path, &items)
}
