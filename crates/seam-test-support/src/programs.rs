//! Programs a test runs (browsers, interpreters), looked up on `PATH`.

use crate::skip::skip;
use std::path::PathBuf;

/// The first of `names` found on `PATH`.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The first of `names` found on `PATH`, or `None` after [`skip`] (which fails under CI).
/// `install` says how to get it, e.g. `apt-get install chromium-driver`.
#[track_caller]
pub fn require_program(names: &[&str], install: &str) -> Option<PathBuf> {
    let found = find_program(names);
    if found.is_none() {
        skip(format_args!("{} not found on PATH: {install}", names.join(" / ")));
    }
    found
}

/// Writes `text` to `path` as an executable program (mode 0755): the Singer taps tests write.
/// Panics when it cannot.
pub fn write_program(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let written = std::fs::write(path, text)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)));
    if let Err(e) = written {
        panic!("cannot write the program {}: {e}", path.display());
    }
}
