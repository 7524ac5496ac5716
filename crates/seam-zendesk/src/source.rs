//! [`ZendeskSource`]: core's `Source` for Zendesk Support.

use crate::client::ZendeskClient;
use crate::config::{CommentsSource, ConfigError, ZendeskConfig, ZendeskConfigRaw};
use crate::error::ApiError;
use crate::rate_limit::{EndpointClass, RateLimits};
use crate::streams::{self, exports, lists, Fetch, Position, ReadCtx, StreamDef, StreamOut, STREAMS};
use async_trait::async_trait;
use seam_core::catalog::{Catalog, CatalogEntry, PARENT_TAP_STREAM_ID};
use seam_core::singer::{Message, SchemaMessage};
use seam_core::state::{State, VERSION_BOOKMARK};
use seam_core::{Classify, ErrorKind, ReadSummary, RetryPolicy, Source, SourceError};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The Zendesk Support source.
///
/// - `check`: `GET /api/v2/users/me.json` (one request): proves the subdomain and credentials, and
///   that the user is an admin (the exports are admin-only).
/// - `discover`: every stream in [`STREAMS`], user and organization custom fields typed from the
///   account's field definitions (two requests).
/// - `read`: the selected streams, several at once within the rate limits; see the crate docs for
///   how each is replicated. A cancel stops it within moments, whatever it waits on; streams cut
///   short send no ACTIVATE_VERSION.
#[derive(Debug, Clone)]
pub struct ZendeskSource {
    config: Arc<ZendeskConfig>,
    client: Arc<ZendeskClient>,
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> SourceError {
    SourceError::new(ErrorKind::Internal, e)
}

impl From<ConfigError> for SourceError {
    fn from(e: ConfigError) -> Self {
        SourceError::new(ErrorKind::Config, e)
    }
}

/// The check found a user who is not an admin.
#[derive(Debug, thiserror::Error)]
#[error("the zendesk user {user} is {role_article} {role}, not an admin: replicating tickets and users needs an admin's API token or OAuth grant")]
pub struct NotAdmin {
    /// The user's email.
    pub user: String,
    /// "a" / "an".
    pub role_article: &'static str,
    /// The role Zendesk reports.
    pub role: String,
}

impl ZendeskSource {
    /// A source with the default retry policy and Zendesk's per-minute budgets.
    pub fn new(config: ZendeskConfig) -> Result<Self, SourceError> {
        Self::with_options(config, RetryPolicy::default(), RateLimits::default())
    }

    /// A source with an injected retry policy (tests use [`RetryPolicy::fast_for_tests`]) and
    /// budgets (tests shrink the window to match a simulator with compressed minutes).
    pub fn with_options(
        config: ZendeskConfig,
        policy: RetryPolicy,
        limits: RateLimits,
    ) -> Result<Self, SourceError> {
        let client = ZendeskClient::new(&config, policy, limits).map_err(internal)?;
        Ok(ZendeskSource {
            config: Arc::new(config),
            client: Arc::new(client),
        })
    }

    /// Parses and validates a JSON config, then builds the source.
    pub fn from_json(config: &str) -> Result<Self, SourceError> {
        Self::new(ZendeskConfigRaw::from_json(config)?.validate()?)
    }

    /// The validated configuration.
    pub fn config(&self) -> &ZendeskConfig {
        &self.config
    }

    /// HTTP requests sent so far by this source (retries included).
    pub fn requests(&self) -> u64 {
        self.client.requests()
    }

