#![allow(clippy::unwrap_used)]
//! The metastore conformance suite: the same tests against every backend.
//!
//! SQLite runs always (in memory and on a file); PostgreSQL on the test run's server
//! (`SEAM_TEST_POSTGRES_URL`, else a throwaway cluster: see seam-test-support), each instance in a
//! fresh schema. Without PostgreSQL the suite prints a SKIP line, and fails under CI and `scripts/test`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use seam_core::{Catalog, Classify, State};
use seam_metastore::*;
use serde_json::json;
use std::sync::Arc;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 17, 16, 44, 41).single().unwrap() + Duration::milliseconds(159)
}

fn props() -> IntegrationProperties {
    IntegrationProperties {
        start_date: Utc.with_ymd_and_hms(2025, 11, 17, 0, 0, 0).single().unwrap(),
        frequency_in_minutes: 30,
        anchor_time: None,
        cron_expression: None,
        config: json!({"subdomain": "acme", "email": "agent@example.com"})
            .as_object()
            .cloned()
            .unwrap(),
    }
}

fn new_integration(name: &str) -> NewIntegration {
    NewIntegration {
        display_name: format!("Display {name}"),
        name: name.into(),
        kind: "platform.zendesk".into(),
        properties: props(),
        sealed_credentials: vec![1, 2, 3],
        created_at: t0(),
    }
}

/// Every backend under test, each freshly created and empty.
async fn backends() -> Vec<(&'static str, Arc<dyn Metastore>, Option<tempfile::TempDir>)> {
    let mut out: Vec<(&'static str, Arc<dyn Metastore>, Option<tempfile::TempDir>)> = vec![(
        "sqlite-memory",
        Arc::new(SqliteMetastore::open_in_memory().unwrap()),
        None,
    )];
    let dir = tempfile::tempdir().unwrap();
    let file = SqliteMetastore::open(&dir.path().join("m.sqlite")).unwrap();
    out.push(("sqlite-file", Arc::new(file), Some(dir)));
    if let Some(url) = seam_test_support::postgres_url() {
        // A fresh schema per backend instance keeps tests independent.
        let schema = seam_test_support::unique_name("seam_test");
        out.push((
            "postgres",
            Arc::new(PostgresMetastore::connect(&url, &schema).await.unwrap()),
            None,
        ));
    }
    out
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                for (backend, store, _dir) in super::backends().await {
                    println!("backend {backend}");
                    super::cases::$name(store.as_ref()).await;
                }
            }
        )*
    };
}

mod conformance {
    conformance!(
        integrations_round_trip,
        names_are_unique_among_live_integrations,
        update_and_delete,
        catalog_and_state,
        checks,
        jobs_and_logs,
        jobs_succeed_with_warnings,
        loads_and_usage,
        notifications_tokens_settings,
        tokens_list_and_revoke,
        credentials_are_sealed_for_the_new_id,
        legacy_credentials_are_resealed_bound_to_their_integration,
        job_queue,
    );
}

mod cases {
    use super::*;

    pub async fn integrations_round_trip(m: &dyn Metastore) {
        let a = m.create_integration(new_integration("zendesk")).await.unwrap();
        assert_eq!(a.name, "zendesk");
        assert_eq!(a.properties, props());
        assert_eq!(a.created_at, t0(), "times keep their precision");
        assert_eq!(a.sealed_credentials, vec![1, 2, 3]);
        assert!(a.catalog.is_none() && a.state.is_none() && a.paused_at.is_none());
        assert!(!a.is_configured());
        let b = m.create_integration(new_integration("other")).await.unwrap();
        assert!(b.id > a.id);
        assert_eq!(m.get_integration(a.id).await.unwrap().unwrap(), a);
        assert_eq!(m.list_integrations(false).await.unwrap().len(), 2);
        assert!(m.get_integration(9999).await.unwrap().is_none());
    }

    pub async fn names_are_unique_among_live_integrations(m: &dyn Metastore) {
        let a = m.create_integration(new_integration("zendesk")).await.unwrap();
        let err = m
            .create_integration(new_integration("zendesk"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, MetastoreError::NameTaken { ref name } if name == "zendesk"),
            "{err}"
        );
        m.delete_integration(a.id, t0()).await.unwrap();
        let again = m.create_integration(new_integration("zendesk")).await.unwrap();
        assert_ne!(again.id, a.id, "a deleted integration's name can be reused");
        assert_eq!(m.list_integrations(false).await.unwrap().len(), 1);
        assert_eq!(m.list_integrations(true).await.unwrap().len(), 2);
    }

