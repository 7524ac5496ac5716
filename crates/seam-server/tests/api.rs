//! The API over real HTTP (127.0.0.1:0, reqwest), with the fake source and destination.

use crate::{Harness, Logs, ZENDESK_TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// The seed flow: create → "Success!" → select tables → Run Extraction Now → job, logs, loads,
/// usage; then the integration is Active with its next run 30 minutes after the job's start.
#[tokio::test]
async fn create_check_select_run_and_read_everything_back() {
    let h = Harness::start().await;
    let api = &h.api;
    let (source, check) = api.create("Stitch Zendesk", "acme").await;
    assert_eq!(
        source["name"], "stitch_zendesk",
        "schema name derived by the core rule"
    );
    assert_eq!(source["type"], "platform.zendesk");
    assert_eq!(
        source["properties"]["frequency_in_minutes"], "30",
        "default frequency"
    );
    assert!(source["properties"]["start_date"]
        .as_str()
        .unwrap()
        .ends_with("T00:00:00.000Z"));
    assert_eq!(check["status"], "succeeded");
    assert_eq!(check["message"], "Success!");
    assert_eq!(check["error"], false);
    assert_eq!(check["check_exit_status"], 0);
    assert_eq!(check["discovery_exit_status"], 0);
    let id = source["id"].as_i64().unwrap();

    // Credentials reached the source decrypted.
    let spec = h.factory.specs.lock().unwrap()[0].clone();
    assert_eq!(spec.credentials.get("api_token").unwrap().expose(), ZENDESK_TOKEN);

    let (_, s) = api.get(&format!("/v4/sources/{id}")).await;
    assert_eq!(s["status"], "Not Configured");
    assert_eq!(s["report_card"]["current_step_type"], "field_selection");
    assert!(s["schedule"]["next_fire_time"].is_null());

    let (status, streams) = api.get(&format!("/v4/sources/{id}/streams")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(streams.as_array().unwrap().len(), 2);
    assert_eq!(streams[0]["key_properties"], json!(["id"]));

    // Select tickets without `subject`; try to drop the primary key too (it stays).
    let (status, detail) = api
        .put(
            &format!("/v4/sources/{id}/streams/tickets"),
            json!({"metadata": [{"breadcrumb": [], "metadata": {"selected": true}},
                {"breadcrumb": ["properties", "subject"], "metadata": {"selected": false}},
                {"breadcrumb": ["properties", "id"], "metadata": {"selected": false}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let field = |name: &str| {
        detail["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(field("subject")["selected"], false);
    assert_eq!(field("id")["selected"], true, "primary keys are always selected");
    assert_eq!(field("id")["inclusion"], "automatic");

    // The scheduler starts the first job as soon as something is selected (Run Extraction Now comes
    // below, for the second one).
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
            j.as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(|j| j["status"] != "running"))
        })
        .await;
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    let job = &jobs[0];
    assert_eq!(job["trigger"], "scheduled", "{job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["discovery_exit_status"], 0);
    assert_eq!(job["tap_exit_status"], 0);
    assert_eq!(job["target_exit_status"], 0);
    // 25 tickets + 50 tickets__tags rows: subtables count.
    assert_eq!(job["rows_loaded"], 75, "{job}");
    assert_eq!(h.factory.rows("stitch_zendesk", "tickets"), 25);
    assert_eq!(h.factory.rows("stitch_zendesk", "users"), 0, "users not selected");
    let stored = h.factory.warehouse.lock().unwrap().tables["stitch_zendesk"]["tickets"]["1"].clone();
    assert!(
        stored.get("subject").is_none(),
        "de-selected field not extracted: {stored}"
    );
    let job_id = job["job_id"].as_i64().unwrap();

    // The extraction log, in Stitch's line format.
    let (_, logs) = api
        .get(&format!("/v4/sources/{id}/extractions/{job_id}/logs"))
        .await;
    let lines: Vec<String> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap().to_owned())
        .collect();
    let re_ok = |l: &str| {
        // 2026-11-17 16:44:41,159Z tap - INFO ...
        l.len() > 30
            && &l[4..5] == "-"
            && &l[10..11] == " "
            && &l[19..20] == ","
            && &l[23..24] == "Z"
            && ["main - ", "tap - ", "target - "]
                .iter()
                .any(|p| l[25..].starts_with(p))
    };
    assert!(lines.iter().all(|l| re_ok(l)), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("main - INFO State update: bookmarks.tickets = ")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("tap - INFO Running discovery")));
    let (_, text) = api
        .get(&format!("/v4/sources/{id}/extractions/{job_id}/logs?format=text"))
        .await;
    assert!(text.as_str().unwrap().lines().count() == lines.len());

    // Loads per table, with subtables and the max bookmark.
    let (_, loads) = api.get(&format!("/v4/sources/{id}/loads")).await;
    let load = |t: &str| {
        loads
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["stream_name"] == t)
            .unwrap()
            .clone()
    };
    assert_eq!(load("tickets")["rows_loaded"], 25);
    assert_eq!(load("tickets__tags")["rows_loaded"], 50);
    assert_eq!(load("tickets")["source_name"], "stitch_zendesk");
    assert!(
        load("tickets")["max_bookmark_value"]
            .as_str()
            .unwrap()
            .contains("id: 25"),
        "{loads}"
    );
    assert_eq!(
        load("tickets__tags")["max_bookmark_value"],
        "Bookmark Unavailable"
    );
    assert!(load("tickets")["last_batch_loaded_at"].is_string());
    assert!(load("tickets")["error_state"].is_null());

    // Usage: rows per day, the biggest table first.
    let (_, usage) = api.get("/v4/usage").await;
    assert_eq!(usage["rows_used"], 75, "{usage}");
    assert_eq!(usage["by_table"][0]["table_name"], "tickets__tags");
    assert_eq!(usage["by_source"][0]["name"], "stitch_zendesk");
    assert_eq!(usage["by_day"].as_array().unwrap().len(), 1);

    // The integration is Active; the next run counts from the job's start.
    let (_, s) = api.get(&format!("/v4/sources/{id}")).await;
    assert_eq!(s["status"], "Active");
    assert_eq!(s["report_card"]["current_step_type"], "fully_configured");
    assert_eq!(s["last_sync_started_at"], job["start_time"]);
    let start = chrono::DateTime::parse_from_rfc3339(job["start_time"].as_str().unwrap()).unwrap();
    let next =
        chrono::DateTime::parse_from_rfc3339(s["schedule"]["next_fire_time"].as_str().unwrap()).unwrap();
    assert_eq!(next - start, chrono::Duration::minutes(30));

    // A second run resumes from the bookmark: nothing new, nothing duplicated.
    let (status, _) = api.post(&format!("/v4/sources/{id}/sync"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    api.wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
        j.as_array()
            .is_some_and(|a| a.len() == 2 && a[0]["status"] != "running")
    })
    .await;
    assert_eq!(h.factory.rows("stitch_zendesk", "tickets"), 25);

    // /metrics counts jobs and rows.
    let metrics = reqwest::get(format!("{}/metrics", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "seam_jobs_total{{source_id=\"{id}\",outcome=\"succeeded\"}} 2"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("seam_rows_loaded_total{{source_id=\"{id}\"}} 75")),
        "{metrics}"
    );
    // The queue as the metastore holds it: nothing waits, nothing runs.
    assert!(metrics.contains("\nseam_queue_pending_jobs 0\n"), "{metrics}");
    assert!(
        metrics.contains("\nseam_queue_oldest_pending_seconds 0\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("\nseam_jobs_running{"), "{metrics}");
    assert!(
        metrics.contains("seam_http_requests_total{route=\"POST /v4/sources\",status=\"201\"} 1"),
        "{metrics}"
    );
    h.service.shutdown().await;
}

#[tokio::test]
async fn check_failures_say_why() {
    let h = Harness::start().await;
    for (sub, needle) in [
        ("badauth", "401"),
        ("notadmin", "not an admin"),
        ("unknown", "not a Zendesk account"),
        ("offline", "network: "),
    ] {
        let (source, check) = h.api.create(&format!("Zendesk {sub}"), sub).await;
        assert_eq!(check["status"], "failed", "{sub}");
        assert_eq!(check["error"], true);
        assert_eq!(check["check_exit_status"], 1);
        assert!(
            check["message"].as_str().unwrap().contains(needle),
            "{sub}: {check}"
        );
        assert_eq!(check["tap_error_message"], check["check_error_message"]);
        let (_, streams) = h.api.get(&format!("/v4/sources/{}/streams", source["id"])).await;
        assert_eq!(streams, json!([]), "no discovery after a failed check");
    }
    h.service.shutdown().await;
}

#[tokio::test]
async fn validation_errors_use_stitch_codes() {
    let h = Harness::start().await;
    let api = &h.api;
    let body = |display: &str, props: Value| json!({"display_name": display, "type": "platform.zendesk", "properties": props});
    let good = json!({"subdomain": "acme", "email": "a@b.co", "api_token": "t"});
    let err = |v: &Value| {
        (
            v["error"].as_str().unwrap_or_default().to_owned(),
            v["data"]["message"].as_str().unwrap_or_default().to_owned(),
        )
    };

    let (s, v) = api.post("/v4/sources", body("####", good.clone())).await;
    assert_eq!(
        (s, err(&v).0.as_str()),
        (StatusCode::BAD_REQUEST, "InvalidDisplayName"),
        "{v}"
    );
    assert!(err(&v).1.contains("(#### -> )"));

    let (s, _) = api.post("/v4/sources", body("Zendesk", good.clone())).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = api.post("/v4/sources", body("ZENDESK!!!", good.clone())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        err(&v),
        (
            "InvalidName".into(),
            "non-unique name after deriving it from display_name (ZENDESK!!! -> zendesk)".into()
        )
    );
    let (s, v) = api
        .post(
            "/v4/sources",
            json!({"display_name": "Other", "name": "zendesk", "properties": good}),
        )
        .await;
    assert_eq!(
        (s, err(&v)),
        (
            StatusCode::BAD_REQUEST,
            ("InvalidName".into(), "non-unique name (zendesk)".into())
        )
    );
    let (_, v) = api
        .post(
            "/v4/sources",
            json!({"display_name": "Other", "name": "Bad Name", "properties": good}),
        )
        .await;
    assert_eq!(err(&v).0, "InvalidName");
    let (s, v) = api
        .post(
            "/v4/sources",
            json!({"display_name": "Explicit", "name": "my_schema", "properties": good}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["name"], "my_schema", "Use a different schema name?");

    for (props, code, needle) in [
        (
            json!({"subdomain": "evil.com/x", "email": "a@b.co", "api_token": "t"}),
            "InvalidProperties",
            "site prefix",
        ),
        (
            json!({"subdomain": "127.0.0.1", "email": "a@b.co", "api_token": "t"}),
            "InvalidProperties",
            "subdomain",
        ),
        (
            json!({"subdomain": "acme"}),
            "InvalidProperties",
            "credentials are required",
        ),
        (json!({"subdomain": "acme", "access_token": "oauth"}), "", ""),
        (
            json!({"subdomain": "acme", "email": "a@b.co", "api_token": "t", "frequency_in_minutes": "45"}),
            "InvalidProperties",
            "30, 60, 180",
        ),
        (
            json!({"subdomain": "acme", "email": "a@b.co", "api_token": "t", "frequency_in_minutes": 30, "anchor_time": "2026-01-01T03:30:00Z"}),
            "InvalidProperties",
            "anchor_time needs",
        ),
        (
            json!({"subdomain": "acme", "email": "a@b.co", "api_token": "t", "cron_expression": "* * * * * *"}),
            "InvalidCronExpression",
            "cron_expression \"* * * * * *\" is invalid: ",
        ),
        (
            json!({"subdomain": "acme", "email": "a@b.co", "api_token": "t", "cron_expression": "0 0 12 ? * MON-FRI *"}),
            "",
            "",
        ),
        (
            json!({"subdomain": "acme", "email": "a@b.co", "api_token": "t", "start_date": "2025-01-01T10:00:00Z"}),
            "InvalidProperties",
            "midnight",
        ),
        (
            json!({"subdomain": "acme", "email": "a@b.co", "api_token": "t", "colour": "red"}),
            "InvalidProperties",
            "unknown property colour",
        ),
    ] {
        let (s, v) = api
            .post(
                "/v4/sources",
                body(&format!("Case {}", rand_suffix()), props.clone()),
            )
            .await;
        if code.is_empty() {
            assert_eq!(s, StatusCode::CREATED, "{props} -> {v}");
        } else {
            assert_eq!(s, StatusCode::BAD_REQUEST, "{props} -> {v}");
            assert_eq!(err(&v).0, code, "{props} -> {v}");
            assert!(err(&v).1.contains(needle), "{props} -> {v}");
        }
    }
    let (s, v) = api
        .post("/v4/sources", json!({"display_name": "X", "extra": 1}))
        .await;
    assert_eq!((s, err(&v).0.as_str()), (StatusCode::BAD_REQUEST, "InvalidBody"));
    let (s, v) = api.call(reqwest::Method::POST, "/v4/sources", None).await;
    assert_eq!(
        (s, err(&v).0.as_str()),
        (StatusCode::BAD_REQUEST, "InvalidBody"),
        "{v}"
    );

    // PUT: only display_name, properties, paused_at (and confirm_reset).
    let (_, list) = api.get("/v4/sources").await;
    let id = list[0]["id"].as_i64().unwrap();
    let (s, v) = api
        .put(&format!("/v4/sources/{id}"), json!({"name": "renamed"}))
        .await;
    assert_eq!((s, err(&v).0.as_str()), (StatusCode::BAD_REQUEST, "InvalidBody"));
    assert!(err(&v)
        .1
        .starts_with("PUT body many only include the keys: display_name, properties, and paused_at"));
    let (s, v) = api
        .put(&format!("/v4/sources/{id}"), json!({"display_name": "!!!"}))
        .await;
    assert_eq!(
        (s, err(&v)),
        (
            StatusCode::BAD_REQUEST,
            ("InvalidDisplayName".into(), "invalid display_name (!!!)".into())
        )
    );
    let (s, v) = api
        .put(
            &format!("/v4/sources/{id}"),
            json!({"display_name": "Renamed Zendesk"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["display_name"].as_str(), v["name"].as_str()),
        (Some("Renamed Zendesk"), Some("zendesk")),
        "schema name is immutable"
    );

    // Not found, unauthorized, unknown routes: all JSON.
    let (s, v) = api.get("/v4/sources/9999").await;
    assert_eq!((s, err(&v).0.as_str()), (StatusCode::NOT_FOUND, "NotFound"));
    let (s, v) = api.get("/v4/sources/abc").await;
    assert_eq!((s, err(&v).0.as_str()), (StatusCode::NOT_FOUND, "NotFound"));
    let (s, v) = api.get("/v4/nothing-here").await;
    assert_eq!((s, err(&v).0.as_str()), (StatusCode::NOT_FOUND, "NotFound"));
    let anon = reqwest::get(format!("{}/v4/sources", api.base)).await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    let v: Value = anon.json().await.unwrap();
    assert_eq!(v["error"], "Unauthorized");
    let wrong = reqwest::Client::new()
        .get(format!("{}/v4/sources", api.base))
        .bearer_auth("seam_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    h.service.shutdown().await;
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("n{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Pause, manual run while paused, resume; start-date change needs confirmation and resets bookmarks;
/// delete keeps the warehouse data and frees the name.
#[tokio::test]
async fn pause_reset_and_delete() {
    let h = Harness::start().await;
    let api = &h.api;
    let (source, _) = api.create("Support", "acme").await;
    let id = source["id"].as_i64().unwrap();
    let (s, v) = api
        .put(
            &format!("/v4/sources/{id}"),
            json!({"paused_at": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["paused_at"].is_string());
    api.select_all(id).await;
    let (_, v) = api.get(&format!("/v4/sources/{id}")).await;
    assert_eq!(v["status"], "Paused");
    assert!(
        v["schedule"]["next_fire_time"].is_null(),
        "paused: nothing scheduled"
    );
    assert_eq!(v["sync_status"], "Not Syncing");
    let (_, jobs) = api.get(&format!("/v4/sources/{id}/extractions")).await;
    assert_eq!(jobs, json!([]), "no scheduled job while paused");
    let (s, _) = api.post(&format!("/v4/sources/{id}/sync"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "manual runs are allowed while paused");
    api.wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
        j[0]["status"] == "succeeded"
    })
    .await;
    assert_eq!(h.factory.rows("support", "tickets"), 25);
    let (_, v) = api
        .put(&format!("/v4/sources/{id}"), json!({"paused_at": null}))
        .await;
    assert!(v["paused_at"].is_null());
    assert!(
        v["schedule"]["next_fire_time"].is_string(),
        "resumed: scheduled again"
    );

    // Bookmarks exist; a new start date without confirmation is refused with an explanation.
    let stored = h
        .service
        .state()
        .metastore
        .get_integration(id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.state.is_some());
    let (s, v) = api
        .put(
            &format!("/v4/sources/{id}"),
            json!({"properties": {"start_date": "2024-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"], "ResetRequired");
    assert!(
        v["data"]["message"].as_str().unwrap().contains("confirm_reset"),
        "{v}"
    );
    let (s, v) = api
        .put(
            &format!("/v4/sources/{id}"),
            json!({"properties": {"start_date": "2024-01-01T00:00:00Z"}, "confirm_reset": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["properties"]["start_date"], "2024-01-01T00:00:00.000Z");
    let stored = h
        .service
        .state()
        .metastore
        .get_integration(id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.state.is_none(),
        "bookmarks reset: full re-replication next"
    );
    // Other settings change without a reset.
    let (s, v) = api
        .put(
            &format!("/v4/sources/{id}"),
            json!({"properties": {"frequency_in_minutes": "60"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["properties"]["frequency_in_minutes"], "60");

    // Delete: the warehouse keeps the data; the name can be reused.
    api.wait_for(&format!("/v4/sources/{id}"), |s| {
        s["sync_status"] != "In Progress"
    })
    .await;
    let (s, v) = api.delete(&format!("/v4/sources/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["deleted_at"].is_string());
    assert!(
        h.factory.rows("support", "tickets") > 0,
        "data stays in the warehouse"
    );
    let (_, list) = api.get("/v4/sources").await;
    assert_eq!(list, json!([]));
    let (again, _) = api.create("Support", "acme").await;
    assert_eq!(again["name"], "support");
    assert_ne!(again["id"], source["id"]);
    h.service.shutdown().await;
}

/// A failing job: CRITICAL log line, Failing status, a notification in-app and on the webhook; a load
/// error shows on the table's load report.
#[tokio::test]
async fn failures_notify_in_app_and_by_webhook() {
    // A webhook receiver.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let h = Harness::start().await;
    let api = &h.api;
    let (s, v) = api
        .put("/v4/settings", json!({"notification_webhook_url": hook}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .put("/v4/settings", json!({"notification_webhook_url": "ftp://x"}))
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidBody"))
    );

    let (source, _) = api.create("Flaky", "failing").await;
    let id = source["id"].as_i64().unwrap();
    api.select_all(id).await;
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
            j[0]["status"] == "failed"
        })
        .await;
    assert_eq!(jobs[0]["tap_exit_status"], 1);
    assert!(jobs[0]["error_message"].as_str().unwrap().contains("503"));
    let job_id = jobs[0]["job_id"].as_i64().unwrap();
    let (_, logs) = api
        .get(&format!("/v4/sources/{id}/extractions/{job_id}/logs"))
        .await;
    let last = logs["lines"].as_array().unwrap().last().unwrap()["line"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        last.contains("tap - CRITICAL stream tickets: zendesk answered 503"),
        "{last}"
    );
    assert_eq!(logs["errors"].as_array().unwrap().len(), 1);
    assert_eq!(
        h.factory.rows("flaky", "tickets"),
        10,
        "the page committed before the failure is kept"
    );
    let (_, s) = api.get(&format!("/v4/sources/{id}")).await;
    assert_eq!(s["status"], "Failing");
    assert_eq!(s["consecutive_failures"], 1);

    let notes = api
        .wait_for("/v4/notifications", |n| {
            n.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(notes[0]["code"], "platform.exit_status");
    assert_eq!(notes[0]["level"], "critical");
    assert_eq!(
        notes[0]["subject"],
        "We're encountering some errors with your Flaky integration"
    );
    seam_test_support::wait_until_async(
        std::time::Duration::from_secs(30),
        "the webhook to receive the notification",
        async || !received.lock().unwrap().is_empty(),
    )
    .await;
    assert_eq!(
        received.lock().unwrap()[0]["code"],
        "platform.exit_status",
        "delivered to the webhook"
    );

    // A destination error: target CRITICAL, loading-error notification, error on the table's load.
    let (source, _) = api.create("badload", "acme").await;
    let id = source["id"].as_i64().unwrap();
    api.select_all(id).await;
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
            j[0]["status"] == "failed"
        })
        .await;
    assert_eq!(jobs[0]["target_exit_status"], 1, "{jobs}");
    let (_, loads) = api.get(&format!("/v4/sources/{id}/loads")).await;
    let tickets = loads
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["stream_name"] == "tickets")
        .unwrap();
    assert!(
        tickets["error_state"]["message"]
            .as_str()
            .unwrap()
            .contains("conflicting types"),
        "{loads}"
    );
    let notes = api
        .wait_for("/v4/notifications", |n| n[0]["code"] == "loading-error")
        .await;
    assert_eq!(
        notes[0]["subject"],
        "We're having trouble writing to your data warehouse"
    );
    let note_id = notes[0]["id"].as_i64().unwrap();
    let (s, _) = api
        .post(&format!("/v4/notifications/{note_id}/dismiss"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, after) = api.get("/v4/notifications").await;
    assert!(after.as_array().unwrap().iter().all(|n| n["id"] != note_id));
    h.service.shutdown().await;
}

/// Usage notifications at 70 / 90 / 100 %, once each per period; replication goes on at the limit
/// unless asked to stop.
#[tokio::test]
async fn usage_thresholds_notify_once_each() {
    let h = Harness::start().await;
    let api = &h.api;
    // One job loads 75 rows (tickets + tags) + 25 users = 100.
    let (s, _) = api.put("/v4/settings", json!({"row_limit": 130})).await;
    assert_eq!(s, StatusCode::OK);
    let (source, _) = api.create("Usage", "acme").await;
    let id = source["id"].as_i64().unwrap();
    api.select_all(id).await;
    api.wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
        j[0]["status"] == "succeeded"
    })
    .await;
    let notes = api
        .wait_for("/v4/notifications", |n| {
            n.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(notes[0]["code"], "usage-nearing-limit");
    assert!(
        notes[0]["message"].as_str().unwrap().contains("(70 %)"),
        "{notes}"
    );
    let (_, usage) = api.get("/v4/usage").await;
    assert_eq!(usage["rows_used"], 100);
    assert_eq!(usage["row_limit"], 130);

    // Re-replicate everything: 200 rows > 130 → "Row Limit Reached", and replication continued.
    api.put(
        &format!("/v4/sources/{id}"),
        json!({"properties": {"start_date": "2024-01-01T00:00:00Z"}, "confirm_reset": true}),
    )
    .await;
    let (s, _) = api.post(&format!("/v4/sources/{id}/sync"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    api.wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
        j.as_array().unwrap().len() == 2 && j[0]["status"] == "succeeded"
    })
    .await;
    let notes = api
        .wait_for("/v4/notifications", |n| n.as_array().unwrap().len() >= 2)
        .await;
    assert_eq!(notes[0]["code"], "usage-reached-limit", "{notes}");
    assert_eq!(
        notes.as_array().unwrap().len(),
        2,
        "90 % was passed in the same job: one notification for the highest"
    );
    let (_, settings) = api.get("/v4/settings").await;
    assert_eq!(settings["stop_replication_at_limit"], false);
    h.service.shutdown().await;
}

/// Live progress and Stop Extraction on a slow job (each page waits a minute: the test stops it
/// long before the end).
#[tokio::test]
async fn progress_and_stop_extraction() {
    let h = Harness::start().await;
    let api = &h.api;
    let (source, _) = api.create("Slow", "slow").await;
    let id = source["id"].as_i64().unwrap();
    let (s, v) = api.get(&format!("/v4/sources/{id}/extractions/current")).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFound"))
    );
    let (s, v) = api.post(&format!("/v4/sources/{id}/sync"), json!({})).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("NotConfigured")),
        "nothing selected yet"
    );
    api.select_all(id).await;
    let progress = api
        .wait_for(&format!("/v4/sources/{id}/extractions/current"), |p| {
            p["phase"] == "extraction"
        })
        .await;
    assert_eq!(progress["source_id"], id);
    assert_eq!(progress["stopping"], false);
    let (s, v) = api.post(&format!("/v4/sources/{id}/sync"), json!({})).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("Conflict")),
        "one job at a time"
    );
    let (_, s) = api.get(&format!("/v4/sources/{id}")).await;
    assert_eq!(s["sync_status"], "In Progress");
    let (s, v) = api.delete(&format!("/v4/sources/{id}/sync")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
            j[0]["status"] != "running"
        })
        .await;
    assert_eq!(jobs[0]["status"], "cancelled");
    let url = format!("{}/v4/sources/{id}/extractions/current", api.base);
    seam_test_support::wait_until_async(
        std::time::Duration::from_secs(30),
        "the current extraction to be gone (404)",
        async || {
            let r = api.client.get(&url).bearer_auth(&api.token).send().await.unwrap();
            r.status() == StatusCode::NOT_FOUND
        },
    )
    .await;
    let (s, _) = api.delete(&format!("/v4/sources/{id}/sync")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    h.service.shutdown().await;
}

#[tokio::test]
async fn openapi_lists_every_route_and_every_route_answers() {
    let h = Harness::start().await;
    let doc = h.api.openapi().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut count = 0;
    for r in seam_server::api::ROUTES {
        assert!(
            paths[r.path][r.method].is_object(),
            "{} {} missing",
            r.method,
            r.path
        );
        count += 1;
        let path = r
            .path
            .replace("{id}", "1")
            .replace("{job_id}", "1")
            .replace("{stream}", "tickets");
        let (s, v) = h
            .api
            .call(r.method.to_uppercase().parse().unwrap(), &path, None)
            .await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{} {path}", r.method);
        let msg = v["data"]["message"].as_str().unwrap_or_default();
        assert!(
            !msg.contains("no such route") && !msg.contains("does not accept"),
            "{} {path}: {v}",
            r.method
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, count);
    for p in [
        "/v4/sources",
        "/v4/sources/{id}/sync",
        "/v4/sources/{id}/extractions/current",
        "/v4/usage",
        "/health",
    ] {
        assert!(paths.contains_key(p), "{p}");
    }
    let health: Value = reqwest::get(format!("{}/health", h.api.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    h.service.shutdown().await;
}

/// The API token is printed only on the first start and stored hashed; the Zendesk credential never
/// appears in an API response, a log line, an extraction log or the metastore file.
#[tokio::test]
async fn credentials_never_leak() {
    // Capture every log line of the process (nextest runs each test in its own process).
    let captured = Logs::default();
    let _guard = captured.capture();

    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_in(dir, crate::fakes::FakeFactory::default(), None).await;
    let api = &h.api;
    let (source, check) = api.create("Secret Keeper", "acme").await;
    assert_eq!(check["status"], "succeeded");
    let id = source["id"].as_i64().unwrap();
    api.put(
        &format!("/v4/sources/{id}"),
        json!({"properties": {"api_token": format!("{ZENDESK_TOKEN}-2")}}),
    )
    .await;
    api.wait_for(&format!("/v4/sources/{id}/last-connection-check"), |c| {
        c["status"] != "running"
    })
    .await;
    api.select_all(id).await;
    let jobs = api
        .wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
            j[0]["status"] == "succeeded"
        })
        .await;
    let job_id = jobs[0]["job_id"].as_i64().unwrap();
    // Read everything back.
    for path in [
        format!("/v4/sources/{id}"),
        "/v4/sources".to_owned(),
        format!("/v4/sources/{id}/last-connection-check"),
        format!("/v4/sources/{id}/streams/tickets"),
        format!("/v4/sources/{id}/extractions/{job_id}/logs?format=text"),
        format!("/v4/sources/{id}/extractions/{job_id}/logs"),
        format!("/v4/sources/{id}/loads"),
        "/v4/usage".to_owned(),
        "/v4/settings".to_owned(),
        "/v4/notifications".to_owned(),
    ] {
        api.get(&path).await;
    }
    let api_token = api.token.clone();
    let data = h.dir.path().join("data");
    h.service.shutdown().await;

    let seen = api.seen.lock().unwrap().join("\n");
    assert!(seen.contains("Secret Keeper"), "responses were captured");
    assert!(
        !seen.contains("zd-TOKEN"),
        "a credential came back in an API response"
    );
    assert!(!seen.contains(&api_token));
    let logs = captured.text();
    assert!(logs.contains("integration created"), "logs were captured: {logs}");
    assert!(!logs.contains("zd-TOKEN"), "a credential reached the logs");
    assert!(!logs.contains(&api_token), "the API token reached the logs");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        files.push(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for f in &files {
        assert!(
            !f.windows(8).any(|w| w == b"zd-TOKEN"),
            "a credential is stored in clear"
        );
        assert!(
            !f.windows(api_token.len()).any(|w| w == api_token.as_bytes()),
            "the API token is stored in clear"
        );
    }

    // Second start over the same data dir: no new token; the old one still works.
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::rename(&data, dir.path().join("data")).unwrap();
    let h2 = Harness::start_in(dir, crate::fakes::FakeFactory::default(), Some(api_token)).await;
    assert!(
        h2.service.initial_token().is_none(),
        "the token is created only on the first start"
    );
    let (s, v) = h2.api.get(&format!("/v4/sources/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h2.service.shutdown().await;
}

/// A webhook that cannot be reached is logged and skipped: the in-app notification is still there.
#[tokio::test]
async fn an_unreachable_webhook_is_never_fatal() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", unused.local_addr().unwrap());
    drop(unused);
    let h = Harness::start().await;
    let api = &h.api;
    let (s, _) = api
        .put("/v4/settings", json!({"notification_webhook_url": url}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (source, _) = api.create("Flaky", "failing").await;
    let id = source["id"].as_i64().unwrap();
    api.select_all(id).await;
    api.wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
        j[0]["status"] == "failed"
    })
    .await;
    let notes = api
        .wait_for("/v4/notifications", |n| {
            n.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(notes[0]["code"], "platform.exit_status");
    let (s, _) = api.get("/health").await;
    assert_eq!(s, StatusCode::OK);
    h.service.shutdown().await;
}

/// The connector registry: `GET /v4/source-types` lists each connector with its settings as JSON
/// Schema (secrets write-only); a source of another type is refused naming the known ones; the
/// source shows which secrets are set, never their values.
#[tokio::test]
async fn source_types_list_the_registry_and_bound_what_a_source_may_be() {
    let h = Harness::start().await;
    let api = &h.api;
    let (s, types) = api.get("/v4/source-types").await;
    assert_eq!(s, StatusCode::OK);
    let types = types.as_array().unwrap();
    assert_eq!(types.len(), 1, "{types:?}");
    let zendesk = &types[0];
    assert_eq!(zendesk["type"], "platform.zendesk");
    assert_eq!(zendesk["display_name"], "Zendesk Support");
    let schema = &zendesk["properties_schema"];
    assert_eq!(schema["required"], json!(["subdomain"]));
    assert_eq!(schema["properties"]["api_token"]["writeOnly"], true);
    assert_eq!(schema["properties"]["access_token"]["writeOnly"], true);
    assert!(schema["properties"]["email"].get("writeOnly").is_none());

    let (s, v) = api
        .post(
            "/v4/sources",
            json!({"display_name": "Tap", "type": "singer.tap-unknown", "properties": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        v["data"]["message"],
        "unknown source type singer.tap-unknown: seam knows platform.zendesk"
    );

    let (source, _) = api.create("Stitch Zendesk", "acme").await;
    assert_eq!(source["properties"]["credentials_set"], json!(["api_token"]));
    assert_eq!(source["properties"]["auth_method"], "api_token");
    assert!(!source.to_string().contains(crate::ZENDESK_TOKEN), "{source}");
}

/// A stream's replication method and key can be chosen where the source allows it (Stitch's choice
/// for database tables), and are checked: a forced method stays, a key must be a valid field.
#[tokio::test]
async fn replication_method_and_key_are_chosen_within_what_the_source_allows() {
    let h = Harness::start().await;
    let api = &h.api;
    let (source, _) = api.create("Stitch Zendesk", "acme").await;
    let id = source["id"].as_i64().unwrap();
    let put = |meta: Value| {
        let api = api.clone();
        async move {
            api.put(
                &format!("/v4/sources/{id}/streams/tickets"),
                json!({"metadata": [{"breadcrumb": [], "metadata": meta}]}),
            )
            .await
        }
    };
    let (s, v) = put(json!({"replication-method": "FULL_TABLE"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        v["data"]["message"],
        "stream tickets: the source replicates it INCREMENTAL only"
    );
    let (s, v) = put(json!({"replication-method": "SOMETIMES"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = put(json!({"replication-key": "subject"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        v["data"]["message"],
        "stream tickets: replication-key subject is not one of its valid replication keys (updated_at)"
    );
    let (s, v) = put(json!({"replication-key": "nope"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) =
        put(json!({"selected": true, "replication-method": "INCREMENTAL", "replication-key": "updated_at"}))
            .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let root = v["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["breadcrumb"] == json!([]))
        .unwrap()
        .clone();
    assert_eq!(root["metadata"]["replication-key"], "updated_at", "{root}");
    assert_eq!(root["metadata"]["replication-method"], "INCREMENTAL", "{root}");
    let (s, _) = api
        .put(
            &format!("/v4/sources/{id}/streams/tickets"),
            json!({"metadata": [{"breadcrumb": ["properties", "subject"], "metadata": {"replication-key": "id"}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a field has no replication key");
}
