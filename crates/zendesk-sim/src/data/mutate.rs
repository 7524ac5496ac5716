//! Change over time: creates, updates and deletes stamped with sim-now.
//!
//! Each mutation is one of: ticket update (a new audit with a status change and/or comment, a
//! metric event, a refreshed metric set; `updated_at` and `generated_timestamp` move to now),
//! system update (only `generated_timestamp` moves — see "Excluding system-updated tickets" in
//! <https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api/>),
//! ticket create, ticket delete (`status: "deleted"`, listed in `/api/v2/deleted_tickets`), user
//! update / create / delete (soft: `active: false`, listed in `/api/v2/deleted_users`),
//! organization update / create, group update, group membership create / delete (hard delete:
//! the membership simply disappears), satisfaction rating create and macro update.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::gen::{metric_set_json, Gen};
use super::Store;
use crate::clock::iso;

/// What a call to [`mutate`] did, by kind.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MutationSummary {
    /// Count per mutation kind.
    pub counts: std::collections::BTreeMap<&'static str, u64>,
}

/// Applies `n` random mutations stamped with `now`.
pub fn mutate(store: &mut Store, rng: &mut ChaCha8Rng, now: i64, n: usize) -> MutationSummary {
    let mut summary = MutationSummary::default();
    let host = store.host.clone();
    let mut g = Gen {
        rng,
        store,
        host,
        anchor: now,
        busy: vec![now],
    };
    for _ in 0..n {
        let roll = g.rng.gen_range(0..100);
        let kind = match roll {
            0..=37 => update_ticket(&mut g, now),
            38..=42 => system_update(&mut g, now),
            43..=54 => create_ticket(&mut g, now),
            55..=59 => delete_ticket(&mut g, now),
            60..=69 => update_user(&mut g, now),
            70..=74 => create_user(&mut g, now),
            75..=76 => delete_user(&mut g, now),
            77..=81 => update_org(&mut g, now),
            82..=83 => create_org(&mut g, now),
            84..=85 => update_list(&mut g, now, "groups"),
            86..=88 => create_group_membership(&mut g, now),
            89..=90 => delete_group_membership(&mut g),
            91..=94 => create_satisfaction_rating(&mut g, now),
            _ => update_list(&mut g, now, "macros"),
        };
        *summary.counts.entry(kind).or_insert(0) += 1;
    }
    summary
}

fn parse(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or(Value::Null)
}

/// A random live (not deleted, not archived) ticket id.
fn live_ticket(g: &mut Gen<'_>) -> Option<u64> {
    let max = g.store.tickets.max_id();
    for _ in 0..50 {
        let id = g.rng.gen_range(1..=max.max(1));
        if let Some(m) = g.store.ticket(id) {
            if !m.deleted && !m.archived {
                return Some(id);
            }
        }
    }
    None
}

