//! The production [`ConnectorFactory`]: the registry (the Zendesk source, and the Singer taps the
//! admin registered) and the DuckDB or PostgreSQL warehouse.

use seam_core::{Catalog, ConnectorSpec, Destination};
use seam_runtime::connector::{ConnectorFactory, SourceSpec};
use seam_runtime::error::JobError;
use seam_singer::{TapLimits, TapProgram, TapSource};
use seam_warehouse::DestinationSpec;
use seam_zendesk::spec::TYPE as ZENDESK_TYPE;

/// Builds sources from integration settings (`ZendeskSource`s, and `TapSource`s for registered
/// Singer taps) and opens the configured warehouse.
///
/// Every job gets a destination of its own. DuckDB jobs share the file's one database instance
/// (each with its own connection), so jobs of different integrations load side by side and a job
/// waiting on Zendesk holds nothing that blocks another's commit.
#[derive(Debug, Clone)]
pub struct DefaultFactory {
    warehouse: DestinationSpec,
    zendesk_base_url: Option<String>,
    taps: Vec<TapProgram>,
    tap_limits: TapLimits,
}

impl DefaultFactory {
    /// A factory loading into `warehouse`; `zendesk_base_url` (tests and demos: a loopback simulator)
    /// replaces `https://<subdomain>.zendesk.com` for every integration, or, written
    /// `SUBDOMAIN=URL,SUBDOMAIN=URL`, for the integrations of each subdomain (several simulated
    /// accounts; the others keep Zendesk's own URL).
    pub fn new(warehouse: DestinationSpec, zendesk_base_url: Option<String>) -> Self {
        DefaultFactory {
            warehouse,
            zendesk_base_url,
            taps: Vec::new(),
            tap_limits: TapLimits::default(),
        }
    }

    /// The same, with Singer taps registered (integrations of type `singer.NAME`), run within `limits`.
    pub fn with_taps(mut self, taps: Vec<TapProgram>, limits: TapLimits) -> Self {
        self.taps = taps;
        self.tap_limits = limits;
        self
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &DestinationSpec {
        &self.warehouse
    }
}

impl ConnectorFactory for DefaultFactory {
    fn connectors(&self) -> Vec<ConnectorSpec> {
        std::iter::once(seam_zendesk::spec::connector_spec())
            .chain(self.taps.iter().map(TapProgram::connector_spec))
            .collect()
    }