    pub async fn update_and_delete(m: &dyn Metastore) {
        let a = m.create_integration(new_integration("zendesk")).await.unwrap();
        let mut p = props();
        p.frequency_in_minutes = 60;
        let later = t0() + Duration::minutes(5);
        let u = m
            .update_integration(
                a.id,
                IntegrationUpdate {
                    display_name: "New".into(),
                    properties: p.clone(),
                    sealed_credentials: vec![9],
                    paused_at: Some(later),
                    updated_at: later,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (u.display_name.as_str(), u.name.as_str()),
            ("New", "zendesk"),
            "the name never changes"
        );
        assert_eq!(u.properties, p);
        assert_eq!(u.paused_at, Some(later));
        assert_eq!(u.sealed_credentials, vec![9]);
        let d = m.delete_integration(a.id, later).await.unwrap();
        assert_eq!(d.deleted_at, Some(later));
        let err = m
            .update_integration(
                a.id,
                IntegrationUpdate {
                    display_name: "x".into(),
                    properties: p,
                    sealed_credentials: vec![],
                    paused_at: None,
                    updated_at: later,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, MetastoreError::NotFound { .. }));
        assert!(matches!(
            m.delete_integration(a.id, later).await,
            Err(MetastoreError::NotFound { .. })
        ));
    }

    pub async fn catalog_and_state(m: &dyn Metastore) {
        let a = m.create_integration(new_integration("zendesk")).await.unwrap();
        let mut catalog: Catalog = serde_json::from_value(json!({"streams": [{"tap_stream_id": "tickets",
            "stream": "tickets", "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "metadata": [{"breadcrumb": [], "metadata": {"table-key-properties": ["id"]}}]}]}))
        .unwrap();
        m.set_catalog(a.id, &catalog).await.unwrap();
        assert!(!m.get_integration(a.id).await.unwrap().unwrap().is_configured());
        catalog.select_all();
        m.set_catalog(a.id, &catalog).await.unwrap();
        let got = m.get_integration(a.id).await.unwrap().unwrap();
        assert_eq!(got.catalog.as_ref(), Some(&catalog));
        assert!(got.is_configured());
        let state =
            State::from_value(json!({"bookmarks": {"tickets": {"updated_at": "2026-01-01T00:00:00Z"}}}))
                .unwrap();
        m.set_state(a.id, Some(&state)).await.unwrap();
        assert_eq!(m.get_integration(a.id).await.unwrap().unwrap().state, Some(state));
        m.set_state(a.id, None).await.unwrap();
        assert_eq!(m.get_integration(a.id).await.unwrap().unwrap().state, None);
        assert!(matches!(
            m.set_state(4242, None).await,
            Err(MetastoreError::NotFound { .. })
        ));
    }

    pub async fn checks(m: &dyn Metastore) {
        let a = m.create_integration(new_integration("zendesk")).await.unwrap();
        assert!(m.last_check(a.id).await.unwrap().is_none());
        let mut c = m.create_check(a.id, t0()).await.unwrap();
        assert_eq!(c.status, CheckStatus::Running);
        assert_eq!(c.check_exit_status, None);
        c.status = CheckStatus::Failed;
        c.completion_time = Some(t0() + Duration::seconds(2));
        c.check_exit_status = Some(1);
        c.check_error_message = Some("zendesk rejected the API token".into());
        m.finish_check(&c).await.unwrap();
        assert_eq!(m.last_check(a.id).await.unwrap().unwrap(), c);
        let c2 = m.create_check(a.id, t0() + Duration::seconds(5)).await.unwrap();
        assert_eq!(
            m.last_check(a.id).await.unwrap().unwrap().id,
            c2.id,
            "the latest check wins"
        );
    }

    pub async fn jobs_and_logs(m: &dyn Metastore) {
        let a = m.create_integration(new_integration("zendesk")).await.unwrap();
        let j1 = m.create_job(a.id, JobTrigger::Scheduled, t0()).await.unwrap();
        assert_eq!(j1.status, JobStatus::Running);
        assert_eq!(j1.job_name, format!("{}.{}.sync", a.id, j1.id));
        let f = JobFinish {
            status: JobStatus::Succeeded,
            completion_time: t0() + Duration::minutes(3),
            discovery_exit_status: Some(0),
            tap_exit_status: Some(0),
            target_exit_status: Some(0),
            error_message: None,
            warning_message: None,
        };
        let done = m.finish_job(j1.id, &f).await.unwrap();
        assert_eq!(done.status, JobStatus::Succeeded);
        assert_eq!(done.warning_message, None);
        assert_eq!(done.completion_time, Some(f.completion_time));
        let j2 = m
            .create_job(a.id, JobTrigger::Manual, t0() + Duration::minutes(30))
            .await
            .unwrap();
        let listed = m.list_jobs(a.id, 10).await.unwrap();
        assert_eq!(
            listed.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![j2.id, j1.id],
            "newest first"
        );
        assert_eq!(m.list_jobs(a.id, 1).await.unwrap().len(), 1);
        assert_eq!(
            m.fail_running_jobs(t0() + Duration::hours(1), "seam stopped")
                .await
                .unwrap(),
            vec![a.id]
        );
        let j2 = m.get_job(j2.id).await.unwrap().unwrap();
        assert_eq!(j2.status, JobStatus::Failed);
        assert_eq!(j2.error_message.as_deref(), Some("seam stopped"));

        let line = |s: &str, level| LogLine {
            at: t0(),
            location: LogLocation::Tap,
            level,
            message: s.into(),
        };
        m.append_logs(
            j1.id,
            &[line("one", LogLevel::Info), line("two", LogLevel::Warning)],
        )
        .await
        .unwrap();
        m.append_logs(j1.id, &[line("three", LogLevel::Critical)])
            .await
            .unwrap();
        m.append_logs(j1.id, &[]).await.unwrap();
        let logs = m.job_logs(j1.id).await.unwrap();
        assert_eq!(
            logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            vec!["one", "two", "three"]
        );
        assert_eq!(logs[2].level, LogLevel::Critical);
        assert!(m.job_logs(j2.id).await.unwrap().is_empty());
    }

    pub async fn job_queue(m: &dyn Metastore) {
        let a = m.create_integration(new_integration("zendesk")).await.unwrap();
        let b = m.create_integration(new_integration("zendesk_b")).await.unwrap();
        let at = |minutes| t0() + Duration::minutes(minutes);
        // b is due before a: leased first (oldest due first), whatever the order of queueing.
        let qa = m
            .enqueue_job(a.id, JobTrigger::Scheduled, at(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(qa.status, JobStatus::Pending);
        assert_eq!(qa.due_time, Some(at(10)));
        let qb = m
            .enqueue_job(b.id, JobTrigger::Manual, at(5))
            .await
            .unwrap()
            .unwrap();
        assert!(
            m.enqueue_job(a.id, JobTrigger::Manual, at(6))
                .await
                .unwrap()
                .is_none(),
            "one active job per integration"
        );
        assert!(matches!(
            m.create_job(a.id, JobTrigger::Manual, at(6)).await,
            Err(MetastoreError::JobActive { integration }) if integration == a.id
        ));
        assert_eq!(m.active_job(a.id).await.unwrap().map(|j| j.id), Some(qa.id));
        let stats = m.queue_stats().await.unwrap();
        assert_eq!((stats.pending, stats.oldest_pending_due), (2, Some(at(5))));

        assert!(
            m.lease_job("w1", at(4), at(5)).await.unwrap().is_none(),
            "nothing due yet"
        );
        let lb = m.lease_job("w1", at(11), at(12)).await.unwrap().unwrap();
        assert_eq!(
            m.queue_stats().await.unwrap().start_lateness,
            vec![Duration::minutes(6)],
            "b was due at 5 and started at 11"
        );
        assert_eq!((lb.id, lb.status), (qb.id, JobStatus::Running));
        assert_eq!(
            (lb.worker.as_deref(), lb.start_time, lb.lease_until),
            (Some("w1"), at(11), Some(at(12)))
        );
        let la = m.lease_job("w2", at(11), at(12)).await.unwrap().unwrap();
        assert_eq!(la.id, qa.id);
        assert!(
            m.lease_job("w3", at(11), at(12)).await.unwrap().is_none(),
            "each job leased once"
        );
        let stats = m.queue_stats().await.unwrap();
        assert_eq!(stats.pending, 0);
        assert_eq!(
            stats.running_by_worker,
            vec![("w1".to_owned(), 1), ("w2".to_owned(), 1)]
        );
        assert_eq!(stats.soonest_lease_end, Some(at(12)));

        // Renewal: by the holder only; it stores progress and reports a stop request.
        assert_eq!(
            m.renew_lease(lb.id, "w1", at(14), Some("{\"n\":1}"))
                .await
                .unwrap(),
            Some(false)
        );
        assert_eq!(
            m.renew_lease(lb.id, "w2", at(14), None).await.unwrap(),
            None,
            "not w2's lease"
        );
        let stopped = m.request_stop(b.id, at(13)).await.unwrap().unwrap();
        assert!(stopped.stop_requested);
        assert_eq!(stopped.status, JobStatus::Running);
        assert_eq!(stopped.progress.as_deref(), Some("{\"n\":1}"));
        assert_eq!(
            m.renew_lease(lb.id, "w1", at(15), None).await.unwrap(),
            Some(true)
        );

        // a's lease (until 12) runs out: failed; its worker's renewal and finish no longer change it.
        let expired = m.expire_leases(at(13), "worker lost").await.unwrap();
        assert_eq!(expired.iter().map(|j| j.id).collect::<Vec<_>>(), vec![qa.id]);
        assert_eq!(expired[0].status, JobStatus::Failed);
        assert_eq!(expired[0].error_message.as_deref(), Some("worker lost"));
        assert_eq!(m.renew_lease(qa.id, "w2", at(20), None).await.unwrap(), None);
        let finish = JobFinish {
            status: JobStatus::Succeeded,
            completion_time: at(21),
            discovery_exit_status: Some(0),
            tap_exit_status: Some(0),
            target_exit_status: Some(0),
            error_message: None,
            warning_message: None,
        };
        let late = m.finish_job(qa.id, &finish).await.unwrap();
        assert_eq!(
            late.status,
            JobStatus::Failed,
            "a lost lease's finish changes nothing"
        );
        // A job left running outside the queue (no lease) is expired too: nothing would end it.
        let c = m.create_integration(new_integration("zendesk_c")).await.unwrap();
        let orphan = m.create_job(c.id, JobTrigger::Scheduled, at(1)).await.unwrap();
        let swept = m.expire_leases(at(13), "no lease").await.unwrap();
        assert_eq!(swept.iter().map(|j| j.id).collect::<Vec<_>>(), vec![orphan.id]);
        // a is free again: a new job can be queued (it resumes from the warehouse's bookmarks).
        let again = m
            .enqueue_job(a.id, JobTrigger::Scheduled, at(13))
            .await
            .unwrap()
            .unwrap();
        // A pending job asked to stop is cancelled at once.
        let cancelled = m.request_stop(a.id, at(14)).await.unwrap().unwrap();
        assert_eq!((cancelled.id, cancelled.status), (again.id, JobStatus::Cancelled));
        assert!(m.active_job(a.id).await.unwrap().is_none());
        assert!(m.request_stop(a.id, at(14)).await.unwrap().is_none());

        let done = m.finish_job(lb.id, &finish).await.unwrap();
        assert_eq!(done.status, JobStatus::Succeeded);
        assert_eq!((done.lease_until, done.progress), (None, None));
        assert!(m.queue_stats().await.unwrap().running_by_worker.is_empty());
        let lead = m
            .try_lead("scheduler")
            .await
            .unwrap()
            .expect("the only process leads");
        assert!(lead.holds().await);
    }

    pub async fn jobs_succeed_with_warnings(m: &dyn Metastore) {
        let a = m.create_integration(new_integration("zendesk")).await.unwrap();
        let j = m.create_job(a.id, JobTrigger::Manual, t0()).await.unwrap();
        assert_eq!(j.warning_message, None);
        let warning = "skipped sla_policies: zendesk answered 403 (the plan lacks SLA policies)";
        let done = m
            .finish_job(
                j.id,
                &JobFinish {
                    status: JobStatus::SucceededWithWarnings,
                    completion_time: t0() + Duration::minutes(1),
                    discovery_exit_status: Some(0),
                    tap_exit_status: Some(0),
                    target_exit_status: Some(0),
                    error_message: None,
                    warning_message: Some(warning.into()),
                },
            )
            .await
            .unwrap();
        assert_eq!(done.status, JobStatus::SucceededWithWarnings);
        assert_eq!(done.warning_message.as_deref(), Some(warning));
        let read = m.get_job(j.id).await.unwrap().unwrap();
        assert_eq!(read, done, "the status and the warning are stored");
        assert_eq!(read.status.as_str(), "succeeded_with_warnings");
        assert_eq!(
            m.list_jobs(a.id, 1).await.unwrap()[0].warning_message.as_deref(),
            Some(warning)
        );
    }

    pub async fn loads_and_usage(m: &dyn Metastore) {
        let a = m.create_integration(new_integration("zendesk")).await.unwrap();
        let j = m.create_job(a.id, JobTrigger::Scheduled, t0()).await.unwrap();
        let delta = |t: &str, rows, bm: Option<&str>| LoadDelta {
            table_name: t.into(),
            rows,
            max_bookmark: bm.map(str::to_owned),
            error: None,
        };
        m.record_loads(
            a.id,
            j.id,
            t0(),
            &[
                delta("tickets", 10, Some("updated_at: 2026-01-01")),
                delta("tickets__tags", 4, None),
            ],
        )
        .await
        .unwrap();
        let next_day = t0() + Duration::days(1);
        m.record_loads(
            a.id,
            j.id,
            next_day,
            &[delta("tickets", 5, Some("updated_at: 2026-01-02"))],
        )
        .await
        .unwrap();
        let loads = m.list_loads(a.id, t0() - Duration::days(1)).await.unwrap();
        let tickets = loads.iter().find(|l| l.table_name == "tickets").unwrap();
        assert_eq!(tickets.rows, 15, "a job's commits add up per table");
        assert_eq!(tickets.last_batch_loaded_at, Some(next_day));
        assert_eq!(tickets.max_bookmark.as_deref(), Some("updated_at: 2026-01-02"));
        assert_eq!(
            loads
                .iter()
                .find(|l| l.table_name == "tickets__tags")
                .unwrap()
                .rows,
            4
        );
        assert!(m
            .list_loads(a.id, t0() + Duration::days(2))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(m.get_job(j.id).await.unwrap().unwrap().rows_loaded, 19);

        let usage = m.usage(t0().date_naive(), next_day.date_naive()).await.unwrap();
        let total: i64 = usage.iter().map(|u| u.rows).sum();
        assert_eq!(total, 19);
        let day1: i64 = usage
            .iter()
            .filter(|u| u.day == t0().date_naive())
            .map(|u| u.rows)
            .sum();
        assert_eq!(day1, 14, "usage is kept per UTC day");
        assert!(m
            .usage(
                next_day.date_naive() + Duration::days(1),
                next_day.date_naive() + Duration::days(9)
            )
            .await
            .unwrap()
            .is_empty());

        let err = LoadDelta {
            table_name: "users".into(),
            rows: 0,
            max_bookmark: None,
            error: Some("boom".into()),
        };
        m.record_loads(a.id, j.id, next_day, &[err]).await.unwrap();
        let users = m
            .list_loads(a.id, t0())
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.table_name == "users")
            .unwrap();
        assert_eq!(users.error.as_deref(), Some("boom"));
        assert_eq!(
            users.last_batch_loaded_at, None,
            "a table that only failed has no loaded batch"
        );
    }

    pub async fn notifications_tokens_settings(m: &dyn Metastore) {
        let new = |code: &str| NewNotification {
            level: NotificationLevel::Critical,
            code: code.into(),
            integration_id: None,
            subject: "s".into(),
            message: "m".into(),
            created_at: t0(),
        };
        let n1 = m.add_notification(new("platform.exit_status")).await.unwrap();
        let n2 = m.add_notification(new("usage-nearing-limit")).await.unwrap();
        let list = m.list_notifications(false, 10).await.unwrap();
        assert_eq!(list.iter().map(|n| n.id).collect::<Vec<_>>(), vec![n2.id, n1.id]);
        m.dismiss_notification(n1.id, t0()).await.unwrap();
        assert_eq!(m.list_notifications(false, 10).await.unwrap().len(), 1);
        assert_eq!(m.list_notifications(true, 10).await.unwrap().len(), 2);
        assert!(matches!(
            m.dismiss_notification(777, t0()).await,
            Err(MetastoreError::NotFound { .. })
        ));

        assert_eq!(m.count_tokens().await.unwrap(), 0);
        let t = m.add_token("first", "abc123", t0()).await.unwrap();
        assert_eq!(m.find_token("abc123").await.unwrap(), Some(t.clone()));
        assert!(m.find_token("nope").await.unwrap().is_none());
        assert_eq!(m.count_tokens().await.unwrap(), 1);

        assert_eq!(t.revoked_at, None);

        assert_eq!(m.get_setting("row_limit").await.unwrap(), None);
        m.set_setting("row_limit", "1000").await.unwrap();
        m.set_setting("row_limit", "2000").await.unwrap();
        assert_eq!(m.get_setting("row_limit").await.unwrap().as_deref(), Some("2000"));
    }

    pub async fn tokens_list_and_revoke(m: &dyn Metastore) {
        assert_eq!(m.list_tokens().await.unwrap(), vec![]);
        let a = m.add_token("initial", "hash-a", t0()).await.unwrap();
        let b = m
            .add_token("ci", "hash-b", t0() + Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(
            m.list_tokens().await.unwrap(),
            vec![a.clone(), b.clone()],
            "id order"
        );

        let at = t0() + Duration::minutes(5);
        let revoked = m.revoke_token(a.id, at).await.unwrap();
        assert_eq!(revoked.revoked_at, Some(at));
        assert_eq!((revoked.id, revoked.name.as_str()), (a.id, "initial"));
        assert_eq!(
            m.find_token("hash-a").await.unwrap(),
            None,
            "a revoked token is refused"
        );
        assert_eq!(m.find_token("hash-b").await.unwrap(), Some(b.clone()));
        let again = m.revoke_token(a.id, at + Duration::minutes(1)).await.unwrap();
        assert_eq!(again.revoked_at, Some(at), "the first revocation time stays");
        let listed = m.list_tokens().await.unwrap();
        assert_eq!(listed.len(), 2, "revoked tokens stay listed");
        assert_eq!(listed[0].revoked_at, Some(at));
        assert_eq!(listed[1].revoked_at, None);
        assert_eq!(
            m.count_tokens().await.unwrap(),
            2,
            "revoked tokens still count as created"
        );
        assert!(matches!(
            m.revoke_token(9999, at).await,
            Err(MetastoreError::NotFound { .. })
        ));
    }

    fn zendesk_credentials(token: &str) -> Credentials {
        Credentials::default().with("api_token", token)
    }

    pub async fn credentials_are_sealed_for_the_new_id(m: &dyn Metastore) {
        let cipher = SecretCipher::from_key([4; 32]);
        let first = m.create_integration(new_integration("first")).await.unwrap();
        let creds = zendesk_credentials("zd-secret");
        let mut new = new_integration("sealed");
        new.sealed_credentials = vec![];
        let i = m.create_integration_sealed(new, &cipher, &creds).await.unwrap();
        assert!(i.id > first.id);
        assert_eq!(cipher.open(i.id, &i.sealed_credentials).unwrap(), creds);
        let stored = m.get_integration(i.id).await.unwrap().unwrap();
        assert_eq!(stored, i);
        assert!(
            cipher.open(first.id, &stored.sealed_credentials).is_err(),
            "bound to its own id"
        );
        // A blob copied onto another integration's row does not open there.
        m.set_sealed_credentials(first.id, &stored.sealed_credentials)
            .await
            .unwrap();
        let copied = m.get_integration(first.id).await.unwrap().unwrap();
        assert_eq!(copied.updated_at, first.updated_at, "only the blob changes");
        assert!(cipher.open(first.id, &copied.sealed_credentials).is_err());
        assert!(matches!(
            m.set_sealed_credentials(9999, &[1]).await,
            Err(MetastoreError::NotFound { .. })
        ));
        // A name clash rolls the whole creation back.
        let err = m
            .create_integration_sealed(new_integration("sealed"), &cipher, &creds)
            .await
            .unwrap_err();
        assert!(matches!(err, MetastoreError::NameTaken { .. }), "{err}");
        assert_eq!(m.list_integrations(true).await.unwrap().len(), 2);
    }

    /// A blob exactly as seam sealed credentials before they were bound to their integration:
    /// `1 || nonce || ChaCha20-Poly1305(key, nonce, json)` with no associated data.
    fn seal_the_old_way(key: [u8; 32], credentials: &Credentials) -> Vec<u8> {
        use chacha20poly1305::aead::{Aead, KeyInit};
        let cipher = chacha20poly1305::ChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key));
        let nonce = [9u8; 12];
        let plain = serde_json::to_vec(credentials).unwrap();
        let sealed = cipher
            .encrypt(chacha20poly1305::Nonce::from_slice(&nonce), plain.as_slice())
            .unwrap();
        let mut blob = vec![1u8];
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        blob
    }

    pub async fn legacy_credentials_are_resealed_bound_to_their_integration(m: &dyn Metastore) {
        let key = [5u8; 32];
        let cipher = SecretCipher::from_key(key);
        let mut ids = Vec::new();
        for (name, token) in [("old_a", "token-a"), ("old_b", "token-b")] {
            let mut new = new_integration(name);
            new.sealed_credentials = seal_the_old_way(key, &zendesk_credentials(token));
            ids.push(m.create_integration(new).await.unwrap().id);
        }
        m.delete_integration(ids[1], t0()).await.unwrap();
        let mut damaged = new_integration("damaged");
        damaged.sealed_credentials = seal_the_old_way([6; 32], &zendesk_credentials("other key"));
        let damaged = m.create_integration(damaged).await.unwrap();
        let current = m
            .create_integration_sealed(
                new_integration("current"),
                &cipher,
                &zendesk_credentials("token-c"),
            )
            .await
            .unwrap();
        let before = m.get_integration(ids[0]).await.unwrap().unwrap();
        assert!(
            matches!(
                cipher.open(ids[0], &before.sealed_credentials),
                Err(crypto::CryptoError::Legacy { .. })
            ),
            "the old format is refused until re-sealed"
        );

        let report = reseal_legacy_credentials(m, &cipher).await.unwrap();
        assert_eq!(report.resealed, ids, "deleted integrations too");
        assert_eq!(report.unreadable, vec![damaged.id]);
        for (id, token) in ids.iter().zip(["token-a", "token-b"]) {
            let i = m.get_integration(*id).await.unwrap().unwrap();
            assert_eq!(
                cipher.open(*id, &i.sealed_credentials).unwrap(),
                zendesk_credentials(token)
            );
        }
        let a = m.get_integration(ids[0]).await.unwrap().unwrap();
        assert!(
            cipher.open(ids[1], &a.sealed_credentials).is_err(),
            "now bound to its integration"
        );
        assert_eq!(a.updated_at, before.updated_at);
        let c = m.get_integration(current.id).await.unwrap().unwrap();
        assert_eq!(
            c.sealed_credentials, current.sealed_credentials,
            "current blobs are left alone"
        );

        let again = reseal_legacy_credentials(m, &cipher).await.unwrap();
        assert_eq!(again.resealed, Vec::<i64>::new(), "idempotent");
    }
}

#[tokio::test]
async fn sqlite_file_survives_reopen_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    let id = {
        let m = SqliteMetastore::open(&path).unwrap();
        m.create_integration(new_integration("zendesk")).await.unwrap().id
    };
    let m = SqliteMetastore::open(&path).unwrap();
    assert_eq!(m.get_integration(id).await.unwrap().unwrap().name, "zendesk");
}

/// A metastore written by the release before the connector registry (`seam serve` at commit 1ff0ee8,
/// two Zendesk integrations created over the API: one signing in with an email and API token, one
/// with an OAuth access token; `tests/fixtures/release-0.1`, with its key file) opens with every
/// setting and credential where the connector registry looks for them.
#[tokio::test]
async fn a_metastore_written_before_the_connector_registry_reads_unchanged() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/release-0.1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metastore.sqlite");
    std::fs::copy(fixture.join("metastore.sqlite"), &path).unwrap();
    let key = std::fs::read_to_string(fixture.join(seam_metastore::crypto::KEY_FILE)).unwrap();
    let cipher = SecretCipher::from_base64(key.trim(), "the fixture's key file").unwrap();
    let m = SqliteMetastore::open(&path).unwrap();
    let all = m.list_integrations(false).await.unwrap();
    assert_eq!(all.len(), 2);

    let token = &all[0];
    assert_eq!(
        (token.kind.as_str(), token.name.as_str()),
        ("platform.zendesk", "stitch_zendesk")
    );
    let p = &token.properties;
    assert_eq!(
        p.config,
        *json!({"subdomain": "acme", "email": "admin@acme.test"})
            .as_object()
            .unwrap()
    );
    assert_eq!(
        p.start_date,
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().unwrap()
    );
    assert_eq!(p.frequency_in_minutes, 60);
    assert_eq!(p.anchor_time, Utc.with_ymd_and_hms(2024, 1, 1, 2, 30, 0).single());
    assert_eq!(p.cron_expression, None);
    let creds = cipher.open(token.id, &token.sealed_credentials).unwrap();
    assert_eq!(
        creds.iter().map(|(k, v)| (k, v.expose())).collect::<Vec<_>>(),
        vec![("api_token", "fixture-api-token")]
    );

    let oauth = &all[1];
    assert_eq!(oauth.properties.config_str("subdomain"), Some("globex"));
    assert_eq!(oauth.properties.config_str("email"), None);
    assert_eq!(oauth.properties.cron_expression.as_deref(), Some("0 0 3 * * ?"));
    let creds = cipher.open(oauth.id, &oauth.sealed_credentials).unwrap();
    assert_eq!(
        creds.get("access_token").map(|s| s.expose()),
        Some("fixture-oauth-token")
    );
    assert_eq!(creds.get("api_token"), None);

    // Written back as the registry writes it, it reads the same again.
    let update = IntegrationUpdate {
        display_name: token.display_name.clone(),
        properties: token.properties.clone(),
        sealed_credentials: token.sealed_credentials.clone(),
        paused_at: None,
        updated_at: token.updated_at,
    };
    let rewritten = m.update_integration(token.id, update).await.unwrap();
    assert_eq!(rewritten.properties, token.properties);
}

/// A jobs row written before the `warning_message` column existed.
const OLD_JOB_STATUS: &str = "succeeded";

/// A metastore created by a seam without job warnings (only the first migration) opens, gains the
/// column, and its jobs read back with no warning.
#[tokio::test]
async fn sqlite_metastore_from_before_job_warnings_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/sqlite/0001_init.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO integrations (display_name, name, kind, properties, sealed_credentials, created_at, updated_at) \
             VALUES ('Old', 'old', 'platform.zendesk', ?1, x'010203', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            [serde_json::to_string(&props()).unwrap()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO jobs (integration_id, trigger, status, start_time) VALUES (1, 'manual', ?1, '2026-01-01T00:00:00Z')",
            [OLD_JOB_STATUS],
        )
        .unwrap();
    }
    let m = SqliteMetastore::open(&path).unwrap();
    let old = m.list_jobs(1, 10).await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].status, JobStatus::Succeeded);
    assert_eq!(old[0].warning_message, None);
    cases::jobs_succeed_with_warnings(&m).await;
}

/// The same migration on PostgreSQL.
#[tokio::test]
async fn postgres_metastore_from_before_job_warnings_migrates() {
    let Ok(url) = std::env::var("SEAM_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set SEAM_TEST_POSTGRES_URL"
        );
        println!("SKIP postgres migration: SEAM_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!(
        "seam_old_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\"; \
                 CREATE TABLE seam_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL); \
                 INSERT INTO seam_migrations VALUES (1, '2026-01-01T00:00:00Z');"
            ))
            .await
            .unwrap();
        client
            .batch_execute(include_str!("../migrations/postgres/0001_init.sql"))
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO integrations (display_name, name, kind, properties, sealed_credentials, created_at, updated_at) \
                 VALUES ('Old', 'old', 'platform.zendesk', $1, '\\x010203', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
                &[&serde_json::to_string(&props()).unwrap()],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO jobs (integration_id, trigger, status, start_time) \
                 SELECT id, 'manual', $1, '2026-01-01T00:00:00Z' FROM integrations",
                &[&OLD_JOB_STATUS],
            )
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
    }
    let m = PostgresMetastore::connect(&url, &schema).await.unwrap();
    let id = m.list_integrations(false).await.unwrap()[0].id;
    let old = m.list_jobs(id, 10).await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].status, JobStatus::Succeeded);
    assert_eq!(old[0].warning_message, None);
    cases::jobs_succeed_with_warnings(&m).await;
}

