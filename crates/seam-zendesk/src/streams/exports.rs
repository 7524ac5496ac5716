//! Incremental exports
//! (https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/).
//!
//! - Cursor-based (tickets, users): the first request carries `start_time`, every later one only
//!   `cursor`; the `after_cursor` is stored in the bookmark, so the next run resumes exactly where this
//!   one stopped (no boundary re-reads). The `generated_timestamp` / `updated_at` watermark is kept
//!   as well, as a fallback should the cursor be refused.
//! - Time-based (organizations, ticket_metric_events, ticket_events): a page repeats the items that
//!   share its `end_time` second with the next page. seam keeps the ids emitted at the latest second
//!   (also in the bookmark, `boundary_ids`) and drops the repeats, so no record is emitted twice and
//!   none that shares the boundary second is skipped.
//! - Items changed in the minute before a request are not exported yet, and a `start_time` under a
//!   minute old is refused (422 "Too recent start_time"): that simply means "nothing new yet".

use super::{store_position, Position, ReadCtx, StreamDef, StreamOut, Turn};
use crate::config::CommentsSource;
use crate::error::ApiError;
use crate::rate_limit::EndpointClass;
use crate::raw::{members, Key, Members, Piece, RawObject};
use seam_core::SourceError;
use serde::Deserialize;
use serde_json::value::{to_raw_value, RawValue};
use std::borrow::Cow;
use std::collections::HashSet;
use tracing::{info, warn};

/// `per_page` sent to the exports (Zendesk's maximum).
const EXPORT_PER_PAGE: u32 = crate::config::EXPORT_PAGE_SIZE;

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The first request's start: the watermark, or the configured start date.
fn start_of(ctx: &ReadCtx, pos: &Position) -> i64 {
    pos.watermark
        .unwrap_or_else(|| ctx.config.start_date.timestamp())
        .max(0)
}

#[derive(Deserialize)]
struct CursorPage<'a> {
    #[serde(borrow, default)]
    tickets: Vec<Ticket<'a>>,
    #[serde(borrow, default)]
    users: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    identities: Vec<&'a RawValue>,
    #[serde(default)]
    after_cursor: Option<String>,
    end_of_stream: bool,
}

/// A ticket of the export, parsed once: its members in order, values left raw (a name repeated in
/// the text stays repeated, as the text passes through), and the few seam reads. Reading those with
/// a derived struct from the ticket's text, then checking the text again as it became the record
/// (once `fields` and `metric_set` were cut out of it), scanned every ticket three times.
struct Ticket<'a> {
    members: Vec<(Key<'a>, &'a RawValue)>,
    id: u64,
    generated_timestamp: Option<i64>,
    deleted: bool,
    /// The side-loaded metric set; `None` when absent or `null` (as an `Option` field reads it).
    metric_set: Option<&'a RawValue>,
    /// `fields` is there and not `null`: it is cut out of the record (a `null` one passes through,
    /// as `metric_set: null` does).
    cut_fields: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for Ticket<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ticket<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a ticket object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Ticket<'de>, A::Error> {
                use serde::de::Error;
                fn typed<'a, T: Deserialize<'a>, E: Error>(raw: &'a RawValue) -> Result<T, E> {
                    serde_json::from_str(raw.get()).map_err(E::custom)
                }
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(32));
                let (mut id, mut ts, mut status, mut metric_set, mut fields) = (None, None, None, None, None);
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    // The fields serde's derive read, with its rule: each at most once.
                    let (slot, name) = match key.as_ref() {
                        "id" => (&mut id, "id"),
                        "generated_timestamp" => (&mut ts, "generated_timestamp"),
                        "status" => (&mut status, "status"),
                        "metric_set" => (&mut metric_set, "metric_set"),
                        "fields" => (&mut fields, "fields"),
                        _ => {
                            members.push((key, value));
                            continue;
                        }
                    };
                    if slot.replace(value).is_some() {
                        return Err(A::Error::duplicate_field(name));
                    }
                    members.push((key, value));
                }
                let id: u64 = typed(id.ok_or_else(|| A::Error::missing_field("id"))?)?;
                let generated_timestamp: Option<i64> = ts.map(typed).transpose()?.flatten();
                let status: Option<Option<Key>> = status.map(typed).transpose()?;
                let deleted = status.flatten().is_some_and(|s| &*s == "deleted");
                let not_null = |v: Option<&'de RawValue>| v.filter(|v| v.get() != "null");
                Ok(Ticket {
                    members,
                    id,
                    generated_timestamp,
                    deleted,
                    metric_set: not_null(metric_set),
                    cut_fields: not_null(fields).is_some(),
                })
            }
        }
        d.deserialize_map(Members)
    }
}

/// One parsed page of the ticket export, owned.
struct TicketsPage {
    tickets: Vec<Box<RawValue>>,
    metrics: Vec<Box<RawValue>>,
    live_ids: Vec<u64>,
    tail: CursorTail,
}

/// Where a page of a cursor export leaves the export.
struct CursorTail {
    /// The page's latest watermark (`generated_timestamp` / `updated_at`).
    max_ts: Option<i64>,
    after_cursor: Option<String>,
    end_of_stream: bool,
}

