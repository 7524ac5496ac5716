//! `seam serve` as a process, and its REST API over HTTP.

use super::seam;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `seam serve` may take to say where it listens.
const START_LIMIT: Duration = Duration::from_secs(60);

/// How a `seam serve` is started, beyond its data directory and Zendesk.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServeOptions<'a> {
    /// More arguments (`--max-batch-records 100`, …).
    pub args: &'a [&'a str],
    /// `SEAM_ADMIN_PASSWORD`; without it the first start makes and prints one.
    pub admin_password: Option<&'a str>,
    /// The API token of an earlier start on the same data directory (only the first start prints
    /// one).
    pub token: Option<&'a str>,
}

/// A running `seam serve` on a free port (killed on drop). Its stderr goes to `log`, shown when a
/// test fails.
#[derive(Debug)]
pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The API token: printed on the first start, or given.
    pub token: String,
    /// The admin password the first start printed (none when `SEAM_ADMIN_PASSWORD` was given).
    pub password: Option<String>,
    pub log: PathBuf,
}

impl Serve {
    /// Starts `seam serve` on `data_dir` (DuckDB warehouse, SQLite metastore by default) with
    /// `zendesk` as Zendesk's base URL; reads from stdout the address, and the secrets a first
    /// start prints.
    pub fn start(data_dir: &Path, zendesk: &str, log: &Path, options: ServeOptions<'_>) -> Serve {
        let mut cmd = seam();
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--zendesk-base-url", zendesk])
            .args(options.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap());
        if let Some(password) = options.admin_password {
            cmd.env("SEAM_ADMIN_PASSWORD", password);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut token = options.token.map(str::to_owned);
        let mut password = None;
        let deadline = Instant::now() + START_LIMIT;
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "seam serve did not say where it listens within {START_LIMIT:?}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
            if let Some(t) = line.split("store it now): ").nth(1) {
                token = Some(t.trim().to_owned());
            }
            if let Some(p) = line.split(", password ").nth(1) {
                password = Some(p.trim().to_owned());
            }
            if let Some(url) = line.strip_prefix("seam: listening on ") {
                break url.trim().to_owned();
            }
        };
        Serve {
            child,
            base,
            token: token.expect("an API token (printed on the first start)"),
            password,
            log: log.to_owned(),
        }
    }

    /// The API as this server's token sees it.
    pub fn api(&self) -> Api {
        Api::new(&self.base, &self.token)
    }

    /// What `seam serve` wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends the signal `name` (`TERM`, `KILL`, …) to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to exit successfully, at most `limit`; kills it and fails the test
    /// otherwise. Returns how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        let exited =
            seam_test_support::try_wait_for(limit, "seam serve to exit", || self.child.try_wait().unwrap());
        let took = started.elapsed();
        match exited {
            Ok(status) => {
                assert!(
                    status.success(),
                    "seam serve exited with {status}: {}",
                    self.stderr()
                );
                took
            }
            Err(timed_out) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{timed_out} after the signal: {}", self.stderr());
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("seam serve's stderr ({}):\n{}", self.log.display(), self.stderr());
        }
    }
}

