//! PostgreSQL connection settings, in one place for seam's warehouse and metastore.
//!
//! A [`ConnectOptions`] is parsed from a `postgres://` (or `postgresql://`) URL without IO; its
//! `Debug` and `Display` show the URL with the password replaced by `***`. Connecting honours
//! libpq's `sslmode` with rustls:
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers it, else plain; plain again if the TLS handshake fails | not checked |
//! | `require` | always: a server without TLS is an error | not checked; the chain is checked when `sslrootcert` is given (libpq's rule) |
//! | `verify-ca` | always | chain up to a CA in `sslrootcert` |
//! | `verify-full` | always | chain up to a CA in `sslrootcert`, and the host name |
//!
//! `sslrootcert=PATH` names a PEM file with one or more CA certificates; `sslrootcert=system` trusts
//! the public web CAs (Mozilla's list, built in). Without `sslrootcert`, `verify-ca` and
//! `verify-full` read `~/.postgresql/root.crt`, as libpq does. Client certificates (`sslcert`,
//! `sslkey`) are not supported and refused by name.
//!
//! Every connection is bounded: a connect timeout, TCP keepalives and a TCP user timeout (a server
//! gone from the network), and in the session a [`LOCK_TIMEOUT`] and an
//! [`IDLE_IN_TRANSACTION_TIMEOUT`] (another session's lock, a process that hung mid-transaction),
//! each unless the URL, or for the session settings the server, says otherwise.

mod tls;
mod url;