fn parse_tickets_page(
    body: &[u8],
    want_tickets: bool,
    want_metrics: bool,
) -> Result<TicketsPage, serde_json::Error> {
    let page: CursorPage = crate::raw::parse_body(body)?;
    let mut out = TicketsPage {
        tickets: Vec::with_capacity(if want_tickets { page.tickets.len() } else { 0 }),
        metrics: Vec::with_capacity(if want_metrics { page.tickets.len() } else { 0 }),
        live_ids: Vec::with_capacity(page.tickets.len()),
        tail: CursorTail {
            max_ts: None,
            after_cursor: page.after_cursor,
            end_of_stream: page.end_of_stream,
        },
    };
    for t in page.tickets {
        out.tail.max_ts = out.tail.max_ts.max(t.generated_timestamp);
        if !t.deleted {
            out.live_ids.push(t.id);
        }
        if want_metrics && !t.deleted {
            if let Some(ms) = t.metric_set {
                out.metrics.push(ms.to_owned());
            }
        }
        if want_tickets {
            // tap-zendesk drops `fields` (a copy of `custom_fields`); the side-loaded `metric_set`
            // goes to ticket_metrics. The other members pass through as they came, in order.
            let cut = |name: &str| match name {
                "fields" => t.cut_fields,
                "metric_set" => t.metric_set.is_some(),
                _ => false,
            };
            let kept = t
                .members
                .iter()
                .filter(|(k, _)| !cut(k))
                .map(|(k, v)| (k.as_ref(), Piece::Raw(v)))
                .collect();
            out.tickets.push(RawObject(kept).to_raw());
        }
    }
    Ok(out)
}

/// What to do when a cursor export request fails before any page.
enum Recover {
    /// Nothing to read yet (a start_time under a minute old).
    Done,
    /// The stored cursor was refused: restart from the watermark.
    Restart,
}

fn recover(e: &ApiError, had_cursor: bool) -> Option<Recover> {
    if e.is_too_recent_start_time() {
        return Some(Recover::Done);
    }
    if had_cursor && e.is_invalid_cursor() {
        return Some(Recover::Restart);
    }
    None
}

/// A cursor export while it is read: `page` asks for the next page (from the stored cursor, else
/// from the watermark or the start date), and `checkpoint` moves past it once its records went out,
/// storing the position of the streams it feeds behind them. A first request refused as too recent
/// ends the export (nothing new yet); a stored cursor refused restarts it from the watermark.
struct CursorExport<'a> {
    ctx: &'a ReadCtx,
    /// `tickets` or `users`: the export's path, and the name its warnings give.
    export: &'static str,
    /// The side-loads asked for (`&include=…`), or nothing.
    include: &'static str,
    /// Where a first request starts when there is no watermark: the configured start date.
    start: i64,
    cursor: Option<String>,
    watermark: Option<i64>,
    ended: bool,
}

impl<'a> CursorExport<'a> {
    fn new(ctx: &'a ReadCtx, pos: &Position, export: &'static str, include: &'static str) -> Self {
        CursorExport {
            ctx,
            export,
            include,
            start: start_of(ctx, pos),
            cursor: pos.cursor.clone(),
            watermark: pos.watermark,
            ended: false,
        }
    }

    /// The next page, as `parse` reads it; `None` once the export has ended or the read was stopped.
    async fn page<P>(
        &mut self,
        mut parse: impl FnMut(&[u8]) -> Result<P, serde_json::Error>,
    ) -> Result<Option<P>, SourceError> {
        let (ctx, export, include) = (self.ctx, self.export, self.include);
        loop {
            if self.ended || ctx.cancel.is_cancelled() {
                return Ok(None);
            }
            let q = match &self.cursor {
                Some(c) => format!(
                    "/api/v2/incremental/{export}/cursor.json?per_page={EXPORT_PER_PAGE}{include}&cursor={}",
                    enc(c)
                ),
                None => format!(
                    "/api/v2/incremental/{export}/cursor.json?per_page={EXPORT_PER_PAGE}{include}&start_time={}",
                    self.watermark.unwrap_or(self.start)
                ),
            };
            match ctx
                .client
                .get(EndpointClass::Export, &q, &ctx.cancel, &mut parse)
                .await
            {
                Ok(p) => return Ok(Some(p)),
                Err(e) => match recover(&e, self.cursor.is_some()) {
                    Some(Recover::Done) => self.ended = true,
                    Some(Recover::Restart) => {
                        warn!(stream = export, error = %e, "stored export cursor refused; restarting from the watermark");
                        self.cursor = None;
                    }
                    None => return Err(e.into()),
                },
            }
        }
    }

    /// Moves past a page whose records went out in `turn`, and sends the STATE that stores the
    /// position of every stream in `outs` (all of the export's selected streams).
    async fn checkpoint(
        &mut self,
        turn: Turn<'_>,
        outs: &[&StreamOut],
        tail: CursorTail,
    ) -> Result<(), SourceError> {
        self.watermark = self.watermark.max(tail.max_ts);
        if tail.after_cursor.is_some() {
            self.cursor = tail.after_cursor;
        }
        self.ended = tail.end_of_stream;
        let (c, watermark) = (self.cursor.as_deref(), self.watermark);
        turn.checkpoint(|s| {
            for o in outs {
                store_position(s, o.def, c, watermark, None);
            }
        })
        .await
    }
}

