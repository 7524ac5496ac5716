//! What builds the parts of a job that talk to the outside world: sources and destinations.

use crate::error::JobError;
use seam_core::{Catalog, ConnectorSpec, Destination, Source};
use seam_metastore::{Credentials, IntegrationId, IntegrationProperties};
use serde_json::{Map, Value};
use std::fmt;

/// What a source is built from: the integration's settings and its opened credentials.
/// `Debug` shows credentials as `***`.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The integration.
    pub integration_id: IntegrationId,
    /// Its warehouse schema name.
    pub schema_name: String,
    /// Connector type (`platform.zendesk`).
    pub kind: String,
    /// Settings.
    pub properties: IntegrationProperties,
    /// Credentials in clear (memory only).
    pub credentials: Credentials,
}

impl SourceSpec {
    /// The connector's configuration as a Singer tap reads it: its settings, `start_date` (RFC 3339,
    /// UTC) and its secrets in clear. Memory only: never log it.
    pub fn tap_config(&self) -> Map<String, Value> {
        let mut config = self.properties.config.clone();
        config.insert(
            "start_date".into(),
            Value::String(
                self.properties
                    .start_date
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        );
        for (name, secret) in self.credentials.iter() {
            config.insert(name.to_owned(), Value::String(secret.expose().to_owned()));
        }
        config
    }
}

/// Builds the parts of a job that talk to the outside world. One per process.
pub trait ConnectorFactory: Send + Sync + fmt::Debug {
    /// The registry: every connector this factory builds sources for, in the order Add an Integration
    /// lists them. An explicit list; [`ConnectorFactory::source`] refuses any other type.
    fn connectors(&self) -> Vec<ConnectorSpec>;

    /// The source for an integration. Validates configuration without IO; an unknown `kind` is an
    /// error naming the known ones.
    fn source(&self, spec: &SourceSpec) -> Result<Box<dyn Source>, JobError>;

    /// The destination for a warehouse schema (created when missing). Blocking: called on a blocking
    /// thread.
    fn destination(&self, schema_name: &str) -> Result<Box<dyn Destination>, JobError>;

    /// The destination for a job over `catalog` (e.g. to tell append-only streams). Blocking. Defaults
    /// to [`ConnectorFactory::destination`].
    fn destination_for(
        &self,
        schema_name: &str,
        catalog: &Catalog,
    ) -> Result<Box<dyn Destination>, JobError> {
        let _ = catalog;
        self.destination(schema_name)
    }
}
