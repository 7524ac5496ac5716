//! No answer from Zendesk can wedge or panic a read: absurd rate-limit headers end it with an error
//! that says what Zendesk asked for, and a cancel stops it within seconds whatever it waits on.

use crate::common::*;
use seam_core::singer::Message;
use seam_core::{Catalog, ReadSummary, RetryPolicy, Source, SourceError, State};
use seam_zendesk::{RateLimits, ZendeskSource};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zendesk_sim::{PathFault, SimHandle};

const TAGS: &str = "/api/v2/tags.json";

fn rule(status: Option<u16>, headers: &[(&str, &str)], times: Option<u64>) -> PathFault {
    PathFault {
        path: TAGS.to_owned(),
        status,
        delay_ms: 0,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        times,
    }
}

async fn only(src: &ZendeskSource, streams: &[&str]) -> Catalog {
    let mut c = src.discover().await.unwrap();
    for e in &mut c.streams {
        e.set_selected(streams.contains(&e.tap_stream_id.as_str()));
    }
    c
}

/// A state in which tags completed a version before (so a read activates nothing until its end).
fn tags_done_before() -> State {
    State::from_value(json!({"bookmarks": {"tags": {"version": 1}}})).unwrap()
}

/// A read that must end by itself within `limit` (a wedged read fails the test instead of hanging).
async fn read_within(limit: Duration, src: &ZendeskSource, catalog: &Catalog) -> Run {
    tokio::time::timeout(limit, read(src, catalog, tags_done_before()))
        .await
        .expect("the read wedged")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_ends_the_read_with_what_zendesk_asked() {
    let sim = start(sim_config(10)).await;
    let src = source(&sim, json!({}));
    let catalog = only(&src, &["tags"]).await;
    // Used to panic: Duration::from_secs_f64(1e20).
    sim.set_path_faults(vec![rule(Some(429), &[("retry-after", "1e20")], None)])
        .unwrap();
    let run = read_within(Duration::from_secs(30), &src, &catalog).await;
    let e = run.result.unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream tags: zendesk asked seam to wait 100000000000000000000 s before retrying /api/v2/tags.json \
         (Retry-After), more than the 300 s limit (max_rate_limit_wait_seconds): the next scheduled run tries again"
    );
    assert!(matches!(e.kind, seam_core::ErrorKind::RateLimited { .. }));
    assert!(run
        .messages
        .iter()
        .all(|m| !matches!(m, Message::ActivateVersion { .. })));

    // An HTTP-date far ahead is refused the same way; the limit is configurable.
    let src = source(&sim, json!({"max_rate_limit_wait_seconds": 60}));
    sim.set_path_faults(vec![rule(
        Some(429),
        &[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")],
        None,
    )])
    .unwrap();
    let e = read_within(Duration::from_secs(30), &src, &catalog)
        .await
        .result
        .unwrap_err();
    assert!(
        e.to_string().contains("wait until Fri, 31 Dec 9999 23:59:59 GMT")
            && e.to_string().contains("more than the 60 s limit"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_date_is_honoured() {
    let sim = start(sim_config(10)).await;
    let src = source(&sim, json!({}));
    let catalog = only(&src, &["tags"]).await;
    let soon = chrono::Utc::now() + chrono::Duration::seconds(1);
    let date = soon.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    sim.set_path_faults(vec![rule(Some(429), &[("retry-after", &date)], Some(1))])
        .unwrap();
    let run = read_within(Duration::from_secs(30), &src, &catalog).await;
    run.summary();
    assert_eq!(run.key_set("tags"), truth_keys(&sim.truth(), "tags"));
    assert_eq!(
        sim.stats()["endpoints"]["/api/v2/tags"]["status"]["429"],
        1,
        "{}",
        sim.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_ratelimit_reset_ends_the_read_instead_of_wedging_it() {
    let sim = start(sim_config(10)).await;
    // Zendesk's one-minute window: the reset is not shrunk by a compressed test window.
    let config = raw_config(&sim, json!({"page_size": 1})).validate().unwrap();
    let src =
        ZendeskSource::with_options(config, RetryPolicy::fast_for_tests(), RateLimits::default()).unwrap();
    let catalog = only(&src, &["tags"]).await;
    // The first page says nothing remains until 1e20 s from now: used to panic (or wait forever).
    sim.set_path_faults(vec![rule(
        None,
        &[("x-rate-limit-remaining", "0"), ("ratelimit-reset", "1e20")],
        Some(1),
    )])
    .unwrap();
    let run = read_within(Duration::from_secs(30), &src, &catalog).await;
    let e = run.result.unwrap_err();
    assert!(
        e.to_string().contains(
            "zendesk asked seam to wait 100000000000000000000 s before the next request to /api/v2/tags.json (ratelimit-reset)"
        ),
        "{e}"
    );
}

/// Starts a read of tags; returns its cancel token, the task, and the message collector.
fn start_read(
    src: &ZendeskSource,
    catalog: &Catalog,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<ReadSummary, SourceError>>,
    tokio::task::JoinHandle<Vec<Message>>,
) {
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let collect = tokio::spawn(async move {
        let mut v = Vec::new();
        while let Some(m) = rx.recv().await {
            v.push(m);
        }
        v
    });
    let (src, catalog, c) = (src.clone(), catalog.clone(), cancel.clone());
    let reading = tokio::spawn(async move { src.read(&catalog, tags_done_before(), tx, c).await });
    (cancel, reading, collect)
}

/// Cancels and expects the read to return `Ok` within 5 s (the waits involved last minutes), with
/// no ACTIVATE_VERSION for the unfinished stream.
async fn cancel_stops_within_5s(
    cancel: CancellationToken,
    reading: tokio::task::JoinHandle<Result<ReadSummary, SourceError>>,
    collect: tokio::task::JoinHandle<Vec<Message>>,
) {
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), reading)
        .await
        .expect("the read did not stop within 5 s of the cancel")
        .unwrap();
    assert!(result.is_ok(), "a cancelled read returns Ok: {result:?}");
    let messages = collect.await.unwrap();
    assert!(messages
        .iter()
        .all(|m| !matches!(m, Message::ActivateVersion { .. })));
}

fn tags_answers(sim: &SimHandle, status: &str) -> u64 {
    sim.stats()["endpoints"]["/api/v2/tags"]["status"][status]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_cuts_a_120_s_retry_after_short() {
    let sim = start(sim_config(10)).await;
    let src = source(&sim, json!({}));
    let catalog = only(&src, &["tags"]).await;
    sim.set_path_faults(vec![rule(Some(429), &[("retry-after", "120")], None)])
        .unwrap();
    let (cancel, reading, collect) = start_read(&src, &catalog);
    wait_for(Duration::from_secs(30), "the 429", || {
        tags_answers(&sim, "429") >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel_stops_within_5s(cancel, reading, collect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_cuts_a_rate_limiter_pause_short() {
    let sim = start(sim_config(10)).await;
    let config = raw_config(&sim, json!({"page_size": 1})).validate().unwrap();
    let src =
        ZendeskSource::with_options(config, RetryPolicy::fast_for_tests(), RateLimits::default()).unwrap();
    let catalog = only(&src, &["tags"]).await;
    // After the first page nothing remains for two minutes: the next page waits in the limiter.
    sim.set_path_faults(vec![rule(
        None,
        &[("x-rate-limit-remaining", "0"), ("ratelimit-reset", "120")],
        Some(1),
    )])
    .unwrap();
    let (cancel, reading, collect) = start_read(&src, &catalog);
    wait_for(Duration::from_secs(30), "the first page", || {
        tags_answers(&sim, "200") >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel_stops_within_5s(cancel, reading, collect).await;
    assert_eq!(
        tags_answers(&sim, "200"),
        1,
        "no request went out during the pause"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_cuts_a_slow_response_short() {
    let sim = start(sim_config(10)).await;
    let src = source(&sim, json!({}));
    let catalog = only(&src, &["tags"]).await;
    // Two minutes to answer (the request timeout is five).
    sim.set_path_faults(vec![PathFault::slow(TAGS, 120_000)]).unwrap();
    let (cancel, reading, collect) = start_read(&src, &catalog);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel_stops_within_5s(cancel, reading, collect).await;
}