/// tickets (+ ticket_metrics; + ticket_audits / ticket_comments in per-ticket mode) from the cursor
/// ticket export. `members` are the selected streams that share the position `pos`.
pub async fn tickets_export(
    ctx: &ReadCtx,
    members: &[&'static StreamDef],
    pos: Position,
) -> Result<(), SourceError> {
    let outs: Vec<&StreamOut> = members.iter().filter_map(|d| ctx.out_of(d.name)).collect();
    let get = |n: &str| outs.iter().copied().find(|o| o.def.name == n);
    let (o_tickets, o_metrics) = (get("tickets"), get("ticket_metrics"));
    let per_ticket = ctx.config.comments_source == CommentsSource::TicketAudits;
    let (o_audits, o_comments) = if per_ticket {
        (get("ticket_audits"), get("ticket_comments"))
    } else {
        (None, None)
    };
    let include = if o_metrics.is_some() {
        "&include=metric_sets"
    } else {
        ""
    };
    let children_since = start_of(ctx, &pos);
    let mut export = CursorExport::new(ctx, &pos, "tickets", include);
    while let Some(page) = export
        .page(|b| parse_tickets_page(b, o_tickets.is_some(), o_metrics.is_some()))
        .await?
    {
        let turn = ctx.turn().await?;
        if let Some(o) = o_tickets {
            ctx.records(o, page.tickets).await?;
        }
        if let Some(o) = o_metrics {
            ctx.records(o, page.metrics).await?;
        }
        if o_audits.is_some() || o_comments.is_some() {
            per_ticket_children(ctx, &page.live_ids, o_audits, o_comments, children_since).await?;
        }
        export.checkpoint(turn, &outs, page.tail).await?;
    }
    Ok(())
}

struct UsersPage {
    users: Vec<Box<RawValue>>,
    identities: Vec<Box<RawValue>>,
    tail: CursorTail,
}

fn parse_users_page(body: &[u8], want_identities: bool) -> Result<UsersPage, serde_json::Error> {
    let page: CursorPage = crate::raw::parse_body(body)?;
    // The export is ordered by updated_at: the last user carries the page's watermark.
    let max_ts = match page.users.last() {
        Some(u) => serde_json::from_str::<crate::raw::Head>(u.get())?.epoch("updated_at"),
        None => None,
    };
    Ok(UsersPage {
        users: page.users.into_iter().map(ToOwned::to_owned).collect(),
        identities: if want_identities {
            page.identities.into_iter().map(ToOwned::to_owned).collect()
        } else {
            Vec::new()
        },
        tail: CursorTail {
            max_ts,
            after_cursor: page.after_cursor,
            end_of_stream: page.end_of_stream,
        },
    })
}

/// users (+ user_identities from the `identities` side-load) from the cursor user export.
pub async fn users_export(
    ctx: &ReadCtx,
    members: &[&'static StreamDef],
    pos: Position,
) -> Result<(), SourceError> {
    let outs: Vec<&StreamOut> = members.iter().filter_map(|d| ctx.out_of(d.name)).collect();
    let o_users = outs.iter().copied().find(|o| o.def.name == "users");
    let o_ids = outs.iter().copied().find(|o| o.def.name == "user_identities");
    let include = if o_ids.is_some() {
        "&include=identities"
    } else {
        ""
    };
    let mut export = CursorExport::new(ctx, &pos, "users", include);
    while let Some(page) = export.page(|b| parse_users_page(b, o_ids.is_some())).await? {
        let turn = ctx.turn().await?;
        if let Some(o) = o_users {
            ctx.records(o, page.users).await?;
        }
        if let Some(o) = o_ids {
            ctx.records(o, page.identities).await?;
        }
        export.checkpoint(turn, &outs, page.tail).await?;
    }
    Ok(())
}

/// The ids emitted at the latest second of a time-based export.
#[derive(Debug, Default)]
struct Boundary {
    ts: Option<i64>,
    ids: HashSet<u64>,
}

impl Boundary {
    fn from_position(pos: &Position) -> Self {
        Boundary {
            ts: pos.watermark,
            ids: pos.boundary_ids.iter().copied().collect(),
        }
    }

    /// True when the item is new (and remembers it); false for a repeat of an emitted item.
    fn admit(&mut self, id: u64, ts: i64) -> bool {
        match self.ts {
            Some(b) if ts < b => true,
            Some(b) if ts == b => self.ids.insert(id),
            _ => {
                self.ts = Some(ts);
                self.ids.clear();
                self.ids.insert(id);
                true
            }
        }
    }

    fn ids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.ids.iter().copied().collect();
        v.sort_unstable();
        v
    }
}

/// A time-based export page. The array's key is the resource's name.
#[derive(Deserialize)]
struct TimePage<T> {
    #[serde(
        alias = "organizations",
        alias = "ticket_metric_events",
        alias = "ticket_events"
    )]
    items: Vec<T>,
    #[serde(default)]
    end_time: Option<i64>,
    end_of_stream: bool,
}

/// The new records of a time-export page, and the boundary after it. Pages are ordered by time, so
/// only the leading run (repeats of the last page's second) and the trailing run (the next
/// boundary) need their id and time read; the middle passes through unparsed.
fn fresh_items(
    items: &[&RawValue],
    ts_field: &str,
    boundary: &mut Boundary,
) -> Result<Vec<Box<RawValue>>, serde_json::Error> {
    let mut fresh = Vec::with_capacity(items.len());
    let key = |item: &RawValue| -> Result<Option<(u64, i64)>, serde_json::Error> {
        let head: crate::raw::Head = serde_json::from_str(item.get())?;
        Ok(head.id.zip(head.epoch(ts_field)))
    };
    let mut i = 0;
    while i < items.len() {
        match key(items[i])? {
            None => fresh.push(items[i].to_owned()),
            Some((_, ts)) if boundary.ts.is_some_and(|b| ts > b) => break,
            Some((id, ts)) => {
                if boundary.admit(id, ts) {
                    fresh.push(items[i].to_owned());
                }
            }
        }
        i += 1;
    }
    let rest = &items[i..];
    if rest.is_empty() {
        return Ok(fresh);
    }
    let mut tail_ts = None;
    let mut tail = HashSet::new();
    for item in rest.iter().rev() {
        let Some((id, ts)) = key(item)? else { break };
        match tail_ts {
            None => tail_ts = Some(ts),
            Some(t) if t != ts => break,
            Some(_) => {}
        }
        tail.insert(id);
    }
    if tail_ts.is_some() {
        boundary.ts = tail_ts;
        boundary.ids = tail;
    }
    fresh.extend(rest.iter().map(|r| (*r).to_owned()));
    Ok(fresh)
}

