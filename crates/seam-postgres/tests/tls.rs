//! Every sslmode against a local PostgreSQL with `ssl=on` (a certificate for `localhost` signed by
//! a throwaway CA) and one with `ssl=off`, through the async and the blocking driver.

use seam_postgres::{is_tls_failure, ConnectError, ConnectOptions, SslMode};
use seam_test_support::PostgresServer;

const SSL_IN_USE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

async fn connect(url: &str) -> Result<tokio_postgres::Client, ConnectError> {
    ConnectOptions::parse(url).unwrap().connect().await
}

async fn encrypted(url: &str) -> bool {
    let client = connect(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    client.query_one(SSL_IN_USE, &[]).await.unwrap().get(0)
}

/// The error of a connection that must fail, with the driver's error classified as TLS.
async fn tls_refusal(url: &str) -> String {
    let e = match connect(url).await {
        Ok(_) => panic!("{url} connected"),
        Err(e) => e,
    };
    let driver = e.driver_error().unwrap_or_else(|| panic!("{url}: {e}"));
    assert!(is_tls_failure(driver), "{url}: {e}");
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_against_servers_with_and_without_tls() {
    let (tls, plain) = tokio::task::spawn_blocking(PostgresServer::start_tls_and_plain)
        .await
        .unwrap();
    let ca = format!("sslrootcert={}", tls.ca_pem().display());
    let other_ca = format!("sslrootcert={}", tls.untrusted_ca_pem().display());

    // require: encrypted; the certificate is not checked (libpq's semantics).
    assert!(encrypted(&tls.url("127.0.0.1", "sslmode=require")).await);
    // prefer (also the default): TLS when the server offers it.
    assert!(encrypted(&tls.url("127.0.0.1", "sslmode=prefer")).await);
    assert!(encrypted(&tls.url("127.0.0.1", "")).await);
    // disable: plain even when the server offers TLS.
    assert!(!encrypted(&tls.url("127.0.0.1", "sslmode=disable")).await);
    // verify-full with the CA: chain and host name (the certificate names localhost).
    assert!(encrypted(&tls.url("localhost", &format!("sslmode=verify-full&{ca}"))).await);
    // The certificate does not name 127.0.0.1: verify-full refuses, verify-ca (chain only) accepts.
    let m = tls_refusal(&tls.url("127.0.0.1", &format!("sslmode=verify-full&{ca}"))).await;
    assert!(
        m.contains("sslmode=verify-full") && m.contains("certificate"),
        "{m}"
    );
    assert!(encrypted(&tls.url("127.0.0.1", &format!("sslmode=verify-ca&{ca}"))).await);
    // A CA that did not sign the server's certificate: every verifying mode refuses, and so does
    // require once sslrootcert is given.
    for mode in ["verify-full", "verify-ca", "require"] {
        let m = tls_refusal(&tls.url("localhost", &format!("sslmode={mode}&{other_ca}"))).await;
        assert!(m.contains("certificate"), "{mode}: {m}");
    }

    // A server without TLS: require fails and says why; prefer and disable connect in plain.
    let m = tls_refusal(&plain.url("127.0.0.1", "sslmode=require")).await;
    assert!(
        m.contains("sslmode=require") && m.contains("server does not support TLS"),
        "{m}"
    );
    let m = tls_refusal(&plain.url("localhost", &format!("sslmode=verify-full&{ca}"))).await;
    assert!(m.contains("server does not support TLS"), "{m}");
    assert!(!encrypted(&plain.url("127.0.0.1", "sslmode=prefer")).await);
    assert!(!encrypted(&plain.url("127.0.0.1", "sslmode=disable")).await);

    // The blocking driver (the warehouse's) takes the same settings.
    let url = tls.url("localhost", &format!("sslmode=verify-full&{ca}"));
    let bad = plain.url("127.0.0.1", "sslmode=require");
    tokio::task::spawn_blocking(move || {
        let options = ConnectOptions::parse(&url).unwrap();
        assert_eq!(options.ssl_mode(), SslMode::VerifyFull);
        let mut client = options.connect_blocking().unwrap();
        let ssl: bool = client.query_one(SSL_IN_USE, &[]).unwrap().get(0);
        assert!(ssl);
        let Err(e) = ConnectOptions::parse(&bad).unwrap().connect_blocking() else {
            panic!("{bad} connected")
        };
        assert!(e.to_string().contains("server does not support TLS"), "{e}");
    })
    .await
    .unwrap();
    drop((tls, plain));
}
