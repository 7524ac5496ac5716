//! Test doubles: a fake Zendesk-like source whose behaviour is chosen by subdomain, and an in-memory
//! destination that upserts by primary key and counts subtable rows.
//!
//! Subdomains: `badauth` (401), `notadmin` (403), `unknown` (404 account), `offline` (network),
//! `slow` (each page waits 1 minute of tokio time), `failing` (extraction fails after one page, and
//! at once when resuming), `panicdiscover` / `panicread` (the source panics in discovery / after its
//! first page), `stuck` (sends one page, then waits forever and ignores the stop), `flood` (sends
//! records forever, ignoring the stop: a paginator that never ends), `gated` (skips
//! `users` as a plan-gated 403 would), `hangcheck` (the connection check never answers).
//! Schema names (from display names): `badload` (the destination rejects tickets), `panicload` (the
//! destination panics on a commit with rows), `ratelimitedwh` (every commit with rows is rate limited
//! for a minute); anything else works.

use async_trait::async_trait;
use seam_core::catalog::CatalogEntry;
use seam_core::singer::{Message, RecordMessage, SchemaMessage};
use seam_core::{
    Catalog, CommitReport, Destination, DestinationError, ErrorKind, JsonType, ReadSummary,
    ReplicationMethod, Schema, Source, SourceError, State,
};
use seam_runtime::connector::{ConnectorFactory, SourceSpec};
use seam_runtime::error::JobError;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Records per stream per job.
pub const RECORDS: u64 = 25;
/// Records per page (a STATE follows each page).
pub const PAGE: u64 = 10;
/// What the `panic*` fakes panic with.
pub const PANIC_TEXT: &str = "header value is not visible ASCII";
/// Why `gated` skips `users`.
pub const GATED_REASON: &str =
    "zendesk answered 403 Forbidden: the account's plan does not include this endpoint";

#[derive(Debug, Default)]
pub struct MemWarehouse {
    /// schema -> table -> primary key -> row
    pub tables: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
    pub states: BTreeMap<String, State>,
    pub commits: u64,
}

#[derive(Debug, Clone, Default)]
pub struct FakeFactory {
    pub warehouse: Arc<Mutex<MemWarehouse>>,
    /// Every spec a source was built from (to prove credentials arrive decrypted).
    pub specs: Arc<Mutex<Vec<SourceSpec>>>,
}

impl FakeFactory {
    pub fn rows(&self, schema: &str, table: &str) -> usize {
        self.warehouse
            .lock()
            .unwrap()
            .tables
            .get(schema)
            .and_then(|t| t.get(table))
            .map_or(0, BTreeMap::len)
    }
}

impl ConnectorFactory for FakeFactory {
    fn source(&self, spec: &SourceSpec) -> Result<Box<dyn Source>, JobError> {
        self.specs.lock().unwrap().push(spec.clone());
        Ok(Box::new(FakeSource {
            subdomain: spec.properties.subdomain.clone(),
        }))
    }

    fn destination(&self, schema_name: &str) -> Result<Box<dyn Destination>, JobError> {
        Ok(Box::new(MemDestination {
            schema: schema_name.to_owned(),
            warehouse: Arc::clone(&self.warehouse),
            staged: Vec::new(),
            keys: BTreeMap::new(),
            reject_tickets: false,
        }))
    }
}

#[derive(Debug)]
pub struct FakeSource {
    subdomain: String,
}

fn err(kind: ErrorKind, msg: &str) -> SourceError {
    SourceError::new(kind, msg.to_owned())
}

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
                for n in (1..=RECORDS).cycle() {
                    let record = RecordMessage::from_value(stream.clone(), &json!({"id": n})).unwrap();
                    out.send(Message::Record(record))
                        .await
                        .map_err(|_| SourceError::consumer_gone())?;
                }
            }
            // Resume after the bookmark: the fake's records have ids 1..=RECORDS and updated_at = id seconds.
            let from = state.bookmark(&stream, "id").and_then(Value::as_u64).unwrap_or(0);
            let mut id = from;
            let mut pages = 0;
            while id < RECORDS {
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
                let end = (id + PAGE).min(RECORDS);
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
                    let record = RecordMessage::from_value(stream.clone(), &Value::Object(fields)).unwrap();
                    out.send(Message::Record(record))
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

#[derive(Debug)]
pub struct MemDestination {
    schema: String,
    warehouse: Arc<Mutex<MemWarehouse>>,
    staged: Vec<(String, Value)>,
    keys: BTreeMap<String, Vec<String>>,
    reject_tickets: bool,
}

impl Destination for MemDestination {
    fn check(&mut self) -> Result<(), DestinationError> {
        Ok(())
    }

    fn committed_state(&mut self) -> Result<Option<State>, DestinationError> {
        Ok(self.warehouse.lock().unwrap().states.get(&self.schema).cloned())
    }

    fn ensure_table(&mut self, schema: &SchemaMessage) -> Result<(), DestinationError> {
        if schema.stream == "tickets" && self.schema.contains("badload") {
            self.reject_tickets = true;
        }
        self.keys
            .insert(schema.stream.clone(), schema.key_properties.clone());
        Ok(())
    }

    fn write_batch(&mut self, stream: &str, records: &[RecordMessage]) -> Result<(), DestinationError> {
        if self.reject_tickets && stream == "tickets" {
            return Err(DestinationError::new(
                ErrorKind::Schema,
                "column subject has conflicting types".to_owned(),
            )
            .in_table("tickets"));
        }
        for r in records {
            self.staged
                .push((stream.to_owned(), Value::Object(r.value().unwrap())));
        }
        Ok(())
    }

    fn activate_version(&mut self, _stream: &str, _version: i64) -> Result<(), DestinationError> {
        Ok(())
    }

    fn commit(&mut self, state: Option<&State>) -> Result<CommitReport, DestinationError> {
        if !self.staged.is_empty() && self.schema.contains("panicload") {
            panic!("{PANIC_TEXT}");
        }
        if !self.staged.is_empty() && self.schema.contains("ratelimitedwh") {
            return Err(DestinationError::new(
                ErrorKind::RateLimited {
                    retry_after: Some(Duration::from_secs(60)),
                },
                "the warehouse is throttling commits".to_owned(),
            ));
        }
        let mut w = self.warehouse.lock().unwrap();
        let mut report = CommitReport::default();
        for (stream, row) in self.staged.drain(..) {
            let key = row.get("id").map(Value::to_string).unwrap_or_default();
            if let Some(tags) = row.get("tags").and_then(Value::as_array) {
                let sub = format!("{stream}__tags");
                for (i, t) in tags.iter().enumerate() {
                    w.tables
                        .entry(self.schema.clone())
                        .or_default()
                        .entry(sub.clone())
                        .or_default()
                        .insert(format!("{key}/{i}"), t.clone());
                }
                *report.rows.entry(sub).or_default() += tags.len() as u64;
            }
            w.tables
                .entry(self.schema.clone())
                .or_default()
                .entry(stream.clone())
                .or_default()
                .insert(key, row);
            *report.rows.entry(stream).or_default() += 1;
        }
        if let Some(s) = state {
            w.states.insert(self.schema.clone(), s.clone());
        }
        w.commits += 1;
        Ok(report)
    }
}
