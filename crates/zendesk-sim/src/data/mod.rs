//! In-memory account data: one [`Collection`] per Zendesk resource, records kept as pre-serialised
//! JSON so that export pages are built by concatenation (no per-request serialisation).
//!
//! Every record has an `id` and a sort timestamp `ts` (unix seconds). What `ts` means depends on
//! the collection and is what the incremental exports filter and order on:
//! tickets → `generated_timestamp`, users / organizations / most lists → `updated_at`,
//! audits (ticket events) → `created_at`, ticket metric events → `time`.

pub mod gen;
pub mod mutate;
pub mod truth;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// One stored record.
#[derive(Debug, Clone)]
pub struct Rec {
    /// Zendesk id.
    pub id: u64,
    /// Sort / replication timestamp (unix seconds); see the module docs.
    pub ts: i64,
    /// The record as Zendesk serialises it.
    pub json: Arc<str>,
}

/// Records of one resource, indexed by id and by `(ts, id)`.
#[derive(Debug, Default, Clone)]
pub struct Collection {
    recs: BTreeMap<u64, Rec>,
    by_ts: BTreeSet<(i64, u64)>,
}

impl Collection {
    /// Inserts or replaces a record (re-indexing its timestamp).
    pub fn upsert(&mut self, id: u64, ts: i64, json: String) {
        if let Some(old) = self.recs.get(&id) {
            self.by_ts.remove(&(old.ts, id));
        }
        self.by_ts.insert((ts, id));
        self.recs.insert(
            id,
            Rec {
                id,
                ts,
                json: Arc::from(json),
            },
        );
    }

    /// Removes a record; returns it if it existed.
    pub fn remove(&mut self, id: u64) -> Option<Rec> {
        let rec = self.recs.remove(&id)?;
        self.by_ts.remove(&(rec.ts, id));
        Some(rec)
    }

    /// The record with this id.
    pub fn get(&self, id: u64) -> Option<&Rec> {
        self.recs.get(&id)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// Records in id order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Rec> {
        self.recs.values()
    }

    /// Largest id (0 when empty).
    pub fn max_id(&self) -> u64 {
        self.recs.keys().next_back().copied().unwrap_or(0)
    }

    /// Records with `(ts, id)` strictly after `pos` (or from the start), in `(ts, id)` order.
    pub fn after(&self, pos: Option<(i64, u64)>) -> impl Iterator<Item = &Rec> {
        let lower = match pos {
            Some(p) => Bound::Excluded(p),
            None => Bound::Unbounded,
        };
        self.by_ts
            .range((lower, Bound::Unbounded))
            .filter_map(|(_, id)| self.recs.get(id))
    }

    /// Records with `ts >= start`, in `(ts, id)` order.
    pub fn since(&self, start: i64) -> impl Iterator<Item = &Rec> {
        self.by_ts
            .range((start, 0)..)
            .filter_map(|(_, id)| self.recs.get(id))
    }

    /// Records with `(ts, id)` strictly before `pos`, newest first.
    pub fn before(&self, pos: (i64, u64)) -> impl Iterator<Item = &Rec> {
        self.by_ts
            .range(..pos)
            .rev()
            .filter_map(|(_, id)| self.recs.get(id))
    }

    /// All records, newest `(ts, id)` first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Rec> {
        self.by_ts.iter().rev().filter_map(|(_, id)| self.recs.get(id))
    }
}

/// Per-ticket facts the routes need without parsing JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct TicketMeta {
    /// `status == "deleted"`: per-ticket endpoints answer 404, lists leave it out.
    pub deleted: bool,
    /// Closed long ago: absent from `/api/v2/tickets` and `/api/v2/ticket_audits`, present in exports.
    pub archived: bool,
}

/// Facts about one audit.
#[derive(Debug, Clone, Default)]
pub struct AuditMeta {
    /// The audited ticket.
    pub ticket_id: u64,
    /// Ids of the Comment events in the audit.
    pub comment_ids: Vec<u64>,
}

