//! List endpoints (https://developer.zendesk.com/api-reference/introduction/pagination/): cursor
//! pagination with `page[size]` and `page[after]` until `meta.has_more` is false (an endpoint without
//! cursor support answers everything at once, or with an offset `next_page`, which is followed).
//!
//! Lists have no server-side change filter (satisfaction_ratings aside, which takes `start_time`), so
//! incremental list streams read the whole list and keep records with `updated_at >= bookmark`
//! (inclusive: the boundary second is re-read, which is safe by primary key). Records arrive out of
//! order, so the bookmark moves once, after the whole list.
//!
//! Full-table streams (tags, sla_policies, talk_phone_numbers) write every record with this run's
//! table version and, once the last page is sent, a STATE setting `bookmarks.<stream>.version` to it
//! followed by ACTIVATE_VERSION, so the warehouse drops the rows of older versions (records deleted
//! in Zendesk) in the commit that also records the marker. Only a stream without that marker (it
//! never completed a version: a first sync) also activates before its first record, once the first
//! page has arrived, so its rows show at once. A stream that is refused (403), fails, runs out of
//! retries or is cancelled sends no ACTIVATE_VERSION: the warehouse keeps the last complete version,
//! with the new version's records upserted over it by key.
//!
//! The STATE goes just before the final ACTIVATE_VERSION rather than after it: a loader that commits
//! at an activation (seam's does) then makes the marker durable in the same transaction; and should
//! a consumer persist the STATE and crash before the activation, the marker only means the next run
//! activates at its end, never at its start, so no run can empty the table.

use super::{store_position, Position, ReadCtx, StreamDef};
use crate::error::ApiError;
use crate::rate_limit::EndpointClass;
use crate::raw::{members, Head, Members, RawObject};
use seam_core::catalog::ReplicationMethod;
use seam_core::singer::Message;
use seam_core::state::VERSION_BOOKMARK;
use seam_core::SourceError;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashSet;

/// `meta` of a cursor-paginated page.
#[derive(Debug, Deserialize)]
pub struct Meta {
    /// More pages follow.
    #[serde(default)]
    pub has_more: bool,
    /// Cursor for the next page.
    #[serde(default)]
    pub after_cursor: Option<String>,
}

/// A parsed list page: records (owned) and where the next page is.
struct ListPage<T> {
    items: T,
    next: Option<String>,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Parses a list page and returns the query of the next page, if any.
fn parse_page<'a>(
    body: &'a [u8],
    key: &str,
    base_query: &str,
) -> Result<(Vec<&'a RawValue>, Option<String>), serde_json::Error> {
    let all: Members<'a> = crate::raw::parse_body(body)?;
    let items: Vec<&RawValue> = match all.get(key) {
        Some(v) => serde_json::from_str(v.get())?,
        None => {
            return Err(<serde_json::Error as serde::de::Error>::custom(format!(
                "the page has no {key:?} array"
            )))
        }
    };
    let meta: Option<Meta> = match all.get("meta") {
        Some(v) => serde_json::from_str(v.get())?,
        None => None,
    };
    let next = match meta {
        Some(m) if m.has_more => {
            let c = m.after_cursor.ok_or_else(|| {
                <serde_json::Error as serde::de::Error>::custom(
                    "meta.has_more is true but meta.after_cursor is missing",
                )
            })?;
            Some(format!("{base_query}&page[after]={}", enc(&c)))
        }
        Some(_) => None,
        // No cursor pagination on this endpoint: follow an offset `next_page` link, rebased on our
        // base URL (the link names Zendesk's host). Only an API path is followed: anything else
        // would be appended to the base URL and could name another host.
        None => match all.get("next_page") {
            Some(v) => match serde_json::from_str::<Option<String>>(v.get())? {
                None => None,
                Some(u) => Some(api_path_of(&u).ok_or_else(|| {
                    <serde_json::Error as serde::de::Error>::custom(format!(
                        "next_page {u:?} is not a link to the zendesk api"
                    ))
                })?),
            },
            None => None,
        },
    };
    Ok((items, next))
}

/// The path and query of an `http(s)` link to `/api/v2/...`, or `None`.
fn api_path_of(link: &str) -> Option<String> {
    let url = url::Url::parse(link).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.path().starts_with("/api/v2/") {
        return None;
    }
    Some(match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    })
}

