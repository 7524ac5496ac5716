//! The dashboard and the API against outsiders, over real HTTP: sign-in throttling, redirects after
//! sign-in, secrets on first start and in `Debug`, file modes, metrics labels, webhooks, rejections
//! in the API's error shape, token revocation, credentials bound to their integration.

use crate::fakes::FakeFactory;
use crate::{service_config, set_admin_password, start_service, Api, Harness, Logs};
use reqwest::StatusCode;
use seam_server::notify::{WebhookError, WebhookNotifier, WebhookPolicy};
use seam_server::ui::throttle::SignInLimits;
use seam_server::{SecurityConfig, Service, ServiceConfig};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const PASSWORD: &str = "correct horse battery";

/// The configuration of a service over the fakes with its data in `dir`.
fn config_in(dir: &tempfile::TempDir) -> ServiceConfig {
    service_config(dir.path().join("data"), Arc::new(FakeFactory::default()))
}

/// A service over the fakes with `security`, and the admin password [`PASSWORD`].
async fn start_with(dir: &tempfile::TempDir, security: SecurityConfig) -> Service {
    let service = start_service(ServiceConfig {
        security,
        ..config_in(dir)
    })
    .await;
    set_admin_password(&service, PASSWORD).await;
    service
}

/// An HTTP client whose requests come from `from` (any 127.x.y.z reaches a 127.0.0.1 listener).
pub(crate) fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Posts the sign-in form (its double-submit token and cookie match).
pub(crate) async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
    next: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/signin"))
        .header("cookie", "seam_signin=form-token")
        .form(&[
            ("username", user),
            ("password", password),
            ("next", next),
            ("signin_token", "form-token"),
        ])
        .send()
        .await
        .unwrap()
}

/// Finding 1: a client that keeps failing gets 429 with `Retry-After`, even with the right password;
/// other clients are not locked out by it.
#[tokio::test]
async fn sign_in_failures_are_throttled_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_with(&dir, SecurityConfig::default()).await;
    let base = format!("http://{}", service.addr());
    let attacker = client_from("127.0.0.1");
    let per_client = SignInLimits::default().per_client_failures;
    for i in 0..per_client {
        let r = sign_in(&attacker, &base, "admin", &format!("guess {i}"), "/").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let r = sign_in(&attacker, &base, "admin", "one more guess", "/").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(r.text().await.unwrap().contains("Too many sign-in attempts"));
    let r = sign_in(&attacker, &base, "admin", PASSWORD, "/").await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a throttled client is not even checked"
    );
    let r = sign_in(&client_from("127.0.0.2"), &base, "admin", PASSWORD, "/usage").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "another client signs in");
    assert_eq!(r.headers()["location"], "/usage");
    service.shutdown().await;
}