#[test]
fn sealed_credentials_use_a_0600_key_file() {
    let dir = tempfile::tempdir().unwrap();
    if std::env::var(crypto::SECRET_KEY_ENV).is_ok() {
        seam_test_support::skip(format_args!(
            "key file test: {} is set, so no key file is used (unset it to run this test)",
            crypto::SECRET_KEY_ENV
        ));
        return;
    }
    let (c1, created) = SecretCipher::load_or_create(dir.path()).unwrap();
    assert!(created);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(crypto::KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (c2, created) = SecretCipher::load_or_create(dir.path()).unwrap();
    assert!(!created);
    let creds = Credentials::default().with("api_token", "s3cret");
    assert_eq!(
        c2.open(1, &c1.seal(1, &creds).unwrap()).unwrap(),
        creds,
        "the same key comes back"
    );
}

/// A metastore made before tokens could be revoked (only the first migration applied) upgrades in
/// place: its tokens stay valid, and can be revoked.
#[tokio::test]
async fn a_sqlite_metastore_from_before_token_revocation_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/sqlite/0001_init.sql"))
            .unwrap();
        conn.execute(
            "INSERT INTO api_tokens (name, token_hash, created_at) VALUES ('initial', 'old-hash', '2026-01-01T00:00:00.000000Z')",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let m = SqliteMetastore::open(&path).unwrap();
    let old = m.find_token("old-hash").await.unwrap().expect("still valid");
    assert_eq!(old.revoked_at, None);
    m.revoke_token(old.id, t0()).await.unwrap();
    assert!(m.find_token("old-hash").await.unwrap().is_none());
}

mod postgres_tls;
mod sessions;

/// Workers in several processes leasing at once each get different jobs, and one scheduler leads at a
/// time, with failover when its connection ends.
#[tokio::test]
async fn postgres_leases_are_exclusive_across_connections_and_leadership_fails_over() {
    let Some(url) = seam_test_support::postgres_url() else {
        return;
    };
    let schema = seam_test_support::unique_name("seam_test");
    let first = Arc::new(PostgresMetastore::connect(&url, &schema).await.unwrap());
    let mut stores: Vec<Arc<PostgresMetastore>> = vec![first.clone()];
    for _ in 0..3 {
        stores.push(Arc::new(PostgresMetastore::connect(&url, &schema).await.unwrap()));
    }
    let mut ids = Vec::new();
    for i in 0..40 {
        let a = first
            .create_integration(new_integration(&format!("zendesk_{i}")))
            .await
            .unwrap();
        first
            .enqueue_job(a.id, JobTrigger::Scheduled, t0() + Duration::seconds(i))
            .await
            .unwrap()
            .unwrap();
        ids.push(a.id);
    }
    let leasers = stores.iter().enumerate().map(|(w, m)| {
        let m = m.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            let now = t0() + Duration::hours(1);
            while let Some(j) = m
                .lease_job(&format!("w{w}"), now, now + Duration::minutes(1))
                .await
                .unwrap()
            {
                got.push(j.integration_id);
            }
            got
        })
    });
    let mut leased: Vec<i64> = Vec::new();
    for l in leasers {
        leased.extend(l.await.unwrap());
    }
    leased.sort_unstable();
    assert_eq!(leased, ids, "every job leased exactly once");

    let lead = first
        .try_lead("scheduler")
        .await
        .unwrap()
        .expect("nobody leads yet");
    assert!(lead.holds().await);
    for other in &stores[1..] {
        assert!(
            other.try_lead("scheduler").await.unwrap().is_none(),
            "one leader at a time"
        );
        assert!(
            other.try_lead("another role").await.unwrap().is_some(),
            "roles are apart"
        );
    }
    drop(lead);
    // The lock goes with the leader's connection; the server sees it close within moments.
    let mut next = None;
    for _ in 0..50 {
        next = stores[2].try_lead("scheduler").await.unwrap();
        if next.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        next.is_some(),
        "another process takes over once the leader is gone"
    );
}

