//! One module per subcommand.

pub mod admin;
pub mod demo;
pub mod schema_name;
pub mod serve;
pub mod store;
pub mod sync;
pub mod tap;
pub mod target;
pub mod token;

/// The loading commands (`target`, `sync`) allocate from one malloc arena.
///
/// glibc's malloc gives threads that allocate at the same time arenas of their own (up to eight per
/// core) and keeps what is freed in each for reuse, so a process whose threads take turns holding
/// pages and batches keeps the high-water mark of every arena. `seam sync` of a 20k-ticket account
/// into PostgreSQL peaked at 98–112 MB of RSS with glibc's default for a 34 MB heap peak
/// (heaptrack), 71–74 MB with one arena, for 3.5% more CPU (medians of `farm-bench -n 5`, 0.88–1.09
/// run to run); at 100k tickets it stays at ~67 MB. `seam tap` keeps the default (one arena costs
/// it 8% CPU to save 6 MB), and so does `seam serve`, which runs several jobs at once on as many
/// cores as it has. `MALLOC_ARENA_MAX` or a `glibc.malloc.arena_max` tunable set by the user wins.
pub fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        if !user_set {
            // SAFETY: mallopt only sets a parameter of glibc's malloc and takes no pointer; `main`
            // calls this before it starts any thread. A refusal (0) leaves glibc's default.
            #[allow(unsafe_code)]
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        }
    }
}

/// Files seam creates are readable by its own user only (umask 0o077): the data directory, the
/// metastore, the key file and the warehouse hold credentials and Zendesk data (PII).
pub fn restrict_umask() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}
