//! The PostgreSQL metastore honours the URL's sslmode (rustls) and never shows its password.

use seam_core::{Classify, ErrorKind};
use seam_metastore::{Metastore, MetastoreError, PostgresMetastore};
use seam_test_support::PostgresServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_over_tls_and_refuses_a_server_without_it() {
    let (tls, plain) = tokio::task::spawn_blocking(PostgresServer::start_tls_and_plain)
        .await
        .unwrap();
    // Trust authentication ignores the password, so the connection succeeds with it in the URL.
    let url = format!(
        "postgres://seam:hunter2@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        tls.port(),
        tls.ca_pem().display()
    );
    let store = PostgresMetastore::connect(&url, "seam_tls").await.unwrap();
    assert!(store.list_integrations(true).await.unwrap().is_empty());
    // The server sees the metastore's session encrypted (this one, plain, does not count).
    let check = seam_postgres::ConnectOptions::parse(&tls.url("127.0.0.1", "sslmode=disable"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let encrypted: i64 = check
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE s.ssl AND a.datname = 'postgres' AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(encrypted, 1);
    let shown = format!("{store:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("seam:***@"),
        "{shown}"
    );
    assert!(!store.server().to_string().contains("hunter2"));

    // A server without TLS: a config error that says so.
    let url = format!(
        "postgres://seam:hunter2@127.0.0.1:{}/postgres?sslmode=require",
        plain.port()
    );
    let e = PostgresMetastore::connect(&url, "seam_tls").await.unwrap_err();
    assert!(matches!(e, MetastoreError::PostgresConnect(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let m = e.to_string();
    assert!(
        m.contains("sslmode=require") && m.contains("server does not support TLS") && !m.contains("hunter2"),
        "{m}"
    );
    assert!(!format!("{e:?}").contains("hunter2"));
}
