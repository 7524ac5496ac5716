//! The destination conformance suite: every test runs against DuckDB and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod conformance;
mod duckdb_interrupt;
mod duckdb_keys;
mod duckdb_settings;
mod duckdb_shared;
mod harness;
mod postgres_copy;
mod postgres_fence;
mod postgres_locks;
mod postgres_tls;
