//! Ground truth: what a complete replication of the account must end up with.
//!
//! `GET /__sim/truth` returns, for every stream (Stitch / seam stream names), an object
//! `{"count": n, "ids": [sorted ids], "updated": {"<id>": <value>}}` describing the latest version
//! of each record. What each stream includes, and what `updated` holds:
//!
//! | stream | included | `updated` value |
//! |---|---|---|
//! | tickets | every ticket, including archived ones and `status: "deleted"` ones (exports return both) | `generated_timestamp` (integer) |
//! | users | every user, including soft-deleted ones (`active: false`; the export returns them) | `updated_at` |
//! | organizations | every organization, including deleted ones (`deleted_at` set) | `updated_at` |
//! | ticket_audits | audits of tickets that are not deleted (archived included: per-ticket audits work for them) | `created_at` |
//! | ticket_comments | comment events of those audits; id = comment id | `created_at` (the audit's) |
//! | ticket_metrics | metric sets of tickets that are not deleted | `updated_at` |
//! | ticket_metric_events | every metric event | `time` |
//! | user_identities | identities of every user | `updated_at` |
//! | tags | tag names (`ids` are strings) | use count (integer) |
//! | deleted_tickets | soft-deleted tickets | `deleted_at` |
//! | deleted_users | soft-deleted users | `updated_at` |
//! | talk_phone_numbers | all | `created_at` (the resource has no `updated_at`) |
//! | every other list stream | all current records (deleted group memberships are gone) | `updated_at` |

use serde_json::{json, Map, Value};

use super::{Collection, Store, LIST_STREAMS};
use crate::clock::iso;

/// Every stream name [`truth`] describes.
pub const TRUTH_STREAMS: &[&str] = &[
    "tickets",
    "users",
    "organizations",
    "groups",
    "group_memberships",
    "organization_memberships",
    "macros",
    "tags",
    "ticket_fields",
    "ticket_forms",
    "ticket_comments",
    "ticket_audits",
    "ticket_metrics",
    "ticket_metric_events",
    "satisfaction_ratings",
    "sla_policies",
    "talk_phone_numbers",
    "brands",
    "user_identities",
    "user_fields",
    "organization_fields",
    "custom_roles",
    "schedules",
    "automations",
    "triggers",
    "views",
    "deleted_tickets",
    "deleted_users",
];

fn entry(mut pairs: Vec<(u64, Value)>) -> Value {
    pairs.sort_by_key(|(id, _)| *id);
    pairs.dedup_by_key(|(id, _)| *id);
    let ids: Vec<Value> = pairs.iter().map(|(id, _)| json!(id)).collect();
    let mut updated = Map::new();
    for (id, v) in pairs {
        updated.insert(id.to_string(), v);
    }
    json!({"count": ids.len(), "ids": ids, "updated": updated})
}

fn by_ts(c: &Collection) -> Vec<(u64, Value)> {
    c.iter().map(|r| (r.id, json!(iso(r.ts)))).collect()
}

fn field(json: &str, name: &str) -> Value {
    serde_json::from_str::<Value>(json)
        .map(|v| v[name].clone())
        .unwrap_or(Value::Null)
}

/// The truth for one stream, or `None` for an unknown stream name.
pub fn stream_truth(store: &Store, stream: &str) -> Option<Value> {
    let live = |tid: u64| store.ticket(tid).is_some_and(|m| !m.deleted);
    let v = match stream {
        "tickets" => entry(store.tickets.iter().map(|r| (r.id, json!(r.ts))).collect()),
        "users" => entry(by_ts(&store.users)),
        "organizations" => entry(by_ts(&store.organizations)),
        "user_identities" => entry(by_ts(&store.identities)),
        "ticket_metric_events" => entry(by_ts(&store.metric_events)),
        "deleted_tickets" => entry(by_ts(&store.deleted_tickets)),
        "deleted_users" => entry(
            store
                .deleted_user_ids
                .iter()
                .filter_map(|id| store.users.get(*id))
                .map(|r| (r.id, json!(iso(r.ts))))
                .collect(),
        ),
        "ticket_audits" => entry(
            store
                .audits
                .iter()
                .filter(|r| store.audit_meta.get(&r.id).is_some_and(|m| live(m.ticket_id)))
                .map(|r| (r.id, json!(iso(r.ts))))
                .collect(),
        ),
        "ticket_comments" => {
            let mut out = Vec::new();
            for r in store.audits.iter() {
                let Some(m) = store.audit_meta.get(&r.id) else {
                    continue;
                };
                if live(m.ticket_id) {
                    let at = json!(iso(r.ts));
                    out.extend(m.comment_ids.iter().map(|c| (*c, at.clone())));
                }
            }
            entry(out)
        }
        "ticket_metrics" => entry(
            store
                .metric_set_by_ticket
                .iter()
                .filter(|(tid, _)| live(**tid))
                .filter_map(|(_, ms)| store.metric_sets.get(*ms))
                .map(|r| (r.id, json!(iso(r.ts))))
                .collect(),
        ),
        "tags" => {
            let ids: Vec<Value> = store.tags.keys().map(|k| json!(k)).collect();
            let updated: Map<String, Value> = store.tags.iter().map(|(k, c)| (k.clone(), json!(c))).collect();
            json!({"count": ids.len(), "ids": ids, "updated": updated})
        }
        "talk_phone_numbers" => {
            let c = store.list("talk_phone_numbers")?;
            entry(c.iter().map(|r| (r.id, field(&r.json, "created_at"))).collect())
        }
        s if LIST_STREAMS.contains(&s) => entry(by_ts(store.list(s)?)),
        _ => return None,
    };
    Some(v)
}

/// The truth for every stream.
pub fn truth(store: &Store) -> Value {
    let mut m = Map::new();
    for s in TRUTH_STREAMS {
        if let Some(v) = stream_truth(store, s) {
            m.insert((*s).to_owned(), v);
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_covers_every_stream() {
        let s = super::super::gen::generate(100, 1, 1_800_000_000, "acme", "a@b.c", "admin");
        let t = truth(&s);
        for name in TRUTH_STREAMS {
            let e = &t[*name];
            assert!(e["count"].as_u64().unwrap() > 0, "{name} is empty");
            assert_eq!(
                e["count"].as_u64().unwrap() as usize,
                e["ids"].as_array().unwrap().len(),
                "{name}"
            );
        }
        assert_eq!(t["tickets"]["count"], 100);
    }
}
