//! Integration tests: seam's Zendesk source against the simulator, in-process.
#![allow(clippy::unwrap_used)]

mod common;
mod errors;
mod faults;
mod full_sync;
mod incremental;
mod versions;
mod waits;
