//! The streams seam replicates from Zendesk, how each is fetched, and the machinery every stream
//! shares: record emission (raw JSON passed through), STATE checkpoints and bookmark positions.

pub mod exports;
pub mod lists;

use crate::client::ZendeskClient;
use crate::config::ZendeskConfig;
use crate::error::ApiError;
use seam_core::catalog::ReplicationMethod;
use seam_core::singer::{Message, RecordMessage};
use seam_core::state::State;
use seam_core::{ReadSummary, SourceError};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, OnceCell};
use tokio_util::sync::CancellationToken;

/// How a stream's records are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// `/api/v2/incremental/tickets/cursor.json` (tickets, and ticket_metrics from the
    /// `metric_sets` side-load).
    TicketsExport,
    /// `/api/v2/incremental/users/cursor.json` (users, and user_identities from the `identities`
    /// side-load).
    UsersExport,
    /// A time-based incremental export: `path`, the array `key` in its pages, and the field that
    /// orders it.
    TimeExport {
        /// Request path.
        path: &'static str,
        /// Array key in the page.
        key: &'static str,
    },
    /// `/api/v2/incremental/ticket_events.json?include=comment_events` (ticket_comments and
    /// ticket_audits), or per-ticket audits when configured.
    TicketEvents,
    /// A list endpoint with cursor pagination (`page[size]`, `page[after]`, `meta.has_more`).
    List {
        /// Request path.
        path: &'static str,
        /// Array key in the page.
        key: &'static str,
    },
}

/// One stream: its Singer identity and how it is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDef {
    /// Stream name (Stitch's table name).
    pub name: &'static str,
    /// Primary key.
    pub key_properties: &'static [&'static str],
    /// Replication method.
    pub method: ReplicationMethod,
    /// Replication key (the bookmark's key).
    pub replication_key: Option<&'static str>,
    /// Parent stream (child streams).
    pub parent: Option<&'static str>,
    /// How it is fetched.
    pub fetch: Fetch,
    /// For soft-delete streams: the field copied into `_sdc_deleted_at`.
    pub soft_delete_from: Option<&'static str>,
}

const ID: &[&str] = &["id"];
const INC: ReplicationMethod = ReplicationMethod::Incremental;
const FULL: ReplicationMethod = ReplicationMethod::FullTable;

const fn list(name: &'static str, path: &'static str, key: &'static str) -> StreamDef {
    StreamDef {
        name,
        key_properties: ID,
        method: INC,
        replication_key: Some("updated_at"),
        parent: None,
        fetch: Fetch::List { path, key },
        soft_delete_from: None,
    }
}

const fn full(
    name: &'static str,
    path: &'static str,
    key: &'static str,
    pk: &'static [&'static str],
) -> StreamDef {
    StreamDef {
        name,
        key_properties: pk,
        method: FULL,
        replication_key: None,
        parent: None,
        fetch: Fetch::List { path, key },
        soft_delete_from: None,
    }
}

