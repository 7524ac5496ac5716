//! seam-postgres against real servers: TLS on and off, every sslmode (servers the tests start); the
//! session settings every connection gets.
#![allow(clippy::unwrap_used)]

mod sessions;
mod tls;