/// Posts the sign-in form with an `X-Forwarded-For` header.
async fn sign_in_forwarded(
    client: &reqwest::Client,
    base: &str,
    forwarded_for: &str,
    password: &str,
) -> StatusCode {
    client
        .post(format!("{base}/signin"))
        .header("cookie", "seam_signin=form-token")
        .header("x-forwarded-for", forwarded_for)
        .form(&[
            ("username", "admin"),
            ("password", password),
            ("next", "/"),
            ("signin_token", "form-token"),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

/// Behind a trusted reverse proxy each client has its own sign-in budget (the one `X-Forwarded-For`
/// names: one user guessing does not lock the others out); a client that is not the proxy cannot
/// pick its budget by writing the header.
#[tokio::test]
async fn behind_a_trusted_proxy_sign_in_failures_are_throttled_per_forwarded_client() {
    let dir = tempfile::tempdir().unwrap();
    let security = SecurityConfig {
        trusted_proxies: seam_server::ui::proxy::TrustedProxies::new(vec!["127.0.0.1".parse().unwrap()]),
        ..SecurityConfig::default()
    };
    let service = start_with(&dir, security).await;
    let base = format!("http://{}", service.addr());
    let proxy = client_from("127.0.0.1");
    let per_client = SignInLimits::default().per_client_failures;
    for i in 0..per_client {
        // The guesser writes its own header too; the proxy appends the address it saw.
        let status = sign_in_forwarded(&proxy, &base, &format!("10.9.9.{i}, 203.0.113.5"), "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let status = sign_in_forwarded(&proxy, &base, "198.51.100.1, 203.0.113.5", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the guesser is throttled");
    let status = sign_in_forwarded(&proxy, &base, "203.0.113.6", PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "another user behind the proxy signs in"
    );

    // Not the proxy: the header is not believed, whatever it says.
    let direct = client_from("127.0.0.2");
    for i in 0..per_client {
        let status = sign_in_forwarded(&direct, &base, &format!("203.0.113.{}", 100 + i), "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let status = sign_in_forwarded(&direct, &base, "203.0.113.200", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "counted as 127.0.0.2");
    service.shutdown().await;
}

/// Finding 1: failures from many clients together are throttled too.
#[tokio::test]
async fn sign_in_failures_are_throttled_overall() {
    let dir = tempfile::tempdir().unwrap();
    let security = SecurityConfig {
        sign_in: SignInLimits {
            global_failures: 3,
            global_refill: Duration::from_secs(3600),
            ..SignInLimits::default()
        },
        ..SecurityConfig::default()
    };
    let service = start_with(&dir, security).await;
    let base = format!("http://{}", service.addr());
    for i in 1..=3 {
        let r = sign_in(
            &client_from(&format!("127.0.0.{i}")),
            &base,
            "admin",
            "guess",
            "/",
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = sign_in(&client_from("127.0.0.9"), &base, "admin", PASSWORD, "/").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        retry > 3000,
        "the overall budget refills in an hour here: {retry}"
    );
    service.shutdown().await;
}

/// Finding 1: many parallel wrong sign-ins (each argon2 check takes ~19 MB and real CPU) run at most
/// `concurrent_checks` password checks at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_checks_run_a_bounded_number_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let security = SecurityConfig {
        sign_in: SignInLimits {
            global_failures: 1000,
            concurrent_checks: 2,
            check_wait: Duration::from_secs(120),
            ..SignInLimits::default()
        },
        ..SecurityConfig::default()
    };
    let service = start_with(&dir, security).await;
    let base = format!("http://{}", service.addr());
    let attempts: Vec<_> = (1..=16)
        .map(|i| {
            let base = base.clone();
            tokio::spawn(async move {
                sign_in(
                    &client_from(&format!("127.0.1.{i}")),
                    &base,
                    "admin",
                    "wrong",
                    "/",
                )
                .await
                .status()
            })
        })
        .collect();
    for a in attempts {
        assert_eq!(a.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let peak = service.state().sign_in.peak_concurrent_checks();
    assert!((1..=2).contains(&peak), "password checks at once: {peak}");
    service.shutdown().await;
}

/// Finding 1: a failed sign-in is logged without what was typed.
#[tokio::test]
async fn sign_in_failures_never_log_what_was_typed() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let dir = tempfile::tempdir().unwrap();
    let service = start_with(&dir, SecurityConfig::default()).await;
    let base = format!("http://{}", service.addr());
    let client = client_from("127.0.0.1");
    let r = sign_in(&client, &base, "typed-user-7f3q", "typed-pass-9x2w", "/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A password typed into the user name field.
    let r = sign_in(&client, &base, "admin-pass-in-user-field", "x", "/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    service.shutdown().await;
    let text = logs.text();
    assert!(text.contains("sign-in refused"), "logs were captured: {text}");
    assert!(text.contains("127.0.0.1"), "the client is named: {text}");
    for typed in ["typed-user-7f3q", "typed-pass-9x2w", "admin-pass-in-user-field"] {
        assert!(!text.contains(typed), "{typed} reached the logs: {text}");
    }
}

/// Finding 2: `next` with a tab (`/\t/evil.com`, read by browsers as `//evil.com`) or any other way
/// out of the site sends the browser to `/`.
#[tokio::test]
async fn sign_in_redirects_stay_on_the_site() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_with(&dir, SecurityConfig::default()).await;
    let base = format!("http://{}", service.addr());
    let client = client_from("127.0.0.1");
    let page = client
        .get(format!("{base}/signin?next=%2F%09%2Fevil.com"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"name="next" value="/""#), "{page}");
    assert!(!page.contains("evil.com"));
    let r = sign_in(&client, &base, "admin", PASSWORD, "/\t/evil.com").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/");
    let r = sign_in(&client, &base, "admin", PASSWORD, "/integrations/1").await;
    assert_eq!(r.headers()["location"], "/integrations/1");
    service.shutdown().await;
}

/// Finding 3: a first start that cannot listen creates nothing, so the next start still prints the
/// token and the admin password.
#[tokio::test]
async fn a_failed_first_start_loses_no_secret() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = |listen| ServiceConfig {
        listen,
        ..config_in(&dir)
    };
    let err = Service::start(config(busy.local_addr().unwrap()))
        .await
        .expect_err("the port is taken");
    assert!(err.to_string().contains("cannot listen on"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created before the listener binds"
    );
    let service = start_service(config("127.0.0.1:0".parse().unwrap())).await;
    assert!(
        service.initial_token().is_some(),
        "the token is printed on the start that works"
    );
    if std::env::var_os(seam_server::ui::ADMIN_PASSWORD_ENV).is_none() {
        assert!(service.initial_admin_password().is_some());
    }
    service.shutdown().await;
}

/// Finding 8: the service's `Debug` shows neither the initial token nor the admin password.
#[tokio::test]
async fn debug_output_holds_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_service(config_in(&dir)).await;
    let token = service.initial_token().unwrap().to_owned();
    let shown = format!("{service:?} {:?}", service.state());
    assert!(shown.contains("initial_token"), "{shown}");
    assert!(!shown.contains(&token), "the API token is in Debug output");
    if let Some(password) = service.initial_admin_password() {
        assert!(!shown.contains(password), "the admin password is in Debug output");
    }
    service.shutdown().await;
}

/// Finding 5: a start that creates everything leaves a 0700 directory of 0600 files; a loose
/// existing directory is tightened.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let h = Harness::start().await;
    // Write something so SQLite's -wal and -shm exist.
    let (s, _) = h.api.put("/v4/settings", json!({"row_limit": 1000})).await;
    assert_eq!(s, StatusCode::OK);
    let data = h.dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "data directory");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        names.push(entry.file_name().to_string_lossy().into_owned());
        assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
    }
    names.sort();
    for expected in [
        "metastore.sqlite",
        "metastore.sqlite-wal",
        "metastore.sqlite-shm",
        "secret.key",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} in {names:?}");
    }
    let dir = h.dir;
    h.service.shutdown().await;

    // Loosen everything, start again: tightened.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sqlite = data.join("metastore.sqlite");
    std::fs::set_permissions(&sqlite, std::fs::Permissions::from_mode(0o644)).unwrap();
    let h = Harness::start_in(dir, FakeFactory::default(), Some("unused".into())).await;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&sqlite), 0o600);
    h.service.shutdown().await;
}

/// Finding 4: `/metrics` labels unknown methods `OTHER` and routes by their template.
#[tokio::test]
async fn metrics_labels_are_bounded() {
    let h = Harness::start().await;
    let client = reqwest::Client::new();
    for m in ["XYZ1", "XYZ2", "BREW"] {
        let r = client
            .request(
                reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                format!("{}/health", h.api.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    for id in [123456, 654321] {
        let (s, _) = h.api.get(&format!("/v4/sources/{id}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let metrics = client
        .get(format!("{}/metrics", h.api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("seam_http_requests_total{route=\"OTHER /health\",status=\"405\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("seam_http_requests_total{route=\"GET /v4/sources/{id}\",status=\"404\"} 2"),
        "{metrics}"
    );
    for raw in ["XYZ", "BREW", "123456", "654321"] {
        assert!(!metrics.contains(raw), "{raw} became a label: {metrics}");
    }
    h.service.shutdown().await;
}

/// A webhook receiver: `/hook` answers `status` (with `Location: /final` for redirects), and every
/// request's path is recorded.
async fn receiver(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
    let hits: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let seen = Arc::clone(&seen);
        async move {
            let path = req.uri().path().to_owned();
            seen.lock().unwrap().push(path.clone());
            let status = if path == "/final" { 200 } else { status };
            axum::response::Response::builder()
                .status(status)
                .header("location", "/final")
                .body(axum::body::Body::empty())
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("127.0.0.1:{port}"), hits)
}

fn notifier(policy: WebhookPolicy) -> WebhookNotifier {
    WebhookNotifier::new(
        Arc::new(seam_metastore::SqliteMetastore::open_in_memory().unwrap()),
        policy,
    )
}

/// Finding 6: a redirect is not followed; it is a failed delivery that says so.
#[tokio::test]
async fn webhooks_follow_no_redirect() {
    for status in [301, 302, 307, 308] {
        let (addr, hits) = receiver(status).await;
        let err = notifier(WebhookPolicy::default())
            .deliver(&format!("http://{addr}/hook"), &json!({"code": "x"}))
            .await
            .expect_err("a redirect is a failure");
        assert!(matches!(err, WebhookError::Redirect { .. }), "{err}");
        assert_eq!(
            *hits.lock().unwrap(),
            vec!["/hook".to_owned()],
            "{status}: /final never reached"
        );
    }
    let (addr, hits) = receiver(204).await;
    notifier(WebhookPolicy::default())
        .deliver(&format!("http://{addr}/hook"), &json!({"code": "x"}))
        .await
        .expect("a 2xx is a delivery");
    assert_eq!(hits.lock().unwrap().len(), 1);
}

/// Finding 6: a failed delivery is logged with the host only: the path holds the receiver's secret.
#[tokio::test]
async fn webhook_failures_log_only_the_host() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let (addr, _) = receiver(500).await;
    let n = notifier(WebhookPolicy::default());
    let err = n
        .deliver(
            &format!("http://{addr}/services/T0/B0/SECRETPATH1?token=SECRETQUERY1"),
            &json!({}),
        )
        .await
        .expect_err("500");
    assert!(matches!(err, WebhookError::Status { status: 500, .. }), "{err}");
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = unused.local_addr().unwrap();
    drop(unused);
    let err = n
        .deliver(&format!("http://{closed}/services/T0/B0/SECRETPATH2"), &json!({}))
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, WebhookError::Request { .. }), "{err}");
    let text = logs.text();
    assert!(text.contains("notification webhook delivery failed"), "{text}");
    assert!(text.contains("127.0.0.1"), "the host is named: {text}");
    for secret in ["SECRETPATH1", "SECRETQUERY1", "SECRETPATH2", "/services/"] {
        assert!(!text.contains(secret), "{secret} reached the logs: {text}");
    }
}

/// Finding 6: with the setting on, loopback/private addresses are refused, as literals and as names
/// that resolve to them; with it off (the default), they are delivered to.
#[tokio::test]
async fn private_webhook_targets_are_refused_when_asked() {
    let (addr, hits) = receiver(200).await;
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let refuse = notifier(WebhookPolicy {
        refuse_private_addresses: true,
    });
    for url in [
        format!("http://{addr}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
    ] {
        let err = refuse.deliver(&url, &json!({})).await.expect_err(&url);
        assert!(matches!(err, WebhookError::PrivateAddress { .. }), "{url}: {err}");
    }
    assert!(hits.lock().unwrap().is_empty(), "nothing reached the receiver");
    notifier(WebhookPolicy::default())
        .deliver(&format!("http://localhost:{port}/hook"), &json!({}))
        .await
        .expect("allowed by default");
    assert_eq!(hits.lock().unwrap().len(), 1);

    // The API refuses to save such a URL when the setting is on.
    let dir = tempfile::tempdir().unwrap();
    let service = start_with(
        &dir,
        SecurityConfig {
            webhooks: WebhookPolicy {
                refuse_private_addresses: true,
            },
            ..SecurityConfig::default()
        },
    )
    .await;
    let api = Api::of(&service);
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://169.254.169.254/latest",
    ] {
        let (s, v) = api
            .put("/v4/settings", json!({"notification_webhook_url": url}))
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("InvalidBody")),
            "{url}: {v}"
        );
    }
    service.shutdown().await;
}

/// Finding 7: a new subdomain is another account: it needs `confirm_reset`, which resets bookmarks.
#[tokio::test]
async fn changing_the_subdomain_needs_confirm_reset() {
    let h = Harness::start().await;
    let api = &h.api;
    let (source, _) = api.create("Support", "acme").await;
    let id = source["id"].as_i64().unwrap();
    api.select_all(id).await;
    api.wait_for(&format!("/v4/sources/{id}/extractions"), |j| {
        j[0]["status"] == "succeeded"
    })
    .await;
    let stored = |h: &Harness| {
        let m = Arc::clone(&h.service.state().metastore);
        async move { m.get_integration(id).await.unwrap().unwrap() }
    };
    assert!(stored(&h).await.state.is_some(), "bookmarks exist");
    let (s, v) = api
        .put(
            &format!("/v4/sources/{id}"),
            json!({"properties": {"subdomain": "other"}}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("ResetRequired")),
        "{v}"
    );
    let message = v["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("confirm_reset") && message.contains("another Zendesk Support account"),
        "{message}"
    );
    assert_eq!(
        stored(&h).await.properties.config_str("subdomain"),
        Some("acme"),
        "nothing changed"
    );
    assert!(stored(&h).await.state.is_some());
    let (s, v) = api
        .put(
            &format!("/v4/sources/{id}"),
            json!({"properties": {"subdomain": "other"}, "confirm_reset": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["properties"]["subdomain"], "other");
    assert!(stored(&h).await.state.is_none(), "bookmarks reset");
    // The same subdomain again is no change.
    let (s, _) = api
        .put(
            &format!("/v4/sources/{id}"),
            json!({"properties": {"subdomain": "other"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    h.service.shutdown().await;
}

/// Finding 8: sealed credentials open only for their own integration; credentials sealed the old
/// way (without associated data) keep working after a start, re-sealed and bound.
#[tokio::test]
async fn credentials_are_bound_to_their_integration() {
    let h = Harness::start().await;
    let api = &h.api;
    let (a, _) = api.create("Account A", "acme").await;
    let (b, _) = api.create("Account B", "acme").await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let m = Arc::clone(&h.service.state().metastore);
    let blob_a = m.get_integration(a).await.unwrap().unwrap().sealed_credentials;
    m.set_sealed_credentials(b, &blob_a).await.unwrap();
    let (_, v) = api.get(&format!("/v4/sources/{b}")).await;
    assert_eq!(
        v["properties"]["auth_method"], "unreadable",
        "A's credentials do not open as B's"
    );
    let (_, v) = api.get(&format!("/v4/sources/{a}")).await;
    assert_eq!(v["properties"]["auth_method"], "api_token");

    // The old format: `1 || nonce || ChaCha20-Poly1305(key, nonce, json)`, no associated data.
    let key_text = std::fs::read_to_string(h.dir.path().join("data/secret.key")).unwrap();
    let key = base64_decode(key_text.trim());
    let old = {
        use chacha20poly1305::aead::{Aead, KeyInit};
        let cipher = chacha20poly1305::ChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key));
        let nonce = [7u8; 12];
        let plain = serde_json::to_vec(&json!({"access_token": "legacy-oauth"})).unwrap();
        let sealed = cipher
            .encrypt(chacha20poly1305::Nonce::from_slice(&nonce), plain.as_slice())
            .unwrap();
        [vec![1u8], nonce.to_vec(), sealed].concat()
    };
    m.set_sealed_credentials(b, &old).await.unwrap();
    let dir = h.dir;
    let token = api.token.clone();
    h.service.shutdown().await;
    let h = Harness::start_in(dir, FakeFactory::default(), Some(token)).await;
    let (_, v) = h.api.get(&format!("/v4/sources/{b}")).await;
    assert_eq!(
        v["properties"]["auth_method"], "access_token",
        "the old blob still opens: {v}"
    );
    let stored = h
        .service
        .state()
        .metastore
        .get_integration(b)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !seam_metastore::crypto::is_legacy(&stored.sealed_credentials),
        "re-sealed"
    );
    let creds = h
        .service
        .state()
        .cipher
        .open(b, &stored.sealed_credentials)
        .unwrap();
    assert_eq!(creds.get("access_token").unwrap().expose(), "legacy-oauth");
    assert!(h
        .service
        .state()
        .cipher
        .open(a, &stored.sealed_credentials)
        .is_err());
    h.service.shutdown().await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// Finding 3: a revoked token is refused by the API at once.
#[tokio::test]
async fn revoked_tokens_are_refused() {
    let h = Harness::start().await;
    let m = Arc::clone(&h.service.state().metastore);
    let (created, token) = seam_server::auth::create_token(m.as_ref(), "grafana", chrono::Utc::now())
        .await
        .unwrap();
    let api = Api {
        token,
        ..h.api.clone()
    };
    assert_eq!(api.get("/v4/sources").await.0, StatusCode::OK);
    seam_server::auth::revoke_token(m.as_ref(), "grafana", chrono::Utc::now())
        .await
        .unwrap();
    let (s, v) = api.get("/v4/sources").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Unauthorized"))
    );
    assert_eq!(
        h.api.get("/v4/sources").await.0,
        StatusCode::OK,
        "other tokens still work"
    );
    let listed = m.list_tokens().await.unwrap();
    assert!(listed
        .iter()
        .any(|t| t.id == created.id && t.revoked_at.is_some()));
    h.service.shutdown().await;
}

/// Finding 9: axum's own rejections answer in the API's JSON error shape; an undeclared method is
/// 405 with `Allow`.
#[tokio::test]
async fn rejections_are_json_errors() {
    let h = Harness::start().await;
    let api = &h.api;
    let client = &api.client;
    let base = &api.base;
    let expect = |what: &str, r: (StatusCode, Option<String>, String), status: u16, code: &str| {
        let (s, content_type, body) = r;
        assert_eq!(s.as_u16(), status, "{what}: {body}");
        assert!(
            content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}: {content_type:?}"
        );
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: not JSON: {body}"));
        assert_eq!(v["error"], code, "{what}: {v}");
        assert!(
            v["data"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
    };
    async fn send(r: reqwest::RequestBuilder) -> (StatusCode, Option<String>, String) {
        let r = r.send().await.unwrap();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status(), ct, r.text().await.unwrap())
    }
    let authed =
        |m: reqwest::Method, path: &str| client.request(m, format!("{base}{path}")).bearer_auth(&api.token);

    let big = vec![b'x'; 2 * 1024 * 1024];
    let r = send(
        authed(reqwest::Method::PUT, "/v4/settings")
            .header("content-type", "application/json")
            .body(big),
    )
    .await;
    expect("2 MiB body", r, 413, "PayloadTooLarge");
    let r = send(
        authed(reqwest::Method::PUT, "/v4/settings")
            .header("content-type", "application/json")
            .body("{nope"),
    )
    .await;
    expect("bad JSON", r, 400, "InvalidBody");
    let r = send(
        authed(reqwest::Method::POST, "/v4/sources")
            .header("content-type", "text/plain")
            .body(r#"{"display_name":"x"}"#),
    )
    .await;
    expect("wrong content type", r, 415, "UnsupportedMediaType");
    let r = send(authed(reqwest::Method::GET, "/v4/notifications?limit=abc")).await;
    expect("bad query", r, 400, "InvalidQuery");
    let r = send(authed(
        reqwest::Method::GET,
        "/v4/notifications?include_dismissed=maybe",
    ))
    .await;
    expect("bad boolean", r, 400, "InvalidQuery");
    let r = send(authed(reqwest::Method::GET, "/v4/sources/1/extractions?limit=-1")).await;
    expect("negative limit", r, 400, "InvalidQuery");
    let r = send(authed(reqwest::Method::GET, "/v4/sources/%FF%FE")).await;
    expect("bad path parameter", r, 404, "NotFound");

    let r = authed(reqwest::Method::PATCH, "/v4/sources")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD, POST");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "MethodNotAllowed");
    let r = client.delete(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = send(authed(reqwest::Method::DELETE, "/v4/usage")).await;
    expect("undeclared method", r, 405, "MethodNotAllowed");
    // Through the dashboard's forwarder too (it calls the same router).
    h.service.shutdown().await;
}

/// Finding 10: `/openapi.json` documents every route's request body, success body and error bodies
/// with schemas that exist (schemathesis checks live answers against them: scripts/test_openapi.sh).
#[tokio::test]
async fn openapi_documents_every_body() {
    let h = Harness::start().await;
    let doc = h.api.openapi().await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let resolves = |v: &Value| {
        let r = v["$ref"].as_str().unwrap_or_default();
        schemas.contains_key(r.trim_start_matches("#/components/schemas/"))
    };
    for r in seam_server::api::ROUTES {
        let op = &doc["paths"][r.path][r.method];
        let what = format!("{} {}", r.method, r.path);
        let responses = op["responses"].as_object().unwrap();
        let (status, ok) = responses
            .iter()
            .find(|(s, _)| s.starts_with('2'))
            .unwrap_or_else(|| panic!("{what}: no success response"));
        if status != "204" {
            let content = ok["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{what}: no body"));
            assert!(
                content.values().all(|c| c["schema"].is_object()),
                "{what}: {content:?}"
            );
            if let Some(json) = content.get("application/json") {
                assert!(resolves(&json["schema"]), "{what}: {json}");
            }
        }
        for (s, resp) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
            assert!(
                resolves(&resp["content"]["application/json"]["schema"]),
                "{what} {s}"
            );
        }
        for s in ["400", "404", "405", "415"] {
            assert!(responses.contains_key(s), "{what}: {s} undocumented");
        }
        match r.body {
            Some(_) => assert!(
                resolves(&op["requestBody"]["content"]["application/json"]["schema"]),
                "{what}: request body"
            ),
            None => assert!(op.get("requestBody").is_none(), "{what}"),
        }
    }
    h.service.shutdown().await;
}

/// Finding 3: `seam admin reset-password` (a new stored hash) ends every dashboard session at once:
/// a leaked password is not kept alive by a session made with it.
#[tokio::test]
async fn a_new_admin_password_ends_every_session() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_with(&dir, SecurityConfig::default()).await;
    let base = format!("http://{}", service.addr());
    let client = client_from("127.0.0.1");
    let r = sign_in(&client, &base, "admin", PASSWORD, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("seam_session="))
        .unwrap();
    let cookie = session.split(';').next().unwrap().to_owned();
    let api = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
    };
    assert_eq!(api("/ui/api/sources").await.unwrap().status(), StatusCode::OK);
    assert_eq!(api("/usage").await.unwrap().status(), StatusCode::OK);

    set_admin_password(&service, "a brand new password").await;
    assert_eq!(
        api("/ui/api/sources").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = api("/usage").await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "back to the sign-in page");
    let r = sign_in(&client, &base, "admin", "a brand new password", "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    service.shutdown().await;
}