/// Every stream, in the order a catalog lists them.
pub const STREAMS: &[StreamDef] = &[
    StreamDef {
        name: "tickets",
        key_properties: ID,
        method: INC,
        replication_key: Some("generated_timestamp"),
        parent: None,
        fetch: Fetch::TicketsExport,
        soft_delete_from: None,
    },
    StreamDef {
        name: "ticket_metrics",
        key_properties: ID,
        method: INC,
        replication_key: Some("updated_at"),
        parent: Some("tickets"),
        fetch: Fetch::TicketsExport,
        soft_delete_from: None,
    },
    StreamDef {
        name: "ticket_comments",
        key_properties: ID,
        method: INC,
        replication_key: Some("created_at"),
        parent: Some("tickets"),
        fetch: Fetch::TicketEvents,
        soft_delete_from: None,
    },
    StreamDef {
        name: "ticket_audits",
        key_properties: ID,
        method: INC,
        replication_key: Some("created_at"),
        parent: Some("tickets"),
        fetch: Fetch::TicketEvents,
        soft_delete_from: None,
    },
    StreamDef {
        name: "users",
        key_properties: ID,
        method: INC,
        replication_key: Some("updated_at"),
        parent: None,
        fetch: Fetch::UsersExport,
        soft_delete_from: None,
    },
    StreamDef {
        name: "user_identities",
        key_properties: ID,
        method: INC,
        replication_key: Some("updated_at"),
        parent: Some("users"),
        fetch: Fetch::UsersExport,
        soft_delete_from: None,
    },
    StreamDef {
        name: "organizations",
        key_properties: ID,
        method: INC,
        replication_key: Some("updated_at"),
        parent: None,
        fetch: Fetch::TimeExport {
            path: "/api/v2/incremental/organizations.json",
            key: "organizations",
        },
        soft_delete_from: None,
    },
    StreamDef {
        name: "ticket_metric_events",
        key_properties: ID,
        method: INC,
        replication_key: Some("time"),
        parent: None,
        fetch: Fetch::TimeExport {
            path: "/api/v2/incremental/ticket_metric_events.json",
            key: "ticket_metric_events",
        },
        soft_delete_from: None,
    },
    list("groups", "/api/v2/groups.json", "groups"),
    list(
        "group_memberships",
        "/api/v2/group_memberships.json",
        "group_memberships",
    ),
    list("macros", "/api/v2/macros.json", "macros"),
    full("tags", "/api/v2/tags.json", "tags", &["name"]),
    list("ticket_fields", "/api/v2/ticket_fields.json", "ticket_fields"),
    list("ticket_forms", "/api/v2/ticket_forms.json", "ticket_forms"),
    list(
        "satisfaction_ratings",
        "/api/v2/satisfaction_ratings.json",
        "satisfaction_ratings",
    ),
    full("sla_policies", "/api/v2/slas/policies.json", "sla_policies", ID),
    full(
        "talk_phone_numbers",
        "/api/v2/channels/voice/phone_numbers.json",
        "phone_numbers",
        ID,
    ),
    list("brands", "/api/v2/brands.json", "brands"),
    list(
        "organization_memberships",
        "/api/v2/organization_memberships.json",
        "organization_memberships",
    ),
    list("user_fields", "/api/v2/user_fields.json", "user_fields"),
    list(
        "organization_fields",
        "/api/v2/organization_fields.json",
        "organization_fields",
    ),
    list("custom_roles", "/api/v2/custom_roles.json", "custom_roles"),
    list("schedules", "/api/v2/business_hours/schedules.json", "schedules"),
    list("automations", "/api/v2/automations.json", "automations"),
    list("triggers", "/api/v2/triggers.json", "triggers"),
    list("views", "/api/v2/views.json", "views"),
    StreamDef {
        name: "deleted_tickets",
        key_properties: ID,
        method: INC,
        replication_key: Some("deleted_at"),
        parent: None,
        fetch: Fetch::List {
            path: "/api/v2/deleted_tickets.json",
            key: "deleted_tickets",
        },
        soft_delete_from: Some("deleted_at"),
    },
    StreamDef {
        name: "deleted_users",
        key_properties: ID,
        method: INC,
        replication_key: Some("updated_at"),
        parent: None,
        fetch: Fetch::List {
            path: "/api/v2/deleted_users.json",
            key: "deleted_users",
        },
        soft_delete_from: Some("updated_at"),
    },
];

/// The definition of a stream by name.
pub fn stream_def(name: &str) -> Option<&'static StreamDef> {
    STREAMS.iter().find(|s| s.name == name)
}

/// Bookmark key holding an export's `after_cursor`.
pub const AFTER_CURSOR: &str = "after_cursor";
/// Bookmark key holding the ids already emitted at the watermark second (time-based exports).
pub const BOUNDARY_IDS: &str = "boundary_ids";
/// Most ids kept in [`BOUNDARY_IDS`]; beyond it the boundary second is re-read (safe by primary key).
pub const MAX_BOUNDARY_IDS: usize = 500;

/// Where a stream resumes: a stored export cursor and/or a watermark (unix seconds), plus the ids
/// already emitted at the watermark second.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    /// Export cursor.
    pub cursor: Option<String>,
    /// Watermark in unix seconds.
    pub watermark: Option<i64>,
    /// Ids emitted at the watermark second.
    pub boundary_ids: Vec<u64>,
}

/// Reads a bookmark value as unix seconds: an RFC 3339 string (tap-zendesk writes these, also for
/// `generated_timestamp`) or a number of seconds.
pub fn bookmark_epoch(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => crate::raw::parse_epoch(s).or_else(|| s.trim().parse().ok()),
        _ => None,
    }
}