/// The whole simulated account.
#[derive(Debug, Default)]
pub struct Store {
    /// Tickets; `ts` = `generated_timestamp`.
    pub tickets: Collection,
    /// Ticket facts by ticket id.
    pub ticket_meta: HashMap<u64, TicketMeta>,
    /// Ticket audits; `ts` = `created_at`. Comments live inside their audit's `events`.
    pub audits: Collection,
    /// Audit ids per ticket, oldest first.
    pub audits_by_ticket: HashMap<u64, Vec<u64>>,
    /// Per audit: its ticket and the ids of the comments it carries (saves parsing audit JSON).
    pub audit_meta: HashMap<u64, AuditMeta>,
    /// Ticket metric sets (one per ticket); keyed by metric-set id, `ts` = `updated_at`.
    pub metric_sets: Collection,
    /// Metric-set id per ticket id.
    pub metric_set_by_ticket: HashMap<u64, u64>,
    /// Ticket metric events; `ts` = `time`.
    pub metric_events: Collection,
    /// Deleted tickets (`/api/v2/deleted_tickets`); `ts` = `deleted_at`.
    pub deleted_tickets: Collection,
    /// Users (including soft-deleted ones, `active: false`); `ts` = `updated_at`.
    pub users: Collection,
    /// Ids of soft-deleted users.
    pub deleted_user_ids: BTreeSet<u64>,
    /// User identities; `ts` = `updated_at`.
    pub identities: Collection,
    /// Identity ids per user.
    pub identities_by_user: HashMap<u64, Vec<u64>>,
    /// Organizations (deleted ones carry `deleted_at`); `ts` = `updated_at`.
    pub organizations: Collection,
    /// Ids of deleted organizations.
    pub deleted_org_ids: BTreeSet<u64>,
    /// Tag name → use count.
    pub tags: BTreeMap<String, u64>,
    /// The admin (or agent) the API credentials belong to.
    pub me_id: u64,
    /// Plain list resources by stream name (`groups`, `macros`, ...); `ts` = `updated_at`.
    pub lists: BTreeMap<&'static str, Collection>,
    /// Ids handed out so far (ids are unique across the account, like Zendesk's).
    pub next_id: u64,
    /// Custom ticket fields: (id, type, options) used to build `custom_fields` values.
    pub custom_fields: Vec<gen::CustomField>,
    /// `<https://{subdomain}.zendesk.com>`, used in records' `url` fields.
    pub host: String,
    /// Ids by role, for wiring foreign keys of new records.
    pub people: gen::People,
}

impl Store {
    /// A fresh id.
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A plain list collection by stream name (empty if unknown).
    pub fn list(&self, name: &str) -> Option<&Collection> {
        self.lists.get(name)
    }

    /// Mutable access to a plain list collection, created if missing.
    pub fn list_mut(&mut self, name: &'static str) -> &mut Collection {
        self.lists.entry(name).or_default()
    }

    /// Facts about a ticket; `None` for unknown ids.
    pub fn ticket(&self, id: u64) -> Option<TicketMeta> {
        self.ticket_meta.get(&id).copied()
    }
}

/// Names of the plain list collections held in [`Store::lists`].
pub const LIST_STREAMS: &[&str] = &[
    "groups",
    "group_memberships",
    "organization_memberships",
    "macros",
    "ticket_fields",
    "ticket_forms",
    "user_fields",
    "organization_fields",
    "brands",
    "custom_roles",
    "schedules",
    "automations",
    "triggers",
    "views",
    "sla_policies",
    "talk_phone_numbers",
    "satisfaction_ratings",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_reindexes_on_upsert() {
        let mut c = Collection::default();
        c.upsert(1, 10, "{}".into());
        c.upsert(2, 10, "{}".into());
        c.upsert(3, 5, "{}".into());
        let order: Vec<u64> = c.after(None).map(|r| r.id).collect();
        assert_eq!(order, vec![3, 1, 2]);
        c.upsert(3, 20, "{}".into());
        let order: Vec<u64> = c.after(Some((10, 1))).map(|r| r.id).collect();
        assert_eq!(order, vec![2, 3]);
        let since: Vec<u64> = c.since(10).map(|r| r.id).collect();
        assert_eq!(since, vec![1, 2, 3]);
        let before: Vec<u64> = c.before((20, 3)).map(|r| r.id).collect();
        assert_eq!(before, vec![2, 1]);
        assert!(c.remove(1).is_some());
        assert_eq!(c.len(), 2);
    }
}
