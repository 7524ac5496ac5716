#![allow(clippy::unwrap_used)]
//! seam-server's integration tests: the API over real HTTP, and the scheduler under paused time.

mod api;
mod browser;
mod e2e;
mod fakes;
mod jobs;
mod scheduler;
mod security;

use fakes::FakeFactory;
use reqwest::StatusCode;
use seam_runtime::scheduler::{SchedulerConfig, TokioClock};
use seam_server::{Service, ServiceConfig};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The API token used in create bodies; tests assert it never comes back.
pub const ZENDESK_TOKEN: &str = "zd-TOKEN-never-shown-7f3a9c";

/// A client that remembers every response body it saw.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Api {
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

    /// Creates an integration with `subdomain` and waits for its connection check to end.
    pub async fn create(&self, display_name: &str, subdomain: &str) -> (Value, Value) {
        let (status, source) = self
            .post(
                "/v4/sources",
                json!({"display_name": display_name, "type": "platform.zendesk", "properties": {
                    "subdomain": subdomain, "email": "agent@example.com", "api_token": ZENDESK_TOKEN}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{source}");
        let id = source["id"].as_i64().unwrap();
        let check = self
            .wait_for(&format!("/v4/sources/{id}/last-connection-check"), |c| {
                c["status"] != "running"
            })
            .await;
        (source, check)
    }

    /// Selects every stream of a source.
    pub async fn select_all(&self, id: i64) {
        let (status, v) = self
            .put(
                &format!("/v4/sources/{id}/streams"),
                json!({"streams": [
                    {"tap_stream_id": "tickets", "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]},
                    {"tap_stream_id": "users", "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]}]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
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
        let service = Service::start(ServiceConfig {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            factory: Arc::new(factory.clone()),
            clock: Arc::new(TokioClock::new()),
            scheduler: SchedulerConfig::default(),
            metastore: None,
            security: seam_server::SecurityConfig::default(),
        })
        .await
        .unwrap();
        let token = token
            .or_else(|| service.initial_token().map(str::to_owned))
            .expect("a token");
        let api = Api {
            base: format!("http://{}", service.addr()),
            token,
            client: reqwest::Client::new(),
            seen: Arc::default(),
        };
        Harness {
            service,
            api,
            factory,
            dir,
        }
    }
}