impl Position {
    /// The position stored for `def` in `state`.
    pub fn of(state: &State, def: &StreamDef) -> Position {
        let mut p = Position::default();
        if let Some(Value::Object(m)) = state.bookmarks.get(def.name) {
            p.cursor = m.get(AFTER_CURSOR).and_then(Value::as_str).map(str::to_owned);
            p.watermark = def
                .replication_key
                .and_then(|k| m.get(k))
                .and_then(bookmark_epoch);
            if let Some(Value::Array(ids)) = m.get(BOUNDARY_IDS) {
                p.boundary_ids = ids.iter().filter_map(Value::as_u64).collect();
            }
        }
        p
    }
}

/// Normalises bookmarks written as numbers (e.g. epoch seconds) to RFC 3339 strings, so that
/// comparing them with the ones seam writes works and they never move backwards.
pub fn normalise_bookmarks(state: &mut State) {
    for def in STREAMS {
        let Some(key) = def.replication_key else { continue };
        if let Some(v) = state.bookmark(def.name, key) {
            if let (false, Some(e)) = (
                v.is_string() && crate::raw::parse_epoch(v.as_str().unwrap_or("")).is_some(),
                bookmark_epoch(v),
            ) {
                state.set_bookmark(def.name, key, Value::String(crate::raw::iso(e)));
            }
        }
    }
}

/// What a stream writes, and how: its name, table version (full-table streams) and field selection.
#[derive(Debug, Clone)]
pub struct StreamOut {
    /// The stream.
    pub def: &'static StreamDef,
    /// `version` for records (full-table streams).
    pub version: Option<i64>,
    /// Full-table streams that never completed a version (no `version` bookmark): activate the new
    /// version before the first record too, so the rows show at once.
    pub activate_first: bool,
    /// Top-level fields to keep; `None` keeps every field (no re-encoding).
    pub keep: Option<Arc<HashSet<String>>>,
}

/// Shared by every stream task of one read.
#[derive(Debug)]
pub struct ReadCtx {
    /// The HTTP client.
    pub client: Arc<ZendeskClient>,
    /// The configuration.
    pub config: Arc<ZendeskConfig>,
    /// The output.
    pub out: mpsc::Sender<Message>,
    /// Bookmarks, updated only after the records they cover were sent.
    pub state: tokio::sync::Mutex<State>,
    /// Stops the read: checked at page boundaries, and raced by every wait (requests, the rate
    /// limiter, backoffs, a full output channel).
    pub cancel: CancellationToken,
    /// Per-stream counters and skips.
    pub summary: parking_lot::Mutex<ReadSummary>,
    /// Selected streams.
    pub outs: HashMap<&'static str, StreamOut>,
    /// Ids of soft-deleted tickets (their audits and comments are not replicated), loaded once.
    pub deleted_tickets: OnceCell<HashSet<u64>>,
}

impl ReadCtx {
    /// The output settings of a selected stream.
    pub fn out_of(&self, name: &str) -> Option<&StreamOut> {
        self.outs.get(name)
    }

    /// Sends one record of `stream` (applying field selection and the table version).
    pub async fn record(&self, stream: &StreamOut, record: Box<RawValue>) -> Result<(), SourceError> {
        let record = match &stream.keep {
            Some(keep) => crate::raw::select_fields(&record, keep)
                .map_err(|e| SourceError::new(seam_core::ErrorKind::Schema, e).in_stream(stream.def.name))?,
            None => record,
        };
        let msg = RecordMessage {
            stream: stream.def.name.to_owned(),
            record,
            version: stream.version,
            time_extracted: None,
        };
        self.send(Message::Record(msg)).await
    }

    /// Sends a batch of records of one stream and counts them.
    pub async fn records(&self, stream: &StreamOut, records: Vec<Box<RawValue>>) -> Result<(), SourceError> {
        let n = records.len() as u64;
        for r in records {
            self.record(stream, r).await?;
        }
        if n > 0 {
            *self
                .summary
                .lock()
                .records
                .entry(stream.def.name.to_owned())
                .or_insert(0) += n;
        }
        Ok(())
    }

