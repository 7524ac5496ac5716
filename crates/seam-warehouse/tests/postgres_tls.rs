//! The PostgreSQL destination honours the URL's sslmode (rustls) and never shows its password.

use crate::harness::{rec, schema};
use seam_core::{Destination, ErrorKind};
use seam_test_support::PostgresServer;
use seam_warehouse::PostgresDestination;
use serde_json::json;

const SSL_IN_USE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

#[test]
fn loads_over_verified_tls_and_refuses_a_server_without_it() {
    let (tls, plain) = PostgresServer::start_tls_and_plain();
    let ca = tls.ca_pem();
    // verify-full: the chain up to the CA given by sslrootcert, and the host name.
    let url = tls.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let mut d = PostgresDestination::connect(&url, "tls_load").unwrap();
    d.ensure_table(&schema("users", &["id"], json!({"type": "object"})))
        .unwrap();
    d.write_batch(
        "users",
        &[rec("users", json!({"id": 1})), rec("users", json!({"id": 2}))],
    )
    .unwrap();
    assert_eq!(d.commit(None).unwrap().rows.get("users"), Some(&2));
    let ssl: bool = d
        .client()
        .expect("client")
        .query_one(SSL_IN_USE, &[])
        .unwrap()
        .get(0);
    assert!(ssl, "the destination's connection is encrypted");
    // require: encrypted without checking the certificate (libpq's rule).
    let mut d = PostgresDestination::connect(&tls.url("127.0.0.1", "sslmode=require"), "tls_load").unwrap();
    let ssl: bool = d
        .client()
        .expect("client")
        .query_one(SSL_IN_USE, &[])
        .unwrap()
        .get(0);
    assert!(ssl);
    let n: i64 = d
        .client()
        .expect("client")
        .query_one("SELECT count(*) FROM tls_load.users", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    // A server without TLS: a config error that says so, not a retry.
    let Err(e) = PostgresDestination::connect(&plain.url("127.0.0.1", "sslmode=require"), "tls_load") else {
        panic!("sslmode=require connected to a server without TLS");
    };
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    let m = e.to_string();
    assert!(
        m.contains("sslmode=require")
            && m.contains("server does not support TLS")
            && m.contains("turn ssl on"),
        "{m}"
    );
    // A certificate the CA did not sign.
    let url = tls.url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            tls.untrusted_ca_pem().display()
        ),
    );
    let Err(e) = PostgresDestination::connect(&url, "tls_load") else {
        panic!("an unverified certificate was accepted");
    };
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[test]
fn the_password_never_shows() {
    let tls = PostgresServer::start_tls();
    // Trust authentication ignores the password, so the connection succeeds with it in the URL.
    let url = format!(
        "postgres://seam:hunter2@127.0.0.1:{}/postgres?sslmode=require",
        tls.port()
    );
    let d = PostgresDestination::connect(&url, "secret_check").unwrap();
    let shown = format!("{d:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("seam:***@"),
        "{shown}"
    );
    let url = format!(
        "postgres://seam:hunter2@127.0.0.1:{}/nonexistent_db?sslmode=require",
        tls.port()
    );
    let Err(e) = PostgresDestination::connect(&url, "secret_check") else {
        panic!("connected to a database that does not exist");
    };
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
}