    fn source(&self, spec: &SourceSpec) -> Result<Box<dyn seam_core::Source>, JobError> {
        if let Some(tap) = self.taps.iter().find(|t| t.type_name() == spec.kind) {
            return Ok(Box::new(TapSource::new(
                tap.clone(),
                spec.tap_config(),
                self.tap_limits,
            )));
        }
        if spec.kind != ZENDESK_TYPE {
            let known: Vec<String> = self.connectors().into_iter().map(|c| c.type_name).collect();
            return Err(JobError::UnknownType {
                kind: spec.kind.clone(),
                known: known.join(", "),
            });
        }
        let mut config = spec.tap_config();
        let subdomain = config.get("subdomain").and_then(|v| v.as_str()).unwrap_or("");
        if let Some(url) = self
            .zendesk_base_url
            .as_deref()
            .and_then(|u| base_url_for(u, subdomain))
        {
            config.insert("base_url".into(), url.into());
        }
        let source = seam_zendesk::ZendeskSource::from_json(&serde_json::Value::Object(config).to_string())?;
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
        Ok(self.warehouse.open(schema_name, append_only)?)
    }
}

/// The base URL `--zendesk-base-url` gives `subdomain`'s integrations (see [`DefaultFactory::new`]).
fn base_url_for(setting: &str, subdomain: &str) -> Option<String> {
    if !setting.contains('=') {
        return Some(setting.to_owned());
    }
    setting
        .split(',')
        .filter_map(|entry| entry.split_once('='))
        .find(|(sub, _)| sub.trim() == subdomain)
        .map(|(_, url)| url.trim().to_owned())
}

/// Checks `--zendesk-base-url` (one URL, or `SUBDOMAIN=URL` entries separated by commas): http(s) on
/// a loopback host only, so the override can point seam at local simulators and nowhere else.
pub fn validate_zendesk_base_url(raw: &str) -> Result<String, String> {
    if raw.contains('=') {
        let entries: Result<Vec<String>, String> = raw
            .split(',')
            .map(|entry| {
                let (sub, url) = entry
                    .split_once('=')
                    .ok_or_else(|| format!("--zendesk-base-url entry {entry:?} is not SUBDOMAIN=URL"))?;
                seam_zendesk::spec::check_subdomain(sub.trim())
                    .map_err(|e| format!("--zendesk-base-url entry {entry:?}: {e}"))?;
                Ok(format!("{}={}", sub.trim(), validate_one_base_url(url.trim())?))
            })
            .collect();
        return entries.map(|e| e.join(","));
    }
    validate_one_base_url(raw)
}

fn validate_one_base_url(raw: &str) -> Result<String, String> {
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
    fn zendesk_base_urls_are_loopback_only() {
        assert!(validate_zendesk_base_url("http://127.0.0.1:9000").is_ok());
        assert!(validate_zendesk_base_url("http://localhost:9000/").is_ok());
        assert!(validate_zendesk_base_url("http://example.com").is_err());
        assert!(validate_zendesk_base_url("https://10.0.0.1").is_err());
        let many = validate_zendesk_base_url("a1=http://127.0.0.1:9001/, a2=http://127.0.0.1:9002").unwrap();
        assert_eq!(
            base_url_for(&many, "a2").as_deref(),
            Some("http://127.0.0.1:9002")
        );
        assert_eq!(
            base_url_for(&many, "a1").as_deref(),
            Some("http://127.0.0.1:9001")
        );
        assert_eq!(
            base_url_for(&many, "other"),
            None,
            "other accounts keep Zendesk's URL"
        );
        assert!(validate_zendesk_base_url("a1=http://example.com").is_err());
        assert!(validate_zendesk_base_url("a b=http://127.0.0.1:1").is_err());
    }

    #[test]
    fn debug_never_shows_a_postgres_password() {
        let warehouse: DestinationSpec = "postgres://seam:hunter2@db.internal:5432/warehouse?sslmode=require"
            .parse()
            .expect("a postgres url");
        let shown = format!("{:?}", DefaultFactory::new(warehouse, None));
        assert!(
            !shown.contains("hunter2") && shown.contains("db.internal"),
            "{shown}"
        );
    }

    fn users() -> seam_core::SchemaMessage {
        seam_core::SchemaMessage {
            stream: "users".into(),
            schema: serde_json::from_value(serde_json::json!({"type": "object"})).expect("schema"),
            key_properties: vec!["id".into()],
            bookmark_properties: None,
        }
    }

    fn users_batch(ids: std::ops::Range<i64>) -> Vec<seam_core::RecordMessage> {
        ids.map(|id| {
            seam_core::RecordMessage::from_value("users", &serde_json::json!({"id": id})).expect("record")
        })
        .collect()
    }

    #[test]
    fn a_job_waiting_on_its_source_blocks_no_other_integrations_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("warehouse.duckdb");
        let factory = DefaultFactory::new(DestinationSpec::DuckDb(path.clone()), None);
        // Job A staged rows and now waits on Zendesk.
        let mut a = factory.destination("integration_a").expect("a");
        a.ensure_table(&users()).expect("a schema");
        a.write_batch("users", &users_batch(0..3)).expect("a rows");
        // Job B, another integration, loads and finishes meanwhile.
        let (done, finished) = std::sync::mpsc::channel();
        let b_factory = factory.clone();
        std::thread::spawn(move || {
            let mut b = b_factory.destination("integration_b").expect("b");
            b.ensure_table(&users()).expect("b schema");
            b.write_batch("users", &users_batch(0..5)).expect("b rows");
            let report = b.commit(None).expect("b commit");
            let _ = done.send(report.total_rows());
        });
        // Generous: B takes about a second; behind A's writer turn it waited for A's whole job.
        let b_rows = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("job B loaded while job A was waiting");
        assert_eq!(b_rows, 5);
        a.write_batch("users", &users_batch(3..4)).expect("a more rows");
        assert_eq!(a.commit(None).expect("a commit").total_rows(), 4);
        drop(a);
        let check = seam_warehouse::DuckDbDestination::open(&path, "check").expect("open");
        for (schema, rows) in [("integration_a", 4), ("integration_b", 5)] {
            let n: i64 = check
                .connection()
                .query_row(&format!("SELECT count(*) FROM {schema}.users"), [], |r| r.get(0))
                .expect("count");
            assert_eq!(n, rows, "{schema}");
        }
    }
}
