//! `seam serve` as a user runs it, against the simulator: what it creates on disk is private, and a
//! lost token or password is never a dead end (`seam token …`, `seam admin reset-password`).

use serde_json::{json, Value};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zendesk_sim::SimConfig;

/// A running `seam serve` (killed on drop).
struct Serve {
    child: Child,
    base: String,
    token: String,
    password: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn seam() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seam"));
    cmd.env_remove("SEAM_ADMIN_PASSWORD")
        .env_remove("SEAM_SECRET_KEY")
        .env_remove("SEAM_METASTORE_URL")
        .env_remove("SEAM_DATA_DIR");
    cmd
}

/// Starts `seam serve` on a free port and reads the first-start secrets it prints.
fn serve(data_dir: &Path, zendesk: &str) -> Serve {
    let mut child = seam()
        .args(["serve", "--listen", "127.0.0.1:0", "--zendesk-base-url", zendesk])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut token, mut password, mut base) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while base.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("seam serve printed its address within 60 s");
        if let Some(t) = line.split("store it now): ").nth(1) {
            token = Some(t.trim().to_owned());
        }
        if let Some(p) = line.split(", password ").nth(1) {
            password = Some(p.trim().to_owned());
        }
        if let Some(b) = line.strip_prefix("seam: listening on ") {
            base = Some(b.trim().to_owned());
        }
    }
    Serve {
        child,
        base: base.unwrap(),
        token: token.expect("the first start prints the API token"),
        password: password.expect("the first start prints the admin password"),
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn get(base: &str, token: &str, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn send(method: reqwest::Method, base: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `path` until `done` holds (at most 60 s).
async fn wait_for(base: &str, token: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    seam_test_support::wait_for_async(Duration::from_secs(60), format!("GET {path}"), async || {
        let (status, v) = get(base, token, path).await;
        (status == 200 && done(&v)).then_some(v)
    })
    .await
}

async fn sign_in(base: &str, password: &str) -> u16 {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{base}/signin"))
        .header("cookie", "seam_signin=t")
        .form(&[
            ("username", "admin"),
            ("password", password),
            ("next", "/"),
            ("signin_token", "t"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A start that creates everything — data directory, metastore (with -wal/-shm), key file, DuckDB
/// warehouse — leaves a 0700 directory holding 0600 files.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_seam_serve_creates_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let sim = zendesk_sim::start(
        SimConfig {
            tickets: 20,
            ..SimConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = serve(&data, &sim.base_url());
    let (status, source) = send(
        reqwest::Method::POST,
        &s.base,
        &s.token,
        "/v4/sources",
        json!({"display_name": "Private", "properties": {"subdomain": "acme", "email": "admin@acme.test",
            "api_token": "sim-token", "start_date": "2000-01-01T00:00:00Z"}}),
    )
    .await;
    assert_eq!(status, 201, "{source}");
    let id = source["id"].as_i64().unwrap();
    let check = wait_for(
        &s.base,
        &s.token,
        &format!("/v4/sources/{id}/last-connection-check"),
        |c| c["status"] != "running",
    )
    .await;
    assert_eq!(check["status"], "succeeded", "{check}");
    let (status, v) = send(
        reqwest::Method::PUT,
        &s.base,
        &s.token,
        &format!("/v4/sources/{id}/streams"),
        json!({"streams": [{"tap_stream_id": "tickets", "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]}]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let jobs = wait_for(&s.base, &s.token, &format!("/v4/sources/{id}/extractions"), |j| {
        j.as_array()
            .is_some_and(|a| !a.is_empty() && a[0]["status"] != "running")
    })
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
    let s = serve(&data, "http://127.0.0.1:9");
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
        get(&s.base, &token, "/v4/sources").await.0,
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
    let (status, v) = get(&s.base, &token, "/v4/sources").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("Unauthorized")),
        "revoked at once"
    );
    assert_eq!(
        get(&s.base, &s.token, "/v4/sources").await.0,
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
    assert_eq!(get(&s.base, &s.token, "/v4/sources").await.0, 401);
    let list = run_ok(&mut with_dir(&["token", "list"]));
    let revoked_column: Vec<&str> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(revoked_column.len(), 2, "{list}");
    assert!(revoked_column.iter().all(|r| *r != "-"), "both revoked: {list}");

    assert_eq!(
        sign_in(&s.base, &s.password).await,
        303,
        "the first password works"
    );
    let out = run_ok(&mut with_dir(&["admin", "reset-password"]));
    let password = out.split(", password ").nth(1).unwrap().trim().to_owned();
    assert!(password.len() >= 16 && password != s.password, "{out}");
    assert_eq!(
        sign_in(&s.base, &password).await,
        303,
        "the new password signs in"
    );
    assert_eq!(
        sign_in(&s.base, &s.password).await,
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
