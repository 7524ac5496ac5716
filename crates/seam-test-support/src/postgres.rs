//! The PostgreSQL server tests load into: `SEAM_TEST_POSTGRES_URL` when set (`scripts/test` and
//! `.ci/run` set it), else a throwaway cluster this module starts with the server binaries.
//!
//! The throwaway cluster lives in `$TMPDIR/seam-test-postgres-<uid>` (trust auth, loopback only, a
//! free port, `fsync=off`) and is reused by later test processes and runs, so none is left behind
//! per run. Test processes (nextest runs one per test) take a file lock while they start or find it.

use crate::cluster::{user_id, Cluster};
use crate::skip::skip;
use crate::wait::try_wait_for;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
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
    /// A command (initdb, pg_ctl, openssl, …) failed or did not finish in time.
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
    SharedCluster::in_dir(&dir)?.start_or_reuse_locked()
}

/// The cluster test processes share, and the file naming its port.
struct SharedCluster {
    cluster: Cluster,
    port_file: PathBuf,
}

impl SharedCluster {
    /// The shared cluster that lives in `dir` (not started yet).
    fn in_dir(dir: &Path) -> Result<SharedCluster, PostgresUnavailable> {
        Ok(SharedCluster {
            cluster: Cluster::in_dir(dir)?,
            port_file: dir.join("port"),
        })
    }

    /// Starts the cluster or finds it running, holding the directory's lock meanwhile.
    fn start_or_reuse_locked(&self) -> Result<String, PostgresUnavailable> {
        let dir = self.cluster.dir();
        std::fs::create_dir_all(dir).map_err(|source| PostgresUnavailable::Io {
            what: "cannot create",
            path: dir.to_path_buf(),
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

    fn url(port: &str) -> String {
        format!("postgres://seam@127.0.0.1:{}/postgres", port.trim())
    }

    fn start_or_reuse(&self) -> Result<String, PostgresUnavailable> {
        if let Ok(port) = std::fs::read_to_string(&self.port_file) {
            if self.cluster.is_running() {
                return Ok(Self::url(&port));
            }
        }
        // Nothing running: start afresh.
        let _ = std::fs::remove_dir_all(self.cluster.data());
        let _ = std::fs::remove_file(&self.port_file);
        self.cluster.give_to_server_user()?;
        self.cluster.init()?;
        let port = self.cluster.start("")?;
        std::fs::write(&self.port_file, port.to_string()).map_err(|source| PostgresUnavailable::Io {
            what: "cannot write",
            path: self.port_file.clone(),
            source,
        })?;
        Ok(Self::url(&port.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts a throwaway cluster in a directory of its own, then asks again: the second call finds
    /// the first's server. Stops it at the end (the shared one is left running for later runs).
    #[test]
    fn a_throwaway_cluster_starts_and_is_reused() {
        let dir = std::env::temp_dir().join(unique_name("seam-test-postgres-selftest"));
        let shared = match SharedCluster::in_dir(&dir) {
            Ok(c) => c,
            Err(e) => {
                skip(e);
                return;
            }
        };
        let first = shared.start_or_reuse_locked();
        let second = shared.start_or_reuse_locked();
        let stopped = shared.cluster.stop();
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