pub use crate::url::redact as redact_url;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use thiserror::Error;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, as seam implements it (see the crate documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, unauthenticated; plain otherwise. The default.
    Prefer,
    /// TLS or fail; the certificate is checked only when `sslrootcert` is given.
    Require,
    /// TLS, with the certificate chain checked against the CA.
    VerifyCa,
    /// TLS, with the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// The URL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What the driver is told: it only knows whether TLS is off, optional or required.
    fn driver(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CA certificates `sslrootcert` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file.
    File(PathBuf),
    /// `sslrootcert=system`: the public web CAs.
    System,
}

/// A URL that cannot be used, or TLS material that cannot be read. Messages never hold a password.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Not a `postgres://` URL.
    #[error("{url} is not a PostgreSQL URL: use postgres://user:password@host:port/database")]
    NotAUrl {
        /// The text, redacted.
        url: String,
    },
    /// The driver refused the URL.
    #[error("PostgreSQL URL {url} is not valid: {source}")]
    Invalid {
        /// The URL, redacted.
        url: String,
        /// The driver's reason.
        #[source]
        source: tokio_postgres::Error,
    },
    /// An `sslmode` seam does not know.
    #[error(
        "sslmode={value} in {url} is not supported: use disable, prefer, require, verify-ca or verify-full"
    )]
    BadSslMode {
        /// The value given.
        value: String,
        /// The URL, redacted.
        url: String,
    },
    /// `tcp_user_timeout` that is not a number of milliseconds.
    #[error("tcp_user_timeout={value} in {url} is not a number of milliseconds")]
    BadTcpUserTimeout {
        /// The value given.
        value: String,
        /// The URL, redacted.
        url: String,
    },
    /// A libpq parameter seam does not implement.
    #[error("{parameter} in {url} is not supported by seam (no client certificates yet): remove it")]
    Unsupported {
        /// The parameter.
        parameter: String,
        /// The URL, redacted.
        url: String,
    },
    /// `verify-ca`/`verify-full` without a CA to verify against.
    #[error(
        "sslmode={ssl_mode} needs the CA certificate that signed the server's: add sslrootcert=/path/to/ca.pem \
         (or sslrootcert=system for a server with a public certificate) to the URL, or put it in ~/.postgresql/root.crt"
    )]
    RootCertNeeded {
        /// The mode.
        ssl_mode: SslMode,
    },
    /// The `sslrootcert` file cannot be read.
    #[error("cannot read sslrootcert {path}: {source}: check the path and that seam may read it")]
    RootCertRead {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The `sslrootcert` file holds no usable certificate.
    #[error("sslrootcert {path} is not a PEM file of CA certificates: {detail}")]
    RootCertInvalid {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// rustls refused the protocol settings (not expected with its defaults).
    #[error("cannot set up TLS: {source}")]
    Tls {
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the CA certificates.
    #[error("cannot verify servers with the CA certificates given: {detail}")]
    Verifier {
        /// Why.
        detail: String,
    },
}

/// Connecting failed: the settings, or the server.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The settings or TLS material.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server could not be reached, refused TLS or the credentials, or its certificate did not
    /// verify.
    #[error("cannot connect to PostgreSQL at {url} with sslmode={ssl_mode}: {detail}: {hint}")]
    Connect {
        /// The URL, redacted.
        url: String,
        /// The mode used.
        ssl_mode: SslMode,
        /// The driver's error with its causes.
        detail: String,
        /// What to check.
        hint: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl ConnectError {
    /// The driver's error, when the server was involved.
    pub fn driver_error(&self) -> Option<&tokio_postgres::Error> {
        match self {
            ConnectError::Connect { source, .. } => Some(source),
            ConnectError::Config(_) => None,
        }
    }
}

/// How to reach a PostgreSQL server: the driver's settings plus seam's TLS settings.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    root_cert: Option<RootCert>,
    shown: String,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &self.shown)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

/// The URL with the password hidden.
impl fmt::Display for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl FromStr for ConnectOptions {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<Self, ConfigError> {
        ConnectOptions::parse(url)
    }
}

impl ConnectOptions {
    /// Parses a `postgres://` URL (no IO): the driver's parameters plus `sslmode` (default
    /// `prefer`) and `sslrootcert`.
    pub fn parse(url: &str) -> Result<ConnectOptions, ConfigError> {
        let shown = redact_url(url);
        if !url::SCHEMES.iter().any(|s| url.starts_with(s)) {
            return Err(ConfigError::NotAUrl { url: shown });
        }
        let split = url::split(url);
        if let Some(parameter) = split.unsupported.first() {
            return Err(ConfigError::Unsupported {
                parameter: parameter.clone(),
                url: shown,
            });
        }
        let ssl_mode = match split.ssl_mode.as_deref() {
            None => SslMode::Prefer,
            Some(v) => SslMode::parse(v).ok_or_else(|| ConfigError::BadSslMode {
                value: v.to_owned(),
                url: shown.clone(),
            })?,
        };
        let root_cert = split.ssl_root_cert.map(|v| match v.as_str() {
            "system" => RootCert::System,
            path => RootCert::File(PathBuf::from(path)),
        });
        let mut config =
            tokio_postgres::Config::from_str(&split.driver_url).map_err(|source| ConfigError::Invalid {
                url: shown.clone(),
                source,
            })?;
        config.ssl_mode(ssl_mode.driver());
        dead_peer_bounds(&mut config, &split.driver_keys);
        if let Some(v) = &split.tcp_user_timeout {
            // libpq's unit: milliseconds (the driver would read seconds).
            let ms: u64 = v.parse().map_err(|_| ConfigError::BadTcpUserTimeout {
                value: v.clone(),
                url: shown.clone(),
            })?;
            config.tcp_user_timeout(std::time::Duration::from_millis(ms));
        }
        Ok(ConnectOptions {
            config,
            ssl_mode,
            root_cert,
            shown,
        })
    }

    /// The sslmode.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The CA certificates named by `sslrootcert`.
    pub fn root_cert(&self) -> Option<&RootCert> {
        self.root_cert.as_ref()
    }

    /// The URL with the password hidden, for messages and logs.
    pub fn redacted(&self) -> &str {
        &self.shown
    }

    /// The driver's settings (with its own sslmode set to match).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector for this sslmode; reads `sslrootcert` when the mode verifies (IO).
    pub fn tls(&self) -> Result<MakeRustlsConnect, ConfigError> {
        let config = tls::client_config(self.ssl_mode, self.root_cert.as_ref())?;
        Ok(MakeRustlsConnect::new(config))
    }

    /// The driver settings to retry with in plain TCP: only for `prefer`, after a failed TLS
    /// handshake (libpq does the same).
    fn plain_retry(&self, error: &tokio_postgres::Error) -> Option<tokio_postgres::Config> {
        if self.ssl_mode != SslMode::Prefer || !is_tls_failure(error) {
            return None;
        }
        tracing::warn!(url = %self.shown, error = %error, "TLS handshake failed with sslmode=prefer; connecting without TLS");
        let mut plain = self.config.clone();
        plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
        Some(plain)
    }

    fn connect_error(&self, source: tokio_postgres::Error) -> ConnectError {
        let detail = error_chain(&source);
        let hint = if detail.contains(NO_TLS) {
            "the server does not offer TLS: turn ssl on in its postgresql.conf, or lower sslmode (prefer, disable)"
        } else if is_tls_failure(&source) {
            "check sslrootcert (the CA that signed the server's certificate) and, for verify-full, that the \
             certificate names the host in the URL"
        } else {
            "check the URL, that the server is running and reachable, and the credentials"
        };
        ConnectError::Connect {
            url: self.shown.clone(),
            ssl_mode: self.ssl_mode,
            detail,
            hint,
            source,
        }
    }

    /// Connects (async) and spawns the connection's task on the current tokio runtime; the task
    /// ends when the client is dropped or the connection fails (logged).
    pub async fn connect(&self) -> Result<tokio_postgres::Client, ConnectError> {
        self.connect_abortable().await.map(|(client, _task)| client)
    }

    /// Like [`ConnectOptions::connect`], also handing back the connection's task: aborting it
    /// closes the connection, and every call under way on the client fails at once ("connection
    /// closed") — a way out of a call to a server that stopped answering.
    pub async fn connect_abortable(
        &self,
    ) -> Result<(tokio_postgres::Client, tokio::task::AbortHandle), ConnectError> {
        let tls = self.tls()?;
        let attempt = self.config.connect(tls.clone()).await;
        let (client, connection) = match attempt {
            Ok(pair) => pair,
            Err(e) => match self.plain_retry(&e) {
                Some(plain) => plain.connect(tls).await.map_err(|e| self.connect_error(e))?,
                None => return Err(self.connect_error(e)),
            },
        };
        let shown = self.shown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(url = %shown, error = %e, "postgresql connection ended");
            }
        })
        .abort_handle();
        client
            .batch_execute(&session_bounds())
            .await
            .map_err(|e| self.connect_error(e))?;
        Ok((client, task))
    }

    /// Connects with the blocking driver (which runs its own runtime: call it off async tasks).
    pub fn connect_blocking(&self) -> Result<postgres::Client, ConnectError> {
        let tls = self.tls()?;
        let attempt = postgres::Config::from(self.config.clone()).connect(tls.clone());
        let mut client = match attempt {
            Ok(client) => client,
            Err(e) => match self.plain_retry(&e) {
                Some(plain) => postgres::Config::from(plain)
                    .connect(tls)
                    .map_err(|e| self.connect_error(e))?,
                None => return Err(self.connect_error(e)),
            },
        };
        client
            .batch_execute(&session_bounds())
            .map_err(|e| self.connect_error(e))?;
        Ok(client)
    }
}