/// A time-based export stream whose records pass through as delivered (organizations,
/// ticket_metric_events).
pub async fn time_export(
    ctx: &ReadCtx,
    def: &'static StreamDef,
    path: &str,
    pos: Position,
) -> Result<(), SourceError> {
    let Some(out) = ctx.out_of(def.name) else {
        return Ok(());
    };
    let ts_field = def.replication_key.unwrap_or("updated_at");
    let mut boundary = Boundary::from_position(&pos);
    let mut start = start_of(ctx, &pos);
    loop {
        if ctx.cancel.is_cancelled() {
            return Ok(());
        }
        let q = format!("{path}?start_time={start}&per_page={EXPORT_PER_PAGE}");
        let parsed = ctx
            .client
            .get(EndpointClass::Export, &q, &ctx.cancel, |b| {
                let page: TimePage<&RawValue> = crate::raw::parse_body(b)?;
                let mut b2 = Boundary {
                    ts: boundary.ts,
                    ids: boundary.ids.clone(),
                };
                let fresh = fresh_items(&page.items, ts_field, &mut b2)?;
                // Keep the boundary only if the whole page parsed: a retry starts from the old one.
                Ok((fresh, b2, page.end_time, page.end_of_stream))
            })
            .await;
        let (fresh, b2, end_time, end_of_stream) = match parsed {
            Ok(p) => p,
            Err(e) if e.is_too_recent_start_time() => return Ok(()),
            Err(e) => return Err(SourceError::from(e).in_stream(def.name)),
        };
        boundary = b2;
        let new = fresh.len();
        let turn = ctx.turn().await?;
        ctx.records(out, fresh).await?;
        let ids = boundary.ids();
        let wm = boundary.ts;
        turn.checkpoint(|s| store_position(s, def, None, wm, Some(&ids)))
            .await?;
        if end_of_stream {
            return Ok(());
        }
        start = next_start(def.name, start, end_time, new)?;
    }
}

/// The next page's `start_time`: the page's `end_time`; a page that neither moved the clock nor
/// brought anything new would loop forever, so that is an error.
fn next_start(stream: &str, start: i64, end_time: Option<i64>, new: usize) -> Result<i64, SourceError> {
    match end_time {
        Some(e) if e > start || new > 0 => Ok(e.max(start)),
        _ => Err(SourceError::new(
            seam_core::ErrorKind::Transient,
            format!("the {stream} export did not advance past start_time {start}; try again later"),
        )
        .in_stream(stream)),
    }
}

#[derive(Deserialize)]
struct TicketEvent<'a> {
    id: u64,
    ticket_id: u64,
    timestamp: i64,
    #[serde(default, borrow)]
    created_at: Option<&'a RawValue>,
    #[serde(default, borrow)]
    updater_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    via: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    system: Option<&'a RawValue>,
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
    /// Parsed into members with the page: the events' text (comment bodies, mostly) is scanned once.
    #[serde(default, borrow)]
    child_events: Vec<Members<'a>>,
}

/// The `via.channel` behind the label the ticket-events export writes
/// (https://developer.zendesk.com/documentation/ticketing/reference-guides/via-types/).
fn channel_of(label: &str) -> String {
    match label {
        "Web form" => "web".into(),
        "Mail" => "email".into(),
        "Web service" => "api".into(),
        "Voice" => "voice".into(),
        "Chat" => "chat".into(),
        "Closed ticket" => "closed_ticket".into(),
        "Ticket sharing" => "ticket_sharing".into(),
        "Rule" => "rule".into(),
        "Mobile" => "mobile".into(),
        other => other.to_ascii_lowercase().replace(' ', "_"),
    }
}

/// A member that is a string, borrowed from the text unless escaped; `None` for anything else.
fn str_of<'a>(v: Option<&&'a RawValue>) -> Option<Cow<'a, str>> {
    v.and_then(|r| serde_json::from_str::<Key>(r.get()).ok())
        .map(|k| k.0)
}

/// Records ready to send.
type Records = Vec<Box<RawValue>>;

/// `"Comment"`, as a raw value.
static COMMENT: std::sync::LazyLock<Box<RawValue>> = std::sync::LazyLock::new(|| {
    serde_json::value::to_raw_value("Comment").unwrap_or_else(|_| RawValue::NULL.to_owned())
});

/// `{}`, as a raw value.
static EMPTY_OBJECT: std::sync::LazyLock<Box<RawValue>> = std::sync::LazyLock::new(|| {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned())
});

/// An audit's `via`, as tap-zendesk writes it.
#[derive(serde::Serialize)]
struct ViaOut {
    channel: Option<String>,
    source: Option<()>,
}

/// An audit's `metadata`.
#[derive(serde::Serialize)]
struct MetadataOut<'a> {
    system: &'a RawValue,
    custom: &'a RawValue,
}

