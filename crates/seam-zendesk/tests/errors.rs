//! Credentials, subdomains, plan gates and roles.

use crate::common::*;
use seam_core::{ErrorKind, Source, State};
use serde_json::json;
use zendesk_sim::{Role, SimConfig};

#[tokio::test]
async fn a_wrong_token_is_fatal_and_names_the_email() {
    let sim = start(sim_config(10)).await;
    let src = source(&sim, json!({"api_token": "wrong"}));
    let e = src.check().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert_eq!(
        e.to_string(),
        "zendesk rejected the API token for admin@acme.test (401): check the email and token in Integration Settings"
    );
    let e = src.discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    // A read fails too, with the same message, and the bookmark stays where it was.
    let catalog = {
        let ok = source(&sim, json!({}));
        all_streams(&ok).await
    };
    let run = read(&src, &catalog, State::default()).await;
    let e = run.result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.to_string().contains("admin@acme.test (401)"), "{e}");
    assert!(run
        .messages
        .iter()
        .all(|m| !matches!(m, seam_core::singer::Message::Record(_))));
}

#[tokio::test]
async fn an_unknown_subdomain_is_a_config_error() {
    let sim = start(sim_config(10)).await;
    let src = source(&sim, json!({"subdomain": "nope"}));
    let e = src.check().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.to_string().contains("nope.zendesk.com does not exist"), "{e}");
}

#[tokio::test]
async fn an_agent_is_told_it_is_not_an_admin() {
    let sim = start(SimConfig {
        role: Role::Agent,
        ..sim_config(10)
    })
    .await;
    let src = source(&sim, json!({}));
    let e = src.check().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.to_string().contains("not an admin"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_gated_streams_are_skipped_and_the_rest_goes_on() {
    let gated = vec![
        "sla_policies".to_owned(),
        "ticket_forms".to_owned(),
        "talk".to_owned(),
        "custom_fields".to_owned(),
    ];
    let sim = start(SimConfig {
        gated,
        ..sim_config(60)
    })
    .await;
    let src = source(&sim, json!({}));
    src.check().await.unwrap();
    // Custom-field definitions are gated: discovery still works (a warning), fields stay untyped.
    let catalog = all_streams(&src).await;
    let run = read(&src, &catalog, State::default()).await;
    let summary = run.summary().clone();
    let skipped: Vec<&str> = summary.skipped.keys().map(String::as_str).collect();
    for s in [
        "sla_policies",
        "ticket_forms",
        "talk_phone_numbers",
        "user_fields",
        "organization_fields",
    ] {
        assert!(skipped.contains(&s), "{s} not skipped: {skipped:?}");
    }
    assert!(
        summary.skipped["ticket_forms"].contains("You do not have access"),
        "{:?}",
        summary.skipped
    );
    let truth = sim.truth();
    assert_matches_truth(
        &run,
        &truth,
        &[
            "sla_policies",
            "ticket_forms",
            "talk_phone_numbers",
            "user_fields",
            "organization_fields",
        ],
    );
}

#[tokio::test]
async fn oauth_tokens_are_sent_as_bearer() {
    let sim = start(SimConfig {
        oauth_token: Some("oauth-1".into()),
        ..sim_config(10)
    })
    .await;
    let ok = source(
        &sim,
        json!({"email": null, "api_token": null, "access_token": "oauth-1"}),
    );
    ok.check().await.unwrap();
    let bad = source(
        &sim,
        json!({"email": null, "api_token": null, "access_token": "expired"}),
    );
    let e = bad.check().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.to_string().contains("OAuth access token (401)"), "{e}");
}

#[tokio::test]
async fn a_cancelled_read_stops_cleanly() {
    let sim = start(sim_config(50)).await;
    let src = source(&sim, json!({}));
    let catalog = all_streams(&src).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    cancel.cancel();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let summary = src.read(&catalog, State::default(), tx, cancel).await.unwrap();
    drain.await.unwrap();
    assert!(summary.records.values().sum::<u64>() == 0, "{summary:?}");
}
