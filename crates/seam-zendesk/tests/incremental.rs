//! Incremental runs: exactly the changes, resumable from tap-zendesk state and from an interrupted run.

use crate::common::*;
use seam_core::catalog::ReplicationMethod;
use seam_core::singer::Message;
use seam_core::State;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

fn changed(t1: &Value, t2: &Value, stream: &str) -> BTreeSet<String> {
    let old = t1[stream]["updated"].as_object().cloned().unwrap_or_default();
    let new = t2[stream]["updated"].as_object().cloned().unwrap_or_default();
    new.iter()
        .filter(|(id, v)| old.get(*id) != Some(v))
        .map(|(id, _)| id.clone())
        .collect()
}

fn epoch(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp()),
        _ => None,
    }
}

/// Parent ids of records emitted in `stream` (field `parent_field`).
fn parents(run: &Run, stream: &str, parent_field: &str) -> BTreeMap<String, String> {
    run.messages
        .iter()
        .filter_map(|m| match m {
            Message::Record(r) if r.stream == stream => {
                let v = r.value().unwrap();
                Some((v["id"].to_string(), v[parent_field].to_string()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_returns_exactly_the_changes() {
    let sim = start(sim_config(1200)).await;
    let src = source(&sim, json!({}));
    let catalog = all_streams(&src).await;
    let first = read(&src, &catalog, State::default()).await;
    first.summary();
    let state1 = first.last_state();
    let t1 = sim.truth();

    sim.mutate(200);
    sim.advance_clock(61);
    let second = read(&src, &catalog, state1.clone()).await;
    second.summary();
    let t2 = sim.truth();
    check_contract(&second.messages);
    assert_no_duplicates(&second);
    let state2 = second.last_state();

    for def in seam_zendesk::streams::STREAMS {
        let name = def.name;
        let got = second.key_set(name);
        let all = truth_keys(&t2, name);
        if def.method == ReplicationMethod::FullTable {
            assert_eq!(got, all, "{name}: a full-table stream re-sends everything");
            continue;
        }
        let want = changed(&t1, &t2, name);
        match name {
            // Exports: exactly the changes, no boundary re-reads.
            "tickets"
            | "users"
            | "organizations"
            | "ticket_metric_events"
            | "ticket_audits"
            | "ticket_comments" => {
                assert_eq!(got, want, "{name}: got {} want {}", got.len(), want.len());
            }
            // Side-loads come with every re-exported parent: the changes plus the siblings of changed parents.
            "ticket_metrics" | "user_identities" => {
                let (parent, field) = if name == "ticket_metrics" {
                    ("tickets", "ticket_id")
                } else {
                    ("users", "user_id")
                };
                let changed_parents = changed(&t1, &t2, parent);
                assert!(
                    want.is_subset(&got),
                    "{name}: missing {:?}",
                    want.difference(&got).collect::<Vec<_>>()
                );
                for (id, p) in parents(&second, name, field) {
                    assert!(
                        want.contains(&id) || changed_parents.contains(&p),
                        "{name} {id} of unchanged parent {p}"
                    );
                }
            }
            // Lists: records with updated_at at or after the bookmark (inclusive re-read of the boundary).
            _ => {
                let rk = def.replication_key.unwrap();
                let bm = state1.bookmark(name, rk).and_then(epoch).unwrap();
                let updated = t2[name]["updated"].as_object().unwrap();
                let expect: BTreeSet<String> = updated
                    .iter()
                    .filter(|(_, v)| epoch(v).is_some_and(|t| t >= bm))
                    .map(|(k, _)| k.clone())
                    .collect();
                assert_eq!(got, expect, "{name}");
                assert!(want.is_subset(&got), "{name}");
            }
        }
        // Bookmarks never move backwards between runs.
        if let Some(rk) = def.replication_key {
            if let (Some(a), Some(b)) = (
                state1.bookmark(name, rk).and_then(epoch),
                state2.bookmark(name, rk).and_then(epoch),
            ) {
                assert!(b >= a, "{name}: {a} -> {b}");
            }
        }
    }
    assert!(
        state2.bookmark("tickets", "after_cursor").is_some(),
        "the export cursor is persisted"
    );

    // A third run with no changes returns nothing from the exports.
    sim.advance_clock(61);
    let third = read(&src, &catalog, state2).await;
    third.summary();
    for s in [
        "tickets",
        "users",
        "organizations",
        "ticket_comments",
        "ticket_audits",
        "ticket_metric_events",
    ] {
        assert!(third.key_set(s).is_empty(), "{s}: {:?}", third.key_set(s));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_a_tap_zendesk_state_file() {
    let sim = start(sim_config(400)).await;
    let src = source(&sim, json!({}));
    let mut catalog = all_streams(&src).await;
    for e in &mut catalog.streams {
        e.set_selected(["tickets", "users"].contains(&e.tap_stream_id.as_str()));
    }
    let truth = sim.truth();
    // The median ticket's generated_timestamp, as tap-zendesk writes it (RFC 3339 string).
    let mut ts: Vec<i64> = truth["tickets"]["updated"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .collect();
    ts.sort_unstable();
    let mid = ts[ts.len() / 2];
    let iso = chrono::DateTime::from_timestamp(mid, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let state = State::from_value(json!({"bookmarks": {"tickets": {"generated_timestamp": iso},
        "users": {"updated_at": "2000-01-01T00:00:00Z"}}, "currently_syncing": null}))
    .unwrap();
    let run = read(&src, &catalog, state).await;
    run.summary();
    let want: BTreeSet<String> = truth["tickets"]["updated"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.as_i64().unwrap() >= mid)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(run.key_set("tickets"), want);
    assert_eq!(run.key_set("users"), truth_keys(&truth, "users"));
    let end = run.last_state();
    assert!(epoch(end.bookmark("tickets", "generated_timestamp").unwrap()).unwrap() >= mid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_resumes_without_loss() {
    let sim = start(sim_config(2500)).await;
    let src = source(&sim, json!({"concurrency": 2}));
    let mut catalog = all_streams(&src).await;
    for e in &mut catalog.streams {
        e.set_selected(
            [
                "tickets",
                "ticket_comments",
                "organizations",
                "ticket_metric_events",
            ]
            .contains(&e.tap_stream_id.as_str()),
        );
    }
    // The consumer stops part-way: the read fails, and only the records before the last STATE count.
    let first = read_until(&src, &catalog, State::default(), 6000).await;
    assert!(first.result.is_err(), "the consumer stopped, the read must fail");
    let cut = first
        .messages
        .iter()
        .rposition(|m| matches!(m, Message::State { .. }))
        .unwrap();
    let durable = Run {
        messages: first.messages[..=cut].to_vec(),
        result: Ok(Default::default()),
    };
    let state = durable.last_state();
    let second = read(&src, &catalog, state).await;
    second.summary();
    let truth = sim.truth();
    for s in [
        "tickets",
        "ticket_comments",
        "organizations",
        "ticket_metric_events",
    ] {
        let mut got = durable.key_set(s);
        got.extend(second.key_set(s));
        assert_eq!(got, truth_keys(&truth, s), "{s}");
        // Exactly once across the two runs for cursor and boundary-deduplicated exports.
        assert!(
            durable.key_set(s).is_disjoint(&second.key_set(s)),
            "{s} re-read across the resume"
        );
    }
}
