//! The production [`ConnectorFactory`]: the Zendesk source and the DuckDB or PostgreSQL warehouse.

use seam_core::{Catalog, Destination, DestinationError};
use seam_metastore::ZENDESK_TYPE;
use seam_runtime::job::{ConnectorFactory, JobError, SourceSpec};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// Where jobs load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warehouse {
    /// A DuckDB file (the embedded default: `<data-dir>/warehouse.duckdb`).
    DuckDb(PathBuf),
    /// A PostgreSQL database URL.
    Postgres(String),
}

impl Warehouse {
    /// Parses `duckdb:PATH` or a `postgres://` URL.
    pub fn parse(spec: &str) -> Result<Warehouse, String> {
        if let Some(path) = spec.strip_prefix("duckdb:") {
            if path.is_empty() {
                return Err("duckdb: needs a file path, e.g. duckdb:./seam-data/warehouse.duckdb".to_owned());
            }
            return Ok(Warehouse::DuckDb(PathBuf::from(path)));
        }
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            return Ok(Warehouse::Postgres(spec.to_owned()));
        }
        Err(format!(
            "warehouse {spec:?} is not understood: use duckdb:PATH or a postgres:// URL"
        ))
    }

    /// For logs: the DuckDB path, or the PostgreSQL URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Warehouse::DuckDb(p) => format!("duckdb:{}", p.display()),
            Warehouse::Postgres(url) => match reqwest::Url::parse(url) {
                Ok(mut u) => {
                    let _ = u.set_password(None);
                    u.to_string()
                }
                Err(_) => "postgres://…".to_owned(),
            },
        }
    }
}

/// One writer at a time for a DuckDB file: two database instances on one file in one process would
/// corrupt it, so jobs that load into DuckDB take turns (PostgreSQL jobs run side by side).
#[derive(Debug, Default)]
struct WriterLock {
    busy: Mutex<bool>,
    freed: Condvar,
}

#[derive(Debug)]
struct WriterTurn(Arc<WriterLock>);

impl WriterLock {
    fn take(self: &Arc<Self>) -> WriterTurn {
        let mut busy = self
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *busy {
            busy = self
                .freed
                .wait(busy)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *busy = true;
        WriterTurn(Arc::clone(self))
    }
}

impl Drop for WriterTurn {
    fn drop(&mut self) {
        *self
            .0
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
        self.0.freed.notify_one();
    }
}

/// A destination that holds the DuckDB writer turn for as long as it lives.
struct Turned {
    inner: Box<dyn Destination>,
    _turn: WriterTurn,
}

impl Destination for Turned {
    fn check(&mut self) -> Result<(), DestinationError> {
        self.inner.check()
    }
    fn committed_state(&mut self) -> Result<Option<seam_core::State>, DestinationError> {
        self.inner.committed_state()
    }
    fn ensure_table(&mut self, schema: &seam_core::SchemaMessage) -> Result<(), DestinationError> {
        self.inner.ensure_table(schema)
    }
    fn write_batch(
        &mut self,
        stream: &str,
        records: &[seam_core::RecordMessage],
    ) -> Result<(), DestinationError> {
        self.inner.write_batch(stream, records)
    }
    fn activate_version(&mut self, stream: &str, version: i64) -> Result<(), DestinationError> {
        self.inner.activate_version(stream, version)
    }
    fn commit(
        &mut self,
        state: Option<&seam_core::State>,
    ) -> Result<seam_core::CommitReport, DestinationError> {
        self.inner.commit(state)
    }
}

/// Builds `ZendeskSource`s from integration settings and opens the configured warehouse.
#[derive(Debug, Clone)]
pub struct DefaultFactory {
    warehouse: Warehouse,
    zendesk_base_url: Option<String>,
    duckdb_writer: Arc<WriterLock>,
}

impl DefaultFactory {
    /// A factory loading into `warehouse`; `zendesk_base_url` (tests and demos: a loopback simulator)
    /// replaces `https://<subdomain>.zendesk.com` for every integration.
    pub fn new(warehouse: Warehouse, zendesk_base_url: Option<String>) -> Self {
        DefaultFactory {
            warehouse,
            zendesk_base_url,
            duckdb_writer: Arc::default(),
        }
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }
}

impl ConnectorFactory for DefaultFactory {
    fn source(&self, spec: &SourceSpec) -> Result<Box<dyn seam_core::Source>, JobError> {
        if spec.kind != ZENDESK_TYPE {
            return Err(JobError::UnknownType {
                kind: spec.kind.clone(),
                known: ZENDESK_TYPE.to_owned(),
            });
        }
        let p = &spec.properties;
        let mut config = serde_json::json!({
            "subdomain": p.subdomain,
            "start_date": p.start_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        if let Some(email) = &p.email {
            config["email"] = email.clone().into();
        }
        if let Some(t) = &spec.credentials.api_token {
            config["api_token"] = t.expose().into();
        }
        if let Some(t) = &spec.credentials.access_token {
            config["access_token"] = t.expose().into();
        }
        if let Some(url) = &self.zendesk_base_url {
            config["base_url"] = url.clone().into();
        }
        let source = seam_zendesk::ZendeskSource::from_json(&config.to_string())?;
        Ok(Box::new(source))
    }

    fn destination(&self, schema_name: &str) -> Result<Box<dyn Destination>, JobError> {
        self.destination_for(schema_name, &Catalog::default())
    }

    fn destination_for(
        &self,
        schema_name: &str,
        catalog: &Catalog,
    ) -> Result<Box<dyn Destination>, JobError> {
        let append_only = seam_runtime::pipeline::append_only_streams(catalog);
        Ok(match &self.warehouse {
            Warehouse::DuckDb(path) => {
                let turn = self.duckdb_writer.take();
                let inner = seam_warehouse::DuckDbDestination::open_with(path, schema_name, append_only)?;
                Box::new(Turned {
                    inner: Box::new(inner),
                    _turn: turn,
                })
            }
            Warehouse::Postgres(url) => Box::new(seam_warehouse::PostgresDestination::connect_with(
                url,
                schema_name,
                append_only,
            )?),
        })
    }
}

/// Checks `--zendesk-base-url`: http(s) on a loopback host only, so the override can point seam at a
/// local simulator and nowhere else.
pub fn validate_zendesk_base_url(raw: &str) -> Result<String, String> {
    let url =
        reqwest::Url::parse(raw).map_err(|e| format!("--zendesk-base-url {raw:?} is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !matches!(url.scheme(), "http" | "https") || !loopback {
        return Err(format!(
            "--zendesk-base-url {raw:?} must be http(s) on a loopback host (127.0.0.1, ::1, localhost): it is for a \
             local simulator"
        ));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warehouse_specs_and_base_urls() {
        assert_eq!(
            Warehouse::parse("duckdb:/tmp/w.duckdb"),
            Ok(Warehouse::DuckDb("/tmp/w.duckdb".into()))
        );
        assert!(Warehouse::parse("duckdb:").is_err());
        assert!(Warehouse::parse("mysql://x").is_err());
        let pg = Warehouse::parse("postgres://u:secret@h/db").expect("pg");
        assert!(!pg.describe().contains("secret"));
        assert!(validate_zendesk_base_url("http://127.0.0.1:9000").is_ok());
        assert!(validate_zendesk_base_url("http://localhost:9000/").is_ok());
        assert!(validate_zendesk_base_url("http://example.com").is_err());
        assert!(validate_zendesk_base_url("https://10.0.0.1").is_err());
    }
}
