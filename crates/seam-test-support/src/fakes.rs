//! A fake Zendesk-like source and a connector factory (feature `fakes`): the service's, the
//! scheduler's and the pipeline's tests run jobs against them.
//!
//! [`FakeSource`] sends [`RECORDS`] records (or as many as asked) per selected stream, in pages of
//! [`PAGE`] with a STATE after each, resuming after the `id` bookmark; its behaviour is named (the
//! [`FakeFactory`] takes the name from the integration's subdomain): `badauth` (401), `notadmin` (403), `unknown` (404 account), `offline` (network),
//! `slow` (each page waits 1 minute of tokio time), `failing` (extraction fails after one page, and
//! at once when resuming), `panicdiscover` / `panicread` (the source panics in discovery / after its
//! first page), `stuck` (sends one page, then waits forever and ignores the stop), `flood` (sends
//! records forever, ignoring the stop: a paginator that never ends), `gated` (skips
//! `users` as a plan-gated 403 would), `hangcheck` (the connection check never answers).
//! [`FakeFactory`] pairs it with the in-memory destination, whose faults it chooses by schema name
//! (from display names): `badload` (the destination rejects tickets), `panicload` (the destination
//! panics on a commit with rows), `ratelimitedwh` (every commit with rows is rate limited for a
//! minute); anything else works.

use crate::doubles::{lock, Faults, MemDestination, MemWarehouse};
use async_trait::async_trait;
use seam_core::catalog::CatalogEntry;
use seam_core::singer::{Message, RecordMessage, SchemaMessage};
use seam_core::{
    Catalog, Destination, ErrorKind, JsonType, ReadSummary, ReplicationMethod, Schema, Source, SourceError,
    State,
};
use seam_runtime::connector::{ConnectorFactory, SourceSpec};
use seam_runtime::error::JobError;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Records per stream per job, unless asked otherwise.
pub const RECORDS: u64 = 25;
/// Records per page (a STATE follows each page).
pub const PAGE: u64 = 10;
/// What the `panic*` fakes panic with.
pub const PANIC_TEXT: &str = "header value is not visible ASCII";
/// Why `gated` skips `users`.
pub const GATED_REASON: &str =
    "zendesk answered 403 Forbidden: the account's plan does not include this endpoint";

/// A factory of [`FakeSource`]s (behaviour: the integration's subdomain) and in-memory destinations
/// over one shared warehouse. Registers Zendesk's connector spec, as the service's does.
#[derive(Debug, Clone, Default)]
pub struct FakeFactory {
    /// The warehouse every destination it opens loads into.
    pub warehouse: Arc<Mutex<MemWarehouse>>,
    /// Every spec a source was built from (to prove credentials arrive decrypted).
    pub specs: Arc<Mutex<Vec<SourceSpec>>>,
}

impl FakeFactory {
    /// Rows of `table` in `schema`.
    pub fn rows(&self, schema: &str, table: &str) -> usize {
        lock(&self.warehouse).rows(schema, table)
    }
}

impl ConnectorFactory for FakeFactory {
    fn connectors(&self) -> Vec<seam_core::ConnectorSpec> {
        vec![seam_zendesk::spec::connector_spec()]
    }

    fn source(&self, spec: &SourceSpec) -> Result<Box<dyn Source>, JobError> {
        self.specs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(spec.clone());
        Ok(Box::new(FakeSource::new(
            spec.properties.config_str("subdomain").unwrap_or_default(),
        )))
    }

    fn destination(&self, schema_name: &str) -> Result<Box<dyn Destination>, JobError> {
        let faults = Faults {
            reject_stream: schema_name.contains("badload").then(|| "tickets".to_owned()),
            panic_with: schema_name.contains("panicload").then(|| PANIC_TEXT.to_owned()),
            fail_with: schema_name
                .contains("ratelimitedwh")
                .then_some(ErrorKind::RateLimited {
                    retry_after: Some(Duration::from_secs(60)),
                }),
            ..Faults::default()
        };
        Ok(Box::new(
            MemDestination::new(schema_name, &self.warehouse).with_faults(faults),
        ))
    }
}

/// A fake source; see the module docs for its behaviours.
#[derive(Debug, Clone)]
pub struct FakeSource {
    subdomain: String,
    records: u64,
}

impl FakeSource {
    /// A source behaving as `behaviour` says (a subdomain name of the module docs; any other name
    /// works), with [`RECORDS`] records per stream.
    pub fn new(behaviour: &str) -> FakeSource {
        FakeSource {
            subdomain: behaviour.to_owned(),
            records: RECORDS,
        }
    }

    /// The same, with `records` records per stream.
    pub fn with_records(mut self, records: u64) -> FakeSource {
        self.records = records;
        self
    }
}

/// A record of `stream`.
fn record(stream: &str, value: &Value) -> Result<Message, SourceError> {
    RecordMessage::from_value(stream, value)
        .map(Message::Record)
        .map_err(|e| SourceError::new(ErrorKind::Internal, e.to_string()))
}

fn err(kind: ErrorKind, msg: &str) -> SourceError {
    SourceError::new(kind, msg.to_owned())
}

