use std::collections::{BTreeSet, HashMap};

use crate::common::*;

async fn walk_cursor(sim: &zendesk_sim::SimHandle, first: &str, key: &str) -> (Vec<u64>, String, usize) {
    let mut url = first.to_owned();
    let mut all = Vec::new();
    for pages in 1..=MAX_PAGES {
        let page = get_json(sim, &url).await;
        all.extend(record_ids(&page, key));
        let after = page["after_url"].as_str().unwrap().to_owned();
        assert!(page["after_cursor"].is_string());
        if page["end_of_stream"].as_bool().unwrap() {
            return (all, after, pages);
        }
        url = after;
    }
    panic!("{first} did not reach end_of_stream within {MAX_PAGES} pages");
}

#[tokio::test]
async fn cursor_export_returns_every_ticket_once() {
    let sim = start(config(300)).await;
    let (all, _, pages) = walk_cursor(
        &sim,
        "/api/v2/incremental/tickets/cursor.json?start_time=1&per_page=50",
        "tickets",
    )
    .await;
    assert_eq!(pages, 300usize.div_ceil(50));
    let set: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "cursor export must not repeat records");
    assert_eq!(set, truth_ids(&sim, "tickets"));
    // Archived and deleted tickets are in the export.
    let page = get_json(&sim, "/api/v2/incremental/tickets/cursor.json?start_time=1").await;
    let statuses: BTreeSet<&str> = page["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains("deleted"));
    let excl = get_json(
        &sim,
        "/api/v2/incremental/tickets/cursor.json?start_time=1&exclude_deleted=true",
    )
    .await;
    assert!(excl["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["status"] != "deleted"));
    sim.shutdown().await;
}

#[tokio::test]
async fn cursor_resume_returns_exactly_the_changed_records() {
    let sim = start(config(200)).await;
    let (_, after_url, _) = walk_cursor(
        &sim,
        "/api/v2/incremental/tickets/cursor.json?start_time=1",
        "tickets",
    )
    .await;
    let m = sim.mutate(40);
    let now = m["now"].as_i64().unwrap();
    // Within the minute: nothing yet.
    let early = get_json(&sim, &after_url).await;
    assert_eq!(early["tickets"].as_array().unwrap().len(), 0);
    assert_eq!(early["end_of_stream"], true);
    sim.advance_clock(61);
    let (changed, _, _) = walk_cursor(&sim, &after_url, "tickets").await;
    let truth = sim.truth_of("tickets").unwrap();
    let expected: BTreeSet<u64> = truth["updated"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, ts)| ts.as_i64().unwrap() == now)
        .map(|(id, _)| id.parse().unwrap())
        .collect();
    assert!(!expected.is_empty());
    let got: BTreeSet<u64> = changed.iter().copied().collect();
    assert_eq!(got.len(), changed.len());
    assert_eq!(got, expected);
    sim.shutdown().await;
}

#[tokio::test]
async fn too_recent_start_time_is_rejected() {
    let sim = start(config(20)).await;
    let now = sim.now();
    for path in [
        "/api/v2/incremental/tickets/cursor.json",
        "/api/v2/incremental/organizations.json",
    ] {
        let resp = get(&sim, &format!("{path}?start_time={}", now - 10))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "InvalidValue");
        assert!(body["description"]
            .as_str()
            .unwrap()
            .starts_with("Too recent start_time"));
    }
    let ok = get(
        &sim,
        &format!("/api/v2/incremental/tickets.json?start_time={}", now - 61),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn time_based_export_repeats_boundary_records_and_loses_none() {
    let sim = start(config(400)).await;
    let mut url = "/api/v2/incremental/tickets.json?start_time=1&per_page=37".to_owned();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut extended = false;
    for _ in 0..1000 {
        let page = get_json(&sim, &url).await;
        let tickets = page["tickets"].as_array().unwrap();
        assert_eq!(page["count"].as_u64().unwrap() as usize, tickets.len());
        let end_time = page["end_time"].as_i64().unwrap();
        if tickets.len() > 37 {
            // A run of equal timestamps longer than a page: the whole run, then move past it.
            extended = true;
            let ts: BTreeSet<i64> = tickets
                .iter()
                .map(|t| t["generated_timestamp"].as_i64().unwrap())
                .collect();
            assert_eq!(ts.len(), 1);
            assert_eq!(end_time, ts.iter().next().unwrap() + 1);
        } else if let Some(last) = tickets.last() {
            assert_eq!(end_time, last["generated_timestamp"].as_i64().unwrap());
        }
        for id in record_ids(&page, "tickets") {
            *seen.entry(id).or_insert(0) += 1;
        }
        let next = page["next_page"].as_str().unwrap().to_owned();
        assert!(next.contains(&format!("start_time={end_time}")));
        if page["end_of_stream"].as_bool().unwrap() {
            break;
        }
        url = next;
    }
    let got: BTreeSet<u64> = seen.keys().copied().collect();
    assert_eq!(got, truth_ids(&sim, "tickets"), "no ticket may be lost");
    assert!(
        seen.values().any(|n| *n > 1),
        "boundary records come back on the next page"
    );
    assert!(extended, "the bulk run is longer than a page");
    sim.shutdown().await;
}

#[tokio::test]
async fn side_loads() {
    let sim = start(config(60)).await;
    let page = get_json(
        &sim,
        "/api/v2/incremental/tickets/cursor.json?start_time=1&include=metric_sets",
    )
    .await;
    let t = page["tickets"].as_array().unwrap();
    let live = t.iter().find(|t| t["status"] != "deleted").unwrap();
    assert_eq!(live["metric_set"]["ticket_id"], live["id"]);
    let users = get_json(
        &sim,
        "/api/v2/incremental/users/cursor.json?start_time=1&include=identities",
    )
    .await;
    let identities = users["identities"].as_array().unwrap();
    assert!(!identities.is_empty());
    assert!(identities.iter().all(|i| i["user_id"].is_u64()));
    let ev = get_json(
        &sim,
        "/api/v2/incremental/ticket_events.json?start_time=1&include=comment_events",
    )
    .await;
    let has_comment = ev["ticket_events"].as_array().unwrap().iter().any(|e| {
        e["child_events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["event_type"] == "Comment" && c["body"].is_string())
    });
    assert!(has_comment);
    let ev = get_json(&sim, "/api/v2/incremental/ticket_events.json?start_time=1").await;
    assert!(ev["ticket_events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["child_events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["event_type"] != "Comment")));
    let me = get_json(&sim, "/api/v2/incremental/ticket_metric_events.json?start_time=1").await;
    assert!(me["ticket_metric_events"].as_array().unwrap().len() > 60);
    // Field shapes.
    let cf = live["custom_fields"].as_array().unwrap();
    assert_eq!(cf.len(), live["fields"].as_array().unwrap().len());
    assert!(live["via"]["source"].is_object());
    sim.shutdown().await;
}
