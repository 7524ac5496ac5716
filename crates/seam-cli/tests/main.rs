//! The `seam` binary's integration tests: the commands as a user runs them.
#![allow(clippy::unwrap_used)]

mod common;
mod deploy;
mod full_table;
mod serve;
mod serve_kill;
mod sync;
mod target;
