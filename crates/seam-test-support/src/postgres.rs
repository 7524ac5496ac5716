//! The PostgreSQL server tests load into: `SEAM_TEST_POSTGRES_URL` when set (`scripts/test` and
//! `.ci/run` set it), else a throwaway cluster this module starts with the server binaries.
//!
//! The throwaway cluster lives in `$TMPDIR/seam-test-postgres-<uid>` (trust auth, loopback only, a
//! free port, `fsync=off`) and is reused by later test processes and runs, so none is left behind
//! per run. Test processes (nextest runs one per test) take a file lock while they start or find it.

use crate::skip::skip;
use crate::wait::try_wait_for;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use thiserror::Error;

/// The variable naming the server to use instead of a throwaway cluster.
pub const POSTGRES_URL_ENV: &str = "SEAM_TEST_POSTGRES_URL";

/// How long a test process waits for another to finish starting the shared cluster.
const LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// Why no PostgreSQL server could be had.
#[derive(Debug, Error)]
pub enum PostgresUnavailable {
    /// Neither the URL nor the server binaries.
    #[error(
        "PostgreSQL: {POSTGRES_URL_ENV} is unset and no initdb/pg_ctl was found \
         (install postgresql, e.g. apt-get install postgresql, or set {POSTGRES_URL_ENV})"
    )]
    NoServerBinaries,
    /// A command of the server's failed.
    #[error("PostgreSQL: `{command}` failed ({status}); its log: {log}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// Its output, or the server log.
        log: String,
    },
    /// Files of the cluster.
    #[error("PostgreSQL: {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another test process holds the start lock for too long.
    #[error(
        "PostgreSQL: {0} (another test process is starting the cluster; remove its directory if it is stuck)"
    )]
    Lock(#[source] crate::wait::TimedOut),
}

/// The URL of a PostgreSQL server for tests, or `None` after [`skip`] (which fails under CI and
/// `scripts/test`). Tests create their own schemas in it (see [`unique_name`]).
#[track_caller]
pub fn postgres_url() -> Option<String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    let url = URL.get_or_init(|| match std::env::var(POSTGRES_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => throwaway_cluster().map_err(|e| e.to_string()),
    });
    match url {
        Ok(url) => Some(url.clone()),
        Err(why) => {
            skip(why);
            None
        }
    }
}

/// A name no other test process or run uses: `<prefix>_<pid>_<n>_<micros>`, lowercase, a valid
/// unquoted SQL identifier when `prefix` is one.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() % 1_000_000_000)
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{micros}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Starts the shared throwaway cluster, or finds it running.
fn throwaway_cluster() -> Result<String, PostgresUnavailable> {
    let dir = std::env::temp_dir().join(format!("seam-test-postgres-{}", user_id()));
    cluster_in(&dir)?.start_or_reuse_locked()
}

/// The cluster that lives in `dir` (not started yet).
fn cluster_in(dir: &Path) -> Result<Cluster, PostgresUnavailable> {
    let bin = server_binaries().ok_or(PostgresUnavailable::NoServerBinaries)?;
    Ok(Cluster {
        bin,
        data: dir.join("data"),
        port_file: dir.join("port"),
        log: dir.join("log"),
        dir: dir.to_path_buf(),
        as_root: is_root(),
    })
}

impl Cluster {
    /// Starts the cluster or finds it running, holding the directory's lock meanwhile.
    fn start_or_reuse_locked(&self) -> Result<String, PostgresUnavailable> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir).map_err(|source| PostgresUnavailable::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| PostgresUnavailable::Io {
                what: "cannot open",
                path: lock_path.clone(),
                source,
            })?;
        take_lock(&lock, &lock_path)?;
        // The lock is released when `lock` is dropped (or the process dies).
        let url = self.start_or_reuse();
        drop(lock);
        url
    }
}

fn take_lock(lock: &File, path: &Path) -> Result<(), PostgresUnavailable> {
    let mut failure = None;
    let taken = try_wait_for(LOCK_TIMEOUT, "the PostgreSQL start lock", || {
        match lock.try_lock() {
            Ok(()) => Some(true),
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Error(e)) => {
                failure = Some(e);
                Some(false)
            }
        }
    })
    .map_err(PostgresUnavailable::Lock)?;
    match (taken, failure) {
        (true, _) => Ok(()),
        (false, source) => Err(PostgresUnavailable::Io {
            what: "cannot lock",
            path: path.to_path_buf(),
            source: source.unwrap_or_else(|| std::io::Error::other("the lock call failed")),
        }),
    }
}

struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port_file: PathBuf,
    log: PathBuf,
    as_root: bool,
}

impl Cluster {
    fn url(port: &str) -> String {
        format!("postgres://seam@127.0.0.1:{}/postgres", port.trim())
    }

    fn start_or_reuse(&self) -> Result<String, PostgresUnavailable> {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data.display().to_string();
        if let Ok(port) = std::fs::read_to_string(&self.port_file) {
            if self
                .run(&[&pg_ctl.display().to_string(), "-D", &data, "status"])
                .is_ok()
            {
                return Ok(Self::url(&port));
            }
        }
        // Nothing running: start afresh.
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_file(&self.port_file);
        if self.as_root {
            // initdb refuses root: the cluster belongs to the `postgres` user.
            self.run_plain(Command::new("chown").args(["-R", "postgres"]).arg(&self.dir))?;
        }
        self.run(&[
            &self.bin.join("initdb").display().to_string(),
            "-D",
            &data,
            "-U",
            "seam",
            "--auth=trust",
        ])?;
        let port = free_port().map_err(|source| PostgresUnavailable::Io {
            what: "cannot find a free port on",
            path: PathBuf::from("127.0.0.1"),
            source,
        })?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.dir.display()
        );
        let started = self.run(&[
            &pg_ctl.display().to_string(),
            "-D",
            &data,
            "-o",
            &options,
            "-w",
            "-t",
            "60",
            "-l",
            &self.log.display().to_string(),
            "start",
        ]);
        if let Err(PostgresUnavailable::Command { command, status, .. }) = started {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            return Err(PostgresUnavailable::Command { command, status, log });
        }
        std::fs::write(&self.port_file, port.to_string()).map_err(|source| PostgresUnavailable::Io {
            what: "cannot write",
            path: self.port_file.clone(),
            source,
        })?;
        Ok(Self::url(&port.to_string()))
    }

    /// Runs a server command, as the `postgres` user when we are root.
    fn run(&self, args: &[&str]) -> Result<(), PostgresUnavailable> {
        if self.as_root {
            let line = args
                .iter()
                .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
                .collect::<Vec<_>>()
                .join(" ");
            self.run_plain(Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", &line]))
        } else {
            let Some((program, rest)) = args.split_first() else {
                return Ok(());
            };
            self.run_plain(Command::new(program).args(rest))
        }
    }

    fn run_plain(&self, command: &mut Command) -> Result<(), PostgresUnavailable> {
        let line = format!("{command:?}");
        let out = command
            .stdin(Stdio::null())
            .output()
            .map_err(|e| PostgresUnavailable::Command {
                command: line.clone(),
                status: e.to_string(),
                log: String::new(),
            })?;
        if out.status.success() {
            return Ok(());
        }
        Err(PostgresUnavailable::Command {
            command: line,
            status: out.status.to_string(),
            log: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
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

fn user_id() -> String {
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

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts a throwaway cluster in a directory of its own, then asks again: the second call finds
    /// the first's server. Stops it at the end (the shared one is left running for later runs).
    #[test]
    fn a_throwaway_cluster_starts_and_is_reused() {
        let dir = std::env::temp_dir().join(unique_name("seam-test-postgres-selftest"));
        let cluster = match cluster_in(&dir) {
            Ok(c) => c,
            Err(e) => {
                skip(e);
                return;
            }
        };
        let first = cluster.start_or_reuse_locked();
        let second = cluster.start_or_reuse_locked();
        let pg_ctl = cluster.bin.join("pg_ctl").display().to_string();
        let data = cluster.data.display().to_string();
        let stopped = cluster.run(&[&pg_ctl, "-D", &data, "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&dir);
        let first = first.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, second.unwrap_or_else(|e| panic!("{e}")));
        assert!(first.starts_with("postgres://seam@127.0.0.1:"), "{first}");
        stopped.unwrap_or_else(|e| panic!("the cluster was not running: {e}"));
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
        assert!(unique_name("sync_kill").len() < 63);
    }
}
