//! `seam serve` as a user runs it, against the simulator: what it creates on disk is private, and a
//! lost token or password is never a dead end (`seam token …`, `seam admin reset-password`).

use crate::common::seam;
use crate::common::serve::{Serve, ServeOptions};
use crate::common::sim::start_sim_with;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use zendesk_sim::SimConfig;

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A first start of `seam serve` on `data` (its log beside it): it prints the API token and the
/// admin password.
fn serve(data: &Path, zendesk: &str) -> (Serve, String) {
    let log = data.with_extension("log");
    let s = Serve::start(data, zendesk, &log, ServeOptions::default());
    let password = s
        .password
        .clone()
        .expect("the first start prints the admin password");
    (s, password)
}

/// A start that creates everything — data directory, metastore (with -wal/-shm), key file, DuckDB
/// warehouse — leaves a 0700 directory holding 0600 files.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_seam_serve_creates_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let sim = start_sim_with(SimConfig {
        tickets: 20,
        ..SimConfig::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (s, _) = serve(&data, &sim.base_url());
    let api = s.api();
    let (source, check) = api.create_zendesk_source("Private").await;
    let id = source["id"].as_i64().unwrap();
    assert_eq!(check["status"], "succeeded", "{check}");
    api.select_streams(id, &["tickets"]).await;
    let jobs = api
        .wait_for(
            &format!("/v4/sources/{id}/extractions"),
            Duration::from_secs(60),
            |j| {
                j.as_array()
                    .is_some_and(|a| !a.is_empty() && a[0]["status"] != "running")
            },
        )
        .await;
    assert_eq!(jobs[0]["status"], "succeeded", "{jobs}");

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    for expected in [
        "metastore.sqlite",
        "metastore.sqlite-wal",
        "metastore.sqlite-shm",
        "secret.key",
        "warehouse.duckdb",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} in {names:?}");
    }
    drop(s);
    sim.shutdown().await;
}

/// `seam token create|list|revoke` and `seam admin reset-password` work on the metastore a running
/// `seam serve` uses: a new token works at once, a revoked one is refused at once, a new password
/// signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_the_admin_password_are_managed_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (s, first_password) = serve(&data, "http://127.0.0.1:9");
    let api = s.api();
    let with_dir = |args: &[&str]| {
        let mut cmd = seam();
        cmd.args(args).arg("--data-dir").arg(&data);
        cmd
    };

    let token = run_ok(&mut with_dir(&["token", "create", "--name", "ci"]))
        .trim()
        .to_owned();
    assert!(
        token.starts_with("seam_") && !token.contains(char::is_whitespace),
        "{token:?}"
    );
    assert_eq!(
        api.with_token(&token).get_status("/v4/sources").await.0,
        200,
        "a new token works at once"
    );

    let list = run_ok(&mut with_dir(&["token", "list"]));
    assert!(list.contains("initial") && list.contains("ci"), "{list}");
    assert!(
        !list.contains(&token) && !list.contains(&s.token),
        "tokens are never shown again: {list}"
    );

    let out = seam()
        .args(["token", "create", "--name", "ci"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second live token named ci");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let revoked = run_ok(&mut with_dir(&["token", "revoke", "ci"]));
    assert!(revoked.contains("revoked API token"), "{revoked}");
    let (status, v) = api.with_token(&token).get_status("/v4/sources").await;
    assert_eq!(
        (status.as_u16(), v["error"].as_str()),
        (401, Some("Unauthorized")),
        "revoked at once"
    );
    assert_eq!(
        api.get_status("/v4/sources").await.0,
        200,
        "the initial token still works"
    );
    // The initial token, revoked by id.
    let id = list
        .lines()
        .find(|l| l.contains("initial"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    run_ok(&mut with_dir(&["token", "revoke", &id]));
    assert_eq!(api.get_status("/v4/sources").await.0, 401);
    let list = run_ok(&mut with_dir(&["token", "list"]));
    let revoked_column: Vec<&str> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(revoked_column.len(), 2, "{list}");
    assert!(revoked_column.iter().all(|r| *r != "-"), "both revoked: {list}");

    assert_eq!(
        api.sign_in(&first_password).await,
        303,
        "the first password works"
    );
    let out = run_ok(&mut with_dir(&["admin", "reset-password"]));
    let password = out.split(", password ").nth(1).unwrap().trim().to_owned();
    assert!(password.len() >= 16 && password != first_password, "{out}");
    assert_eq!(api.sign_in(&password).await, 303, "the new password signs in");
    assert_eq!(
        api.sign_in(&first_password).await,
        401,
        "the old one no longer does"
    );
    let stored = std::fs::read(data.join("metastore.sqlite")).unwrap();
    assert!(
        !stored.windows(password.len()).any(|w| w == password.as_bytes()),
        "only a hash is stored"
    );
    drop(s);

    // A data directory seam never used is an error that says what to pass, not a new empty store.
    let out = seam()
        .args(["token", "list", "--data-dir"])
        .arg(tmp.path().join("typo"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no seam metastore") && stderr.contains("--data-dir"),
        "{stderr}"
    );
    assert!(!tmp.path().join("typo").exists());
}

/// Roles other than all three need a metastore the processes share; the SQLite default is one
/// process's file. Checked before anything is created.
#[test]
fn split_roles_need_a_postgresql_metastore() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["serve", "--roles", "api,scheduler"],
        vec!["serve", "--roles", "worker"],
        vec!["worker"],
    ] {
        let out = seam()
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(
            err.contains("need a PostgreSQL metastore (--metastore-url)"),
            "{args:?}: {err}"
        );
        assert!(
            !dir.path().join("data").exists(),
            "{args:?} created the data directory"
        );
    }
    let out = seam().args(["worker", "--roles", "api"]).output().unwrap();
    assert!(!out.status.success(), "seam worker ran the api role");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("seam worker runs the worker role only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = seam().args(["serve", "--roles", "api,cook"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid value 'cook'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// DuckDB is one file on one machine: of the processes sharing a metastore, only one may run jobs
/// into a DuckDB warehouse; a second worker is refused with what to do instead.
#[test]
fn a_second_worker_into_duckdb_is_refused() {
    let Some(url) = seam_test_support::postgres_url() else {
        return;
    };
    let db = seam_test_support::unique_name("seam_cli_duckdb");
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let mut parsed = url.rsplitn(2, '/');
    let (_, server) = (parsed.next(), parsed.next().unwrap());
    let metastore = format!("{server}/{db}");
    let dir = tempfile::tempdir().unwrap();
    let mut first = seam()
        .args(["worker", "--metastore-url", &metastore, "--data-dir"])
        .arg(dir.path().join("first"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(first.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("running without the API"), "{line}");
    let out = seam()
        .args(["worker", "--metastore-url", &metastore, "--data-dir"])
        .arg(dir.path().join("second"))
        .output()
        .unwrap();
    let _ = first.kill();
    let _ = first.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second DuckDB worker started");
    assert!(err.contains("DuckDB is one file on one machine"), "{err}");
    assert!(err.contains("PostgreSQL warehouse"), "{err}");
    drop(admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")));
}
