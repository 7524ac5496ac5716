//! Dashboard sessions and sign-in throttling: the same cases on every backend, then several
//! metastores sharing one database (as several `seam serve` processes do) agreeing on both.

use super::{backends, t0};
use chrono::{DateTime, Duration, Utc};
use seam_metastore::*;
use std::sync::Arc;

/// The dashboard's idle timeout.
fn idle() -> Duration {
    Duration::hours(12)
}

fn session(id_hash: &str, at: DateTime<Utc>) -> DashboardSession {
    DashboardSession {
        id_hash: id_hash.into(),
        csrf_token: format!("csrf-of-{id_hash}"),
        username: "admin".into(),
        password_fingerprint: "fingerprint-1".into(),
        created_at: at,
        last_seen: at,
    }
}

fn secs(s: u64) -> std::time::Duration {
    std::time::Duration::from_secs(s)
}

/// 3 attempts per client then one per 10 s; 5 overall then one per 2 s (the throttle's unit tests'
/// numbers).
fn budgets() -> SignInBudgets {
    SignInBudgets {
        per_client: TokenBudget {
            capacity: 3,
            refill: secs(10),
        },
        overall: TokenBudget {
            capacity: 5,
            refill: secs(2),
        },
        max_clients: 4096,
    }
}

/// Runs `case` against every backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                for (backend, store, _dir) in backends().await {
                    println!("backend {backend}");
                    cases::$name(store.as_ref()).await;
                }
            }
        )*
    };
}

on_every_backend!(
    sessions_round_trip_expire_and_end,
    a_client_runs_out_then_refills,
    all_clients_together_run_out,
    success_and_unchecked_attempts_give_tokens_back,
    remembered_clients_are_bounded,
);

mod cases {
    use super::*;

    pub async fn sessions_round_trip_expire_and_end(m: &dyn Metastore) {
        let t = t0();
        let a = session("hash-a", t);
        m.create_session(&a, t - idle()).await.unwrap();
        assert_eq!(
            m.touch_session("hash-a", t, t - idle()).await.unwrap(),
            Some(a.clone()),
            "stored as given, times kept"
        );
        let later = t + Duration::hours(1);
        let seen = m
            .touch_session("hash-a", later, later - idle())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.last_seen, later);
        let earlier = t + Duration::minutes(30);
        let seen = m
            .touch_session("hash-a", earlier, earlier - idle())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.last_seen, later, "last seen never moves backwards");
        assert_eq!(
            m.touch_session("hash-b", later, later - idle()).await.unwrap(),
            None
        );

        // Idle for exactly the timeout: over, and deleted.
        let idle_end = later + idle();
        assert_eq!(
            m.touch_session("hash-a", idle_end, idle_end - idle())
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            m.touch_session("hash-a", later, later - idle()).await.unwrap(),
            None,
            "an idle session is deleted when met"
        );

        // Creating a session deletes the idle ones.
        let b = session("hash-b", t);
        m.create_session(&b, t - idle()).await.unwrap();
        let c = session("hash-c", idle_end);
        m.create_session(&c, idle_end - idle()).await.unwrap();
        assert_eq!(
            m.touch_session("hash-b", t, t - idle()).await.unwrap(),
            None,
            "deleted when another session was created"
        );

        m.delete_session("hash-c").await.unwrap();
        assert_eq!(m.touch_session("hash-c", idle_end, t).await.unwrap(), None);
        m.delete_session("hash-c").await.unwrap();

        let shown = format!("{c:?}");
        assert!(!shown.contains("hash-c") && !shown.contains("csrf-of"), "{shown}");
    }

    pub async fn a_client_runs_out_then_refills(m: &dyn Metastore) {
        let b = budgets();
        let now = t0();
        for _ in 0..3 {
            assert_eq!(
                m.begin_sign_in("192.0.2.1", now, &b).await.unwrap(),
                SignInVerdict::Allowed
            );
        }
        assert_eq!(
            m.begin_sign_in("192.0.2.1", now, &b).await.unwrap(),
            SignInVerdict::ClientSpent(secs(10))
        );
        assert_eq!(
            m.begin_sign_in("192.0.2.2", now, &b).await.unwrap(),
            SignInVerdict::Allowed,
            "another client is not limited"
        );
        assert_eq!(
            m.begin_sign_in("192.0.2.1", now + Duration::seconds(5), &b)
                .await
                .unwrap(),
            SignInVerdict::ClientSpent(secs(5))
        );
        assert_eq!(
            m.begin_sign_in("192.0.2.1", now + Duration::seconds(10), &b)
                .await
                .unwrap(),
            SignInVerdict::Allowed,
            "one token back"
        );
    }

    pub async fn all_clients_together_run_out(m: &dyn Metastore) {
        let b = budgets();
        let now = t0();
        for i in 0..5 {
            let client = format!("198.51.100.{i}");
            assert_eq!(
                m.begin_sign_in(&client, now, &b).await.unwrap(),
                SignInVerdict::Allowed
            );
        }
        assert_eq!(
            m.begin_sign_in("198.51.100.99", now, &b).await.unwrap(),
            SignInVerdict::OverallSpent(secs(2))
        );
        assert_eq!(
            m.begin_sign_in("198.51.100.99", now + Duration::seconds(2), &b)
                .await
                .unwrap(),
            SignInVerdict::Allowed
        );
    }

    pub async fn success_and_unchecked_attempts_give_tokens_back(m: &dyn Metastore) {
        let b = budgets();
        let now = t0();
        let a = "203.0.113.7";
        for _ in 0..3 {
            assert_eq!(m.begin_sign_in(a, now, &b).await.unwrap(), SignInVerdict::Allowed);
        }
        m.end_sign_in(a, SignInOutcome::Succeeded, &b).await.unwrap();
        for _ in 0..2 {
            assert_eq!(
                m.begin_sign_in(a, now, &b).await.unwrap(),
                SignInVerdict::Allowed,
                "whole again after a success"
            );
        }
        // Three overall tokens back (one success), four spent: one left, and an unchecked attempt
        // gives its tokens back.
        assert_eq!(m.begin_sign_in(a, now, &b).await.unwrap(), SignInVerdict::Allowed);
        m.end_sign_in(a, SignInOutcome::NotChecked, &b).await.unwrap();
        assert_eq!(
            m.begin_sign_in(a, now, &b).await.unwrap(),
            SignInVerdict::Allowed,
            "an unchecked attempt gives its token back"
        );
        assert_eq!(
            m.begin_sign_in(a, now, &b).await.unwrap(),
            SignInVerdict::ClientSpent(secs(10))
        );
        assert_eq!(
            m.begin_sign_in("203.0.113.8", now, &b).await.unwrap(),
            SignInVerdict::OverallSpent(secs(2)),
            "one success gave back one overall token, not more"
        );
        // Giving back tokens of a client nobody remembers is harmless.
        m.end_sign_in("203.0.113.99", SignInOutcome::NotChecked, &b)
            .await
            .unwrap();
    }

    pub async fn remembered_clients_are_bounded(m: &dyn Metastore) {
        let b = SignInBudgets {
            per_client: TokenBudget {
                capacity: 1,
                refill: secs(10),
            },
            overall: TokenBudget {
                capacity: u32::MAX,
                refill: secs(1),
            },
            max_clients: 2,
        };
        let now = t0();
        for client in ["a", "b", "c"] {
            assert_eq!(
                m.begin_sign_in(client, now, &b).await.unwrap(),
                SignInVerdict::Allowed
            );
        }
        assert_eq!(
            m.begin_sign_in("a", now, &b).await.unwrap(),
            SignInVerdict::ClientSpent(secs(10)),
            "remembered"
        );
        assert_eq!(
            m.begin_sign_in("c", now, &b).await.unwrap(),
            SignInVerdict::Allowed,
            "past the bound a new client meets only the overall budget"
        );
        // Once their buckets have refilled, old clients make room for new ones.
        let later = now + Duration::seconds(10);
        assert_eq!(
            m.begin_sign_in("d", later, &b).await.unwrap(),
            SignInVerdict::Allowed
        );
        assert_eq!(
            m.begin_sign_in("d", later, &b).await.unwrap(),
            SignInVerdict::ClientSpent(secs(10)),
            "remembered once there is room"
        );
    }
}