/// How long a statement of seam's waits for a lock another session holds before it fails with
/// SQLSTATE 55P03, a `Transient` error: in the warehouse a user's `LOCK TABLE`, `CREATE INDEX` or
/// `VACUUM FULL`, or a long transaction that altered a table; in the metastore a process that hung
/// holding a row. The warehouse's loader then tries the commit again and, should the lock stay, the
/// run fails saying so and the next run tries again; nothing staged becomes durable in part. Without
/// it a commit waits as long as the lock is held, and the locks it already took (a table it altered)
/// keep the warehouse's readers waiting behind it.
pub const LOCK_TIMEOUT: &str = "30s";
/// How long a session of seam's may sit idle inside a transaction before the server ends it: seam
/// never does (a transaction's statements follow one another), so this only frees the locks of a
/// process that hung in the middle of one.
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "10min";

/// Sets [`LOCK_TIMEOUT`] and [`IDLE_IN_TRANSACTION_TIMEOUT`] for a new session where nothing set
/// them: a value from the URL (`options=-c lock_timeout=…`), the role, the database or the server's
/// configuration wins (`0`, PostgreSQL's default, means none was set).
fn session_bounds() -> String {
    [
        ("lock_timeout", LOCK_TIMEOUT),
        ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT),
    ]
    .iter()
    .map(|(name, value)| {
        // `current_setting(…, true)` is NULL on a server without the setting: left alone there.
        format!("SELECT set_config('{name}', '{value}', false) WHERE current_setting('{name}', true) = '0';")
    })
    .collect()
}