    fn ctx(
        &self,
        out: mpsc::Sender<Message>,
        state: State,
        cancel: CancellationToken,
        outs: HashMap<&'static str, StreamOut>,
    ) -> ReadCtx {
        ReadCtx {
            client: self.client.clone(),
            config: self.config.clone(),
            out,
            state: tokio::sync::Mutex::new(state),
            cancel,
            summary: parking_lot::Mutex::new(ReadSummary::default()),
            outs,
            deleted_tickets: tokio::sync::OnceCell::new(),
        }
    }
}

/// One unit of concurrent work: streams fetched together from one position.
#[derive(Debug, Clone)]
struct Task {
    fetch: Fetch,
    members: Vec<&'static StreamDef>,
    pos: Position,
}

/// Groups the selected streams into tasks: streams that come from the same requests (tickets and
/// ticket_metrics; users and user_identities; comments and audits) share a task when their
/// bookmarks agree, so the requests are made once.
fn plan(selected: &[&'static StreamDef], state: &State, comments: CommentsSource) -> Vec<Task> {
    let mut tasks: Vec<Task> = Vec::new();
    for def in selected {
        let mut fetch = def.fetch;
        if fetch == Fetch::TicketEvents && comments == CommentsSource::TicketAudits {
            fetch = Fetch::TicketsExport;
        }
        let mut pos = Position::of(state, def);
        if matches!(def.fetch, Fetch::TicketEvents) && fetch == Fetch::TicketsExport {
            // Per-ticket children follow the tickets export: share its position.
            pos = stream_pos(state, "tickets").unwrap_or(pos);
        }
        let shared = matches!(
            fetch,
            Fetch::TicketsExport | Fetch::UsersExport | Fetch::TicketEvents
        );
        if shared {
            if let Some(t) = tasks.iter_mut().find(|t| t.fetch == fetch && t.pos == pos) {
                t.members.push(def);
                continue;
            }
        }
        tasks.push(Task {
            fetch,
            members: vec![def],
            pos,
        });
    }
    // Exports first: they are the long poles, limited to 10 requests a minute.
    tasks.sort_by_key(|t| match t.fetch {
        Fetch::TicketEvents => 0,
        Fetch::TicketsExport => 1,
        Fetch::UsersExport => 2,
        Fetch::TimeExport { .. } => 3,
        Fetch::List { .. } => 4,
    });
    tasks
}

fn stream_pos(state: &State, name: &str) -> Option<Position> {
    streams::stream_def(name).map(|d| Position::of(state, d))
}

async fn run_task(ctx: &ReadCtx, task: Task) -> Result<(), SourceError> {
    let first = task.members[0];
    match task.fetch {
        Fetch::TicketsExport => exports::tickets_export(ctx, &task.members, task.pos).await,
        Fetch::UsersExport => exports::users_export(ctx, &task.members, task.pos).await,
        Fetch::TicketEvents => exports::ticket_events(ctx, &task.members, task.pos).await,
        Fetch::TimeExport { path, .. } => exports::time_export(ctx, first, path, task.pos).await,
        Fetch::List { path, key } => lists::list_stream(ctx, first, path, key, task.pos).await,
    }
    .map_err(|e| {
        if e.stream.is_none() {
            e.in_stream(first.name)
        } else {
            e
        }
    })
}

fn is_forbidden(e: &SourceError) -> bool {
    e.source
        .downcast_ref::<ApiError>()
        .is_some_and(ApiError::is_forbidden)
}

/// True when a stream stopped because the read was cancelled (a stop, not a failure).
fn is_cancelled(e: &SourceError) -> bool {
    e.source
        .downcast_ref::<ApiError>()
        .is_some_and(ApiError::is_cancelled)
}

/// This run's table version for a full-table stream: now in milliseconds, and always newer than the
/// version the state says the stream completed last.
fn next_version(now_ms: i64, state: &State, stream: &str) -> i64 {
    match state.bookmark(stream, VERSION_BOOKMARK).and_then(Value::as_i64) {
        Some(last) if last >= now_ms => last.saturating_add(1),
        _ => now_ms,
    }
}

fn forbidden_reason(e: &SourceError) -> String {
    match e.source.downcast_ref::<ApiError>() {
        Some(ApiError::Forbidden { message, .. }) => message.clone(),
        _ => e.to_string(),
    }
}

#[derive(Deserialize)]
struct Me {
    user: Option<MeUser>,
}

#[derive(Deserialize)]
struct MeUser {
    id: Option<u64>,
    email: Option<String>,
    role: Option<String>,
}

#[async_trait]
impl Source for ZendeskSource {
    async fn check(&self) -> Result<(), SourceError> {
        let me: Me = self
            .client
            .get(
                EndpointClass::Account,
                "/api/v2/users/me.json",
                &CancellationToken::new(),
                |b| serde_json::from_slice(b),
            )
            .await?;
        let user = me.user.ok_or_else(|| {
            SourceError::new(
                ErrorKind::Internal,
                "zendesk answered /api/v2/users/me.json without a user",
            )
        })?;
        let email = user
            .email
            .clone()
            .or_else(|| self.config.email().map(str::to_owned))
            .unwrap_or_default();
        if user.id.is_none() {
            // Zendesk answers an anonymous user when the credentials are not recognised.
            return Err(match self.config.email() {
                Some(e) => ApiError::BadApiToken { email: e.to_owned() }.into(),
                None => ApiError::BadOAuthToken.into(),
            });
        }
        let role = user.role.unwrap_or_default();
        if role != "admin" {
            let role_article = if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            return Err(SourceError::new(
                ErrorKind::Auth,
                NotAdmin {
                    user: email,
                    role_article,
                    role,
                },
            ));
        }
        info!(user = %email, "zendesk connection check passed");
        Ok(())
    }

    async fn discover(&self) -> Result<Catalog, SourceError> {
        let (tx, _rx) = mpsc::channel(1);
        let ctx = self.ctx(tx, State::default(), CancellationToken::new(), HashMap::new());
        let mut catalog = Catalog::default();
        for def in STREAMS {
            let mut schema = crate::schema::stream_schema(def.name)
                .ok_or_else(|| {
                    SourceError::new(ErrorKind::Internal, format!("no schema for stream {}", def.name))
                })?
                .map_err(|e| SourceError::new(ErrorKind::Internal, e).in_stream(def.name))?;
            let custom = match def.name {
                "users" => Some(("/api/v2/user_fields.json", "user_fields")),
                "organizations" => Some(("/api/v2/organization_fields.json", "organization_fields")),
                _ => None,
            };
            if let Some((path, key)) = custom {
                match lists::field_definitions(&ctx, path, key).await {
                    Ok(defs) => crate::schema::apply_custom_fields(&mut schema, key, &defs),
                    Err(e) if e.is_forbidden() => {
                        warn!(
                            stream = def.name,
                            "The account credentials supplied do not have access to `{}` custom fields.",
                            def.name
                        )
                    }
                    Err(e) => return Err(SourceError::from(e).in_stream(def.name)),
                }
            }
            let mut entry = CatalogEntry::new(
                def.name,
                schema,
                def.key_properties,
                def.method,
                def.replication_key,
            );
            if let Some(p) = def.parent {
                entry.set_stream_metadata(PARENT_TAP_STREAM_ID, Value::from(p));
            }
            catalog.streams.push(entry);
        }
        Ok(catalog)
    }

    async fn read(
        &self,
        catalog: &Catalog,
        mut state: State,
        out: mpsc::Sender<Message>,
        cancel: CancellationToken,
    ) -> Result<ReadSummary, SourceError> {
        streams::normalise_bookmarks(&mut state);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut outs = HashMap::new();
        let mut selected: Vec<&'static StreamDef> = Vec::new();
        for entry in catalog.selected() {
            let Some(def) = streams::stream_def(&entry.tap_stream_id) else {
                warn!(stream = %entry.tap_stream_id, "the catalog selects a stream zendesk does not have; ignored");
                continue;
            };
            let all = entry.schema.properties.as_ref().map_or(0, |p| p.len());
            let fields = entry.selected_fields();
            let keep = (fields.len() < all)
                .then(|| Arc::new(fields.iter().map(|f| (*f).to_owned()).collect::<HashSet<_>>()));
            let full = def.method == seam_core::ReplicationMethod::FullTable;
            outs.insert(
                def.name,
                StreamOut {
                    def,
                    version: full.then(|| next_version(now_ms, &state, def.name)),
                    activate_first: full && state.bookmark(def.name, VERSION_BOOKMARK).is_none(),
                    keep,
                },
            );
            out.send(Message::Schema(Box::new(SchemaMessage {
                stream: def.name.to_owned(),
                schema: entry.selected_schema(),
                key_properties: def.key_properties.iter().map(|k| (*k).to_owned()).collect(),
                bookmark_properties: def.replication_key.map(|k| vec![k.to_owned()]),
            })))
            .await
            .map_err(|_| SourceError::consumer_gone())?;
            selected.push(def);
        }
        // Order the selection as the stream table does, so plans are stable.
        selected.sort_by_key(|d| STREAMS.iter().position(|s| s.name == d.name));
        let tasks = plan(&selected, &state, self.config.comments_source);
        let ctx = Arc::new(self.ctx(out, state, cancel.child_token(), outs));
        let sem = Arc::new(Semaphore::new(self.config.concurrency));
        let mut set = tokio::task::JoinSet::new();
        for task in tasks {
            let (ctx, sem) = (ctx.clone(), sem.clone());
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let names: Vec<&'static str> = task.members.iter().map(|d| d.name).collect();
                let members = task.members.clone();
                info!(streams = ?names, "stream started");
                let r = run_task(&ctx, task).await;
                (members, r)
            });
        }
        let mut first_error: Option<SourceError> = None;
        while let Some(joined) = set.join_next().await {
            let (members, result) = joined.map_err(internal)?;
            match result {
                Ok(()) => {
                    let names: Vec<&str> = members.iter().map(|d| d.name).collect();
                    info!(streams = ?names, "stream finished");
                }
                Err(e) if is_forbidden(&e) => ctx.skip(&members, &forbidden_reason(&e)),
                Err(e) if is_cancelled(&e) => {
                    let names: Vec<&str> = members.iter().map(|d| d.name).collect();
                    info!(streams = ?names, "stream stopped: the read was cancelled");
                }
                Err(e) if ctx.out.is_closed() => {
                    // The loader stopped (it failed, or the run is ending): its error is the run's,
                    // and this stream's only a consequence of it, so it is not logged as a failure.
                    let names: Vec<&str> = members.iter().map(|d| d.name).collect();
                    info!(streams = ?names, error = %e, "stream stopped: the loader stopped");
                    ctx.cancel.cancel();
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "stream failed");
                    // Credentials and config end the whole read; other failures let the remaining
                    // streams finish (their bookmarks still count).
                    if matches!(e.kind(), ErrorKind::Auth | ErrorKind::Config) {
                        ctx.cancel.cancel();
                    }
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if !cancel.is_cancelled() {
            match ctx.checkpoint(|_| {}).await {
                Err(e) if !is_cancelled(&e) => return Err(e),
                _ => {}
            }
        }
        let mut summary = ctx.summary.lock().clone();
        summary.requests = self.client.requests();
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defs(names: &[&str]) -> Vec<&'static StreamDef> {
        names.iter().map(|n| streams::stream_def(n).unwrap()).collect()
    }

    #[test]
    fn streams_from_the_same_requests_share_a_task() {
        let sel = defs(&[
            "tickets",
            "ticket_metrics",
            "ticket_comments",
            "ticket_audits",
            "users",
            "user_identities",
            "groups",
        ]);
        let tasks = plan(&sel, &State::default(), CommentsSource::TicketEvents);
        assert_eq!(tasks.len(), 4, "{tasks:?}");
        let per_ticket = plan(&sel, &State::default(), CommentsSource::TicketAudits);
        assert_eq!(per_ticket.len(), 3, "{per_ticket:?}");
    }

    /// A STATE another stream sends while a page's records go out leaves after that page's own
    /// STATE: before it, it would hold the page's stream's bookmark from before the records, and a
    /// run resumed from it would read them again (seen in CI as a re-read of ticket_metric_events).
    #[tokio::test]
    async fn a_state_waits_for_the_page_whose_records_are_going_out() {
        let src = ZendeskSource::from_json(r#"{"subdomain": "acme", "email": "a@b.c", "api_token": "t"}"#)
            .expect("a valid config");
        let (tx, mut rx) = mpsc::channel(16);
        let ctx = Arc::new(src.ctx(tx, State::default(), CancellationToken::new(), HashMap::new()));
        let turn = ctx.turn().await.expect("the turn");
        let record = seam_core::RecordMessage::from_value("a", &json!({"id": 1})).expect("a record");
        ctx.send(Message::Record(record)).await.expect("sent");
        let other = tokio::spawn({
            let ctx = ctx.clone();
            async move {
                ctx.checkpoint(|s| s.set_bookmark("b", "updated_at", json!("2026-01-02T00:00:00Z")))
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(matches!(rx.try_recv(), Ok(Message::Record(_))));
        assert!(
            rx.try_recv().is_err(),
            "another stream's STATE went out in the middle of a page"
        );
        turn.checkpoint(|s| s.set_bookmark("a", "updated_at", json!("2026-01-01T00:00:00Z")))
            .await
            .expect("the page's STATE");
        other.await.expect("joined").expect("the other STATE");
        let states: Vec<Value> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| match m {
                Message::State { value } => value,
                other => panic!("not a STATE: {other:?}"),
            })
            .collect();
        assert_eq!(states.len(), 2, "{states:?}");
        assert!(states[0]["bookmarks"]["a"].is_object() && states[0]["bookmarks"]["b"].is_null());
        assert!(states[1]["bookmarks"]["a"].is_object() && states[1]["bookmarks"]["b"].is_object());
    }

    #[test]
    fn versions_only_move_forward() {
        let state = State::from_value(json!({"bookmarks": {"tags": {"version": 5_000}}})).unwrap();
        assert_eq!(next_version(9_000, &state, "tags"), 9_000);
        assert_eq!(
            next_version(4_000, &state, "tags"),
            5_001,
            "a clock that went back"
        );
        assert_eq!(next_version(4_000, &state, "sla_policies"), 4_000);
    }

    #[test]
    fn different_bookmarks_split_a_task() {
        let sel = defs(&["tickets", "ticket_metrics"]);
        let state = State::from_value(
            json!({"bookmarks": {"tickets": {"generated_timestamp": "2024-01-01T00:00:00Z"}}}),
        )
        .unwrap();
        assert_eq!(plan(&sel, &state, CommentsSource::TicketEvents).len(), 2);
    }
}
