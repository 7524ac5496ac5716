//! The one way a test starts a PostgreSQL cluster: `initdb` in a directory, `pg_ctl start` on a
//! free loopback port (trust authentication for the user `seam`, `fsync=off`, the socket in the
//! directory), `pg_ctl stop`. The shared throwaway cluster ([`crate::postgres_url`]) and the servers
//! a test has to itself ([`crate::PostgresServer`]) are both started here.
//!
//! Every command is bounded in time, and runs as the `postgres` user when the tests run as root
//! (initdb refuses root).

use crate::postgres::PostgresUnavailable;
use crate::wait::try_wait_for;
use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long one command (initdb, pg_ctl, openssl) may take before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A free port can be taken between our probe and the server's bind: starts try this many ports.
const START_ATTEMPTS: usize = 5;

/// A cluster in `dir`: its data in `dir/data`, its log in `dir/log`, its socket in `dir`.
#[derive(Debug)]
pub(crate) struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    as_root: bool,
}

impl Cluster {
    /// The cluster that lives (or will live) in `dir`; nothing is created or started yet.
    pub(crate) fn in_dir(dir: &Path) -> Result<Cluster, PostgresUnavailable> {
        let bin = server_binaries().ok_or(PostgresUnavailable::NoServerBinaries)?;
        Ok(Cluster {
            bin,
            data: dir.join("data"),
            log: dir.join("log"),
            dir: dir.to_path_buf(),
            as_root: is_root(),
        })
    }

    /// The directory the cluster lives in.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory (`initdb`'s `-D`).
    pub(crate) fn data(&self) -> &Path {
        &self.data
    }

    /// Hands the directory and everything in it to the user the server runs as (a no-op unless
    /// the tests run as root). Call it after writing files the server reads, before [`Self::init`].
    pub(crate) fn give_to_server_user(&self) -> Result<(), PostgresUnavailable> {
        if !self.as_root {
            return Ok(());
        }
        run_bounded(Command::new("chown").args(["-R", "postgres"]).arg(&self.dir))
    }

    /// `initdb`: superuser `seam`, trust authentication.
    pub(crate) fn init(&self) -> Result<(), PostgresUnavailable> {
        let initdb = self.bin.join("initdb").display().to_string();
        let data = self.data.display().to_string();
        self.run(&[&initdb, "-D", &data, "-U", "seam", "--auth=trust", "--no-sync"])
    }

    /// Starts the server on a free port of 127.0.0.1 with `settings` (`-c name=value …`) added to
    /// the defaults; returns the port. Waits (bounded) until it accepts connections.
    pub(crate) fn start(&self, settings: &str) -> Result<u16, PostgresUnavailable> {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let data = self.data.display().to_string();
        let log = self.log.display().to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {settings}",
                self.dir.display()
            );
            let started = self.run(&[
                &pg_ctl, "-D", &data, "-o", &options, "-w", "-t", "60", "-l", &log, "start",
            ]);
            match started {
                Ok(()) => return Ok(port),
                Err(PostgresUnavailable::Command { .. }) if attempt < START_ATTEMPTS => {}
                Err(PostgresUnavailable::Command { command, status, .. }) => {
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    return Err(PostgresUnavailable::Command { command, status, log });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the server of this data directory is running (`pg_ctl status`).
    pub(crate) fn is_running(&self) -> bool {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let data = self.data.display().to_string();
        self.run(&[&pg_ctl, "-D", &data, "status"]).is_ok()
    }

    /// Stops the server at once (`-m immediate`: its data is thrown away or reused as it is).
    pub(crate) fn stop(&self) -> Result<(), PostgresUnavailable> {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let data = self.data.display().to_string();
        self.run(&[&pg_ctl, "-D", &data, "-m", "immediate", "-w", "-t", "30", "stop"])
    }

    /// Runs a server command, as the `postgres` user when we are root.
    fn run(&self, args: &[&str]) -> Result<(), PostgresUnavailable> {
        if self.as_root {
            let line = args
                .iter()
                .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
                .collect::<Vec<_>>()
                .join(" ");
            run_bounded(Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", &line]))
        } else {
            let Some((program, rest)) = args.split_first() else {
                return Ok(());
            };
            run_bounded(Command::new(program).args(rest))
        }
    }
}

/// Runs `command` to its end, for at most [`COMMAND_TIMEOUT`] (then kills it); an error holds its
/// output when it fails.
pub(crate) fn run_bounded(command: &mut Command) -> Result<(), PostgresUnavailable> {
    let line = format!("{command:?}");
    let failed = |status: String, log: String| PostgresUnavailable::Command {
        command: line.clone(),
        status,
        log,
    };
    // Output goes to an unnamed file, not a pipe: nothing can fill and block it.
    let mut output =
        tempfile::tempfile().map_err(|e| failed(format!("no file for its output: {e}"), String::new()))?;
    let (out, err) = match (output.try_clone(), output.try_clone()) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => {
            return Err(failed(format!("no file for its output: {e}"), String::new()))
        }
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}; is it installed?"), String::new()))?;
    let mut read_output = || {
        let mut text = String::new();
        let _ = output.rewind();
        let _ = output.read_to_string(&mut text);
        text
    };
    match try_wait_for(COMMAND_TIMEOUT, &line, || child.try_wait().transpose()) {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(failed(status.to_string(), read_output())),
        Ok(Err(e)) => Err(failed(format!("cannot wait for it: {e}"), read_output())),
        Err(timed_out) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(failed(timed_out.to_string(), read_output()))
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with initdb (Debian's layout), else the directory
/// of an `initdb` on `PATH`.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).or_else(|| {
        crate::programs::find_program(&["initdb"])
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|bin| bin.join("pg_ctl").is_file())
    })
}

/// The numeric id of the user running the tests (`unknown` when `id` fails).
pub(crate) fn user_id() -> String {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn is_root() -> bool {
    user_id() == "0"
}

fn free_port() -> Result<u16, PostgresUnavailable> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| PostgresUnavailable::Io {
            what: "cannot find a free port on",
            path: PathBuf::from("127.0.0.1"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_reports_its_output() {
        let err = run_bounded(Command::new("sh").args(["-c", "echo to-stdout; echo to-stderr >&2; exit 3"]))
            .expect_err("exit 3 fails");
        let PostgresUnavailable::Command { status, log, .. } = &err else {
            panic!("{err:?}");
        };
        assert!(status.contains('3'), "{status}");
        assert!(log.contains("to-stdout") && log.contains("to-stderr"), "{log}");
        run_bounded(&mut Command::new("true")).expect("true succeeds");
    }

    #[test]
    fn a_missing_program_says_so() {
        let err = run_bounded(&mut Command::new("seam-no-such-program")).expect_err("not installed");
        assert!(err.to_string().contains("is it installed?"), "{err}");
    }
}