/// Walks a list from the start, calling `per_page` with each page's records.
async fn walk<T, F>(
    ctx: &ReadCtx,
    path: &str,
    key: &str,
    extra: &str,
    mut per_page: F,
) -> Result<Vec<T>, ApiError>
where
    F: FnMut(&[&RawValue]) -> Result<T, serde_json::Error>,
{
    let base = format!("{path}?page[size]={}{extra}", ctx.config.page_size);
    let mut q = base.clone();
    let mut pages = Vec::new();
    loop {
        let page = ctx
            .client
            .get(EndpointClass::Account, &q, &ctx.cancel, |b| {
                let (items, next) = parse_page(b, key, &base)?;
                Ok(ListPage {
                    items: per_page(&items)?,
                    next,
                })
            })
            .await?;
        pages.push(page.items);
        match page.next {
            Some(n) if !ctx.cancel.is_cancelled() => q = n,
            _ => return Ok(pages),
        }
    }
}

/// Ids of every record of a list (used for deleted tickets).
pub async fn collect_ids(ctx: &ReadCtx, path: &str, key: &str) -> Result<HashSet<u64>, ApiError> {
    let pages = walk(ctx, path, key, "", |items| {
        items
            .iter()
            .map(|i| serde_json::from_str::<Head>(i.get()).map(|h| h.id))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(pages.into_iter().flatten().flatten().collect())
}

/// Builds a soft-delete record: the record with `_sdc_deleted_at` set from `from`.
fn soft_deleted(item: &RawValue, from: &str) -> Result<Box<RawValue>, serde_json::Error> {
    let m = members(item)?;
    let at = m
        .get(from)
        .and_then(|v| serde_json::from_str::<Option<String>>(v.get()).ok().flatten());
    let at = serde_json::value::to_raw_value(&at)?;
    Ok(RawObject::merged(&[("_sdc_deleted_at", &at)], &m, &[]).to_raw())
}

/// A list stream: incremental with a client-side filter, or full table with ACTIVATE_VERSION (see
/// the module docs for when it is sent).
///
/// Pages are emitted as they arrive (memory holds one page), and the bookmark is written after the
/// last page.
pub async fn list_stream(
    ctx: &ReadCtx,
    def: &'static StreamDef,
    path: &str,
    key: &str,
    pos: Position,
) -> Result<(), SourceError> {
    let Some(out) = ctx.out_of(def.name) else {
        return Ok(());
    };
    let full = def.method == ReplicationMethod::FullTable;
    let since = if full {
        None
    } else {
        Some(pos.watermark.unwrap_or_else(|| ctx.config.start_date.timestamp()))
    };
    // satisfaction_ratings filters on the server too (`start_time`, unix seconds).
    let extra = match (def.name, since) {
        ("satisfaction_ratings", Some(s)) => format!("&start_time={s}"),
        _ => String::new(),
    };
    let version = out.version.filter(|_| full);
    // A first sync activates its version once the first page is in hand (a refused or failing
    // endpoint activates nothing).
    let mut activate_first = version.filter(|_| out.activate_first);
    let rk = def.replication_key;
    let mut max_ts: Option<i64> = None;
    let base = format!("{path}?page[size]={}{extra}", ctx.config.page_size);
    let mut q = base.clone();
    loop {
        if ctx.cancel.is_cancelled() {
            return Ok(());
        }
        let page = ctx
            .client
            .get(EndpointClass::Account, &q, &ctx.cancel, |b| {
                let (items, next) = parse_page(b, key, &base)?;
                let mut keep = Vec::with_capacity(items.len());
                let mut page_max: Option<i64> = None;
                for item in items {
                    if let (Some(since), Some(rk)) = (since, rk) {
                        let ts = serde_json::from_str::<Head>(item.get())?.epoch(rk);
                        page_max = page_max.max(ts);
                        // Records without the key cannot be filtered: they are always sent.
                        if ts.is_some_and(|t| t < since) {
                            continue;
                        }
                    }
                    keep.push(match def.soft_delete_from {
                        Some(from) => soft_deleted(item, from)?,
                        None => item.to_owned(),
                    });
                }
                Ok((ListPage { items: keep, next }, page_max))
            })
            .await;
        let (page, page_max) = match page {
            Ok(p) => p,
            Err(e) => return Err(SourceError::from(e).in_stream(def.name)),
        };
        max_ts = max_ts.max(page_max);
        if let Some(v) = activate_first.take() {
            ctx.send(Message::ActivateVersion {
                stream: def.name.to_owned(),
                version: v,
            })
            .await?;
        }
        ctx.records(out, page.items).await?;
        match page.next {
            Some(n) => q = n,
            None => break,
        }
    }
    if let Some(v) = version {
        // Every record of version `v` was sent: mark it complete, then activate it.
        ctx.checkpoint(|s| s.set_bookmark(def.name, VERSION_BOOKMARK, v.into()))
            .await?;
        ctx.send(Message::ActivateVersion {
            stream: def.name.to_owned(),
            version: v,
        })
        .await?;
    }
    if !full {
        let wm = max_ts.max(pos.watermark);
        ctx.checkpoint(|s| store_position(s, def, None, wm, None)).await?;
    }
    Ok(())
}

/// Field definitions `(key, type)` of `/api/v2/user_fields` or `/api/v2/organization_fields`.
pub async fn field_definitions(
    ctx: &ReadCtx,
    path: &str,
    key: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    #[derive(Deserialize)]
    struct Def {
        key: Option<String>,
        #[serde(rename = "type")]
        ty: Option<String>,
    }
    let pages = walk(ctx, path, key, "", |items| {
        items
            .iter()
            .map(|i| serde_json::from_str::<Def>(i.get()))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(pages
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d.key?, d.ty.unwrap_or_default())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_cursors_or_offset_links() {
        let b = br#"{"groups":[{"id":1}],"meta":{"has_more":true,"after_cursor":"xy z"},"links":{}}"#;
        let (items, next) = parse_page(b, "groups", "/api/v2/groups.json?page[size]=100").unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(
            next.as_deref(),
            Some("/api/v2/groups.json?page[size]=100&page[after]=xy+z")
        );
        let b = br#"{"groups":[],"meta":{"has_more":false,"after_cursor":null}}"#;
        assert_eq!(parse_page(b, "groups", "q").unwrap().1, None);
        let b = br#"{"sla_policies":[{"id":1}],"next_page":null,"count":1}"#;
        assert_eq!(parse_page(b, "sla_policies", "q").unwrap().1, None);
        let b = br#"{"x":[],"next_page":"https://acme.zendesk.com/api/v2/x.json?page=2&per_page=100"}"#;
        assert_eq!(
            parse_page(b, "x", "q").unwrap().1.as_deref(),
            Some("/api/v2/x.json?page=2&per_page=100")
        );
        assert!(parse_page(br#"{"meta":{}}"#, "x", "q").is_err());
        // A link that leaves the API is refused rather than glued to the base URL.
        for bad in [
            "mailto:x",
            "https://evil.example/steal",
            "ftp://acme.zendesk.com/api/v2/x.json",
        ] {
            let b = format!(r#"{{"x":[],"next_page":"{bad}"}}"#);
            assert!(parse_page(b.as_bytes(), "x", "q").is_err(), "{bad}");
        }
    }

    #[test]
    fn soft_deletes_carry_sdc_deleted_at() {
        let r: Box<RawValue> =
            serde_json::from_str(r#"{"id":1,"deleted_at":"2024-01-01T00:00:00Z"}"#).unwrap();
        let s = soft_deleted(&r, "deleted_at").unwrap();
        assert_eq!(
            s.get(),
            r#"{"_sdc_deleted_at":"2024-01-01T00:00:00Z","id":1,"deleted_at":"2024-01-01T00:00:00Z"}"#
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3_000))]

        /// Any list page, well-formed or not: parsed or refused, never a panic; a next page always
        /// stays on the API path.
        #[test]
        fn list_pages_parse_or_fail(body in proptest::prop_oneof![
            crate::streams::arb::page("groups"),
            crate::streams::arb::mutated(r#"{"groups":[{"id":1,"updated_at":"2024-01-01T00:00:00Z"}],"meta":{"has_more":true,"after_cursor":"xyz"},"next_page":"https://acme.zendesk.com/api/v2/groups.json?page=2"}"#),
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ]) {
            if let Ok((items, Some(next))) = parse_page(&body, "groups", "/api/v2/groups.json?page[size]=100") {
                proptest::prop_assert!(next.starts_with("/api/v2/"), "{next}");
                let _ = items;
            }
            let _ = soft_deleted_from(&body);
        }
    }

    /// Runs the soft-delete rewrite over every item of a page that parses.
    fn soft_deleted_from(body: &[u8]) -> Option<()> {
        let (items, _) = parse_page(body, "groups", "q").ok()?;
        for i in items {
            let _ = soft_deleted(i, "deleted_at");
        }
        Some(())
    }
}
