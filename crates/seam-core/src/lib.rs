//! seam's core: the Singer protocol (messages, catalogs, state, schemas), the integration naming rule,
//! error kinds with the one retry policy, secrets, the `Source` and `Destination` traits, and what a
//! connector declares about its settings (`ConnectorSpec`).
//!
//! No HTTP and no database here: connectors and warehouses depend on this crate, never the reverse.

pub mod catalog;
pub mod connector;
pub mod destination;
pub mod error;
pub mod naming;
pub mod schema;
pub mod secret;
pub mod singer;
pub mod source;
pub mod state;

pub use catalog::{Catalog, CatalogEntry, Inclusion, ReplicationMethod};
pub use connector::{ConnectorSpec, PropertySpec, PropertyType};
pub use destination::{
    CommitReport, Destination, DestinationError, Interrupt, LoadMode, SequenceClock, SequencedRecord,
    DEFAULT_BATCH_BYTES,
};
pub use error::{Classify, ErrorKind, RetryDecision, RetryPolicy};
pub use schema::{JsonType, Schema};
pub use secret::Secret;
pub use singer::{Message, MessageReader, RecordMessage, SchemaMessage};
pub use source::{ReadSummary, Source, SourceError};
pub use state::{State, VERSION_BOOKMARK};
