//! Bounded polling: every wait in a test has a deadline and names what it waited for.
//!
//! Deadlines are wall-clock ([`std::time::Instant`]), so they hold under tokio's paused time too.
//! Pick generous timeouts: they only decide how long a broken build takes to fail.

use std::fmt::Display;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::oneshot;

/// First pause between two looks; doubled up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(5);
const MAX_INTERVAL: Duration = Duration::from_millis(100);

/// A wait that reached its deadline.
#[derive(Debug, Error)]
#[error("timed out after {after:?} waiting for {what}")]
pub struct TimedOut {
    /// What was awaited.
    pub what: String,
    /// The timeout.
    pub after: Duration,
}

struct Backoff {
    deadline: Instant,
    interval: Duration,
}

impl Backoff {
    fn new(timeout: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + timeout,
            interval: FIRST_INTERVAL,
        }
    }

    /// The pause before the next look, or `None` when the deadline has passed.
    fn next(&mut self) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(Instant::now())?;
        let pause = self.interval.min(left);
        self.interval = (self.interval * 2).min(MAX_INTERVAL);
        Some(pause)
    }
}

/// Calls `f` until it returns `Some`, for at most `timeout` (blocking the thread between looks).
pub fn try_wait_for<T>(
    timeout: Duration,
    what: impl Display,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let mut backoff = Backoff::new(timeout);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        match backoff.next() {
            Some(pause) => std::thread::sleep(pause),
            None => {
                return Err(TimedOut {
                    what: what.to_string(),
                    after: timeout,
                })
            }
        }
    }
}

/// Calls `f` until it returns `Some`; panics naming `what` after `timeout`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: impl Display, f: impl FnMut() -> Option<T>) -> T {
    try_wait_for(timeout, what, f).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until `cond` holds; panics naming `what` after `timeout`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: impl Display, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || cond().then_some(()))
}

/// Awaits `f` until it returns `Some`, for at most `timeout` of wall-clock time. A look that never
/// finishes (a request that is never answered) is cut off at the deadline too.
///
/// The deadline is kept by a thread of its own, not by tokio's timer: under paused time tokio jumps
/// its clock forward whenever the runtime idles (say, on a socket), which would end the wait at once.
pub async fn try_wait_for_async<T>(
    timeout: Duration,
    what: impl Display,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let timed_out = || TimedOut {
        what: what.to_string(),
        after: timeout,
    };
    let (_stop, mut expired) = watchdog(timeout);
    let mut backoff = Backoff::new(timeout);
    loop {
        tokio::select! {
            biased;
            _ = &mut expired => return Err(timed_out()),
            found = f() => if let Some(v) = found {
                return Ok(v);
            },
        }
        let Some(pause) = backoff.next() else {
            return Err(timed_out());
        };
        tokio::select! {
            biased;
            _ = &mut expired => return Err(timed_out()),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// A thread that completes the returned receiver after `timeout` of wall-clock time, unless the
/// returned sender is dropped first (which ends the thread at once).
fn watchdog(timeout: Duration) -> (mpsc::Sender<()>, oneshot::Receiver<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let (fire, expired) = oneshot::channel();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(timeout) {
            let _ = fire.send(());
        }
    });
    (stop, expired)
}

/// Awaits `f` until it returns `Some`; panics naming `what` after `timeout`.
pub async fn wait_for_async<T>(
    timeout: Duration,
    what: impl Display,
    f: impl AsyncFnMut() -> Option<T>,
) -> T {
    match try_wait_for_async(timeout, what, f).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// Awaits `cond` until it holds; panics naming `what` after `timeout`.
pub async fn wait_until_async(timeout: Duration, what: impl Display, mut cond: impl AsyncFnMut() -> bool) {
    wait_for_async(timeout, what, async || cond().await.then_some(())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_as_soon_as_the_condition_holds() {
        let mut looks = 0;
        let v = wait_for(Duration::from_secs(60), "the third look", || {
            looks += 1;
            (looks == 3).then_some(looks)
        });
        assert_eq!(v, 3);
    }

    #[test]
    fn panics_naming_what_it_waited_for() {
        let panic = std::panic::catch_unwind(|| {
            wait_until(Duration::from_millis(30), "a condition that never holds", || {
                false
            })
        })
        .expect_err("the wait times out");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            message.contains("waiting for a condition that never holds"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn async_waits_are_bounded_even_when_a_look_hangs() {
        let mut looks = 0;
        let v = wait_for_async(Duration::from_secs(60), "the second look", async || {
            looks += 1;
            (looks == 2).then_some("done")
        })
        .await;
        assert_eq!(v, "done");

        let err = try_wait_for_async(Duration::from_millis(50), "a look that never ends", async || {
            std::future::pending::<Option<()>>().await
        })
        .await
        .expect_err("the hanging look is cut off");
        assert_eq!(err.what, "a look that never ends");
    }

    /// Under paused time tokio's clock leaps ahead while the runtime idles: the deadline must not.
    #[tokio::test(start_paused = true)]
    async fn paused_time_does_not_end_a_wait_early() {
        let started = std::time::Instant::now();
        let mut looks = 0;
        wait_until_async(Duration::from_secs(60), "real time to pass", async || {
            looks += 1;
            // Work that takes real time and no tokio timer, like a socket read: the runtime idles.
            let (done, finished) = oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                let _ = done.send(());
            });
            finished.await.unwrap();
            started.elapsed() >= Duration::from_millis(200)
        })
        .await;
        assert!(looks > 1);
    }
}
