//! For tests: a throwaway PostgreSQL server, with or without TLS.
//!
//! [`TestServer::start_tls`] makes a CA and a server certificate for `localhost` (and only that
//! name, so `verify-full` to `127.0.0.1` fails where `verify-ca` passes) with the `openssl` CLI,
//! runs `initdb` in a temporary directory and starts the server on a free loopback port with
//! `ssl=on`, trust authentication for user `seam`. [`TestServer::start_plain`] starts one with
//! `ssl=off`. The server stops when the value drops. PostgreSQL's binaries are looked up in
//! `/usr/lib/postgresql/{15,16,17}/bin`; as root, the server runs as the `postgres` user.
//!
//! Every step that cannot be done panics with what to install or fix: a test that needs a server
//! fails rather than skips.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one setup command (initdb, openssl, pg_ctl) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// A running throwaway PostgreSQL server; stopped on drop.
#[derive(Debug)]
pub struct TestServer {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    as_root: bool,
    tls: bool,
}

impl TestServer {
    /// A server with TLS on; its certificate is for `localhost`, signed by [`TestServer::ca_pem`].
    pub fn start_tls() -> TestServer {
        TestServer::start(true)
    }

    /// A server with TLS off.
    pub fn start_plain() -> TestServer {
        TestServer::start(false)
    }

    fn start(tls: bool) -> TestServer {
        let bin = ["15", "16", "17"]
            .iter()
            .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
            .find(|p| p.join("initdb").exists())
            .unwrap_or_else(|| {
                panic!("no initdb in /usr/lib/postgresql/{{15,16,17}}/bin: install postgresql (Debian: apt-get install postgresql)")
            });
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false);
        let dir = tempfile::Builder::new()
            .prefix("seam-pg-test")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let mut server = TestServer {
            dir,
            port: 0,
            bin,
            as_root,
            tls,
        };
        if tls {
            server.make_certificates();
        }
        if as_root {
            run(Command::new("chown").args(["-R", "postgres", &server.path("")]));
        }
        let initdb = server.bin.join("initdb");
        server.run_as_server_user(&[
            initdb.to_str().unwrap_or_default(),
            "-D",
            &server.path("data"),
            "-U",
            "seam",
            "--auth=trust",
            "--no-sync",
        ]);
        // A free port can be taken between our probe and the server's bind: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.pg_ctl_start() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("pg_ctl start failed 5 times; last: {last}");
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.path("")
        );
        if self.tls {
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                self.path("server.crt"),
                self.path("server.key")
            ));
        } else {
            opts.push_str(" -c ssl=off");
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let log = self.path("log");
        let args = [
            pg_ctl.to_str().unwrap_or_default(),
            "-D",
            &self.path("data"),
            "-o",
            &opts,
            "-w",
            "-t",
            "60",
            "-l",
            &log,
            "start",
        ];
        if status(&mut self.server_user_command(&args)) {
            Ok(())
        } else {
            Err(std::fs::read_to_string(&log).unwrap_or_default())
        }
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

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn make_certificates(&self) {
        let dir = self.dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [("ca", "seam test CA"), ("other-ca", "seam untrusted CA")] {
            run(Command::new("openssl")
                .current_dir(dir)
                .args(["req", "-x509"])
                .args(ec)
                .args(["-keyout", &format!("{name}.key"), "-out", &format!("{name}.pem")])
                .args(["-days", "3650", "-subj", &format!("/CN={cn}")]));
        }
        run(Command::new("openssl")
            .current_dir(dir)
            .arg("req")
            .args(ec)
            .args([
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ]));
        let ext = "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
                   keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n";
        std::fs::write(dir.join("server.ext"), ext)
            .unwrap_or_else(|e| panic!("cannot write server.ext: {e}"));
        run(Command::new("openssl").current_dir(dir).args([
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
        ]));
        // PostgreSQL refuses a key file others can read.
        run(Command::new("chmod").args(["600", &self.path("server.key")]));
    }

    fn server_user_command(&self, args: &[&str]) -> Command {
        if self.as_root {
            let line = args
                .iter()
                .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
                .collect::<Vec<_>>()
                .join(" ");
            let mut c = Command::new("su");
            c.args(["postgres", "-s", "/bin/sh", "-c", &line]);
            c
        } else {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    }

    fn run_as_server_user(&self, args: &[&str]) {
        run(&mut self.server_user_command(args));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.path("data");
        let args = [
            pg_ctl.to_str().unwrap_or_default(),
            "-D",
            &data,
            "-m",
            "immediate",
            "-w",
            "-t",
            "30",
            "stop",
        ];
        let _ = status(&mut self.server_user_command(&args));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}

/// Runs a command to completion within [`STEP_TIMEOUT`]; panics (with its output) when it fails.
fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    let out = output_within(cmd, STEP_TIMEOUT).unwrap_or_else(|e| {
        panic!("{shown}: {e} (is it installed? Debian: apt-get install openssl postgresql)")
    });
    if !out.0 {
        panic!("{shown} failed:\n{}", out.1);
    }
}

/// Whether a command succeeds within [`STEP_TIMEOUT`].
fn status(cmd: &mut Command) -> bool {
    output_within(cmd, STEP_TIMEOUT).is_ok_and(|o| o.0)
}

/// Runs `cmd`, killing it after `timeout`; returns success and its stderr.
fn output_within(cmd: &mut Command, timeout: Duration) -> Result<(bool, String), String> {
    let errors = tempfile::tempfile().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errors.try_clone().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let stderr = read_all(errors);
            return Ok((status.success(), stderr));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not finish within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_all(mut file: std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut s = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    s
}
