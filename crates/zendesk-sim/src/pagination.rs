//! Query parsing, opaque cursors and the two list pagination styles
//! (<https://developer.zendesk.com/api-reference/introduction/pagination/>):
//!
//! - cursor pagination, selected by any `page[...]` parameter: `page[size]` (max 100, more is a
//!   400), `page[after]` / `page[before]`; answers `meta.has_more`, `meta.after_cursor`,
//!   `meta.before_cursor`, `links.next`, `links.prev`;
//! - offset pagination otherwise: `page` (1-based) and `per_page` (max 100, larger values are
//!   clamped), answers `next_page`, `previous_page`, `count`; asking for records past the first
//!   10,000 is a 400 (<https://support.zendesk.com/hc/en-us/articles/5591904358938>).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;

use crate::error::ApiError;

/// Largest `page[size]` / `per_page` on list endpoints.
pub const MAX_PAGE_SIZE: usize = 100;
/// Default page size on list endpoints.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Default number of records offset pagination may reach before answering 400.
pub const OFFSET_LIMIT: usize = 10_000;

/// Parsed query string (last value wins).
#[derive(Debug, Default, Clone)]
pub struct Params {
    map: HashMap<String, String>,
    order: Vec<String>,
}

impl Params {
    /// Parses a raw query string.
    pub fn parse(query: Option<&str>) -> Self {
        let mut p = Params::default();
        if let Some(q) = query {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                let k = k.into_owned();
                if !p.map.contains_key(&k) {
                    p.order.push(k.clone());
                }
                p.map.insert(k, v.into_owned());
            }
        }
        p
    }

    /// A parameter's value.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    /// A parameter parsed as an integer; `Err` when present but not an integer.
    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(&format!("{k} must be an integer"))),
        }
    }

    /// True when `include` lists `name` (comma separated).
    pub fn includes(&self, name: &str) -> bool {
        self.get("include")
            .is_some_and(|v| v.split(',').any(|s| s.trim() == name))
    }

    /// True when any `page[...]` parameter is present (cursor pagination).
    pub fn is_cursor(&self) -> bool {
        self.map.keys().any(|k| k.starts_with("page["))
    }

    /// A URL for `origin + path` with these parameters, some replaced (`Some`) or removed (`None`).
    pub fn url(&self, origin: &str, path: &str, changes: &[(&str, Option<String>)]) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for k in &self.order {
            if changes.iter().any(|(c, _)| c == k) {
                continue;
            }
            if let Some(v) = self.map.get(k) {
                ser.append_pair(k, v);
            }
        }
        for (k, v) in changes {
            if let Some(v) = v {
                ser.append_pair(k, v);
            }
        }
        let q = ser.finish();
        if q.is_empty() {
            format!("{origin}{path}")
        } else {
            format!("{origin}{path}?{q}")
        }
    }
}

/// Encodes an opaque cursor.
pub fn encode_cursor(raw: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_bytes())
}

/// Decodes an opaque cursor.
pub fn decode_cursor(c: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c.trim().trim_end_matches('='))
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Position cursor `(ts, id)` with a direction tag (`a` after, `b` before).
pub fn position_cursor(dir: char, ts: i64, id: u64) -> String {
    encode_cursor(&format!("v1:{dir}:{ts}:{id}"))
}

/// Parses a cursor made by [`position_cursor`].
pub fn parse_position(c: &str) -> Option<(char, i64, u64)> {
    let raw = decode_cursor(c)?;
    let mut it = raw.split(':');
    if it.next()? != "v1" {
        return None;
    }
    let dir = it.next()?.chars().next()?;
    let ts = it.next()?.parse().ok()?;
    let id = it.next()?.parse().ok()?;
    if it.next().is_some() || !(dir == 'a' || dir == 'b') {
        return None;
    }
    Some((dir, ts, id))
}