/// Builds the audit and its comments from one ticket-events item. Member values are copied as raw
/// text and the results are not re-parsed (see [`RawObject`]); the values seam makes are serialized
/// straight into raw values (`to_raw_value`), never written as text and parsed back.
fn audit_and_comments(
    ev: &TicketEvent<'_>,
    want_audit: bool,
    want_comments: bool,
) -> Result<(Option<Box<RawValue>>, Records), serde_json::Error> {
    let id = to_raw_value(&ev.id)?;
    let ticket_id = to_raw_value(&ev.ticket_id)?;
    let created = match ev.created_at {
        Some(c) => c.to_owned(),
        None => to_raw_value(&crate::raw::iso(ev.timestamp))?,
    };
    let via = to_raw_value(&ViaOut {
        channel: ev.via.as_deref().map(channel_of),
        source: None,
    })?;
    let metadata = to_raw_value(&MetadataOut {
        system: ev.system.unwrap_or(&EMPTY_OBJECT),
        custom: ev.metadata.unwrap_or(&EMPTY_OBJECT),
    })?;
    let null = RawValue::NULL;
    let comment: &RawValue = &COMMENT;
    let mut comments = Vec::new();
    let mut events: Vec<Box<RawValue>> = Vec::with_capacity(ev.child_events.len());
    for m in &ev.child_events {
        let kind = str_of(m.get("event_type")).unwrap_or_default();
        let cid: &RawValue = m.get("id").copied().unwrap_or(null);
        if kind == "Comment" {
            if want_comments {
                let audit_id: &RawValue = m.get("audit_id").copied().unwrap_or(&id);
                let c_created: &RawValue = m.get("created_at").copied().unwrap_or(&created);
                let first = [
                    ("id", cid),
                    ("type", comment),
                    ("ticket_id", &*ticket_id),
                    ("audit_id", audit_id),
                    ("created_at", c_created),
                    ("via", &*via),
                    ("metadata", &*metadata),
                ];
                comments.push(RawObject::merged(&first, m, &["via_reference_id", "event_type"]).to_raw());
            }
            if want_audit {
                let first = [("id", cid), ("type", comment)];
                events.push(
                    RawObject::merged(
                        &first,
                        m,
                        &["via", "via_reference_id", "event_type", "created_at"],
                    )
                    .to_raw(),
                );
            }
            continue;
        }
        if !want_audit {
            continue;
        }
        let ty = to_raw_value(&*kind)?;
        const META: &[&str] = &["id", "via", "via_reference_id", "event_type", "previous_value"];
        let fields: Vec<(&crate::raw::Key, &&RawValue)> =
            m.iter().filter(|(k, _)| !META.contains(&k.as_ref())).collect();
        if matches!(&*kind, "Create" | "Change") && fields.len() == 1 {
            // The export writes a field change as `{"<field>": value}`; audits as field_name/value.
            let (name, value) = fields[0];
            let fname = to_raw_value(&**name)?;
            let mut first: Vec<(&str, &RawValue)> = vec![
                ("id", cid),
                ("type", &ty),
                ("field_name", &fname),
                ("value", value),
            ];
            if let Some(pv) = m.get("previous_value") {
                first.push(("previous_value", pv));
            }
            events.push(RawObject::merged(&first, &Members::default(), &[]).to_raw());
        } else {
            let first = [("id", cid), ("type", &*ty)];
            events.push(RawObject::merged(&first, m, &["via", "via_reference_id", "event_type"]).to_raw());
        }
    }
    let audit = if want_audit {
        let author: &RawValue = ev.updater_id.unwrap_or(null);
        let obj = RawObject(vec![
            ("id", Piece::Raw(&id)),
            ("ticket_id", Piece::Raw(&ticket_id)),
            ("created_at", Piece::Raw(&created)),
            ("author_id", Piece::Raw(author)),
            ("via", Piece::Raw(&via)),
            ("metadata", Piece::Raw(&metadata)),
            ("events", Piece::List(&events)),
        ]);
        Some(obj.to_raw())
    } else {
        None
    };
    Ok((audit, comments))
}

/// Ids of soft-deleted tickets: their audits and comments are not replicated (as tap-zendesk skips a
/// deleted ticket's children). Loaded once per read from `/api/v2/deleted_tickets`.
async fn deleted_ticket_ids(ctx: &ReadCtx) -> Result<&HashSet<u64>, SourceError> {
    ctx.deleted_tickets
        .get_or_try_init(|| async {
            match super::lists::collect_ids(ctx, "/api/v2/deleted_tickets.json", "deleted_tickets").await {
                Ok(ids) => Ok(ids),
                Err(e) if e.is_forbidden() => {
                    warn!(error = %e, "cannot list deleted tickets; their comments and audits may be replicated");
                    Ok(HashSet::new())
                }
                Err(e) => Err(SourceError::from(e)),
            }
        })
        .await
}

/// ticket_comments and ticket_audits from the bulk ticket-events export: one request per 1,000
/// audits, archived tickets included. Both streams come out of the same pages when both are selected.
pub async fn ticket_events(
    ctx: &ReadCtx,
    members_: &[&'static StreamDef],
    pos: Position,
) -> Result<(), SourceError> {
    let outs: Vec<&StreamOut> = members_.iter().filter_map(|d| ctx.out_of(d.name)).collect();
    let o_audits = outs.iter().copied().find(|o| o.def.name == "ticket_audits");
    let o_comments = outs.iter().copied().find(|o| o.def.name == "ticket_comments");
    let deleted = deleted_ticket_ids(ctx).await?;
    let mut boundary = Boundary::from_position(&pos);
    let mut start = start_of(ctx, &pos);
    let path = "/api/v2/incremental/ticket_events.json";
    loop {
        if ctx.cancel.is_cancelled() {
            return Ok(());
        }
        let include = if o_comments.is_some() {
            "&include=comment_events"
        } else {
            ""
        };
        let q = format!("{path}?start_time={start}&per_page={EXPORT_PER_PAGE}{include}");
        let parsed = ctx
            .client
            .get(EndpointClass::Export, &q, &ctx.cancel, |b| {
                let page: TimePage<TicketEvent> = crate::raw::parse_body(b)?;
                let mut b2 = Boundary {
                    ts: boundary.ts,
                    ids: boundary.ids.clone(),
                };
                let (mut audits, mut comments) = (Vec::new(), Vec::new());
                let mut new = 0usize;
                for ev in &page.items {
                    if !b2.admit(ev.id, ev.timestamp) {
                        continue;
                    }
                    new += 1;
                    if deleted.contains(&ev.ticket_id) {
                        continue;
                    }
                    let (a, cs) = audit_and_comments(ev, o_audits.is_some(), o_comments.is_some())?;
                    audits.extend(a);
                    comments.extend(cs);
                }
                Ok((audits, comments, new, b2, page.end_time, page.end_of_stream))
            })
            .await;
        let (audits, comments, new, b2, end_time, end_of_stream) = match parsed {
            Ok(p) => p,
            Err(e) if e.is_too_recent_start_time() => return Ok(()),
            Err(e) => {
                return Err(
                    SourceError::from(e).in_stream(members_.first().map_or("ticket_comments", |d| d.name))
                )
            }
        };
        boundary = b2;
        let turn = ctx.turn().await?;
        if let Some(o) = o_audits {
            ctx.records(o, audits).await?;
        }
        if let Some(o) = o_comments {
            ctx.records(o, comments).await?;
        }
        let ids = boundary.ids();
        let wm = boundary.ts;
        turn.checkpoint(|s| {
            for o in &outs {
                store_position(s, o.def, None, wm, Some(&ids));
            }
        })
        .await?;
        if end_of_stream {
            return Ok(());
        }
        start = next_start("ticket_events", start, end_time, new)?;
    }
}

#[derive(Deserialize)]
struct AuditsPage<'a> {
    #[serde(borrow, default)]
    audits: Vec<&'a RawValue>,
    #[serde(default)]
    meta: Option<super::lists::Meta>,
}

