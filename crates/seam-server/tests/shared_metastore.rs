//! Several `seam serve` processes behind one load balancer, sharing one PostgreSQL metastore, serve
//! the same browsers: a session made on one works (with its CSRF token) on the others and ends
//! everywhere at sign-out, sign-in failures on one count on the others, and a restart signs nobody
//! out. Each "process" is a [`Service`] with a metastore connection of its own.

use crate::fakes::FakeFactory;
use crate::security::{client_from, sign_in, PASSWORD};
use crate::{service_config, set_admin_password, start_service};
use reqwest::StatusCode;
use seam_metastore::{Metastore, PostgresMetastore};
use seam_server::ui::throttle::SignInLimits;
use seam_server::Service;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// A service with its own data directory under `dir` and its own connection to `schema`.
async fn start_sharing(url: &str, schema: &str, dir: &Path) -> Service {
    let metastore: Arc<dyn Metastore> = Arc::new(PostgresMetastore::connect(url, schema).await.unwrap());
    start_service(seam_server::ServiceConfig {
        metastore: Some(metastore),
        ..service_config(dir.to_path_buf(), Arc::new(FakeFactory::default()))
    })
    .await
}

/// The `name=value` of the `seam_session` cookie a sign-in set.
fn session_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("seam_session="))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The session's CSRF token, from an app page served by `base`.
async fn csrf_token(http: &reqwest::Client, base: &str, session: &str) -> String {
    let r = http
        .get(format!("{base}/usage"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{base} knows the session");
    r.text()
        .await
        .unwrap()
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

async fn sources_status(http: &reqwest::Client, base: &str, session: &str) -> StatusCode {
    http.get(format!("{base}/ui/api/sources"))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_sharing_a_postgres_metastore_share_sessions_and_the_sign_in_throttle() {
    let Some(url) = seam_test_support::postgres_url() else {
        return;
    };
    let schema = seam_test_support::unique_name("seam_shared_ui");
    let dirs = tempfile::tempdir().unwrap();
    let a = start_sharing(&url, &schema, &dirs.path().join("a")).await;
    let b = start_sharing(&url, &schema, &dirs.path().join("b")).await;
    set_admin_password(&a, PASSWORD).await;
    let (base_a, base_b) = (format!("http://{}", a.addr()), format!("http://{}", b.addr()));
    let http = client_from("127.0.0.1");

    // Signed in on A; B knows the session and its CSRF token.
    let r = sign_in(&http, &base_a, "admin", PASSWORD, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = session_cookie(&r);
    assert_eq!(sources_status(&http, &base_b, &session).await, StatusCode::OK);
    let csrf = csrf_token(&http, &base_a, &session).await;
    assert_eq!(
        csrf,
        csrf_token(&http, &base_b, &session).await,
        "one session, one token"
    );
    let put_settings = |base: &str, token: &str| {
        http.put(format!("{base}/ui/api/settings"))
            .header("cookie", &session)
            .header("x-csrf-token", token)
            .json(&json!({"row_limit": 1000}))
            .send()
    };
    assert_eq!(
        put_settings(&base_b, "not-the-token").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let r = put_settings(&base_b, &csrf).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());

    // A restart signs nobody out: A again, on the same metastore.
    a.shutdown().await;
    let a = start_sharing(&url, &schema, &dirs.path().join("a")).await;
    let base_a = format!("http://{}", a.addr());
    assert_eq!(sources_status(&http, &base_a, &session).await, StatusCode::OK);

    // Signing out on B ends the session on A too.
    let r = http
        .post(format!("{base_b}/signout"))
        .header("cookie", &session)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        sources_status(&http, &base_a, &session).await,
        StatusCode::UNAUTHORIZED
    );

    // A client's failures count wherever they land: together, the two allow what one allows.
    let attacker = client_from("127.0.0.3");
    let per_client = SignInLimits::default().per_client_failures;
    for i in 0..per_client {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        let r = sign_in(&attacker, base, "admin", &format!("guess {i}"), "/").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {i} on {base}");
    }
    for base in [&base_a, &base_b] {
        let r = sign_in(&attacker, base, "admin", PASSWORD, "/").await;
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{base} knows the failures made on the other"
        );
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    // Another client still signs in, on either.
    let r = sign_in(&client_from("127.0.0.4"), &base_b, "admin", PASSWORD, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // A new admin password ends the sessions every process serves.
    let session = session_cookie(&r);
    assert_eq!(sources_status(&http, &base_a, &session).await, StatusCode::OK);
    set_admin_password(&b, "a brand new password").await;
    for base in [&base_a, &base_b] {
        assert_eq!(
            sources_status(&http, base, &session).await,
            StatusCode::UNAUTHORIZED
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}