/// The REST API of a `seam serve`, with one API token.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            base: base.to_owned(),
            token: token.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// The same server with another token.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// The answer's status and body (JSON, else the text as a JSON string).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `GET path`: its status and body.
    pub async fn get_status(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `GET path`, which must succeed.
    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.get_status(path).await;
        assert!(status.is_success(), "GET {path}: {status} {v}");
        v
    }

    /// Polls `GET path` until a successful answer satisfies `f` (at most `limit`); returns it.
    pub async fn wait_for(&self, path: &str, limit: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = None;
        let found =
            seam_test_support::try_wait_for_async(limit, format!("GET {path} to match"), async || {
                let (status, v) = self.get_status(path).await;
                if status.is_success() && f(&v) {
                    return Some(v);
                }
                last = Some((status, v));
                None
            })
            .await;
        found.unwrap_or_else(|e| panic!("{e}: last answer {last:?}"))
    }

    /// Creates a Zendesk integration named `display_name` on the simulator's account and waits
    /// for its connection check to end; returns the source and the check.
    pub async fn create_zendesk_source(&self, display_name: &str) -> (Value, Value) {
        let (status, source) = self
            .call(
                reqwest::Method::POST,
                "/v4/sources",
                Some(
                    json!({"display_name": display_name, "type": "platform.zendesk", "properties": {
                    "subdomain": "acme", "email": super::sim::EMAIL, "api_token": super::sim::API_TOKEN,
                    "start_date": "2000-01-01T00:00:00Z"}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{source}");
        let id = source["id"].as_i64().unwrap();
        let check = self
            .wait_for(
                &format!("/v4/sources/{id}/last-connection-check"),
                Duration::from_secs(60),
                |c| c["status"] != "running",
            )
            .await;
        (source, check)
    }

    /// Selects `streams` (whole tables) of source `id`.
    pub async fn select_streams(&self, id: i64, streams: &[&str]) {
        let streams: Vec<Value> = streams
            .iter()
            .map(|s| json!({"tap_stream_id": s, "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]}))
            .collect();
        let (status, v) = self
            .call(
                reqwest::Method::PUT,
                &format!("/v4/sources/{id}/streams"),
                Some(json!({ "streams": streams })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// Pauses source `id` (so only Run Extraction Now starts jobs).
    pub async fn pause(&self, id: i64) {
        let (status, v) = self
            .call(
                reqwest::Method::PUT,
                &format!("/v4/sources/{id}"),
                Some(json!({"paused_at": "2026-01-01T00:00:00Z"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// Run Extraction Now; returns the job id.
    pub async fn run_now(&self, id: i64) -> i64 {
        let (status, v) = self
            .call(reqwest::Method::POST, &format!("/v4/sources/{id}/sync"), None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        v["job_id"].as_i64().unwrap()
    }

    /// Run Extraction Now, then waits (at most `limit`) for the job to succeed, which it must do
    /// resuming from a committed bookmark of `stream`; returns how many `stream` records it read.
    pub async fn run_resumed(&self, id: i64, stream: &str, limit: Duration) -> i64 {
        let resumed = self.run_now(id).await;
        let job = self
            .wait_for(&format!("/v4/sources/{id}/extractions/{resumed}"), limit, |j| {
                j["status"] != "running"
            })
            .await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let logs = self
            .get(&format!(
                "/v4/sources/{id}/extractions/{resumed}/logs?format=text"
            ))
            .await;
        let logs = logs.as_str().unwrap();
        assert!(
            logs.contains(&format!("found current bookmark for {stream}")),
            "{logs}"
        );
        assert!(!logs.contains("No bookmarks"), "{logs}");
        logs.lines()
            .find_map(|l| l.split(&format!("tap - INFO {stream}: ")).nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {stream} count in the log: {logs}"))
    }

    /// Job `job_id` of source `id`.
    pub async fn job(&self, id: i64, job_id: i64) -> Value {
        self.get(&format!("/v4/sources/{id}/extractions/{job_id}")).await
    }

    /// Rows committed to `table` in this billing period, and its bookmark, by the loads report.
    pub async fn committed(&self, id: i64, table: &str) -> (i64, String) {
        let loads = self.get(&format!("/v4/sources/{id}/loads")).await;
        let load = loads
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["stream_name"] == table);
        match load {
            Some(l) => (
                l["rows_loaded"].as_i64().unwrap_or(0),
                l["max_bookmark_value"].as_str().unwrap_or_default().to_owned(),
            ),
            None => (0, String::new()),
        }
    }

    /// Signs in to the dashboard as admin; returns the status (303 when it worked).
    pub async fn sign_in(&self, password: &str) -> u16 {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(format!("{}/signin", self.base))
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
}