fn update_ticket(g: &mut Gen<'_>, now: i64) -> &'static str {
    let Some(tid) = live_ticket(g) else { return "noop" };
    let Some(rec) = g.store.tickets.get(tid) else {
        return "noop";
    };
    let mut t = parse(&rec.json);
    let prev = t["status"].as_str().unwrap_or("open").to_owned();
    let next = ["open", "pending", "hold", "solved"][g.rng.gen_range(0..4)];
    let agent = g.pick_id(&g.store.people.agents.clone()).unwrap_or(g.store.me_id);
    let mut events = Vec::new();
    if next != prev {
        events.push(json!({"id": g.id(), "type": "Change", "field_name": "status", "value": next, "previous_value": prev}));
        t["status"] = json!(next);
    }
    if g.rng.gen_bool(0.3) {
        let tag = format!("sim_tag_{}", g.rng.gen_range(0..20));
        if let Some(tags) = t["tags"].as_array_mut() {
            if !tags.iter().any(|x| x == &json!(tag)) {
                tags.push(json!(tag));
                *g.store.tags.entry(tag.clone()).or_insert(0) += 1;
                events.push(json!({"id": g.id(), "type": "Change", "field_name": "tags", "value": [tag], "previous_value": []}));
            }
        }
    }
    if events.is_empty() || g.rng.gen_bool(0.7) {
        let body = g.body();
        events.push(g.comment_event(agent, &body, true));
    }
    t["updated_at"] = json!(iso(now));
    t["generated_timestamp"] = json!(now);
    let via = t["via"].clone();
    g.store.tickets.upsert(tid, now, t.to_string());
    g.put_audit(tid, now, agent, &via, events);
    refresh_metric_set(g, tid, now, next);
    let id = g.id();
    let ev = json!({"id": id, "ticket_id": tid, "metric": "reply_time", "instance_id": 2, "type": "fulfill", "time": iso(now)});
    g.store.metric_events.upsert(id, now, ev.to_string());
    "ticket_update"
}

fn refresh_metric_set(g: &mut Gen<'_>, tid: u64, now: i64, status: &str) {
    let Some(msid) = g.store.metric_set_by_ticket.get(&tid).copied() else {
        return;
    };
    let Some(rec) = g.store.metric_sets.get(msid) else {
        return;
    };
    let old = parse(&rec.json);
    let created = old["created_at"]
        .as_str()
        .and_then(crate::clock::parse_iso)
        .unwrap_or(now);
    let reopens = old["reopens"].as_u64().unwrap_or(0);
    let v = metric_set_json(&g.host, msid, tid, created, now, status, reopens);
    g.store.metric_sets.upsert(msid, now, v.to_string());
}

fn system_update(g: &mut Gen<'_>, now: i64) -> &'static str {
    let Some(tid) = live_ticket(g) else { return "noop" };
    let Some(rec) = g.store.tickets.get(tid) else {
        return "noop";
    };
    let mut t = parse(&rec.json);
    t["generated_timestamp"] = json!(now);
    g.store.tickets.upsert(tid, now, t.to_string());
    "ticket_system_update"
}

fn create_ticket(g: &mut Gen<'_>, now: i64) -> &'static str {
    let tid = g.store.tickets.max_id() + 1;
    let people = g.store.people.clone();
    g.make_ticket(tid, now, now, now, "new", false, &people);
    "ticket_create"
}

fn delete_ticket(g: &mut Gen<'_>, now: i64) -> &'static str {
    let Some(tid) = live_ticket(g) else { return "noop" };
    let Some(rec) = g.store.tickets.get(tid) else {
        return "noop";
    };
    let mut t = parse(&rec.json);
    let previous = t["status"].clone();
    t["status"] = json!("deleted");
    t["updated_at"] = json!(iso(now));
    t["generated_timestamp"] = json!(now);
    let d = json!({"id": tid, "subject": t["subject"], "description": t["description"],
        "actor": {"id": g.store.me_id, "name": "Admin Sim"}, "deleted_at": iso(now), "previous_state": previous});
    g.store.tickets.upsert(tid, now, t.to_string());
    g.store.deleted_tickets.upsert(tid, now, d.to_string());
    if let Some(m) = g.store.ticket_meta.get_mut(&tid) {
        m.deleted = true;
    }
    "ticket_delete"
}

fn random_user(g: &mut Gen<'_>) -> Option<u64> {
    let ids: Vec<u64> = g.store.people.end_users.clone();
    g.pick_id(&ids)
}

fn update_user(g: &mut Gen<'_>, now: i64) -> &'static str {
    let Some(uid) = random_user(g) else { return "noop" };
    let Some(rec) = g.store.users.get(uid) else {
        return "noop";
    };
    let mut u = parse(&rec.json);
    let name = g.name();
    u["name"] = json!(name);
    u["updated_at"] = json!(iso(now));
    g.store.users.upsert(uid, now, u.to_string());
    // Identities change with the user (the export's include=identities reflects them).
    if let Some(ids) = g.store.identities_by_user.get(&uid).cloned() {
        for iid in ids {
            if let Some(r) = g.store.identities.get(iid) {
                let mut iv = parse(&r.json);
                iv["updated_at"] = json!(iso(now));
                g.store.identities.upsert(iid, now, iv.to_string());
            }
        }
    }
    "user_update"
}

fn create_user(g: &mut Gen<'_>, now: i64) -> &'static str {
    let uid = g.id();
    let i = g.store.users.len() + 1;
    let email = format!("new{uid}@example.com");
    let org = g.pick_id(&g.store.people.orgs.clone());
    let v = g.user_json(uid, i, &email, "end-user", now, now, org, true);
    g.store.users.upsert(uid, now, v.to_string());
    g.store.people.end_users.push(uid);
    let iid = g.id();
    let iv = json!({"url": format!("{}/api/v2/users/{uid}/identities/{iid}.json", g.host), "id": iid, "user_id": uid,
        "type": "email", "value": email, "verified": false, "primary": true, "created_at": iso(now), "updated_at": iso(now),
        "undeliverable_count": 0, "deliverable_state": "deliverable"});
    g.store.identities.upsert(iid, now, iv.to_string());
    g.store.identities_by_user.insert(uid, vec![iid]);
    "user_create"
}

fn delete_user(g: &mut Gen<'_>, now: i64) -> &'static str {
    let Some(uid) = random_user(g) else { return "noop" };
    let Some(rec) = g.store.users.get(uid) else {
        return "noop";
    };
    let mut u = parse(&rec.json);
    u["active"] = json!(false);
    u["updated_at"] = json!(iso(now));
    g.store.users.upsert(uid, now, u.to_string());
    g.store.deleted_user_ids.insert(uid);
    g.store.people.end_users.retain(|x| *x != uid);
    "user_delete"
}

fn update_org(g: &mut Gen<'_>, now: i64) -> &'static str {
    let Some(oid) = g.pick_id(&g.store.people.orgs.clone()) else {
        return "noop";
    };
    let Some(rec) = g.store.organizations.get(oid) else {
        return "noop";
    };
    let mut o = parse(&rec.json);
    o["notes"] = json!(g.sentence());
    o["updated_at"] = json!(iso(now));
    g.store.organizations.upsert(oid, now, o.to_string());
    "organization_update"
}

fn create_org(g: &mut Gen<'_>, now: i64) -> &'static str {
    let oid = g.id();
    let name = format!("New Org {oid}");
    let v = json!({"url": format!("{}/api/v2/organizations/{oid}.json", g.host), "id": oid, "name": name,
        "shared_tickets": false, "shared_comments": false, "external_id": null, "created_at": iso(now),
        "updated_at": iso(now), "deleted_at": null, "domain_names": [], "details": null, "notes": null,
        "group_id": null, "tags": [], "organization_fields": {}});
    g.store.organizations.upsert(oid, now, v.to_string());
    g.store.people.orgs.push(oid);
    "organization_create"
}

fn update_list(g: &mut Gen<'_>, now: i64, stream: &'static str) -> &'static str {
    let ids: Vec<u64> = g
        .store
        .list(stream)
        .map(|c| c.iter().map(|r| r.id).collect())
        .unwrap_or_default();
    let Some(id) = g.pick_id(&ids) else { return "noop" };
    let Some(rec) = g.store.list(stream).and_then(|c| c.get(id)) else {
        return "noop";
    };
    let mut v = parse(&rec.json);
    v["updated_at"] = json!(iso(now));
    if v.get("description").is_some() {
        v["description"] = json!(g.sentence());
    }
    g.store.list_mut(stream).upsert(id, now, v.to_string());
    if stream == "groups" {
        "group_update"
    } else {
        "macro_update"
    }
}

fn create_group_membership(g: &mut Gen<'_>, now: i64) -> &'static str {
    let people = g.store.people.clone();
    let (Some(user), Some(group)) = (g.pick_id(&people.agents), g.pick_id(&people.groups)) else {
        return "noop";
    };
    let id = g.id();
    let v = json!({"url": format!("{}/api/v2/group_memberships/{id}.json", g.host), "id": id, "user_id": user,
        "group_id": group, "default": false, "created_at": iso(now), "updated_at": iso(now)});
    g.put_list("group_memberships", id, now, &v);
    "group_membership_create"
}

fn delete_group_membership(g: &mut Gen<'_>) -> &'static str {
    let ids: Vec<u64> = g
        .store
        .list("group_memberships")
        .map(|c| c.iter().map(|r| r.id).collect())
        .unwrap_or_default();
    let Some(id) = g.pick_id(&ids) else { return "noop" };
    g.store.list_mut("group_memberships").remove(id);
    "group_membership_delete"
}

fn create_satisfaction_rating(g: &mut Gen<'_>, now: i64) -> &'static str {
    let Some(tid) = live_ticket(g) else { return "noop" };
    let id = g.id();
    let people = g.store.people.clone();
    let v = json!({"url": format!("{}/api/v2/satisfaction_ratings/{id}.json", g.host), "id": id,
        "assignee_id": g.pick_id(&people.agents), "group_id": g.pick_id(&people.groups),
        "requester_id": g.pick_id(&people.end_users), "ticket_id": tid, "score": "good", "comment": "Merci ! 👍",
        "reason": null, "reason_id": null, "reason_code": null, "created_at": iso(now), "updated_at": iso(now)});
    g.put_list("satisfaction_ratings", id, now, &v);
    "satisfaction_rating_create"
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mutations_are_stamped_with_now() {
        let mut s = super::super::gen::generate(200, 3, 1_800_000_000, "acme", "a@b.c", "admin");
        let before = s.tickets.len();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let now = 1_800_000_500;
        let summary = mutate(&mut s, &mut rng, now, 200);
        assert!(summary.counts.values().sum::<u64>() == 200);
        assert!(s.tickets.len() > before);
        assert!(s.tickets.after(None).filter(|r| r.ts == now).count() > 10);
        assert!(s.tickets.iter().all(|r| r.ts <= now));
    }
}