/// Counts the allowed attempts when `stores` (sharing one database) take `attempts` sign-in attempts
/// each, all at once at `now`, from `client(i)` (`i` in `0..attempts`).
async fn allowed_at_once(
    stores: &[Arc<dyn Metastore>],
    attempts: usize,
    now: DateTime<Utc>,
    budgets: SignInBudgets,
    client: fn(usize) -> String,
) -> usize {
    let mut tasks = Vec::new();
    for store in stores {
        for i in 0..attempts {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                store.begin_sign_in(&client(i), now, &budgets).await.unwrap()
            }));
        }
    }
    let mut allowed = 0;
    for task in tasks {
        if task.await.unwrap() == SignInVerdict::Allowed {
            allowed += 1;
        }
    }
    allowed
}

/// Several metastores over one database: a session made through one is used and ended through
/// another, and together they allow exactly the attempts one allows.
async fn shared_by_several(stores: &[Arc<dyn Metastore>]) {
    let (a, b) = (&stores[0], &stores[1]);
    let t = t0();
    a.create_session(&session("shared", t), t - idle()).await.unwrap();
    let seen = b.touch_session("shared", t, t - idle()).await.unwrap().unwrap();
    assert_eq!(seen.csrf_token, "csrf-of-shared");
    b.delete_session("shared").await.unwrap();
    assert_eq!(a.touch_session("shared", t, t - idle()).await.unwrap(), None);

    let per_client = SignInBudgets {
        overall: TokenBudget {
            capacity: 1000,
            refill: secs(1),
        },
        ..budgets()
    };
    let allowed = allowed_at_once(stores, 10, t, per_client, |_| "192.0.2.1".into()).await;
    assert_eq!(allowed, 3, "one client's budget, whichever process asks");
    let overall = SignInBudgets {
        overall: TokenBudget {
            capacity: 7,
            refill: secs(3600),
        },
        ..budgets()
    };
    // An hour later every bucket is full again; each client tries once through every store, so
    // only the overall budget limits.
    let later = t + Duration::hours(1);
    let allowed = allowed_at_once(stores, 10, later, overall, |i| format!("198.51.100.{i}")).await;
    assert_eq!(allowed, 7, "the overall budget, whichever process asks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_connections_sharing_a_file_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    let stores: Vec<Arc<dyn Metastore>> = (0..3)
        .map(|_| Arc::new(SqliteMetastore::open(&path).unwrap()) as Arc<dyn Metastore>)
        .collect();
    shared_by_several(&stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_metastores_sharing_a_schema_agree() {
    let Some(url) = seam_test_support::postgres_url() else {
        return;
    };
    let schema = seam_test_support::unique_name("seam_sessions");
    let mut stores: Vec<Arc<dyn Metastore>> = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(PostgresMetastore::connect(&url, &schema).await.unwrap()));
    }
    shared_by_several(&stores).await;
}
