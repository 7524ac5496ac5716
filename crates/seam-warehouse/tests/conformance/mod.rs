//! One module per concern; each test runs against DuckDB and PostgreSQL through `harness::both`.

mod activate_version;
mod atomicity;
mod evolution;
mod layout;
mod nested_names;
mod rejection;
mod upsert;
