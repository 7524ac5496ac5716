//! The data directory holds Zendesk data (the DuckDB warehouse), the metastore and the secret key:
//! only the account seam runs as may read it.
//!
//! - The directory is created with mode 0700; an existing one is tightened to 0700.
//! - Files directly in it that others could read (group or other permission bits) are tightened to
//!   0600 on every start: a data directory made by an older seam, or copied with a loose umask.
//! - The SQLite metastore file is created 0600 before SQLite opens it; SQLite gives its `-wal` and
//!   `-shm` files the database file's mode.
//! - Files created later by other components (the DuckDB warehouse and its `.wal`) rely on the
//!   directory's mode here, and on the process umask the `seam` binary sets (0o077) for their own mode.

use std::io;
use std::path::Path;

/// Mode of the data directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in it.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing one; then tightens
/// every file directly in it to 0600. Returns the files it tightened.
pub fn prepare(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    create_private_dir(dir)?;
    tighten(dir)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn tighten(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut tightened = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // `file_type` does not follow symlinks: a link is left alone, never the file it points to.
        if !entry.file_type()?.is_file() {
            continue;
        }
        let path = entry.path();
        let mode = entry.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode((mode & 0o700) | FILE_MODE))?;
            tightened.push(path);
        }
    }
    Ok(tightened)
}

#[cfg(not(unix))]
fn tighten(_dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    Ok(Vec::new())
}

/// Creates `path` empty with mode 0600 when it does not exist (so that a database opened on it later
/// keeps that mode); leaves an existing file alone.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(FILE_MODE);
    }
    options.open(path).map(drop)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_and_tightens_what_exists() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/data");
        prepare(&dir).expect("prepare");
        assert_eq!(mode(&dir), 0o700);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let loose = dir.join("warehouse.duckdb");
        std::fs::write(&loose, b"x").expect("write");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let exec = dir.join("run.sh");
        std::fs::write(&exec, b"x").expect("write");
        std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let tightened = prepare(&dir).expect("prepare");
        assert_eq!(tightened.len(), 2);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&loose), 0o600);
        assert_eq!(mode(&exec), 0o700, "the owner's bits stay");

        let file = dir.join("metastore.sqlite");
        create_private_file(&file).expect("create");
        assert_eq!(mode(&file), 0o600);
        std::fs::write(&file, b"kept").expect("write");
        create_private_file(&file).expect("again");
        assert_eq!(
            std::fs::read(&file).expect("read"),
            b"kept",
            "an existing file is kept"
        );
    }
}
