use std::collections::BTreeSet;

use crate::common::*;
use zendesk_sim::SimConfig;

async fn walk_cursor_list(sim: &zendesk_sim::SimHandle, path: &str, key: &str) -> Vec<u64> {
    let mut url = format!("{path}?page[size]=7");
    let mut all = Vec::new();
    for _ in 0..MAX_PAGES {
        let page = get_json(sim, &url).await;
        all.extend(record_ids(&page, key));
        if !page["meta"]["has_more"].as_bool().unwrap() {
            return all;
        }
        url = page["links"]["next"].as_str().unwrap().to_owned();
    }
    panic!("{path} still has_more after {MAX_PAGES} pages");
}

#[tokio::test]
async fn cursor_pagination_lists_match_truth() {
    let sim = start(config(150)).await;
    for (path, key, stream) in [
        ("/api/v2/groups.json", "groups", "groups"),
        (
            "/api/v2/group_memberships.json",
            "group_memberships",
            "group_memberships",
        ),
        ("/api/v2/macros.json", "macros", "macros"),
        ("/api/v2/ticket_fields.json", "ticket_fields", "ticket_fields"),
        ("/api/v2/business_hours/schedules.json", "schedules", "schedules"),
        (
            "/api/v2/channels/voice/phone_numbers.json",
            "phone_numbers",
            "talk_phone_numbers",
        ),
        (
            "/api/v2/satisfaction_ratings.json",
            "satisfaction_ratings",
            "satisfaction_ratings",
        ),
        (
            "/api/v2/deleted_tickets.json",
            "deleted_tickets",
            "deleted_tickets",
        ),
        ("/api/v2/deleted_users.json", "deleted_users", "deleted_users"),
        ("/api/v2/ticket_metrics.json", "ticket_metrics", "ticket_metrics"),
    ] {
        let all = walk_cursor_list(&sim, path, key).await;
        let set: BTreeSet<u64> = all.iter().copied().collect();
        assert_eq!(set.len(), all.len(), "{path}");
        assert_eq!(set, truth_ids(&sim, stream), "{path}");
    }
    let sla = get_json(&sim, "/api/v2/slas/policies.json").await;
    assert_eq!(ids_of(&sla, "sla_policies"), truth_ids(&sim, "sla_policies"));
    let tags = get_json(&sim, "/api/v2/tags.json?page[size]=100").await;
    assert!(tags["tags"][0]["name"].is_string() && tags["tags"][0]["count"].is_u64());
    sim.shutdown().await;
}

fn ids_of(v: &serde_json::Value, key: &str) -> BTreeSet<u64> {
    record_ids(v, key).into_iter().collect()
}

#[tokio::test]
async fn page_size_over_100_is_a_400() {
    let sim = start(config(20)).await;
    let resp = get(&sim, "/api/v2/groups.json?page[size]=101")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Offset per_page is clamped to 100.
    let page = get_json(&sim, "/api/v2/users.json?per_page=500").await;
    assert!(page["users"].as_array().unwrap().len() <= 100);
    sim.shutdown().await;
}

#[tokio::test]
async fn offset_pagination_stops_at_the_limit() {
    let sim = start(SimConfig {
        offset_pagination_limit: 30,
        ..config(200)
    })
    .await;
    let p1 = get_json(&sim, "/api/v2/users.json?per_page=10").await;
    assert_eq!(p1["previous_page"], serde_json::Value::Null);
    assert!(p1["next_page"].as_str().unwrap().contains("page=2"));
    assert!(p1["count"].as_u64().unwrap() > 30);
    let p3 = get_json(&sim, "/api/v2/users.json?per_page=10&page=3").await;
    assert_eq!(p3["users"].as_array().unwrap().len(), 10);
    let resp = get(&sim, "/api/v2/users.json?per_page=10&page=4")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn archived_and_deleted_tickets() {
    let sim = start(config(300)).await;
    let listed: BTreeSet<u64> = {
        let mut url = "/api/v2/tickets.json?page[size]=100".to_owned();
        let mut all = BTreeSet::new();
        for page_number in 1..=MAX_PAGES {
            let page = get_json(&sim, &url).await;
            all.extend(record_ids(&page, "tickets"));
            if !page["meta"]["has_more"].as_bool().unwrap() {
                break;
            }
            assert!(page_number < MAX_PAGES, "the ticket list never ends");
            url = page["links"]["next"].as_str().unwrap().to_owned();
        }
        all
    };
    let export = get_json(&sim, "/api/v2/incremental/tickets/cursor.json?start_time=1").await;
    let tickets = export["tickets"].as_array().unwrap();
    let deleted: Vec<u64> = tickets
        .iter()
        .filter(|t| t["status"] == "deleted")
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    let in_export: BTreeSet<u64> = tickets.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let archived: Vec<u64> = in_export
        .iter()
        .filter(|id| !listed.contains(id) && !deleted.contains(id))
        .copied()
        .collect();
    assert!(
        !archived.is_empty(),
        "archived tickets are in the export but not in the list"
    );
    assert!(!deleted.is_empty());
    for id in &archived {
        let t = tickets.iter().find(|t| t["id"] == *id).unwrap();
        assert_eq!(t["status"], "closed");
    }
    // Per-ticket audits work for archived tickets, 404 for deleted ones.
    let a = get_json(&sim, &format!("/api/v2/tickets/{}/audits.json", archived[0])).await;
    assert!(!a["audits"].as_array().unwrap().is_empty());
    for suffix in ["audits.json", "comments.json", "metrics.json"] {
        let resp = get(&sim, &format!("/api/v2/tickets/{}/{suffix}", deleted[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "RecordNotFound");
    }
    let resp = get(&sim, "/api/v2/tickets/999999/audits.json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // First audit carries the first comment.
    let live = listed.iter().next().unwrap();
    let audits = get_json(
        &sim,
        &format!("/api/v2/tickets/{live}/audits.json?page[size]=100"),
    )
    .await;
    assert_eq!(audits["audits"][0]["events"][0]["type"], "Comment");
    let comments = get_json(&sim, &format!("/api/v2/tickets/{live}/comments.json")).await;
    assert!(!comments["comments"].as_array().unwrap().is_empty());
    let metrics = get_json(&sim, &format!("/api/v2/tickets/{live}/metrics.json")).await;
    assert_eq!(metrics["ticket_metric"]["ticket_id"], *live);
    // The account-wide audit list leaves archived tickets out.
    let mut url = "/api/v2/ticket_audits.json?limit=1000".to_owned();
    let mut seen_tickets = BTreeSet::new();
    for page_number in 1..=MAX_PAGES {
        let page = get_json(&sim, &url).await;
        for a in page["audits"].as_array().unwrap() {
            seen_tickets.insert(a["ticket_id"].as_u64().unwrap());
        }
        match page["before_url"].as_str() {
            Some(u) => url = u.to_owned(),
            None => break,
        }
        assert!(page_number < MAX_PAGES, "the audit list never ends");
    }
    assert!(archived.iter().all(|id| !seen_tickets.contains(id)));
    assert!(seen_tickets.iter().all(|id| listed.contains(id)));
    sim.shutdown().await;
}
