#![allow(clippy::unwrap_used)]
//! seam-server's integration tests: the API over real HTTP, and the scheduler under paused time.

mod api;
mod browser;
mod e2e;
mod jobs;
mod queue;
mod scheduler;
mod security;
mod shared_metastore;
mod singer;

use reqwest::StatusCode;
use seam_runtime::clock::TokioClock;
use seam_runtime::connector::ConnectorFactory;
use seam_runtime::scheduler::SchedulerConfig;
use seam_server::connectors::DefaultFactory;
use seam_server::{Service, ServiceConfig};
pub use seam_test_support::fakes;
use seam_test_support::fakes::FakeFactory;
use seam_warehouse::DestinationSpec;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The API token used in create bodies; tests assert it never comes back.
pub const ZENDESK_TOKEN: &str = "zd-TOKEN-never-shown-7f3a9c";

/// How tests start the service: data in `data_dir`, a free loopback port, `factory`, real tokio
/// time, the default scheduler and security (change fields for anything else).
pub fn service_config(data_dir: PathBuf, factory: Arc<dyn ConnectorFactory>) -> ServiceConfig {
    ServiceConfig {
        data_dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        factory,
        clock: Arc::new(TokioClock::new()),
        scheduler: SchedulerConfig::default(),
        metastore: None,
        security: seam_server::SecurityConfig::default(),
    }
}

/// The real connectors: the DuckDB warehouse at `warehouse`, and Zendesk at `zendesk` (the
/// simulator's base URL) when given.
pub fn real_connectors(warehouse: PathBuf, zendesk: Option<String>) -> Arc<dyn ConnectorFactory> {
    Arc::new(DefaultFactory::new(DestinationSpec::DuckDb(warehouse), zendesk))
}

/// Starts the service; panics when it cannot.
pub async fn start_service(config: ServiceConfig) -> Service {
    Service::start(config).await.unwrap()
}

/// Sets the dashboard's admin password (as `seam admin reset-password` does).
pub async fn set_admin_password(service: &Service, password: &str) {
    seam_server::ui::set_admin_password(service.state().metastore.as_ref(), password)
        .await
        .unwrap();
}

/// Log lines written while [`Logs::capture`]'s guard lives, as JSON lines (nextest runs each test in
/// its own process; on a current-thread runtime the service's tasks log on the test's thread).
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Sends every log event of this thread, at every level, here until the guard drops.
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .json()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A client that remembers every response body it saw.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Api {
    /// The API of `service`, with the token its first start made.
    pub fn of(service: &Service) -> Api {
        let token = service.initial_token().expect("a first start makes a token");
        Api::with_token(service, token.to_owned())
    }

    /// The API of `service`, with `token`.
    pub fn with_token(service: &Service, token: String) -> Api {
        Api {
            base: format!("http://{}", service.addr()),
            token,
            client: reqwest::Client::new(),
            seen: Arc::default(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        self.seen.lock().unwrap().push(text.clone());
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// `/openapi.json` (served without a token).
    pub async fn openapi(&self) -> Value {
        let r = self
            .client
            .get(format!("{}/openapi.json", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Polls `GET path` until `f` holds for a successful answer (real time, up to 60 s).
    pub async fn wait_for(&self, path: &str, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = None;
        let found = seam_test_support::try_wait_for_async(
            Duration::from_secs(60),
            format!("GET {path} to match"),
            async || {
                let (status, v) = self.get(path).await;
                if status.is_success() && f(&v) {
                    return Some(v);
                }
                last = Some((status, v));
                None
            },
        )
        .await;
        found.unwrap_or_else(|e| panic!("{e}: last answer {last:?}"))
    }

    /// Creates an integration with `subdomain` (for the fakes) and waits for its connection check
    /// to end.
    pub async fn create(&self, display_name: &str, subdomain: &str) -> (Value, Value) {
        self.create_with(
            json!({"display_name": display_name, "type": "platform.zendesk", "properties": {
            "subdomain": subdomain, "email": "agent@example.com", "api_token": ZENDESK_TOKEN}}),
        )
        .await
    }

    /// Creates an integration from a `POST /v4/sources` body and waits for its connection check to
    /// end; returns the source and the check.
    pub async fn create_with(&self, body: Value) -> (Value, Value) {
        let (status, source) = self.post("/v4/sources", body).await;
        assert_eq!(status, StatusCode::CREATED, "{source}");
        let id = source["id"].as_i64().unwrap();
        let check = self
            .wait_for(&format!("/v4/sources/{id}/last-connection-check"), |c| {
                c["status"] != "running"
            })
            .await;
        (source, check)
    }

    /// Selects `streams` (whole tables) of a source.
    pub async fn select(&self, id: i64, streams: &[&str]) {
        let streams: Vec<Value> = streams
            .iter()
            .map(|s| json!({"tap_stream_id": s, "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]}))
            .collect();
        let (status, v) = self
            .put(
                &format!("/v4/sources/{id}/streams"),
                json!({ "streams": streams }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// Selects every stream of a source (the fakes have two).
    pub async fn select_all(&self, id: i64) {
        self.select(id, &["tickets", "users"]).await;
    }
}

/// A running service over a temp data dir, with fakes.
#[allow(missing_debug_implementations)]
pub struct Harness {
    pub service: Service,
    pub api: Api,
    pub factory: FakeFactory,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_in(tempfile::tempdir().unwrap(), FakeFactory::default(), None).await
    }

    pub async fn start_in(dir: tempfile::TempDir, factory: FakeFactory, token: Option<String>) -> Harness {
        let service = start_service(service_config(dir.path().join("data"), Arc::new(factory.clone()))).await;
        let token = token
            .or_else(|| service.initial_token().map(str::to_owned))
            .expect("a token");
        let api = Api::with_token(&service, token);
        Harness {
            service,
            api,
            factory,
            dir,
        }
    }
}
