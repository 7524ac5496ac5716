//! Singer state: `{"bookmarks": {stream: {...}}, "currently_syncing": ...}`.
//!
//! Bookmarks never move backwards: [`State::advance_bookmark`] refuses a value older than the one
//! stored, so a late or re-read record can never rewind replication.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// Bookmark key of a full-table stream holding the table version of its last complete run (the
/// Singer convention): present means the stream completed a version once, so a new run activates
/// its version only at the end.
pub const VERSION_BOOKMARK: &str = "version";

/// The state a source resumes from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct State {
    /// Per-stream bookmarks.
    #[serde(default)]
    pub bookmarks: Map<String, Value>,
    /// The stream being synced when the state was written, if any.
    #[serde(default)]
    pub currently_syncing: Option<String>,
    /// Other top-level keys some taps write; kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Compares two bookmark values: numbers numerically; strings as RFC 3339 times when both parse,
/// else lexically. Values of different kinds are incomparable (`None`).
pub fn compare_bookmarks(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                Some(x.cmp(&y))
            } else {
                x.as_f64()?.partial_cmp(&y.as_f64()?)
            }
        }
        (Value::String(x), Value::String(y)) => {
            match (crate::singer::parse_time(x), crate::singer::parse_time(y)) {
                (Ok(tx), Ok(ty)) => Some(tx.cmp(&ty)),
                _ => Some(x.cmp(y)),
            }
        }
        _ => None,
    }
}

impl State {
    /// Parses a state value (as read from a STATE message or a state file). `null` is empty state.
    pub fn from_value(v: Value) -> Result<State, serde_json::Error> {
        if v.is_null() {
            return Ok(State::default());
        }
        serde_json::from_value(v)
    }

    /// The state as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A stream's bookmark value under `key`.
    pub fn bookmark(&self, stream: &str, key: &str) -> Option<&Value> {
        self.bookmarks.get(stream)?.get(key)
    }

    /// Sets a stream's bookmark value under `key`, unconditionally (for cursors and resets).
    pub fn set_bookmark(&mut self, stream: &str, key: &str, value: Value) {
        let entry = self
            .bookmarks
            .entry(stream.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(m) = entry {
            m.insert(key.to_owned(), value);
        }
    }

    /// Removes a stream's bookmark under `key`.
    pub fn clear_bookmark(&mut self, stream: &str, key: &str) {
        if let Some(Value::Object(m)) = self.bookmarks.get_mut(stream) {
            m.remove(key);
        }
    }

    /// Moves a stream's bookmark forward to `value`. Returns false (and changes nothing) when the
    /// stored value is newer, or when the two cannot be compared.
    pub fn advance_bookmark(&mut self, stream: &str, key: &str, value: Value) -> bool {
        if let Some(current) = self.bookmark(stream, key) {
            match compare_bookmarks(current, &value) {
                Some(Ordering::Less) => {}
                Some(Ordering::Equal) => return true,
                Some(Ordering::Greater) | None => return false,
            }
        }
        self.set_bookmark(stream, key, value);
        true
    }

    /// Merges `newer` into this state stream by stream, never moving a comparable bookmark backwards.
    pub fn merge_forward(&mut self, newer: &State) {
        for (stream, marks) in &newer.bookmarks {
            let Value::Object(marks) = marks else {
                self.bookmarks.insert(stream.clone(), marks.clone());
                continue;
            };
            for (k, v) in marks {
                if !self.advance_bookmark(stream, k, v.clone())
                    && self
                        .bookmark(stream, k)
                        .is_some_and(|cur| compare_bookmarks(cur, v).is_none())
                {
                    // Incomparable values (e.g. opaque cursors) are replaced: the newer state knows best.
                    self.set_bookmark(stream, k, v.clone());
                }
            }
        }
        self.currently_syncing = newer.currently_syncing.clone();
        for (k, v) in &newer.extra {
            self.extra.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_tap_zendesk_state_file() {
        let s = State::from_value(
            json!({"bookmarks": {"tickets": {"generated_timestamp": "2024-01-01T00:00:00Z"},
            "users": {"updated_at": "2024-02-01T00:00:00Z"}}, "currently_syncing": null}),
        )
        .unwrap();
        assert_eq!(
            s.bookmark("tickets", "generated_timestamp"),
            Some(&json!("2024-01-01T00:00:00Z"))
        );
        assert_eq!(s.currently_syncing, None);
        assert_eq!(State::from_value(Value::Null).unwrap(), State::default());
    }

    #[test]
    fn bookmarks_never_move_backwards() {
        let mut s = State::default();
        assert!(s.advance_bookmark("t", "updated_at", json!("2024-01-02T00:00:00Z")));
        assert!(!s.advance_bookmark("t", "updated_at", json!("2024-01-01T23:59:59+00:00")));
        assert_eq!(
            s.bookmark("t", "updated_at"),
            Some(&json!("2024-01-02T00:00:00Z"))
        );
        // Times compare as times, not as text.
        assert!(s.advance_bookmark("t", "updated_at", json!("2024-01-02T01:00:00+01:00")));
        assert!(s.advance_bookmark("t", "updated_at", json!("2024-01-02T00:00:01Z")));
        assert!(s.advance_bookmark("n", "ts", json!(10)));
        assert!(!s.advance_bookmark("n", "ts", json!(9)));
        assert!(s.advance_bookmark("n", "ts", json!(11)));
        assert!(
            !s.advance_bookmark("n", "ts", json!("x")),
            "incomparable values are refused"
        );
    }

    #[test]
    fn merge_forward_keeps_the_newest() {
        let mut a = State::from_value(json!({"bookmarks": {"t": {"ts": 5, "cursor": "abc"}}})).unwrap();
        let b = State::from_value(
            json!({"bookmarks": {"t": {"ts": 3, "cursor": 17}, "u": {"ts": 1}}, "currently_syncing": "u"}),
        )
        .unwrap();
        a.merge_forward(&b);
        assert_eq!(a.bookmark("t", "ts"), Some(&json!(5)));
        assert_eq!(a.bookmark("t", "cursor"), Some(&json!(17)));
        assert_eq!(a.bookmark("u", "ts"), Some(&json!(1)));
        assert_eq!(a.currently_syncing.as_deref(), Some("u"));
    }
}
