//! Integration tests: the simulator over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod auth;
mod binary;
mod common;
mod exports;
mod faults;
mod lists;
mod rate_limits;
mod walk;
