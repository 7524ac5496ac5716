//! What every seam test suite shares, in one place (dev-dependency only; nothing ships it).
//!
//! - [`skip`]: the one way a test gives up on a missing tool. It prints `SKIP …` on a developer's
//!   machine, and fails the test when `CI` (or `SEAM_TEST_NO_SKIP`, which `scripts/test` sets) is set:
//!   a suite never passes by skipping where the full test command runs.
//! - [`wait_until`], [`wait_for`] and their async forms: every polling loop in a test has a deadline
//!   and panics naming what it waited for.
//! - [`postgres_url`]: the PostgreSQL server tests use — `SEAM_TEST_POSTGRES_URL`, else a throwaway
//!   cluster started with the server binaries on a free loopback port.
//! - [`PostgresServer`]: a PostgreSQL server of a test's own, with TLS (certificates made by the
//!   `openssl` CLI) or without, for testing `sslmode`.
//!
//! - [`sim`] (feature `sim`): the Zendesk simulator on a free loopback port, and the config that points
//!   seam at it.
//! - [`doubles`] (feature `doubles`): an in-memory warehouse and a destination over it that fails on
//!   demand.
//! - [`fakes`] (feature `fakes`): a fake source with named behaviours, and a connector factory of it
//!   and the in-memory destination.
//!
//! Both PostgreSQL servers are started by one piece of code (`cluster.rs`). Without features this
//! crate depends on no seam crate, so every seam crate can use it; the features bring in seam-core,
//! seam-runtime, seam-zendesk and zendesk-sim for the crates that test against them.

mod cluster;
#[cfg(feature = "doubles")]
pub mod doubles;
#[cfg(feature = "fakes")]
pub mod fakes;
mod postgres;
mod postgres_tls;
mod programs;
#[cfg(feature = "sim")]
pub mod sim;
mod skip;
mod wait;

pub use postgres::{postgres_url, unique_name, PostgresUnavailable, POSTGRES_URL_ENV};
pub use postgres_tls::PostgresServer;
pub use programs::{find_program, require_program, write_program};
pub use skip::{must_not_skip, skip, NO_SKIP_ENV};
pub use wait::{
    try_wait_for, try_wait_for_async, wait_for, wait_for_async, wait_until, wait_until_async, TimedOut,
};
