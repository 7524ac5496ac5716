//! `seam serve` as a user runs it, against the simulator: SIGTERM stops it within its bound with a
//! job in progress (committed rows kept, the job `cancelled`), and a SIGKILL mid-job loses nothing
//! and duplicates nothing (the next job resumes from the committed bookmark).

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zendesk_sim::{FaultConfig, SimConfig, SimHandle};

/// The schema "Stitch Zendesk" replicates into.
const SCHEMA: &str = "stitch_zendesk";

async fn start_sim(tickets: usize, slow_ms: u64) -> SimHandle {
    let config = SimConfig {
        tickets,
        seed: 11,
        rate_limits: false,
        faults: FaultConfig {
            slow_ms,
            slow_rate: 1.0,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    };
    zendesk_sim::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

/// Makes every later simulator answer wait `slow_ms`, through the simulator's admin API.
async fn slow_down(sim: &SimHandle, slow_ms: u64) {
    let resp = reqwest::Client::new()
        .post(format!("{}/__sim/faults", sim.base_url()))
        .json(&json!({"rate": 0.0, "kinds": [], "slow_ms": slow_ms, "slow_rate": 1.0, "seed": 1}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
}

/// A running `seam serve` process.
struct Serve {
    child: Child,
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Serve {
    /// Starts `seam serve` on `data_dir` (DuckDB warehouse, SQLite metastore by default) with the
    /// simulator as Zendesk; reads the API token (first start) and the address from stdout.
    fn start(data_dir: &Path, sim: &SimHandle, token: Option<&str>, log: &Path, extra: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seam"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--zendesk-base-url", &sim.base_url()])
            .args(extra)
            .env("SEAM_ADMIN_PASSWORD", "a-long-enough-admin-password")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut token = token.map(str::to_owned);
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "seam serve did not say where it listens: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
            if let Some(t) = line.split("store it now): ").nth(1) {
                token = Some(t.trim().to_owned());
            }
            if let Some(url) = line.strip_prefix("seam: listening on ") {
                break url.trim().to_owned();
            }
        };
        Serve {
            child,
            base,
            token: token.expect("an API token (printed on the first start)"),
            client: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
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

    async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert!(status.is_success(), "GET {path}: {status} {v}");
        v
    }

    /// Polls `path` (every 50 ms, at most `limit`) until `f` holds; returns that answer.
    async fn wait_for(&self, path: &str, limit: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (status, v) = self.call(reqwest::Method::GET, path, None).await;
            if status.is_success() && f(&v) {
                return v;
            }
            assert!(
                started.elapsed() < limit,
                "gave up after {limit:?} waiting on {path}: last {status} {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates "Stitch Zendesk" on the simulator, pauses it (so only Run Extraction Now starts
    /// jobs), selects tickets and users; returns its id.
    async fn create_integration(&self) -> i64 {
        let (status, source) = self
            .call(
                reqwest::Method::POST,
                "/v4/sources",
                Some(
                    json!({"display_name": "Stitch Zendesk", "type": "platform.zendesk", "properties": {
                    "subdomain": "acme", "email": "admin@acme.test", "api_token": "sim-token",
                    "start_date": "2000-01-01T00:00:00Z"}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{source}");
        assert_eq!(source["name"], SCHEMA);
        let id = source["id"].as_i64().unwrap();
        let check = self
            .wait_for(
                &format!("/v4/sources/{id}/last-connection-check"),
                Duration::from_secs(60),
                |c| c["status"] != "running",
            )
            .await;
        assert_eq!(check["message"], "Success!", "{check}");
        let (status, v) = self
            .call(
                reqwest::Method::PUT,
                &format!("/v4/sources/{id}"),
                Some(json!({"paused_at": "2026-01-01T00:00:00Z"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let select = |s: &str| json!({"tap_stream_id": s, "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]});
        let (status, v) = self
            .call(
                reqwest::Method::PUT,
                &format!("/v4/sources/{id}/streams"),
                Some(json!({"streams": [select("tickets"), select("users")]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        id
    }

    /// Run Extraction Now; returns the job id.
    async fn run_now(&self, id: i64) -> i64 {
        let (status, v) = self
            .call(reqwest::Method::POST, &format!("/v4/sources/{id}/sync"), None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        v["job_id"].as_i64().unwrap()
    }

    /// Rows committed to `table` in this billing period, and its bookmark, by the loads report.
    async fn committed(&self, id: i64, table: &str) -> (i64, String) {
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

    async fn committed_rows(&self, id: i64, table: &str) -> i64 {
        self.committed(id, table).await.0
    }

    async fn job(&self, id: i64, job_id: i64) -> Value {
        self.get(&format!("/v4/sources/{id}/extractions/{job_id}")).await
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `limit`; kills it and fails the test otherwise.
    fn wait_exit(&mut self, limit: Duration, log: &Path) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let took = started.elapsed();
                assert!(
                    status.success(),
                    "seam serve exited with {status}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
                return took;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "seam serve did not exit within {limit:?} of the signal: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Rows of a two-column text query against the DuckDB warehouse.
fn pairs(warehouse: &Path, sql: &str) -> Vec<(String, String)> {
    let conn = duckdb::Connection::open(warehouse).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn truth_ids(truth: &Value, stream: &str) -> BTreeSet<String> {
    truth[stream]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Tickets and users in the warehouse equal the simulator's truth: every id once, nothing else
/// (except rows of records deleted at the source since `earlier`: replication never deletes), and
/// the newest version of each.
fn assert_matches_truth(warehouse: &Path, truth: &Value, earlier: &Value) {
    for (stream, version_sql) in [
        (
            "tickets",
            format!("SELECT CAST(id AS TEXT), CAST(generated_timestamp AS TEXT) FROM {SCHEMA}.tickets"),
        ),
        (
            "users",
            format!(
                "SELECT CAST(id AS TEXT), strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') FROM {SCHEMA}.users"
            ),
        ),
    ] {
        let rows = pairs(warehouse, &version_sql);
        let ids: Vec<&String> = rows.iter().map(|(id, _)| id).collect();
        let unique: BTreeSet<String> = ids.iter().map(|s| (*s).clone()).collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{stream}: {} duplicated rows",
            ids.len() - unique.len()
        );
        let want = truth_ids(truth, stream);
        let gone: BTreeSet<String> = truth_ids(earlier, stream).difference(&want).cloned().collect();
        let missing: Vec<&String> = want.difference(&unique).collect();
        let extra: Vec<&String> = unique
            .difference(&want)
            .filter(|id| !gone.contains(*id))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{stream}: {} missing, {} unexpected (e.g. {:?} / {:?})",
            missing.len(),
            extra.len(),
            missing.first(),
            extra.first()
        );
        let versions: BTreeMap<String, String> = rows.into_iter().collect();
        for (id, version) in truth[stream]["updated"].as_object().unwrap() {
            let want = match version {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(versions.get(id), Some(&want), "{stream} {id}: an older version");
        }
    }
}

/// SIGTERM with a job waiting on a Zendesk that stopped answering: `seam serve` exits within its
/// shutdown bound (not after the requests time out), the job is recorded `cancelled` (not left
/// `running` for the next start to sweep), and the rows it committed stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_within_its_bound_with_a_job_in_progress() {
    // Every answer takes 1.5 s: the job cannot finish between its first commit and the hang below.
    let sim = start_sim(5_000, 1_500).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let args = ["--max-batch-records", "100", "--shutdown-timeout", "15"];
    let mut serve = Serve::start(&data, &sim, None, &log, &args);
    let id = serve.create_integration().await;
    let job_id = serve.run_now(id).await;
    // At least one commit, then Zendesk stops answering (each request hangs for 10 minutes).
    let limit = Duration::from_secs(120);
    let started = Instant::now();
    while serve.committed_rows(id, "tickets").await == 0 {
        assert!(started.elapsed() < limit, "no commit within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    slow_down(&sim, 600_000).await;
    let current = serve
        .wait_for(
            &format!("/v4/sources/{id}/extractions/current"),
            Duration::from_secs(10),
            |p| p["job_id"] == job_id,
        )
        .await;
    assert_eq!(current["stopping"], false);
    // Let the source get stuck in a request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let committed = serve.committed_rows(id, "tickets").await;
    assert!(serve.get(&format!("/v4/sources/{id}")).await["sync_status"] == "In Progress");

    serve.signal("TERM");
    let log_path = log.clone();
    let (serve, took) = tokio::task::spawn_blocking(move || {
        // The bound: the 15 s shutdown timeout plus the process's own exit grace, with room.
        let took = serve.wait_exit(Duration::from_secs(40), &log_path);
        (serve, took)
    })
    .await
    .unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    eprintln!("seam serve stopped {took:?} after SIGTERM");
    assert!(
        took < Duration::from_secs(25),
        "seam serve took {took:?} to stop: {stderr}"
    );
    assert!(stderr.contains("scheduler stopped"), "{stderr}");

    // The next start finds the job cancelled, not running (nothing for the start-up sweep).
    let log2 = dir.path().join("serve2.log");
    let token = serve.token.clone();
    let mut serve = Serve::start(&data, &sim, Some(&token), &log2, &[]);
    let job = serve.job(id, job_id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    serve.signal("TERM");
    tokio::task::spawn_blocking(move || {
        serve.wait_exit(Duration::from_secs(40), &log2);
    })
    .await
    .unwrap();

    // Committed rows are intact, once each.
    let rows = pairs(
        &data.join("warehouse.duckdb"),
        &format!("SELECT CAST(id AS TEXT), '' FROM {SCHEMA}.tickets"),
    );
    let unique: BTreeSet<&String> = rows.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), rows.len(), "duplicated tickets");
    assert!(
        rows.len() as i64 >= committed,
        "{} tickets in the warehouse, {committed} were committed before the stop",
        rows.len()
    );
}

/// SIGKILL mid-job after a commit that carried a tickets bookmark, restart, run again: the
/// interrupted job is marked failed, the new one resumes from the committed bookmark (it reads fewer
/// tickets than there are), and the warehouse equals the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_job_then_restart_resumes_from_the_bookmark() {
    // Slow answers stretch the job so the kill lands mid-way.
    let sim = start_sim(3_000, 400).await;
    let before = sim.truth();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let args = ["--max-batch-records", "200"];
    let serve = Serve::start(&data, &sim, None, &log, &args);
    let id = serve.create_integration().await;
    let interrupted = serve.run_now(id).await;
    let limit = Duration::from_secs(120);
    let started = Instant::now();
    // Tickets rows are committed from the first batch on; their bookmark only with the commit after
    // the first page's STATE. Kill once a commit carried it.
    let committed = loop {
        let (rows, bookmark) = serve.committed(id, "tickets").await;
        if bookmark.starts_with("generated_timestamp") {
            break rows;
        }
        assert!(
            started.elapsed() < limit,
            "no tickets bookmark committed within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let progress = serve.get(&format!("/v4/sources/{id}/extractions/current")).await;
    assert_eq!(progress["job_id"], interrupted, "the job ended before the kill");
    serve.signal("KILL");
    let token = serve.token.clone();
    drop(serve);
    let total = sim.truth()["tickets"]["count"].as_i64().unwrap();
    assert!(
        committed < total,
        "the kill came after every ticket was committed ({committed})"
    );

    // Zendesk changes while seam is down.
    sim.mutate(30);
    sim.advance_clock(61);
    slow_down(&sim, 0).await;

    let log2 = dir.path().join("serve2.log");
    let mut serve = Serve::start(&data, &sim, Some(&token), &log2, &args);
    let job = serve.job(id, interrupted).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("seam stopped"),
        "{job}"
    );
    let resumed = serve.run_now(id).await;
    let job = serve
        .wait_for(
            &format!("/v4/sources/{id}/extractions/{resumed}"),
            Duration::from_secs(300),
            |j| j["status"] != "running",
        )
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let logs = serve
        .get(&format!(
            "/v4/sources/{id}/extractions/{resumed}/logs?format=text"
        ))
        .await;
    let logs = logs.as_str().unwrap();
    assert!(logs.contains("found current bookmark for tickets"), "{logs}");
    assert!(!logs.contains("No bookmarks"), "{logs}");
    let extracted: i64 = logs
        .lines()
        .find_map(|l| l.split("tap - INFO tickets: ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tickets count in the log: {logs}"));
    assert!(
        extracted < total,
        "the resumed job read {extracted} of {total} tickets: it did not start from the bookmark"
    );
    serve.signal("TERM");
    tokio::task::spawn_blocking(move || {
        serve.wait_exit(Duration::from_secs(60), &log2);
    })
    .await
    .unwrap();

    let after = sim.truth();
    assert_ne!(before, after, "the mutation changed nothing");
    assert_matches_truth(&data.join("warehouse.duckdb"), &after, &before);
}
