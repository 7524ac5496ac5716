//! seam-postgres against real servers started by the test: TLS on and off, every sslmode.
#![allow(clippy::unwrap_used)]

mod tls;