    /// Sends any message. A full channel is waited on until the consumer takes it or the read is
    /// cancelled (then [`ApiError::Cancelled`]).
    pub async fn send(&self, msg: Message) -> Result<(), SourceError> {
        tokio::select! {
            // A message the channel can take now is sent even after a cancel: only waits are cut.
            biased;
            sent = self.out.send(msg) => sent.map_err(|_| SourceError::consumer_gone()),
            () = self.cancel.cancelled() => Err(ApiError::Cancelled {
                waiting_on: "the consumer of the output".to_owned(),
            }
            .into()),
        }
    }

    /// Applies `update` to the bookmarks and sends a STATE. Call only once every record the update
    /// covers was sent. The lock is held across the send, so STATEs leave in the order their
    /// bookmarks were set and never move backwards.
    pub async fn checkpoint(&self, update: impl FnOnce(&mut State)) -> Result<(), SourceError> {
        self.turn().await?.checkpoint(update).await
    }

    /// The output's turn for one page: records sent while it is held, then the STATE its
    /// [`Turn::checkpoint`] sends, leave with no other stream's STATE between them. A STATE holds
    /// every stream's bookmark; one sent by another stream while this page's records go out would
    /// hold this stream's bookmark from before them, and a run resumed from it would read them
    /// again. Waiting for the turn ends when the read is cancelled.
    pub async fn turn(&self) -> Result<Turn<'_>, SourceError> {
        tokio::select! {
            biased;
            state = self.state.lock() => Ok(Turn { ctx: self, state }),
            () = self.cancel.cancelled() => Err(ApiError::Cancelled {
                waiting_on: "another stream's page".to_owned(),
            }
            .into()),
        }
    }

    /// Records that `streams` were skipped, with a warning like Stitch's.
    pub fn skip(&self, streams: &[&'static StreamDef], reason: &str) {
        let mut s = self.summary.lock();
        for d in streams {
            tracing::warn!(
                stream = d.name,
                "The account credentials supplied do not have access to `{}`: {reason}",
                d.name
            );
            s.skipped.insert(d.name.to_owned(), reason.to_owned());
        }
    }
}

/// A page's hold on the output (see [`ReadCtx::turn`]).
pub struct Turn<'a> {
    ctx: &'a ReadCtx,
    state: tokio::sync::MutexGuard<'a, State>,
}

impl std::fmt::Debug for Turn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").finish_non_exhaustive()
    }
}

impl Turn<'_> {
    /// Applies `update` to the bookmarks and sends the STATE that ends the page, as
    /// [`ReadCtx::checkpoint`] does.
    pub async fn checkpoint(mut self, update: impl FnOnce(&mut State)) -> Result<(), SourceError> {
        update(&mut self.state);
        let value = self.state.to_value();
        self.ctx.send(Message::State { value }).await
    }
}

/// Sets a stream's position after a page: the cursor (if any), the watermark moved forward only,
/// and the boundary ids (dropped when there are too many to keep).
pub fn store_position(
    state: &mut State,
    def: &StreamDef,
    cursor: Option<&str>,
    watermark: Option<i64>,
    boundary: Option<&[u64]>,
) {
    if let Some(c) = cursor {
        state.set_bookmark(def.name, AFTER_CURSOR, Value::String(c.to_owned()));
    }
    let (Some(key), Some(w)) = (def.replication_key, watermark) else {
        return;
    };
    let before = state.bookmark(def.name, key).and_then(bookmark_epoch);
    if state.advance_bookmark(def.name, key, Value::String(crate::raw::iso(w))) {
        match boundary {
            Some(ids) if ids.len() <= MAX_BOUNDARY_IDS => {
                state.set_bookmark(def.name, BOUNDARY_IDS, Value::from(ids.to_vec()));
            }
            Some(_) => state.clear_bookmark(def.name, BOUNDARY_IDS),
            None if before != Some(w) => state.clear_bookmark(def.name, BOUNDARY_IDS),
            None => {}
        }
    }
}

