//! A full sync equals the simulator's truth for every stream, within the request budget.

use crate::common::*;
use seam_core::singer::Message;
use seam_core::{Source, State};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_matches_truth_for_every_stream() {
    let sim = start(sim_config(2500)).await;
    let src = source(&sim, json!({}));
    let catalog = all_streams(&src).await;
    sim.reset_stats();
    let run = read(&src, &catalog, State::default()).await;
    let summary = run.summary().clone();
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    let truth = sim.truth();
    assert_matches_truth(&run, &truth, &[]);
    check_contract(&run.messages);
    assert_no_duplicates(&run);

    // Full-table streams on a first sync: ACTIVATE_VERSION before and after, records carry the version.
    for stream in ["tags", "sla_policies", "talk_phone_numbers"] {
        let versions: Vec<i64> = run
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::ActivateVersion { stream: s, version } if s == stream => Some(*version),
                _ => None,
            })
            .collect();
        assert_eq!(versions.len(), 2, "{stream}");
        assert_eq!(versions[0], versions[1]);
        assert!(run.messages.iter().any(
            |m| matches!(m, Message::Record(r) if r.stream == stream && r.version == Some(versions[0]))
        ));
    }
    // Tickets leave out the duplicate `fields` array and the side-loaded metric set; custom
    // fields are kept as delivered.
    let ticket = run.messages.iter().find_map(|m| match m {
        Message::Record(r) if r.stream == "tickets" => Some(r.value().unwrap()),
        _ => None,
    });
    let ticket = ticket.unwrap();
    assert!(ticket.get("fields").is_none() && ticket.get("metric_set").is_none());
    assert!(ticket["custom_fields"].is_array());
    // Soft deletes carry _sdc_deleted_at.
    let deleted = run.messages.iter().find_map(|m| match m {
        Message::Record(r) if r.stream == "deleted_tickets" => Some(r.value().unwrap()),
        _ => None,
    });
    assert!(deleted.unwrap()["_sdc_deleted_at"].is_string());
    // Child streams say who their parent is.
    assert_eq!(catalog.get("ticket_comments").unwrap().parent(), Some("tickets"));
    assert_eq!(catalog.get("user_identities").unwrap().parent(), Some("users"));
    // Users' custom fields are typed from the definitions.
    let uf = catalog
        .get("users")
        .unwrap()
        .schema
        .property("user_fields")
        .unwrap();
    assert!(uf.properties.as_ref().is_some_and(|p| !p.is_empty()));

    // Requests for tickets + users + organizations + comments + metrics + audits.
    let stats = sim.stats();
    let core: u64 = [
        "/api/v2/incremental/tickets/cursor",
        "/api/v2/incremental/users/cursor",
        "/api/v2/incremental/organizations",
        "/api/v2/incremental/ticket_events",
        "/api/v2/deleted_tickets",
    ]
    .iter()
    .map(|e| stats["endpoints"][*e]["requests"].as_u64().unwrap_or(0))
    .sum();
    let per_1000 = core as f64 * 1000.0 / 2500.0;
    eprintln!(
        "requests: total {} core {core} ({per_1000:.1} per 1,000 tickets); stats {stats}",
        summary.requests
    );
    assert!(per_1000 <= 10.0, "{per_1000} requests per 1,000 tickets: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ticket_audits_path_matches_truth() {
    let sim = start(sim_config(150)).await;
    let src = source(&sim, json!({"comments_source": "ticket_audits"}));
    let mut catalog = all_streams(&src).await;
    for e in &mut catalog.streams {
        e.set_selected(["tickets", "ticket_comments", "ticket_audits"].contains(&e.tap_stream_id.as_str()));
    }
    let run = read(&src, &catalog, State::default()).await;
    run.summary();
    let truth = sim.truth();
    for s in ["tickets", "ticket_comments", "ticket_audits"] {
        assert_eq!(run.key_set(s), truth_keys(&truth, s), "{s}");
    }
    assert_no_duplicates(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_selection_keeps_only_selected_fields() {
    let sim = start(sim_config(20)).await;
    let src = source(&sim, json!({}));
    let mut catalog = src.discover().await.unwrap();
    let e = catalog.get_mut("groups").unwrap();
    e.set_selected(true);
    e.set_field_selected("name", true);
    for f in [
        "url",
        "is_public",
        "description",
        "default",
        "deleted",
        "created_at",
    ] {
        e.set_field_selected(f, false);
    }
    let run = read(&src, &catalog, State::default()).await;
    run.summary();
    let rec = run.messages.iter().find_map(|m| match m {
        Message::Record(r) => Some(r.value().unwrap()),
        _ => None,
    });
    let rec = rec.unwrap();
    let mut keys: Vec<&str> = rec.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["id", "name", "updated_at"]);
}
