//! What builds the parts of a job that talk to the outside world: sources and destinations.

use crate::error::JobError;
use seam_core::{Catalog, Destination, Source};
use seam_metastore::{Credentials, IntegrationId, IntegrationProperties};
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

/// Builds the parts of a job that talk to the outside world. One per process.
pub trait ConnectorFactory: Send + Sync + fmt::Debug {
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
