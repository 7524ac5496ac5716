//! One module per subcommand.

pub mod admin;
pub mod demo;
pub mod schema_name;
pub mod serve;
pub mod store;
pub mod sync;
pub mod tap;
pub mod target;
pub mod token;

/// Files seam creates are readable by its own user only (umask 0o077): the data directory, the
/// metastore, the key file and the warehouse hold credentials and Zendesk data (PII).
pub fn restrict_umask() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}
