//! Full-table streams activate a version only once it is complete (and, on a first sync, before the
//! first record too); a refused, failing or cancelled stream activates nothing.

use crate::common::*;
use seam_core::singer::Message;
use seam_core::{Catalog, Source, State};
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zendesk_sim::{PathFault, SimHandle};

const FULL: [&str; 3] = ["tags", "sla_policies", "talk_phone_numbers"];

async fn full_table_catalog(src: &seam_zendesk::ZendeskSource) -> Catalog {
    let mut c = src.discover().await.unwrap();
    for e in &mut c.streams {
        e.set_selected(FULL.contains(&e.tap_stream_id.as_str()));
    }
    c
}

/// Positions (in `run.messages`) of the ACTIVATE_VERSIONs of `stream`, with their versions.
fn activations(run: &Run, stream: &str) -> Vec<(usize, i64)> {
    run.messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| match m {
            Message::ActivateVersion { stream: s, version } if s == stream => Some((i, *version)),
            _ => None,
        })
        .collect()
}

fn record_positions(run: &Run, stream: &str) -> Vec<usize> {
    run.messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| matches!(m, Message::Record(r) if r.stream == stream).then_some(i))
        .collect()
}

async fn first_run(sim: &SimHandle) -> (seam_zendesk::ZendeskSource, Catalog, Run) {
    let src = source(sim, json!({"page_size": 2}));
    let catalog = full_table_catalog(&src).await;
    let run = read(&src, &catalog, State::default()).await;
    run.summary();
    (src, catalog, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_activates_before_and_after_and_marks_the_version() {
    let sim = start(sim_config(30)).await;
    let (_, _, run) = first_run(&sim).await;
    for stream in FULL {
        let acts = activations(&run, stream);
        let records = record_positions(&run, stream);
        assert_eq!(acts.len(), 2, "{stream}: {acts:?}");
        assert!(
            acts[0].0 < records[0] && acts[1].0 > *records.last().unwrap(),
            "{stream}"
        );
        let version = acts[1].1;
        assert_eq!(acts[0].1, version);
        // The last STATE before the final activation comes after the stream's last record and marks
        // the version complete. Streams are read concurrently, so another stream's messages may come
        // between that STATE and the activation (every STATE carries every stream's bookmarks).
        let (at, value) = run.messages[..acts[1].0]
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, m)| match m {
                Message::State { value } => Some((i, value)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{stream}: no STATE before the final ACTIVATE_VERSION"));
        assert!(
            at > *records.last().unwrap(),
            "{stream}: the STATE follows the last record"
        );
        assert_eq!(value["bookmarks"][stream]["version"], json!(version), "{stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_sync_activates_only_after_its_last_record() {
    let sim = start(sim_config(30)).await;
    let (src, catalog, first) = first_run(&sim).await;
    let state = first.last_state();
    let second = read(&src, &catalog, state.clone()).await;
    second.summary();
    for stream in FULL {
        let acts = activations(&second, stream);
        let records = record_positions(&second, stream);
        assert_eq!(acts.len(), 1, "{stream}: one activation, at the end: {acts:?}");
        assert!(acts[0].0 > *records.last().unwrap(), "{stream}");
        let old = state
            .bookmark(stream, "version")
            .and_then(|v| v.as_i64())
            .unwrap();
        assert!(acts[0].1 > old, "{stream}: the new version is newer");
        assert_eq!(
            second.last_state().bookmark(stream, "version"),
            Some(&json!(acts[0].1))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_failing_stream_activates_nothing() {
    let sim = start(sim_config(30)).await;
    let (src, catalog, first) = first_run(&sim).await;
    let state = first.last_state();

    sim.set_path_faults(vec![PathFault::status("/api/v2/tags.json", 403)])
        .unwrap();
    let refused = read(&src, &catalog, state.clone()).await;
    assert!(refused.summary().skipped.contains_key("tags"));
    assert_eq!(activations(&refused, "tags"), vec![]);
    assert_eq!(
        activations(&refused, "sla_policies").len(),
        1,
        "the others complete"
    );
    assert_eq!(
        refused.last_state().bookmark("tags", "version"),
        state.bookmark("tags", "version"),
        "the marker stays"
    );

    sim.set_path_faults(vec![PathFault::status("/api/v2/tags.json", 500)])
        .unwrap();
    let failed = read(&src, &catalog, state.clone()).await;
    let e = failed.result.as_ref().unwrap_err();
    assert!(
        e.to_string()
            .contains("zendesk answered 500 for /api/v2/tags.json"),
        "{e}"
    );
    assert_eq!(activations(&failed, "tags"), vec![]);

    // A first sync that is refused activates nothing either (no table emptied in advance).
    sim.set_path_faults(vec![PathFault::status("/api/v2/tags.json", 403)])
        .unwrap();
    let fresh = read(&src, &catalog, State::default()).await;
    assert_eq!(activations(&fresh, "tags"), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cancelled_mid_way_activates_nothing() {
    let sim = start(sim_config(30)).await;
    let (src, catalog, first) = first_run(&sim).await;
    let state = first.last_state();
    // Slow pages of two tags: the stream is in the middle when the cancel comes.
    sim.set_path_faults(vec![PathFault::slow("/api/v2/tags.json", 200)])
        .unwrap();
    sim.reset_stats();
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let collect = tokio::spawn(async move {
        let mut v = Vec::new();
        while let Some(m) = rx.recv().await {
            v.push(m);
        }
        v
    });
    let reading = {
        let (src, catalog, cancel) = (src.clone(), catalog.clone(), cancel.clone());
        tokio::spawn(async move { src.read(&catalog, state, tx, cancel).await })
    };
    wait_for(Duration::from_secs(30), "two pages of tags", || {
        sim.stats()["endpoints"]["/api/v2/tags"]["requests"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    })
    .await;
    cancel.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(5), reading)
        .await
        .expect("the read stops within 5 s of the cancel")
        .unwrap()
        .unwrap();
    let run = Run {
        messages: collect.await.unwrap(),
        result: Ok(summary),
    };
    assert!(
        !record_positions(&run, "tags").is_empty(),
        "the stream had started"
    );
    assert_eq!(activations(&run, "tags"), vec![]);
}