/// One list item: a sort key (ids zero-padded so text order is numeric order) and its JSON.
#[derive(Debug, Clone)]
pub struct Item {
    /// Sort key.
    pub key: String,
    /// The record's JSON.
    pub json: Arc<str>,
}

impl Item {
    /// An item sorted by numeric id.
    pub fn by_id(id: u64, json: Arc<str>) -> Self {
        Self {
            key: format!("{id:020}"),
            json,
        }
    }
}

/// Context for building a paginated list answer.
#[derive(Debug)]
pub struct ListRequest<'a> {
    /// JSON key of the records array (`"groups"`, `"audits"`, ...).
    pub key: &'a str,
    /// Scheme + host for links.
    pub origin: &'a str,
    /// Request path (for links).
    pub path: &'a str,
    /// Query parameters.
    pub params: &'a Params,
    /// Offset pagination record limit.
    pub offset_limit: usize,
}

fn join(items: &[Item]) -> String {
    let mut s = String::with_capacity(items.iter().map(|i| i.json.len() + 1).sum::<usize>() + 2);
    s.push('[');
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&it.json);
    }
    s.push(']');
    s
}

fn json_str(s: Option<&str>) -> String {
    match s {
        Some(s) => serde_json::Value::String(s.to_owned()).to_string(),
        None => "null".to_owned(),
    }
}

/// Paginates `items` (already sorted by key) with cursor or offset pagination.
pub fn paginate(req: &ListRequest<'_>, items: &[Item]) -> Result<String, ApiError> {
    if req.params.is_cursor() {
        cursor_page(req, items)
    } else {
        offset_page(req, items)
    }
}

fn cursor_page(req: &ListRequest<'_>, items: &[Item]) -> Result<String, ApiError> {
    let p = req.params;
    let size = match p.int("page[size]")? {
        None => DEFAULT_PAGE_SIZE,
        Some(n) if n < 1 => return Err(ApiError::bad_pagination("page[size] must be a positive integer")),
        Some(n) if n as usize > MAX_PAGE_SIZE => {
            return Err(ApiError::bad_pagination(&format!(
                "page[size] must be less than or equal to {MAX_PAGE_SIZE}"
            )))
        }
        Some(n) => n as usize,
    };
    let decode = |c: &str| -> Result<String, ApiError> {
        decode_cursor(c)
            .and_then(|s| s.strip_prefix("l:").map(str::to_owned))
            .ok_or_else(|| ApiError::bad_pagination("invalid cursor"))
    };
    let (start, end, has_more) = if let Some(after) = p.get("page[after]") {
        let k = decode(after)?;
        let start = items.partition_point(|i| i.key.as_str() <= k.as_str());
        let end = (start + size).min(items.len());
        (start, end, end < items.len())
    } else if let Some(before) = p.get("page[before]") {
        let k = decode(before)?;
        let end = items.partition_point(|i| i.key.as_str() < k.as_str());
        let start = end.saturating_sub(size);
        (start, end, start > 0)
    } else {
        let end = size.min(items.len());
        (0, end, end < items.len())
    };
    let page = &items[start..end];
    let after = page.last().map(|i| encode_cursor(&format!("l:{}", i.key)));
    let before = page.first().map(|i| encode_cursor(&format!("l:{}", i.key)));
    let size_s = Some(size.to_string());
    let next = after.as_ref().map(|c| {
        req.params.url(
            req.origin,
            req.path,
            &[
                ("page[size]", size_s.clone()),
                ("page[before]", None),
                ("page[after]", Some(c.clone())),
            ],
        )
    });
    let prev = before.as_ref().map(|c| {
        req.params.url(
            req.origin,
            req.path,
            &[
                ("page[size]", size_s.clone()),
                ("page[after]", None),
                ("page[before]", Some(c.clone())),
            ],
        )
    });
    Ok(format!(
        "{{\"{}\":{},\"meta\":{{\"has_more\":{},\"after_cursor\":{},\"before_cursor\":{}}},\"links\":{{\"prev\":{},\"next\":{}}}}}",
        req.key,
        join(page),
        has_more,
        json_str(after.as_deref()),
        json_str(before.as_deref()),
        json_str(prev.as_deref()),
        json_str(next.as_deref()),
    ))
}