#[derive(Deserialize)]
struct Audit<'a> {
    id: u64,
    ticket_id: u64,
    #[serde(borrow)]
    created_at: Option<&'a RawValue>,
    #[serde(default, borrow)]
    via: Option<&'a RawValue>,
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(default, borrow)]
    events: Vec<&'a RawValue>,
}

type Children = (Vec<Box<RawValue>>, Vec<Box<RawValue>>);

fn parse_audits(body: &[u8], since: i64) -> Result<(Children, Option<String>), serde_json::Error> {
    let page: AuditsPage = crate::raw::parse_body(body)?;
    let (mut audits, mut comments) = (Vec::new(), Vec::new());
    for a in page.audits {
        let audit: Audit = serde_json::from_str(a.get())?;
        let null = RawValue::NULL;
        let created: &RawValue = audit.created_at.unwrap_or(null);
        let ts = serde_json::from_str::<String>(created.get())
            .ok()
            .and_then(|s| crate::raw::parse_epoch(&s));
        if ts.is_some_and(|t| t < since) {
            // Audits older than this run's start were replicated with the ticket's earlier changes.
            continue;
        }
        audits.push(a.to_owned());
        let (aid, tid) = (to_raw_value(&audit.id)?, to_raw_value(&audit.ticket_id)?);
        for e in &audit.events {
            let m = members(e)?;
            if str_of(m.get("type")).as_deref() != Some("Comment") {
                continue;
            }
            let first = [
                ("id", m.get("id").copied().unwrap_or(null)),
                ("type", &*COMMENT),
                ("ticket_id", &*tid),
                ("audit_id", &*aid),
                ("created_at", created),
                ("via", audit.via.unwrap_or(null)),
                ("metadata", audit.metadata.unwrap_or(null)),
            ];
            comments.push(RawObject::merged(&first, &m, &[]).to_raw());
        }
    }
    let next = page.meta.filter(|m| m.has_more).and_then(|m| m.after_cursor);
    Ok(((audits, comments), next))
}

