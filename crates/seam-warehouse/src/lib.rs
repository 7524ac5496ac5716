//! Warehouse loading with Stitch's semantics, exactly once.
//!
//! - [`flatten`]: the table layout (pure): flattening, subtables, system columns, types and splits,
//!   name canonicalisation, rejections;
//! - [`columns`]: the batch's rows, column by column, as flattening writes them and destinations
//!   read them (pure);
//! - [`stage`]: what a destination holds between commits, and the plan a commit executes (pure);
//! - [`sql`]: the SQL both destinations run (every identifier quoted);
//! - [`duckdb`] and [`postgres`]: the destinations, each implementing [`seam_core::Destination`].
//!
//! Exactly once: each commit runs in one warehouse transaction that applies the DDL, merges the rows,
//! writes `_sdc_rejected`, and stores the Singer state in `<schema>._sdc_state`. A crash before the
//! transaction commits leaves the previous rows and state; after it, the new ones. Replays after a
//! crash are absorbed: upserts by key (the newest `_sdc_sequence` wins), append-only rows by a key
//! derived from the record's bytes.

pub mod columns;
pub mod duckdb;
pub mod error;
pub mod flatten;
pub mod json;
pub mod postgres;
pub mod spec;
pub mod sql;
pub mod stage;

pub use crate::duckdb::DuckDbDestination;
pub use crate::postgres::PostgresDestination;
pub use crate::spec::DestinationSpec;

pub use error::WarehouseError;
pub use flatten::NameRules;