fn offset_page(req: &ListRequest<'_>, items: &[Item]) -> Result<String, ApiError> {
    let p = req.params;
    let page = p.int("page")?.unwrap_or(1).max(1) as usize;
    let per_page = p
        .int("per_page")?
        .map_or(DEFAULT_PAGE_SIZE, |n| (n.max(1) as usize).min(MAX_PAGE_SIZE));
    let skip = (page - 1).saturating_mul(per_page);
    if skip >= req.offset_limit && skip > 0 {
        return Err(ApiError::bad_pagination(&format!(
            "Offset pagination is limited to the first {} records. Use cursor-based pagination (page[size]) instead.",
            req.offset_limit
        )));
    }
    let start = skip.min(items.len());
    let end = (start + per_page).min(items.len());
    let next = (end < items.len()).then(|| {
        p.url(
            req.origin,
            req.path,
            &[
                ("page", Some((page + 1).to_string())),
                ("per_page", Some(per_page.to_string())),
            ],
        )
    });
    let prev = (page > 1).then(|| {
        p.url(
            req.origin,
            req.path,
            &[
                ("page", Some((page - 1).to_string())),
                ("per_page", Some(per_page.to_string())),
            ],
        )
    });
    Ok(format!(
        "{{\"{}\":{},\"next_page\":{},\"previous_page\":{},\"count\":{}}}",
        req.key,
        join(&items[start..end]),
        json_str(next.as_deref()),
        json_str(prev.as_deref()),
        items.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn items(n: u64) -> Vec<Item> {
        (1..=n)
            .map(|i| Item::by_id(i, Arc::from(format!("{{\"id\":{i}}}"))))
            .collect()
    }

    fn req<'a>(p: &'a Params) -> ListRequest<'a> {
        ListRequest {
            key: "things",
            origin: "http://h",
            path: "/api/v2/things",
            params: p,
            offset_limit: 250,
        }
    }

    #[test]
    fn cursor_walk_visits_everything_once() {
        let all = items(250);
        let mut p = Params::parse(Some("page[size]=100"));
        let mut seen = Vec::new();
        // Bounded: a walk that never ends collects too much and fails the assertion below.
        for _page in 0..10 {
            let body: Value = serde_json::from_str(&paginate(&req(&p), &all).unwrap()).unwrap();
            seen.extend(
                body["things"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["id"].as_u64().unwrap()),
            );
            if !body["meta"]["has_more"].as_bool().unwrap() {
                break;
            }
            let next = body["links"]["next"].as_str().unwrap();
            p = Params::parse(next.split_once('?').map(|(_, q)| q));
        }
        assert_eq!(seen, (1..=250).collect::<Vec<_>>());
    }

    #[test]
    fn page_size_over_100_is_400() {
        let p = Params::parse(Some("page[size]=101"));
        assert_eq!(paginate(&req(&p), &items(5)).unwrap_err().status.as_u16(), 400);
    }

    #[test]
    fn offset_limit() {
        let all = items(400);
        let p = Params::parse(Some("page=3&per_page=100"));
        let body: Value = serde_json::from_str(&paginate(&req(&p), &all).unwrap()).unwrap();
        assert_eq!(body["count"], 400);
        assert_eq!(body["things"][0]["id"], 201);
        let p = Params::parse(Some("page=4&per_page=100"));
        assert_eq!(paginate(&req(&p), &all).unwrap_err().status.as_u16(), 400);
    }

    #[test]
    fn position_cursor_roundtrip() {
        let c = position_cursor('a', 1_700_000_000, 42);
        assert_eq!(parse_position(&c), Some(('a', 1_700_000_000, 42)));
        assert_eq!(parse_position("garbage"), None);
    }
}
