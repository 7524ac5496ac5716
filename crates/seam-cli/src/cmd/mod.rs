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

/// Files seam creates are readable by its own user only (umask 0o077): the data directory, the
/// metastore, the key file and the warehouse hold credentials and Zendesk data (PII).
pub fn restrict_umask() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}

/// An error and its causes on one line, as `error: …` prints it: each cause once. seam's errors
/// carry their cause in their own message as well as in their `source()` chain, so a cause whose
/// text the line already holds is left out (`{:#}` would repeat it at every level).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// How long `seam sync` and `seam target` wait, once stopped, for their source to return and their
/// warehouse to commit what was read: longer than the service's jobs
/// ([`seam_runtime::pipeline::DEFAULT_STOP_GRACE`]), since a second signal ends the command at once
/// ([`stop_on_signals`]) and committing what was read can outlast 3 s on a loaded machine or over a
/// slow link: `seam target` in 100-record batches, which after a stop commits the up to 2 MB of
/// lines it had read (up to ~250 batches of short records), overran 3 s in eight runs of eight on
/// this 2-core machine with six busy loops beside it. Still a bound: a warehouse that does not
/// answer within it is let go of, and what it did not commit is read again by the next run.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Ctrl-C (SIGINT) or SIGTERM cancels `cancel`: the run stops at its next safe point, commits what
/// it may and ends within its stop's grace (`stopping` says what the command does then), as `seam
/// serve` does on either. A second signal exits at once (status 128 + its number: 130 for Ctrl-C,
/// 143 for SIGTERM), as a kill would: what was committed stays, and the batch under way is read
/// again by the next run (every commit is atomic with its state). Call on the async runtime.
pub fn stop_on_signals(
    cancel: tokio_util::sync::CancellationToken,
    command: &'static str,
    stopping: &'static str,
) {
    // Made before the task runs: from here on neither signal ends the process by its default action,
    // and a second one that comes while the first is handled is kept.
    let mut signals = StopSignals::new();
    tokio::spawn(async move {
        signals.recv().await;
        eprintln!("{command}: stopping: {stopping} (Ctrl-C again exits at once)");
        cancel.cancel();
        let number = signals.recv().await;
        eprintln!("{command}: exiting now: what was committed stays, the rest is read again next time");
        std::process::exit(128 + number);
    });
}

/// SIGTERM and SIGINT (Ctrl-C), each caught from the moment this is made: tokio installs a
/// signal's handler when a listener for it is created, and until then the signal's default action
/// (ending the process at once) stands. Made inside the runtime.
pub(crate) struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub(crate) fn new() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            StopSignals {
                term: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            StopSignals {}
        }
    }

    /// The next stop signal's number (SIGINT 2, SIGTERM 15).
    pub(crate) async fn recv(&mut self) -> i32 {
        #[cfg(unix)]
        {
            let term = async {
                match self.term.as_mut() {
                    // A listener that ends (the runtime shutting down) hears no more signals.
                    Some(t) => {
                        if t.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match self.interrupt.as_mut() {
                    Some(i) => {
                        if i.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            tokio::select! {
                () = term => libc::SIGTERM,
                () = interrupt => libc::SIGINT,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use anyhow::Context;

    /// An error that, like seam's, writes its cause into its own message and names it as its source.
    #[derive(Debug)]
    struct Wraps(&'static str, Box<dyn std::error::Error + Send + Sync>);

    impl std::fmt::Display for Wraps {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.0, self.1)
        }
    }

    impl std::error::Error for Wraps {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.1.as_ref())
        }
    }

    #[test]
    fn each_cause_shows_once_and_none_is_lost() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let e = anyhow::Error::new(Wraps(
            "loading failed",
            Box::new(Wraps("committing", Box::new(io))),
        ));
        assert_eq!(
            format!("{e:#}"),
            "loading failed: committing: No space left on device: committing: No space left on device: \
             No space left on device"
        );
        assert_eq!(
            one_line(&e),
            "loading failed: committing: No space left on device"
        );
        // A context that does not carry its cause keeps it after a colon, as `{:#}` does.
        let plain: anyhow::Result<()> =
            Err(std::io::Error::other("permission denied")).context("cannot read x");
        let plain = plain.unwrap_err();
        assert_eq!(one_line(&plain), format!("{plain:#}"));
        assert_eq!(one_line(&plain), "cannot read x: permission denied");
    }
}