/// The server ends the metastore's connection (as a restart of PostgreSQL does, or an administrator,
/// or a network that drops it): the call under way may fail, with an error of kind `Transient`; the
/// next one reconnects and the store works on, its data intact. Before, every call answered
/// "connection closed" until seam itself restarted.
#[tokio::test]
async fn postgres_metastore_reconnects_after_the_server_ends_its_connection() {
    let Some(url) = seam_test_support::postgres_url() else {
        return;
    };
    let schema = seam_test_support::unique_name("seam_test");
    let m = PostgresMetastore::connect(&url, &schema).await.unwrap();
    let a = m.create_integration(new_integration("zendesk_a")).await.unwrap();
    let admin = seam_postgres::ConnectOptions::parse(&url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    for round in 0..2 {
        let pid = m.backend_pid().await.unwrap();
        let ended: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(ended, "round {round}: backend {pid} was not there to end");
        let mut failures = Vec::new();
        let found = loop {
            match m.get_integration(a.id).await {
                Ok(i) => break i,
                Err(e) => {
                    assert_eq!(e.kind(), seam_core::ErrorKind::Transient, "round {round}: {e}");
                    failures.push(e.to_string());
                    assert!(failures.len() < 3, "round {round}: no reconnect: {failures:?}");
                }
            }
        };
        assert_eq!(found.map(|i| i.name), Some("zendesk_a".to_owned()));
        assert_ne!(
            m.backend_pid().await.unwrap(),
            pid,
            "round {round}: the same connection"
        );
        m.create_integration(new_integration(&format!("zendesk_after_{round}")))
            .await
            .unwrap();
    }
    assert_eq!(m.list_integrations(false).await.unwrap().len(), 3);
}

/// A TCP relay in front of a PostgreSQL server that can be frozen: while frozen it passes no byte
/// either way and keeps every connection open, as a server process that hung (or a network that
/// black-holes packets) does.
struct Relay {
    /// The URL to the server through the relay.
    url: String,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn start(url: &str) -> Relay {
        let config: tokio_postgres::Config = url.parse().unwrap();
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            other => panic!("the test server is reached over TCP, not {other:?}"),
        };
        let port = config.get_ports()[0];
        let target = format!("{host}:{port}");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_url = url.replacen(&target, &listener.local_addr().unwrap().to_string(), 1);
        assert_ne!(relay_url, url, "{url} names {target}");
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gate = Arc::clone(&frozen);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&target).await.unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, Arc::clone(&gate)));
                tokio::spawn(pump(sr, cw, Arc::clone(&gate)));
            }
        });
        Relay {
            url: relay_url,
            frozen,
        }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, holding what it read while `gate` is set.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    gate: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while gate.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A metastore whose server stops answering (a hung server process: its host still answers TCP,
/// so keepalives see nothing; here a relay that stops passing bytes): the call waiting on it fails
/// once the call timeout passes (`Transient`), and the next call connects anew and works. Before,
/// the call — and every API request and job behind the metastore's one connection — waited as long
/// as the server did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_metastore_gives_up_on_a_server_that_stops_answering() {
    let Some(url) = seam_test_support::postgres_url() else {
        return;
    };
    let relay = Relay::start(&url).await;
    let schema = seam_test_support::unique_name("seam_test");
    let m = PostgresMetastore::connect(&relay.url, &schema).await.unwrap();
    let a = m.create_integration(new_integration("zendesk_a")).await.unwrap();
    m.set_call_timeout(std::time::Duration::from_secs(2));
    let pid = m.backend_pid().await.unwrap();
    relay.freeze(true);
    let begun = std::time::Instant::now();
    let call = tokio::time::timeout(std::time::Duration::from_secs(30), m.get_integration(a.id)).await;
    let waited = begun.elapsed();
    relay.freeze(false);
    let e = call.expect("the call ends").unwrap_err();
    assert_eq!(e.kind(), seam_core::ErrorKind::Transient, "{e}");
    assert!(
        waited >= std::time::Duration::from_secs(2) && waited < std::time::Duration::from_secs(10),
        "failed after {waited:?}"
    );
    let found = m.get_integration(a.id).await.unwrap();
    assert_eq!(found.map(|i| i.name), Some("zendesk_a".to_owned()));
    let fresh = m.backend_pid().await.unwrap();
    assert_ne!(fresh, pid, "a new connection");
    // Only a call's own wait counts: calls that answer, spread over more than the timeout, and an
    // idle connection keep their connection.
    for _ in 0..30 {
        m.get_integration(a.id).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(m.backend_pid().await.unwrap(), fresh, "the connection was kept");
}
