//! seam-runtime's integration tests.
#![allow(clippy::unwrap_used)]

mod loader;
mod pipeline;
