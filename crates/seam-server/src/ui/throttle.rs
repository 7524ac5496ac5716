//! Sign-in throttling: wrong passwords are limited per client and overall, and password checks
//! (argon2, deliberately slow and memory-hard: ~19 MB each) run a bounded number at a time.
//!
//! Each limit is a token bucket: a client may fail [`SignInLimits::per_client_failures`] times in a
//! row, then once more every [`SignInLimits::per_client_refill`]; all clients together
//! [`SignInLimits::global_failures`] times, then once every [`SignInLimits::global_refill`]. An attempt
//! takes a token before the password is checked (so parallel attempts cannot all slip through) and
//! gives it back when the password was right. An empty bucket answers 429 with `Retry-After`.
//!
//! The buckets live in the metastore ([`Metastore::begin_sign_in`]), which takes and gives back
//! tokens atomically across processes: several `seam serve` processes sharing one metastore allow no
//! more attempts together than one process does, and a restart forgets no failures. The check slots
//! are each process's own: they bound the memory and CPU of the process that runs the checks.
//!
//! A client is its IP address (IPv6: its /64, which one machine usually owns whole). Behind a reverse
//! proxy every request comes from the proxy's address: the per-client limit then applies to all
//! users together, which is safe but coarse. At most [`MAX_CLIENTS`] clients are tracked; past that,
//! clients whose bucket has refilled are forgotten, and new clients meet only the overall limit.

use chrono::{DateTime, Utc};
use seam_metastore::{Metastore, MetastoreError, SignInBudgets, SignInOutcome, SignInVerdict, TokenBudget};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most clients whose failures are remembered at once.
pub const MAX_CLIENTS: usize = 4096;

/// How many wrong sign-ins are tolerated, and how many password checks run at once.
#[derive(Debug, Clone)]
pub struct SignInLimits {
    /// Failures one client may make in a row (default 5).
    pub per_client_failures: u32,
    /// After those, one more failure per this long (default 20 s).
    pub per_client_refill: Duration,
    /// Failures all clients together may make in a row (default 50).
    pub global_failures: u32,
    /// After those, one more per this long (default 1 s).
    pub global_refill: Duration,
    /// Password checks running at once in each process (default 2).
    pub concurrent_checks: usize,
    /// How long an attempt may wait for a check slot before it is answered 429 (default 10 s).
    pub check_wait: Duration,
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            per_client_failures: 5,
            per_client_refill: Duration::from_secs(20),
            global_failures: 50,
            global_refill: Duration::from_secs(1),
            concurrent_checks: 2,
            check_wait: Duration::from_secs(10),
        }
    }
}

impl SignInLimits {
    /// The budgets the metastore keeps.
    pub fn budgets(&self) -> SignInBudgets {
        SignInBudgets {
            per_client: TokenBudget {
                capacity: self.per_client_failures,
                refill: self.per_client_refill,
            },
            overall: TokenBudget {
                capacity: self.global_failures,
                refill: self.global_refill,
            },
            max_clients: MAX_CLIENTS,
        }
    }
}

/// Who is signing in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The /64 prefix of an IPv6 address.
    V6([u8; 8]),
    /// The peer address is not known (the app served without connection info).
    Unknown,
}

impl ClientKey {
    /// The key of a peer address (an IPv4-mapped IPv6 address is its IPv4 address).
    pub fn of(ip: Option<IpAddr>) -> ClientKey {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => ClientKey::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                ClientKey::V6(prefix)
            }
            None => ClientKey::Unknown,
        }
    }

    /// The client's name in the metastore: its address, or its /64 for IPv6.
    pub fn name(&self) -> String {
        match self {
            ClientKey::V4(octets) => Ipv4Addr::from(*octets).to_string(),
            ClientKey::V6(prefix) => {
                let mut octets = [0u8; 16];
                octets[..8].copy_from_slice(prefix);
                format!("{}/64", Ipv6Addr::from(octets))
            }
            ClientKey::Unknown => "unknown".to_owned(),
        }
    }
}

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This client failed too often.
    Client(Duration),
    /// All clients together failed too often.
    Global(Duration),
    /// Too many password checks are waiting.
    Busy(Duration),
}

