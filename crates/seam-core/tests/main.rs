//! seam-core's integration tests: the public API used the way taps and targets use it.
#![allow(clippy::unwrap_used)]

mod singer_props;

use seam_core::singer::{Message, MessageReader};
use seam_core::{Catalog, State};
use serde_json::json;
use std::io::{BufReader, Read};

/// An endless Singer stream: proves the reader never needs the whole input.
struct EndlessRecords {
    pending: Vec<u8>,
    next_id: u64,
}

impl Read for EndlessRecords {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            self.pending = format!(
                "{{\"type\":\"RECORD\",\"stream\":\"t\",\"record\":{{\"id\":{}}}}}\n",
                self.next_id
            )
            .into_bytes();
            self.next_id += 1;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

#[test]
fn reader_streams_an_endless_input() {
    let reader = MessageReader::new(BufReader::new(EndlessRecords {
        pending: Vec::new(),
        next_id: 0,
    }));
    let ids: Vec<u64> = reader
        .take(10_000)
        .map(|m| match m.unwrap() {
            Message::Record(r) => r.value().unwrap()["id"].as_u64().unwrap(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 10_000);
    assert_eq!(ids[9_999], 9_999);
}

#[test]
fn a_tap_run_replays_into_state_that_only_moves_forward() {
    let output = r#"{"type":"SCHEMA","stream":"tickets","schema":{"type":"object","properties":{"id":{"type":"integer"}}},"key_properties":["id"]}
{"type":"RECORD","stream":"tickets","record":{"id":1}}
{"type":"STATE","value":{"bookmarks":{"tickets":{"generated_timestamp":"2024-01-02T00:00:00Z"}}}}
{"type":"RECORD","stream":"tickets","record":{"id":2}}
{"type":"STATE","value":{"bookmarks":{"tickets":{"generated_timestamp":"2024-01-01T00:00:00Z"}}}}
"#;
    let mut state = State::default();
    for m in MessageReader::new(output.as_bytes()) {
        if let Message::State { value } = m.unwrap() {
            state.merge_forward(&State::from_value(value).unwrap());
        }
    }
    assert_eq!(
        state.bookmark("tickets", "generated_timestamp"),
        Some(&json!("2024-01-02T00:00:00Z"))
    );
}

#[test]
fn a_discovered_catalog_is_selected_and_written_back() {
    let discovered = json!({"streams": [
        {"tap_stream_id": "tickets", "stream": "tickets",
         "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "subject": {"type": ["null", "string"]}}},
         "metadata": [{"breadcrumb": [], "metadata": {"table-key-properties": ["id"], "forced-replication-method": "INCREMENTAL", "valid-replication-keys": ["generated_timestamp"], "inclusion": "available"}},
                      {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}},
                      {"breadcrumb": ["properties", "subject"], "metadata": {"inclusion": "available"}}]},
        {"tap_stream_id": "tags", "stream": "tags",
         "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
         "metadata": [{"breadcrumb": [], "metadata": {"table-key-properties": ["name"], "forced-replication-method": "FULL_TABLE"}}]}
    ]});
    let mut catalog: Catalog = serde_json::from_value(discovered).unwrap();
    assert_eq!(catalog.selected().count(), 0);
    let tickets = catalog.get_mut("tickets").unwrap();
    tickets.set_selected(true);
    tickets.set_field_selected("subject", false);
    let written = serde_json::to_string(&catalog).unwrap();
    let back: Catalog = serde_json::from_str(&written).unwrap();
    let names: Vec<&str> = back.selected().map(|s| s.stream.as_str()).collect();
    assert_eq!(names, vec!["tickets"]);
    assert_eq!(back.get("tickets").unwrap().selected_fields(), vec!["id"]);
    assert_eq!(back.get("tags").unwrap().key_properties(), vec!["name"]);
}
