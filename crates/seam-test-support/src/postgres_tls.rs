//! A PostgreSQL server a test has to itself, with TLS on or off, for testing `sslmode`.
//!
//! [`PostgresServer::start_tls`] makes a CA and a server certificate for `localhost` (and only
//! that name, so `verify-full` to `127.0.0.1` fails where `verify-ca` passes) with the `openssl`
//! CLI, and a second CA that signed nothing; then it starts a cluster (see [`crate::cluster`]) in
//! a temporary directory with `ssl=on`. [`PostgresServer::start_plain`] starts one with `ssl=off`.
//! The server stops, and its directory goes, when the value drops.
//!
//! A server with TLS cannot come from `SEAM_TEST_POSTGRES_URL`, so there is nothing to skip to:
//! a start that fails panics saying what to install or fix.

use crate::cluster::{run_bounded, Cluster};
use crate::postgres::PostgresUnavailable;
use std::path::PathBuf;
use std::process::Command;

/// A running PostgreSQL server of one test (trust authentication for the user `seam`, on
/// 127.0.0.1); stopped on drop.
#[derive(Debug)]
pub struct PostgresServer {
    cluster: Cluster,
    port: u16,
    tls: bool,
    // Dropped after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// A server with TLS on; its certificate is for `localhost`, signed by [`Self::ca_pem`].
    /// Panics when it cannot be started.
    pub fn start_tls() -> PostgresServer {
        PostgresServer::try_start(true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A server with TLS off. Panics when it cannot be started.
    pub fn start_plain() -> PostgresServer {
        PostgresServer::try_start(false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A server with TLS on and one with TLS off, started side by side. Panics when either cannot
    /// be started.
    pub fn start_tls_and_plain() -> (PostgresServer, PostgresServer) {
        std::thread::scope(|s| {
            let tls = s.spawn(PostgresServer::start_tls);
            let plain = PostgresServer::start_plain();
            match tls.join() {
                Ok(tls) => (tls, plain),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A server with TLS on or off, or why there is none.
    pub fn try_start(tls: bool) -> Result<PostgresServer, PostgresUnavailable> {
        let dir = tempfile::Builder::new()
            .prefix("seam-pg-test")
            .tempdir()
            .map_err(|source| PostgresUnavailable::Io {
                what: "cannot create a directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let cluster = Cluster::in_dir(dir.path())?;
        if tls {
            make_certificates(&dir)?;
        }
        cluster.give_to_server_user()?;
        cluster.init()?;
        let settings = if tls {
            let file = |name: &str| dir.path().join(name).display().to_string();
            format!(
                "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                file("server.crt"),
                file("server.key")
            )
        } else {
            "-c ssl=off".to_owned()
        };
        let port = cluster.start(&settings)?;
        Ok(PostgresServer {
            cluster,
            port,
            tls,
            dir,
        })
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://seam@HOST:PORT/postgres?QUERY` (`host` is `localhost` or `127.0.0.1`).
    pub fn url(&self, host: &str, query: &str) -> String {
        let mut url = format!("postgres://seam@{host}:{}/postgres", self.port);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The CA that signed the server's certificate (PEM).
    pub fn ca_pem(&self) -> PathBuf {
        assert!(self.tls, "a plain test server has no certificate");
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing the server presents (PEM).
    pub fn untrusted_ca_pem(&self) -> PathBuf {
        assert!(self.tls, "a plain test server has no certificate");
        self.dir.path().join("other-ca.pem")
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
    }
}

/// Makes, in `dir`: `ca.pem` and `other-ca.pem` (two CAs), and `server.crt` / `server.key` (a
/// certificate for `localhost` signed by the first).
fn make_certificates(dir: &tempfile::TempDir) -> Result<(), PostgresUnavailable> {
    let dir = dir.path();
    let openssl = || {
        let mut c = Command::new("openssl");
        c.current_dir(dir);
        c
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, cn) in [("ca", "seam test CA"), ("other-ca", "seam untrusted CA")] {
        run_bounded(
            openssl()
                .args(["req", "-x509"])
                .args(ec)
                .args(["-keyout", &format!("{name}.key"), "-out", &format!("{name}.pem")])
                .args(["-days", "3650", "-subj", &format!("/CN={cn}")]),
        )?;
    }
    run_bounded(openssl().arg("req").args(ec).args([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]))?;
    let ext = "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
               keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n";
    let ext_path = dir.join("server.ext");
    std::fs::write(&ext_path, ext).map_err(|source| PostgresUnavailable::Io {
        what: "cannot write",
        path: ext_path,
        source,
    })?;
    run_bounded(openssl().args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "3650",
        "-extfile",
        "server.ext",
    ]))?;
    // PostgreSQL refuses a key file others can read.
    run_bounded(Command::new("chmod").arg("600").arg(dir.join("server.key")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server starts with its certificates, answers on its port, and is gone once dropped.
    #[test]
    fn a_tls_server_runs_until_dropped() {
        let server = PostgresServer::start_tls();
        let addr = format!("127.0.0.1:{}", server.port());
        assert!(
            std::net::TcpStream::connect(&addr).is_ok(),
            "nothing listens on {addr}"
        );
        assert!(server.cluster.is_running());
        for pem in [server.ca_pem(), server.untrusted_ca_pem()] {
            let text = std::fs::read_to_string(&pem).unwrap();
            assert!(
                text.starts_with("-----BEGIN CERTIFICATE-----"),
                "{}",
                pem.display()
            );
        }
        assert!(server
            .url("localhost", "sslmode=require")
            .ends_with("/postgres?sslmode=require"));
        let dir = server.dir.path().to_path_buf();
        drop(server);
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "{addr} still answers"
        );
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}