/// Strategies for property tests of page parsing: JSON shaped like Zendesk's pages (keys the
/// parsers look for, values of every type), and byte-level mutations of real pages.
#[cfg(test)]
pub(crate) mod arb {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    const KEYS: &[&str] = &[
        "id",
        "name",
        "tickets",
        "users",
        "identities",
        "after_cursor",
        "end_of_stream",
        "end_time",
        "generated_timestamp",
        "updated_at",
        "created_at",
        "deleted_at",
        "time",
        "timestamp",
        "status",
        "metric_set",
        "fields",
        "meta",
        "has_more",
        "next_page",
        "ticket_id",
        "child_events",
        "event_type",
        "via",
        "system",
        "metadata",
        "updater_id",
        "audit_id",
        "type",
        "events",
        "audits",
        "organizations",
        "ticket_events",
        "ticket_metric_events",
        "groups",
        "tags",
        "",
    ];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(KEYS).prop_map(str::to_owned),
            1 => any::<String>(),
        ]
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            any::<String>().prop_map(Value::from),
            (-100_000_000_000i64..100_000_000_000).prop_map(|t| Value::from(
                chrono::DateTime::from_timestamp(t, 0)
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default()
            )),
            proptest::sample::select(
                &["Comment", "Change", "Create", "deleted", "open", "Web form", "Audit"][..]
            )
            .prop_map(Value::from),
        ]
    }

    /// Any JSON value, nested a few levels, with keys the parsers look for.
    pub fn json() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// A page object: `array_key` holds records (objects, or anything), other page keys anything.
    pub fn page(array_key: &'static str) -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(json(), 0..5),
            proptest::collection::vec((key(), json()), 0..5),
        )
            .prop_map(move |(items, rest)| {
                let mut m: Map<String, Value> = rest.into_iter().collect();
                m.insert(array_key.to_owned(), Value::Array(items));
                serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
            })
    }

    /// `base` with bytes replaced, inserted, removed, or cut off.
    pub fn mutated(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
        let n = base.len();
        proptest::collection::vec((0..=n, any::<u8>(), 0u8..4), 1..6).prop_map(move |edits| {
            let mut b = base.as_bytes().to_vec();
            for (at, byte, op) in edits {
                let at = at.min(b.len());
                match op {
                    0 if at < b.len() => b[at] = byte,
                    1 => b.insert(at, byte),
                    2 if at < b.len() => {
                        b.remove(at);
                    }
                    _ => b.truncate(at),
                }
            }
            b
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_stream_has_a_schema_and_stitch_keys() {
        assert_eq!(STREAMS.len(), 28);
        for d in STREAMS {
            assert!(crate::schema::stream_schema(d.name).is_some(), "{}", d.name);
        }
        let t = stream_def("tickets").unwrap();
        assert_eq!(t.replication_key, Some("generated_timestamp"));
        assert_eq!(stream_def("tags").unwrap().key_properties, &["name"]);
        for f in ["tags", "sla_policies", "talk_phone_numbers"] {
            assert_eq!(stream_def(f).unwrap().method, ReplicationMethod::FullTable, "{f}");
        }
        assert_eq!(
            stream_def("ticket_metric_events").unwrap().replication_key,
            Some("time")
        );
    }

    #[test]
    fn positions_read_tap_zendesk_state() {
        let mut s = State::from_value(json!({"bookmarks": {"tickets": {"generated_timestamp": "2024-01-01T00:00:00Z"},
            "users": {"updated_at": 1_704_067_200}, "organizations": {"updated_at": "2024-01-01T00:00:00.000000Z"}}}))
        .unwrap();
        normalise_bookmarks(&mut s);
        assert_eq!(
            s.bookmark("users", "updated_at"),
            Some(&json!("2024-01-01T00:00:00Z"))
        );
        for n in ["tickets", "users", "organizations"] {
            assert_eq!(
                Position::of(&s, stream_def(n).unwrap()).watermark,
                Some(1_704_067_200),
                "{n}"
            );
        }
    }

    #[test]
    fn positions_never_move_backwards() {
        let d = stream_def("organizations").unwrap();
        let mut s = State::default();
        store_position(&mut s, d, None, Some(100), Some(&[1, 2]));
        store_position(&mut s, d, None, Some(50), Some(&[9]));
        let p = Position::of(&s, d);
        assert_eq!(p.watermark, Some(100));
        assert_eq!(p.boundary_ids, vec![1, 2]);
        store_position(&mut s, d, None, Some(100), Some(&[1, 2, 3]));
        assert_eq!(Position::of(&s, d).boundary_ids, vec![1, 2, 3]);
    }
}