/// One ticket's audits and comments from `/api/v2/tickets/{id}/audits` (450 requests/min; works for
/// archived tickets; a deleted ticket answers 404 and is skipped).
async fn audits_of(ctx: &ReadCtx, ticket: u64, since: i64) -> Result<Children, SourceError> {
    let (mut audits, mut comments) = (Vec::new(), Vec::new());
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(c) => format!(
                "/api/v2/tickets/{ticket}/audits.json?page[size]=100&page[after]={}",
                enc(c)
            ),
            None => format!("/api/v2/tickets/{ticket}/audits.json?page[size]=100"),
        };
        match ctx
            .client
            .get(EndpointClass::TicketAudits, &q, &ctx.cancel, |b| {
                parse_audits(b, since)
            })
            .await
        {
            Ok(((a, c), next)) => {
                audits.extend(a);
                comments.extend(c);
                match next {
                    Some(n) => after = Some(n),
                    None => return Ok((audits, comments)),
                }
            }
            Err(e) if e.is_not_found() => {
                info!(ticket, "ticket has no audits any more (deleted); skipped");
                return Ok((Vec::new(), Vec::new()));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Per-ticket mode: the audits and comments of the tickets of one export page, a few at a time.
async fn per_ticket_children(
    ctx: &ReadCtx,
    ids: &[u64],
    o_audits: Option<&StreamOut>,
    o_comments: Option<&StreamOut>,
    since: i64,
) -> Result<(), SourceError> {
    use futures::StreamExt;
    let mut results = futures::stream::iter(ids.iter().copied())
        .map(|id| audits_of(ctx, id, since))
        .buffered(8);
    while let Some(r) = results.next().await {
        let (audits, comments) = r?;
        if let Some(o) = o_audits {
            ctx.records(o, audits).await?;
        }
        if let Some(o) = o_comments {
            ctx.records(o, comments).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_drops_repeats_and_keeps_new_items_of_the_same_second() {
        let mut b = Boundary::default();
        assert!(b.admit(1, 10));
        assert!(b.admit(2, 10));
        // Next page repeats second 10: 1 and 2 are repeats, 3 is new at the same second.
        assert!(!b.admit(1, 10));
        assert!(!b.admit(2, 10));
        assert!(b.admit(3, 10));
        assert!(b.admit(4, 11));
        assert_eq!(b.ids(), vec![4]);
        // From a stored bookmark.
        let mut b = Boundary::from_position(&Position {
            cursor: None,
            watermark: Some(11),
            boundary_ids: vec![4],
        });
        assert!(!b.admit(4, 11));
        assert!(b.admit(5, 11));
    }

    #[test]
    fn time_pages_drop_the_repeated_boundary_second_only() {
        let raw = |s: &str| -> Box<RawValue> { serde_json::from_str(s).unwrap() };
        let t = |id: u64, ts: i64| raw(&format!(r#"{{"id":{id},"time":"{}"}}"#, crate::raw::iso(ts)));
        let page1 = [t(1, 10), t(2, 11), t(3, 12), t(4, 12)];
        let mut b = Boundary::default();
        let refs: Vec<&RawValue> = page1.iter().map(|r| &**r).collect();
        assert_eq!(fresh_items(&refs, "time", &mut b).unwrap().len(), 4);
        assert_eq!((b.ts, b.ids()), (Some(12), vec![3, 4]));
        // The next page starts at second 12 again: 3 and 4 are repeats, 5 is new at 12.
        let page2 = [t(3, 12), t(4, 12), t(5, 12), t(6, 13), t(7, 14)];
        let refs: Vec<&RawValue> = page2.iter().map(|r| &**r).collect();
        let fresh = fresh_items(&refs, "time", &mut b).unwrap();
        let ids: Vec<String> = fresh.iter().map(|r| r.get()[6..7].to_owned()).collect();
        assert_eq!(ids, vec!["5", "6", "7"]);
        assert_eq!((b.ts, b.ids()), (Some(14), vec![7]));
    }

    #[test]
    fn tickets_page_drops_fields_and_splits_metric_sets() {
        let body = br#"{"tickets":[{"id":1,"generated_timestamp":5,"status":"open","custom_fields":[{"id":9,"value":[1]}],"fields":[{"id":9,"value":[1]}],"metric_set":{"id":77,"ticket_id":1}},
            {"id":2,"generated_timestamp":7,"status":"deleted","fields":[]}],"after_cursor":"abc","end_of_stream":true}"#;
        let p = parse_tickets_page(body, true, true).unwrap();
        assert_eq!(
            p.tickets[0].get(),
            r#"{"id":1,"generated_timestamp":5,"status":"open","custom_fields":[{"id":9,"value":[1]}]}"#
        );
        assert_eq!(
            p.tickets[1].get(),
            r#"{"id":2,"generated_timestamp":7,"status":"deleted"}"#
        );
        assert_eq!(p.metrics.len(), 1);
        assert_eq!(p.live_ids, vec![1]);
        assert_eq!(p.tail.max_ts, Some(7));
        assert_eq!(p.tail.after_cursor.as_deref(), Some("abc"));
        assert!(
            parse_tickets_page(&body[..body.len() / 2], true, true).is_err(),
            "a truncated page is an error"
        );
    }

    #[test]
    fn a_ticket_passes_through_member_by_member() {
        // Order kept, a repeated name seam does not read kept twice, a status spelled with an
        // escape still read, values (and the spaces inside them) as they came.
        let body = br#"{"tickets":[{"z":1,"id":3,"x":[1, 2],"x":"again","status":"\u0064eleted","fields":[],"generated_timestamp":null}],"end_of_stream":true}"#;
        let p = parse_tickets_page(body, true, true).unwrap();
        assert_eq!(
            p.tickets[0].get(),
            r#"{"z":1,"id":3,"x":[1, 2],"x":"again","status":"\u0064eleted","generated_timestamp":null}"#
        );
        assert!(p.live_ids.is_empty(), "a deleted ticket is not live");
        assert_eq!(p.tail.max_ts, None);
        // `null` for `fields` or `metric_set` is no value to cut or to load: it passes through.
        let body = br#"{"tickets":[{"id":4,"fields":null,"metric_set":null,"generated_timestamp":9}],"end_of_stream":true}"#;
        let p = parse_tickets_page(body, true, true).unwrap();
        assert_eq!(
            p.tickets[0].get(),
            r#"{"id":4,"fields":null,"metric_set":null,"generated_timestamp":9}"#
        );
        assert!(p.metrics.is_empty(), "no metric set, no metric");
        assert_eq!((p.live_ids, p.tail.max_ts), (vec![4], Some(9)));
        // What serde's derive refused is refused: no id, an id that is not a u64, a field read twice,
        // a status or timestamp of another type. So is a ticket that is not an object, which the
        // derive took as the sequence of its fields (`[3]`: a ticket with id 3 and a record `[3]`,
        // which no warehouse can load): a page holding one fails with a clear error.
        for bad in [
            r#"{"status":"open"}"#,
            r#"{"id":"3"}"#,
            r#"{"id":-3}"#,
            r#"{"id":3,"id":4}"#,
            r#"{"id":3,"status":"open","status":"open"}"#,
            r#"{"id":3,"fields":[],"fields":[]}"#,
            r#"{"id":3,"metric_set":{},"metric_set":{}}"#,
            r#"{"id":3,"status":1}"#,
            r#"{"id":3,"generated_timestamp":"5"}"#,
            r#"[3]"#,
        ] {
            let page = format!(r#"{{"tickets":[{bad}],"end_of_stream":true}}"#);
            assert!(parse_tickets_page(page.as_bytes(), true, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn ticket_events_become_audits_and_comments() {
        let item = r#"{"id":10,"ticket_id":3,"timestamp":1704067200,"created_at":"2024-01-01T00:00:00Z","updater_id":5,"via":"Web form",
            "system":{"client":"x"},"metadata":{},"event_type":"Audit","child_events":[
            {"id":11,"type":"Comment","author_id":5,"body":"hi","public":true,"attachments":[],"audit_id":10,"via":"Web form","via_reference_id":null,"created_at":"2024-01-01T00:00:00Z","event_type":"Comment"},
            {"id":12,"via":"Web form","via_reference_id":null,"event_type":"Change","status":"open","previous_value":"new"}]}"#;
        let ev: TicketEvent = serde_json::from_str(item).unwrap();
        let (a, cs) = audit_and_comments(&ev, true, true).unwrap();
        let a: serde_json::Value = serde_json::from_str(a.unwrap().get()).unwrap();
        assert_eq!(a["author_id"], 5);
        assert_eq!(a["via"]["channel"], "web");
        assert_eq!(a["events"][1]["field_name"], "status");
        assert_eq!(a["events"][1]["value"], "open");
        assert_eq!(a["events"][1]["previous_value"], "new");
        assert_eq!(a["events"][0]["type"], "Comment");
        assert_eq!(cs.len(), 1);
        let c: serde_json::Value = serde_json::from_str(cs[0].get()).unwrap();
        assert_eq!(c["ticket_id"], 3);
        assert_eq!(c["audit_id"], 10);
        assert_eq!(c["body"], "hi");
        assert_eq!(c["via"]["channel"], "web");
        assert!(c.get("event_type").is_none());
    }

    #[test]
    fn an_audit_is_written_exactly_from_a_sparse_item() {
        // No via, system, metadata, created_at or updater: the audit says null, {} and the
        // event's timestamp, in the shape the text form gave; a field change with a name to escape.
        let item = r#"{"id":20,"ticket_id":4,"timestamp":1704067200,"child_events":[
            {"id":21,"event_type":"Create","say \"hi\"":[1, 2]},{"event_type":"Com\u006dent","body":"x"}]}"#;
        let ev: TicketEvent = serde_json::from_str(item).unwrap();
        let (a, cs) = audit_and_comments(&ev, true, true).unwrap();
        assert_eq!(
            a.unwrap().get(),
            concat!(
                r#"{"id":20,"ticket_id":4,"created_at":"2024-01-01T00:00:00Z","author_id":null,"#,
                r#""via":{"channel":null,"source":null},"metadata":{"system":{},"custom":{}},"events":["#,
                r#"{"id":21,"type":"Create","field_name":"say \"hi\"","value":[1, 2]},"#,
                r#"{"id":null,"type":"Comment","body":"x"}]}"#
            )
        );
        assert_eq!(
            cs[0].get(),
            concat!(
                r#"{"id":null,"type":"Comment","ticket_id":4,"audit_id":20,"#,
                r#""created_at":"2024-01-01T00:00:00Z","via":{"channel":null,"source":null},"#,
                r#""metadata":{"system":{},"custom":{}},"body":"x"}"#
            )
        );
    }

    use crate::streams::arb;
    use proptest::prelude::*;

    const TICKETS: &str = r#"{"tickets":[{"id":1,"generated_timestamp":5,"status":"open","fields":[{"id":9}],"metric_set":{"id":77,"ticket_id":1}},{"id":2,"generated_timestamp":7,"status":"deleted"}],"after_cursor":"abc","end_of_stream":false}"#;
    const USERS: &str = r#"{"users":[{"id":1,"updated_at":"2024-01-01T00:00:00Z"}],"identities":[{"id":3,"user_id":1}],"after_cursor":"a","end_of_stream":true}"#;
    const ORGS: &str = r#"{"organizations":[{"id":1,"updated_at":"2024-01-01T00:00:00Z"},{"id":2,"updated_at":"2024-01-01T00:00:01Z"}],"end_time":1704067201,"end_of_stream":false}"#;
    const EVENTS: &str = r#"{"ticket_events":[{"id":10,"ticket_id":3,"timestamp":1704067200,"created_at":"2024-01-01T00:00:00Z","updater_id":5,"via":"Web form","system":{},"metadata":{},"child_events":[{"id":11,"event_type":"Comment","body":"hi","audit_id":10},{"id":12,"event_type":"Change","status":"open","previous_value":"new"}]}],"end_time":1704067200,"end_of_stream":true}"#;
    const AUDITS: &str = r#"{"audits":[{"id":1,"ticket_id":2,"created_at":"2024-01-01T00:00:00Z","via":{"channel":"web"},"metadata":{},"events":[{"id":5,"type":"Comment","body":"x"}]}],"meta":{"has_more":true,"after_cursor":"c"}}"#;

    fn body(array_key: &'static str, real: &'static str) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            arb::page(array_key),
            arb::mutated(real),
            proptest::collection::vec(any::<u8>(), 0..200),
        ]
    }

    /// What a stream task does with a time-export page, minus the IO.
    fn time_page(b: &[u8]) -> Result<usize, serde_json::Error> {
        let page: TimePage<&RawValue> = crate::raw::parse_body(b)?;
        let mut boundary = Boundary {
            ts: Some(1_704_067_200),
            ids: [1].into_iter().collect(),
        };
        Ok(fresh_items(&page.items, "updated_at", &mut boundary)?.len())
    }

    /// What the ticket-events task does with a page, minus the IO.
    fn events_page(b: &[u8]) -> Result<usize, serde_json::Error> {
        let page: TimePage<TicketEvent> = crate::raw::parse_body(b)?;
        let mut boundary = Boundary::default();
        let mut n = 0;
        for ev in &page.items {
            if boundary.admit(ev.id, ev.timestamp) {
                let (a, cs) = audit_and_comments(ev, true, true)?;
                n += usize::from(a.is_some()) + cs.len();
            }
        }
        Ok(n)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Export pages, well-formed, mutated or garbage: each parses or errors, never panics.
        #[test]
        fn ticket_export_pages_parse_or_fail(b in body("tickets", TICKETS)) {
            if let Ok(p) = parse_tickets_page(&b, true, true) {
                prop_assert!(p.live_ids.len() <= p.tickets.len());
            }
        }

        #[test]
        fn user_export_pages_parse_or_fail(b in body("users", USERS)) {
            let _ = parse_users_page(&b, true);
        }

        #[test]
        fn time_export_pages_parse_or_fail(b in body("organizations", ORGS)) {
            let _ = time_page(&b);
        }

        #[test]
        fn ticket_event_pages_parse_or_fail(b in body("ticket_events", EVENTS)) {
            let _ = events_page(&b);
        }

        #[test]
        fn audit_pages_parse_or_fail(b in body("audits", AUDITS), since in any::<i64>()) {
            let _ = parse_audits(&b, since);
        }
    }

    #[test]
    fn the_real_pages_parse() {
        assert_eq!(
            parse_tickets_page(TICKETS.as_bytes(), true, true)
                .unwrap()
                .tickets
                .len(),
            2
        );
        assert_eq!(
            parse_users_page(USERS.as_bytes(), true).unwrap().identities.len(),
            1
        );
        assert_eq!(
            time_page(ORGS.as_bytes()).unwrap(),
            1,
            "id 1 is a repeat of the boundary"
        );
        assert_eq!(events_page(EVENTS.as_bytes()).unwrap(), 2);
        let ((audits, comments), next) = parse_audits(AUDITS.as_bytes(), 0).unwrap();
        assert_eq!((audits.len(), next.as_deref()), (1, Some("c")));
        // The comment: seam's members first, then the event's own not among them.
        let comments: Vec<&str> = comments.iter().map(|c| c.get()).collect();
        assert_eq!(
            comments,
            [concat!(
                r#"{"id":5,"type":"Comment","ticket_id":2,"audit_id":1,"#,
                r#""created_at":"2024-01-01T00:00:00Z","via":{"channel":"web"},"metadata":{},"body":"x"}"#
            )]
        );
    }
}
