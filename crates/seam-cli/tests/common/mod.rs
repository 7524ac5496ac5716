//! What the `seam` command's tests share: the simulator and the Zendesk config pointing at it
//! ([`sim`], seam-test-support's), the warehouse and reading it back ([`warehouse`]), comparisons
//! with the simulator's ground truth ([`truth`]), and `seam sync` / `seam serve` as processes
//! ([`sync`], [`serve`]).
//! Waits are seam-test-support's (bounded, naming what they wait for).

pub mod serve;
pub mod sync;
pub mod truth;
pub mod warehouse;

pub use seam_test_support::sim;
use std::process::Command;

/// The `seam` binary under test, without the environment variables that would point it at
/// something other than what the test gives it.
pub fn seam() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seam"));
    cmd.env_remove("SEAM_ADMIN_PASSWORD")
        .env_remove("SEAM_SECRET_KEY")
        .env_remove("SEAM_METASTORE_URL")
        .env_remove("SEAM_DATA_DIR");
    cmd
}

/// Runs `f` on a plain thread (blocking clients may not run on an async runtime's threads).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}
