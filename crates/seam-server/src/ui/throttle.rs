//! Sign-in throttling: wrong passwords are limited per client and overall, and password checks
//! (argon2, deliberately slow and memory-hard: ~19 MB each) run a bounded number at a time.
//!
//! Each limit is a token bucket: a client may fail [`SignInLimits::per_client_failures`] times in a
//! row, then once more every [`SignInLimits::per_client_refill`]; all clients together
//! [`SignInLimits::global_failures`] times, then once every [`SignInLimits::global_refill`]. An attempt
//! takes a token before the password is checked (so parallel attempts cannot all slip through) and
//! gives it back when the password was right. An empty bucket answers 429 with `Retry-After`.
//!
//! A client is its IP address (IPv6: its /64, which one machine usually owns whole). Behind a reverse
//! proxy every request comes from the proxy's address: the per-client limit then applies to all
//! users together, which is safe but coarse. At most [`MAX_CLIENTS`] clients are tracked; past that,
//! clients whose bucket has refilled are forgotten, and new clients meet only the overall limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
    /// Password checks running at once (default 2).
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
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(capacity: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(capacity),
            updated: now,
        }
    }

    fn refill(&mut self, capacity: u32, every: Duration, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        let gained = elapsed / every.as_secs_f64().max(f64::EPSILON);
        self.tokens = (self.tokens + gained).min(f64::from(capacity));
        self.updated = now;
    }

    /// How long until a token is there; `None` when one is.
    fn wait(&self, every: Duration) -> Option<Duration> {
        (self.tokens < 1.0).then(|| every.mul_f64(1.0 - self.tokens))
    }

    fn is_full(&self, capacity: u32) -> bool {
        self.tokens >= f64::from(capacity)
    }
}

#[derive(Debug)]
struct Buckets {
    clients: HashMap<ClientKey, Bucket>,
    global: Bucket,
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

/// The sign-in throttle of one process (cheap to clone).
#[derive(Debug, Clone)]
pub struct SignInThrottle {
    limits: SignInLimits,
    buckets: Arc<Mutex<Buckets>>,
    checks: Arc<Semaphore>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl SignInThrottle {
    /// A throttle with these limits.
    pub fn new(limits: SignInLimits) -> Self {
        let global = Bucket::full(limits.global_failures, Instant::now());
        SignInThrottle {
            checks: Arc::new(Semaphore::new(limits.concurrent_checks.max(1))),
            limits,
            buckets: Arc::new(Mutex::new(Buckets {
                clients: HashMap::new(),
                global,
            })),
            in_flight: Arc::default(),
            peak: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one attempt from the client's and the overall budget, or says how long to wait.
    pub fn begin(&self, client: ClientKey, now: Instant) -> Result<(), Refused> {
        let l = &self.limits;
        let mut b = self.lock();
        b.global.refill(l.global_failures, l.global_refill, now);
        if b.clients.len() >= MAX_CLIENTS && !b.clients.contains_key(&client) {
            b.clients.retain(|_, bucket| {
                bucket.refill(l.per_client_failures, l.per_client_refill, now);
                !bucket.is_full(l.per_client_failures)
            });
        }
        let tracked = b.clients.len() < MAX_CLIENTS || b.clients.contains_key(&client);
        let mut own = b
            .clients
            .get(&client)
            .copied()
            .unwrap_or_else(|| Bucket::full(l.per_client_failures, now));
        own.refill(l.per_client_failures, l.per_client_refill, now);
        if let Some(wait) = own.wait(l.per_client_refill) {
            return Err(Refused::Client(wait));
        }
        if let Some(wait) = b.global.wait(l.global_refill) {
            return Err(Refused::Global(wait));
        }
        own.tokens -= 1.0;
        b.global.tokens -= 1.0;
        if tracked {
            b.clients.insert(client, own);
        }
        Ok(())
    }

    /// The attempt succeeded: the client's budget is whole again and the overall one gets its token back.
    pub fn succeeded(&self, client: ClientKey) {
        let mut b = self.lock();
        b.clients.remove(&client);
        b.global.tokens = (b.global.tokens + 1.0).min(f64::from(self.limits.global_failures));
    }

    /// The attempt never reached the password check: its tokens go back.
    pub fn abandoned(&self, client: ClientKey) {
        let mut b = self.lock();
        let capacity = f64::from(self.limits.per_client_failures);
        if let Some(own) = b.clients.get_mut(&client) {
            own.tokens = (own.tokens + 1.0).min(capacity);
        }
        b.global.tokens = (b.global.tokens + 1.0).min(f64::from(self.limits.global_failures));
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

    /// The most password checks that ran at once so far (for tests and diagnostics).
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

    #[test]
    fn a_client_runs_out_then_refills() {
        let t = SignInThrottle::new(limits());
        let now = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            t.begin(a, now).expect("within the budget");
        }
        let Err(Refused::Client(wait)) = t.begin(a, now) else {
            panic!("the fourth attempt must wait")
        };
        assert_eq!(wait, Duration::from_secs(10));
        assert!(
            t.begin(ip("192.0.2.2"), now).is_ok(),
            "another client is not limited"
        );
        assert!(matches!(
            t.begin(a, now + Duration::from_secs(5)),
            Err(Refused::Client(_))
        ));
        assert!(
            t.begin(a, now + Duration::from_secs(10)).is_ok(),
            "one token back"
        );
    }

    #[test]
    fn all_clients_together_run_out() {
        let t = SignInThrottle::new(limits());
        let now = Instant::now();
        for i in 0..5 {
            t.begin(ip(&format!("198.51.100.{i}")), now)
                .expect("within the budget");
        }
        let refused = t
            .begin(ip("198.51.100.99"), now)
            .expect_err("overall budget spent");
        assert_eq!(refused, Refused::Global(Duration::from_secs(2)));
        assert_eq!(refused.retry_after_secs(), 2);
        assert!(t.begin(ip("198.51.100.99"), now + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn success_restores_the_budget() {
        let t = SignInThrottle::new(limits());
        let now = Instant::now();
        let a = ip("203.0.113.7");
        for _ in 0..3 {
            t.begin(a, now).expect("budget");
        }
        t.succeeded(a);
        for _ in 0..3 {
            t.begin(a, now).expect("whole again after a success");
        }
        t.abandoned(a);
        assert!(
            t.begin(a, now).is_ok(),
            "an abandoned attempt gives its token back"
        );
    }

    #[test]
    fn ipv6_clients_are_their_64_and_mapped_v4_is_v4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(ClientKey::of(None), ClientKey::Unknown);
    }

    #[test]
    fn memory_is_bounded_by_the_client_cap() {
        let mut l = limits();
        l.global_failures = u32::MAX;
        let t = SignInThrottle::new(l);
        let now = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 100) {
            let [a, b, c, d] = (0x0a00_0000 + i).to_be_bytes();
            t.begin(ClientKey::V4([a, b, c, d]), now).expect("budget");
        }
        assert!(t.lock().clients.len() <= MAX_CLIENTS);
        // Once their buckets have refilled, old clients make room for new ones.
        let later = now + Duration::from_secs(60);
        t.begin(ip("192.0.2.200"), later).expect("budget");
        assert!(t.lock().clients.contains_key(&ip("192.0.2.200")));
        assert!(t.lock().clients.len() <= MAX_CLIENTS);
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