impl Refused {
    /// When to try again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Refused::Client(d) | Refused::Global(d) | Refused::Busy(d) => *d,
        }
    }

    /// `Retry-After` in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after();
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// The sign-in throttle: its budgets are kept in the metastore, its check slots in this process
/// (cheap to clone).
#[derive(Debug, Clone)]
pub struct SignInThrottle {
    limits: SignInLimits,
    checks: Arc<Semaphore>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl SignInThrottle {
    /// A throttle with these limits.
    pub fn new(limits: SignInLimits) -> Self {
        SignInThrottle {
            checks: Arc::new(Semaphore::new(limits.concurrent_checks.max(1))),
            limits,
            in_flight: Arc::default(),
            peak: Arc::default(),
        }
    }

    /// Takes one attempt from the client's and the overall budget (`Ok(Ok(()))`), or says how long
    /// to wait (`Ok(Err(_))`, nothing taken).
    pub async fn begin(
        &self,
        metastore: &dyn Metastore,
        client: ClientKey,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Refused>, MetastoreError> {
        let verdict = metastore
            .begin_sign_in(&client.name(), now, &self.limits.budgets())
            .await?;
        Ok(match verdict {
            SignInVerdict::Allowed => Ok(()),
            SignInVerdict::ClientSpent(wait) => Err(Refused::Client(wait)),
            SignInVerdict::OverallSpent(wait) => Err(Refused::Global(wait)),
        })
    }

    /// The attempt succeeded: the client's budget is whole again and the overall one gets its token back.
    pub async fn succeeded(
        &self,
        metastore: &dyn Metastore,
        client: ClientKey,
    ) -> Result<(), MetastoreError> {
        self.end(metastore, client, SignInOutcome::Succeeded).await
    }

    /// The attempt never reached the password check: its tokens go back.
    pub async fn abandoned(
        &self,
        metastore: &dyn Metastore,
        client: ClientKey,
    ) -> Result<(), MetastoreError> {
        self.end(metastore, client, SignInOutcome::NotChecked).await
    }

    async fn end(
        &self,
        metastore: &dyn Metastore,
        client: ClientKey,
        outcome: SignInOutcome,
    ) -> Result<(), MetastoreError> {
        metastore
            .end_sign_in(&client.name(), outcome, &self.limits.budgets())
            .await
    }

    /// A slot to check a password in; waits at most [`SignInLimits::check_wait`].
    pub async fn check_slot(&self) -> Result<CheckSlot, Refused> {
        let permit = tokio::time::timeout(self.limits.check_wait, Arc::clone(&self.checks).acquire_owned())
            .await
            .map_err(|_| Refused::Busy(self.limits.check_wait))?
            .map_err(|_| Refused::Busy(self.limits.check_wait))?;
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Ok(CheckSlot {
            _permit: permit,
            in_flight: Arc::clone(&self.in_flight),
        })
    }

    /// The most password checks that ran at once so far in this process (for tests and diagnostics).
    pub fn peak_concurrent_checks(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// A password check in progress; dropping it frees the slot.
#[derive(Debug)]
pub struct CheckSlot {
    _permit: OwnedSemaphorePermit,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for CheckSlot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam_metastore::SqliteMetastore;

    fn limits() -> SignInLimits {
        SignInLimits {
            per_client_failures: 3,
            per_client_refill: Duration::from_secs(10),
            global_failures: 5,
            global_refill: Duration::from_secs(2),
            concurrent_checks: 1,
            check_wait: Duration::from_millis(10),
        }
    }

    fn ip(s: &str) -> ClientKey {
        ClientKey::of(Some(s.parse().expect("ip")))
    }

    fn store() -> SqliteMetastore {
        SqliteMetastore::open_in_memory().expect("in-memory metastore")
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("a valid time")
    }

    async fn begin(
        t: &SignInThrottle,
        m: &SqliteMetastore,
        client: ClientKey,
        now: DateTime<Utc>,
    ) -> Result<(), Refused> {
        t.begin(m, client, now).await.expect("the metastore answers")
    }

    #[tokio::test]
    async fn a_client_runs_out_then_refills() {
        let (t, m) = (SignInThrottle::new(limits()), store());
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            begin(&t, &m, a, at(0)).await.expect("within the budget");
        }
        let Err(Refused::Client(wait)) = begin(&t, &m, a, at(0)).await else {
            panic!("the fourth attempt must wait")
        };
        assert_eq!(wait, Duration::from_secs(10));
        assert!(
            begin(&t, &m, ip("192.0.2.2"), at(0)).await.is_ok(),
            "another client is not limited"
        );
        assert!(matches!(begin(&t, &m, a, at(5)).await, Err(Refused::Client(_))));
        assert!(begin(&t, &m, a, at(10)).await.is_ok(), "one token back");
    }

    #[tokio::test]
    async fn all_clients_together_run_out() {
        let (t, m) = (SignInThrottle::new(limits()), store());
        for i in 0..5 {
            begin(&t, &m, ip(&format!("198.51.100.{i}")), at(0))
                .await
                .expect("within the budget");
        }
        let refused = begin(&t, &m, ip("198.51.100.99"), at(0))
            .await
            .expect_err("overall budget spent");
        assert_eq!(refused, Refused::Global(Duration::from_secs(2)));
        assert_eq!(refused.retry_after_secs(), 2);
        assert!(begin(&t, &m, ip("198.51.100.99"), at(2)).await.is_ok());
    }

    #[tokio::test]
    async fn success_restores_the_budget() {
        let (mut l, m) = (limits(), store());
        l.global_failures = 100;
        let t = SignInThrottle::new(l);
        let a = ip("203.0.113.7");
        for _ in 0..3 {
            begin(&t, &m, a, at(0)).await.expect("budget");
        }
        t.succeeded(&m, a).await.expect("stored");
        for _ in 0..3 {
            begin(&t, &m, a, at(0))
                .await
                .expect("whole again after a success");
        }
        t.abandoned(&m, a).await.expect("stored");
        assert!(
            begin(&t, &m, a, at(0)).await.is_ok(),
            "an abandoned attempt gives its token back"
        );
    }

    #[test]
    fn ipv6_clients_are_their_64_and_mapped_v4_is_v4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(ClientKey::of(None), ClientKey::Unknown);
        assert_eq!(ip("2001:db8:1:2::1").name(), "2001:db8:1:2::/64");
        assert_eq!(ip("::ffff:192.0.2.1").name(), "192.0.2.1");
        assert_eq!(ClientKey::Unknown.name(), "unknown");
    }

    #[tokio::test]
    async fn check_slots_are_bounded_and_waits_end() {
        let t = SignInThrottle::new(limits());
        let slot = t.check_slot().await.expect("a free slot");
        let busy = t.check_slot().await.expect_err("the only slot is taken");
        assert!(matches!(busy, Refused::Busy(_)));
        drop(slot);
        assert!(t.check_slot().await.is_ok());
        assert_eq!(t.peak_concurrent_checks(), 1);
    }
}