/// What the driver says when the server answers "no TLS" to a connection that requires it (its
/// only trace: the cause is a plain string).
const NO_TLS: &str = "server does not support TLS";

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Idle time before the first TCP keepalive probe, the time between probes, and the probes that may
/// go unanswered before the connection counts as dead.
const KEEPALIVES_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVES_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
const KEEPALIVES_RETRIES: u32 = 3;
/// How long data sent may go unacknowledged before the connection counts as dead.
const TCP_USER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Bounds on a connection whose server went away without a word (a network partition, a host that
/// died): without them a call waits on the operating system's defaults — minutes of connect retries,
/// two hours of idleness before a keepalive — and a job or the metastore with it. A peer that stops
/// answering is found dead ~1 minute after the connection went quiet (30 s, then three probes 10 s
/// apart) or after 60 s of unacknowledged data; a slow query on a live server is not affected (its
/// host answers the probes). The URL's own `connect_timeout`, `keepalives_idle`,
/// `keepalives_interval` and `keepalives_retries` win, and so does its `tcp_user_timeout`, read in
/// libpq's milliseconds (by [`ConnectOptions::parse`]); on a Unix socket the driver has no use for the
/// TCP ones.
fn dead_peer_bounds(config: &mut tokio_postgres::Config, given: &[String]) {
    let unset = |key: &str| !given.iter().any(|k| k == key);
    if unset("connect_timeout") {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if unset("keepalives_idle") {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    if unset("keepalives_interval") {
        config.keepalives_interval(KEEPALIVES_INTERVAL);
    }
    if unset("keepalives_retries") {
        config.keepalives_retries(KEEPALIVES_RETRIES);
    }
    config.tcp_user_timeout(TCP_USER_TIMEOUT);
}

/// A driver error with its causes, `outer: inner: …` (the driver's own `Display` shows only the
/// outermost, e.g. "error performing TLS handshake").
pub fn error_chain(error: &tokio_postgres::Error) -> String {
    let mut out = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let text = e.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = e.source();
    }
    out
}

/// Whether a driver error is about TLS: the server refused it (`sslmode` requires it), or the
/// handshake or the certificate check failed. Such errors need a settings change, not a retry.
pub fn is_tls_failure(error: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                return true;
            }
        }
        if e.to_string() == NO_TLS {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_goes_away_is_found_dead_within_bounds_unless_the_url_says_otherwise() {
        let c = ConnectOptions::parse("postgres://seam@h/db").unwrap();
        let c = c.config();
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(c.get_keepalives_idle(), KEEPALIVES_IDLE);
        assert_eq!(c.get_keepalives_interval(), Some(KEEPALIVES_INTERVAL));
        assert_eq!(c.get_keepalives_retries(), Some(KEEPALIVES_RETRIES));
        assert_eq!(c.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert!(c.get_keepalives());
        // `tcp_user_timeout` in libpq's milliseconds (the driver alone would read seconds).
        let given = ConnectOptions::parse(
            "postgres://seam@h/db?connect_timeout=3&keepalives_idle=600&keepalives_interval=7\
             &keepalives_retries=9&tcp_user_timeout=120000&sslmode=disable",
        )
        .unwrap();
        let c = given.config();
        assert_eq!(c.get_connect_timeout(), Some(&std::time::Duration::from_secs(3)));
        assert_eq!(c.get_keepalives_idle(), std::time::Duration::from_secs(600));
        assert_eq!(
            c.get_keepalives_interval(),
            Some(std::time::Duration::from_secs(7))
        );
        assert_eq!(c.get_keepalives_retries(), Some(9));
        assert_eq!(
            c.get_tcp_user_timeout(),
            Some(&std::time::Duration::from_secs(120))
        );
    }

    #[test]
    fn sslmodes_parse_and_default_to_prefer() {
        let o = ConnectOptions::parse("postgres://seam@h/db").unwrap();
        assert_eq!(o.ssl_mode(), SslMode::Prefer);
        assert_eq!(o.config().get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let o = ConnectOptions::parse(&format!("postgres://seam@h/db?sslmode={text}")).unwrap();
            assert_eq!(o.ssl_mode(), mode);
            assert_eq!(o.ssl_mode().as_str(), text);
        }
        let o =
            ConnectOptions::parse("postgresql://h/db?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!(o.root_cert(), Some(&RootCert::File("/etc/ca.pem".into())));
        assert_eq!(
            o.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let o = ConnectOptions::parse("postgres://h/db?sslrootcert=system&sslmode=verify-full").unwrap();
        assert_eq!(o.root_cert(), Some(&RootCert::System));
    }

    #[test]
    fn bad_settings_say_what_to_fix_without_the_password() {
        let e = ConnectOptions::parse("postgres://u:hunter2@h/db?sslmode=verify").unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("sslmode=verify in") && m.contains("verify-full"),
            "{m}"
        );
        assert!(!m.contains("hunter2"), "{m}");
        let e = ConnectOptions::parse("postgres://u:hunter2@h/db?sslcert=/c.pem").unwrap_err();
        assert!(e.to_string().contains("sslcert"), "{e}");
        let e = ConnectOptions::parse("mysql://u:hunter2@h/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = ConnectOptions::parse("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // verify modes need a CA: a missing file is named when connecting.
        let o = ConnectOptions::parse("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .unwrap();
        let Err(e) = o.tls() else {
            panic!("a missing sslrootcert file was accepted")
        };
        assert!(
            e.to_string()
                .contains("cannot read sslrootcert /nonexistent/ca.pem"),
            "{e}"
        );
        // Unverified modes read nothing.
        assert!(ConnectOptions::parse("postgres://h/db?sslmode=require")
            .unwrap()
            .tls()
            .is_ok());
        assert!(
            ConnectOptions::parse("postgres://h/db?sslmode=verify-full&sslrootcert=system")
                .unwrap()
                .tls()
                .is_ok()
        );
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        for url in [
            "postgres://seam:hunter2@db.internal:5432/warehouse?sslmode=require",
            "postgresql://seam@db.internal/warehouse?password=hunter2",
        ] {
            let o = ConnectOptions::parse(url).unwrap();
            let debug = format!("{o:?}");
            let display = o.to_string();
            assert!(
                !debug.contains("hunter2") && !display.contains("hunter2"),
                "{debug} / {display}"
            );
            assert!(
                display.contains("***") && display.contains("db.internal"),
                "{display}"
            );
        }
    }
}