/// The catalog it discovers: `tickets` (with a `tags` array) and `users`, incremental on `updated_at`.
pub fn catalog() -> Catalog {
    let tickets = Schema::object([
        ("id".to_string(), Schema::nullable(JsonType::Integer)),
        ("subject".to_string(), Schema::nullable(JsonType::String)),
        ("updated_at".to_string(), Schema::nullable_date_time()),
        (
            "tags".to_string(),
            Schema::array(Schema::nullable(JsonType::String)),
        ),
    ]);
    let users = Schema::object([
        ("id".to_string(), Schema::nullable(JsonType::Integer)),
        ("name".to_string(), Schema::nullable(JsonType::String)),
        ("updated_at".to_string(), Schema::nullable_date_time()),
    ]);
    Catalog {
        streams: vec![
            CatalogEntry::new(
                "tickets",
                tickets,
                &["id"],
                ReplicationMethod::Incremental,
                Some("updated_at"),
            ),
            CatalogEntry::new(
                "users",
                users,
                &["id"],
                ReplicationMethod::Incremental,
                Some("updated_at"),
            ),
        ],
    }
}

#[async_trait]
impl Source for FakeSource {
    async fn check(&self) -> Result<(), SourceError> {
        match self.subdomain.as_str() {
            "badauth" => Err(err(
                ErrorKind::Auth,
                "zendesk rejected the API token for agent@example.com (401): check the email and token",
            )),
            "notadmin" => Err(err(
                ErrorKind::Auth,
                "the Zendesk user is not an admin (403): use an admin's token",
            )),
            "unknown" => Err(err(
                ErrorKind::Config,
                "unknown.zendesk.com is not a Zendesk account (404): check the subdomain",
            )),
            "offline" => Err(err(
                ErrorKind::Transient,
                "could not connect to offline.zendesk.com",
            )),
            "hangcheck" => std::future::pending().await,
            _ => Ok(()),
        }
    }

    async fn discover(&self) -> Result<Catalog, SourceError> {
        if self.subdomain == "panicdiscover" {
            panic!("{PANIC_TEXT}");
        }
        Ok(catalog())
    }

    async fn read(
        &self,
        catalog: &Catalog,
        state: State,
        out: mpsc::Sender<Message>,
        cancel: CancellationToken,
    ) -> Result<ReadSummary, SourceError> {
        let mut summary = ReadSummary::default();
        let mut state = state;
        for entry in catalog.selected() {
            let stream = entry.tap_stream_id.clone();
            if self.subdomain == "gated" && stream == "users" {
                summary.skipped.insert(stream, GATED_REASON.to_owned());
                continue;
            }
            let schema = SchemaMessage {
                stream: stream.clone(),
                schema: entry.selected_schema(),
                key_properties: entry.key_properties(),
                bookmark_properties: Some(vec!["updated_at".into()]),
            };
            out.send(Message::Schema(Box::new(schema)))
                .await
                .map_err(|_| SourceError::consumer_gone())?;
            if self.subdomain == "flood" {
                // Breaks the contract: never returns, stop or not, and always has more to send.
                for n in (1..=self.records.max(1)).cycle() {
                    out.send(record(&stream, &json!({"id": n}))?)
                        .await
                        .map_err(|_| SourceError::consumer_gone())?;
                }
            }
            // Resume after the bookmark: the fake's records have ids 1..=records and updated_at = id seconds.
            let from = state.bookmark(&stream, "id").and_then(Value::as_u64).unwrap_or(0);
            let mut id = from;
            let mut pages = 0;
            while id < self.records {
                if cancel.is_cancelled() {
                    return Ok(summary);
                }
                if self.subdomain == "slow" {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                        _ = cancel.cancelled() => return Ok(summary),
                    }
                }
                if self.subdomain == "failing" && (pages == 1 || from > 0) {
                    return Err(
                        err(ErrorKind::Transient, "zendesk answered 503 three times").in_stream(stream)
                    );
                }
                let end = (id + PAGE).min(self.records);
                for n in id + 1..=end {
                    let mut fields = serde_json::Map::new();
                    for f in entry.selected_fields() {
                        let v = match f {
                            "id" => json!(n),
                            "updated_at" => json!(format!("2026-01-01T00:00:{:02}Z", n % 60)),
                            "tags" => json!(["a", "b"]),
                            other => json!(format!("{other} {n}")),
                        };
                        fields.insert(f.to_owned(), v);
                    }
                    out.send(record(&stream, &Value::Object(fields))?)
                        .await
                        .map_err(|_| SourceError::consumer_gone())?;
                    *summary.records.entry(stream.clone()).or_default() += 1;
                }
                id = end;
                pages += 1;
                if self.subdomain == "panicread" {
                    panic!("{PANIC_TEXT}");
                }
                state.set_bookmark(&stream, "id", json!(id));
                state.set_bookmark(
                    &stream,
                    "updated_at",
                    json!(format!("2026-01-01T00:00:{:02}Z", id % 60)),
                );
                out.send(Message::State {
                    value: state.to_value(),
                })
                .await
                .map_err(|_| SourceError::consumer_gone())?;
                summary.requests += 1;
                if self.subdomain == "stuck" {
                    // Breaks the contract: never returns, stop or not.
                    std::future::pending::<()>().await;
                }
            }
        }
        Ok(summary)
    }
}
