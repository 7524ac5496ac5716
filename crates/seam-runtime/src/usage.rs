//! Row usage against the row limit, per 30-day billing period, and the notifications it raises.

use crate::job::JobContext;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use seam_metastore::{Metastore, MetastoreError, NewNotification, NotificationLevel};
use serde::Serialize;
use tracing::warn;

/// Setting key: the row limit of a billing period.
pub const SETTING_ROW_LIMIT: &str = "row_limit";
/// Setting key: `true` to stop scheduled jobs once the limit is reached (manual runs still allowed).
pub const SETTING_STOP_AT_LIMIT: &str = "stop_replication_at_limit";
/// Setting key: the first day of the first billing period (`YYYY-MM-DD`), set on first use.
pub const SETTING_BILLING_ANCHOR: &str = "billing_anchor";
/// Row limit when none is configured.
pub const DEFAULT_ROW_LIMIT: i64 = 5_000_000;
/// A billing period is 30 days.
pub const BILLING_PERIOD_DAYS: i64 = 30;
/// Usage thresholds that notify, in percent.
pub const USAGE_THRESHOLDS: [u32; 3] = [70, 90, 100];

/// Row usage in the current billing period, against the limit.
#[derive(Debug, Clone, Serialize)]
pub struct UsageSummary {
    /// First day of the period.
    pub period_start: NaiveDate,
    /// Last day of the period.
    pub period_end: NaiveDate,
    /// The row limit.
    pub row_limit: i64,
    /// Whether scheduled jobs stop at the limit.
    pub stop_replication_at_limit: bool,
    /// Rows replicated in the period.
    pub rows_used: i64,
}

impl UsageSummary {
    /// Percent of the limit used.
    pub fn percent_used(&self) -> f64 {
        if self.row_limit <= 0 {
            return 0.0;
        }
        self.rows_used as f64 * 100.0 / self.row_limit as f64
    }

    /// True when the user asked scheduled jobs to stop and the limit is reached.
    pub fn blocks_scheduled_jobs(&self) -> bool {
        self.stop_replication_at_limit && self.rows_used >= self.row_limit
    }
}

/// The 30-day billing period containing `today`, counted from `anchor`.
pub fn billing_period(anchor: NaiveDate, today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let days = (today - anchor).num_days().max(0);
    let start = anchor + ChronoDuration::days(days / BILLING_PERIOD_DAYS * BILLING_PERIOD_DAYS);
    (start, start + ChronoDuration::days(BILLING_PERIOD_DAYS - 1))
}

/// Computes [`UsageSummary`] for now; sets the billing anchor to today when none is stored.
pub async fn usage_summary(
    metastore: &dyn Metastore,
    now: DateTime<Utc>,
) -> Result<UsageSummary, MetastoreError> {
    let today = now.date_naive();
    let anchor = match metastore.get_setting(SETTING_BILLING_ANCHOR).await? {
        Some(s) => s.parse().unwrap_or(today),
        None => {
            metastore
                .set_setting(SETTING_BILLING_ANCHOR, &today.to_string())
                .await?;
            today
        }
    };
    let (start, end) = billing_period(anchor, today);
    let row_limit = metastore
        .get_setting(SETTING_ROW_LIMIT)
        .await?
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ROW_LIMIT);
    let stop = metastore
        .get_setting(SETTING_STOP_AT_LIMIT)
        .await?
        .is_some_and(|s| s == "true");
    let rows_used = metastore.usage(start, end).await?.iter().map(|u| u.rows).sum();
    Ok(UsageSummary {
        period_start: start,
        period_end: end,
        row_limit,
        stop_replication_at_limit: stop,
        rows_used,
    })
}

/// Raises the 70 / 90 / 100 % usage notifications, each once per billing period.
pub async fn check_usage_thresholds(ctx: &JobContext) {
    let now = ctx.clock.now();
    let summary = match usage_summary(ctx.metastore.as_ref(), now).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "could not compute row usage");
            return;
        }
    };
    let key = format!("usage_notified.{}", summary.period_start);
    let notified: u32 = ctx
        .metastore
        .get_setting(&key)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let percent = summary.percent_used();
    let Some(&reached) = USAGE_THRESHOLDS.iter().rev().find(|&&t| percent >= f64::from(t)) else {
        return;
    };
    if reached <= notified {
        return;
    }
    let _ = ctx.metastore.set_setting(&key, &reached.to_string()).await;
    let (code, subject) = if reached >= 100 {
        ("usage-reached-limit", "Row Limit Reached")
    } else {
        ("usage-nearing-limit", "Approaching Row Limit")
    };
    let tail = if summary.stop_replication_at_limit {
        "Scheduled replication stops at the limit, as configured; manual runs are still allowed."
    } else {
        "Replication continues; reduce frequencies, de-select tables or raise the limit."
    };
    ctx.notifier
        .notify(NewNotification {
            level: NotificationLevel::Warning,
            code: code.to_owned(),
            integration_id: None,
            subject: subject.to_owned(),
            message: format!(
                "{} of {} rows used ({reached} %) in the billing period {} to {}. {tail}",
                summary.rows_used, summary.row_limit, summary.period_start, summary.period_end
            ),
            created_at: now,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_periods_are_30_days_from_the_anchor() {
        let d = |s: &str| s.parse::<NaiveDate>().expect("date");
        assert_eq!(
            billing_period(d("2026-01-01"), d("2026-01-01")),
            (d("2026-01-01"), d("2026-01-30"))
        );
        assert_eq!(
            billing_period(d("2026-01-01"), d("2026-01-30")),
            (d("2026-01-01"), d("2026-01-30"))
        );
        assert_eq!(
            billing_period(d("2026-01-01"), d("2026-01-31")),
            (d("2026-01-31"), d("2026-03-01"))
        );
    }
}
