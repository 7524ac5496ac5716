//! One DuckDB database instance per file per process.
//!
//! Two DuckDB instances on one file in one process would corrupt it (the file lock only keeps other
//! processes out), so every destination on a file shares one instance and gets its own connection
//! (`Connection::try_clone`). Connections to one instance run transactions side by side: jobs of
//! different integrations (different schemas) stage and commit concurrently, and a job waiting on its
//! source holds no lock at all. The instance closes when the last destination on the file is
//! dropped, under the registry's lock, so a new open never overlaps a closing instance.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// An open file: the instance's first connection (the one the others are cloned from) and how many
/// leases use it.
struct OpenFile {
    root: Arc<Mutex<duckdb::Connection>>,
    leases: usize,
}

fn registry() -> MutexGuard<'static, HashMap<PathBuf, OpenFile>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, OpenFile>>> = OnceLock::new();
    OPEN.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A destination's share of a database instance; the instance closes when the last lease drops.
/// Drop the connection cloned with it first (declare it before the lease), so the instance's last
/// handle is the root, closed under the registry's lock.
pub(crate) struct Lease {
    key: PathBuf,
    root: Option<Arc<Mutex<duckdb::Connection>>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("file", &self.key).finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut open = registry();
        let last = match open.get_mut(&self.key) {
            Some(file) => {
                file.leases = file.leases.saturating_sub(1);
                file.leases == 0
            }
            None => false,
        };
        let removed = if last { open.remove(&self.key) } else { None };
        // Both handles go while the registry is locked: closing the instance (when this was the
        // last lease) never overlaps an open of the same file.
        drop(self.root.take());
        drop(removed);
        drop(open);
    }
}

/// A new connection to the instance for `path`, opening it (with `open`) when the process has no
/// instance on that file yet.
pub(crate) fn connect(
    path: &Path,
    open: impl FnOnce() -> Result<duckdb::Connection, duckdb::Error>,
) -> Result<(duckdb::Connection, Lease), duckdb::Error> {
    let key = file_key(path);
    let mut files = registry();
    let root = match files.get_mut(&key) {
        Some(file) => {
            file.leases += 1;
            Arc::clone(&file.root)
        }
        None => {
            let root = Arc::new(Mutex::new(open()?));
            files.insert(
                key.clone(),
                OpenFile {
                    root: Arc::clone(&root),
                    leases: 1,
                },
            );
            root
        }
    };
    let cloned = root.lock().unwrap_or_else(PoisonError::into_inner).try_clone();
    let conn = match cloned {
        Ok(conn) => conn,
        Err(e) => {
            // Give the lease back (closing the instance if it was the only one).
            if let Some(file) = files.get_mut(&key) {
                file.leases = file.leases.saturating_sub(1);
                if file.leases == 0 {
                    drop(files.remove(&key));
                }
            }
            return Err(e);
        }
    };
    drop(files);
    Ok((
        conn,
        Lease {
            key,
            root: Some(root),
        },
    ))
}

/// The same key for every spelling of a path: absolute, with symbolic links resolved as far as the
/// file (which may not exist yet) or its directory allows.
fn file_key(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(absolute.clone()),
        _ => absolute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_file_share_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("w.duckdb");
        let b = dir.path().join(".").join("w.duckdb");
        assert_eq!(file_key(&a), file_key(&b));
        std::fs::write(&a, b"").unwrap();
        assert_eq!(file_key(&a), file_key(&b));
        assert_ne!(file_key(&a), file_key(&dir.path().join("v.duckdb")));
    }
}
