//! The service's counters, as Prometheus text.

use seam_metastore::{IntegrationId, JobStatus};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counters exported as Prometheus text. Metric names live here and nowhere else.
///
/// Hand-rolled rather than the `metrics` crates: a handful of labelled counters, rendered on request,
/// without a process-global recorder (which would clash between the many servers a test binary starts).
#[derive(Debug, Default)]
pub struct Telemetry {
    inner: Mutex<TelemetryInner>,
}

#[derive(Debug, Default)]
struct TelemetryInner {
    jobs: BTreeMap<(IntegrationId, &'static str), u64>,
    rows: BTreeMap<IntegrationId, u64>,
    api_requests: BTreeMap<IntegrationId, u64>,
    api_rate_limited: BTreeMap<IntegrationId, u64>,
    http: BTreeMap<(String, u16), u64>,
}

impl Telemetry {
    fn with<R>(&self, f: impl FnOnce(&mut TelemetryInner) -> R) -> R {
        f(&mut self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// A job ended with `outcome` (`succeeded`, `succeeded_with_warnings`, `failed`, `cancelled`).
    pub fn job_finished(&self, integration: IntegrationId, outcome: JobStatus) {
        self.with(|t| *t.jobs.entry((integration, outcome.as_str())).or_default() += 1);
    }

    /// Rows were loaded.
    pub fn rows_loaded(&self, integration: IntegrationId, rows: u64) {
        self.with(|t| *t.rows.entry(integration).or_default() += rows);
    }

    /// Source API requests made, and how many of them were answered 429.
    pub fn source_requests(&self, integration: IntegrationId, requests: u64, rate_limited: u64) {
        self.with(|t| {
            *t.api_requests.entry(integration).or_default() += requests;
            *t.api_rate_limited.entry(integration).or_default() += rate_limited;
        });
    }

    /// One request served by seam's own API.
    pub fn http_request(&self, route: &str, status: u16) {
        self.with(|t| *t.http.entry((route.to_owned(), status)).or_default() += 1);
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        self.with(|t| {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "# HELP seam_jobs_total Replication jobs finished, by outcome."
            );
            let _ = writeln!(out, "# TYPE seam_jobs_total counter");
            for ((id, outcome), n) in &t.jobs {
                let _ = writeln!(
                    out,
                    "seam_jobs_total{{source_id=\"{id}\",outcome=\"{outcome}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP seam_rows_loaded_total Rows loaded into the warehouse (subtables counted)."
            );
            let _ = writeln!(out, "# TYPE seam_rows_loaded_total counter");
            for (id, n) in &t.rows {
                let _ = writeln!(out, "seam_rows_loaded_total{{source_id=\"{id}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP seam_source_api_requests_total Requests made to the source's API."
            );
            let _ = writeln!(out, "# TYPE seam_source_api_requests_total counter");
            for (id, n) in &t.api_requests {
                let _ = writeln!(out, "seam_source_api_requests_total{{source_id=\"{id}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP seam_source_api_rate_limited_total Source API responses that were 429."
            );
            let _ = writeln!(out, "# TYPE seam_source_api_rate_limited_total counter");
            for (id, n) in &t.api_rate_limited {
                let _ = writeln!(
                    out,
                    "seam_source_api_rate_limited_total{{source_id=\"{id}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP seam_http_requests_total Requests served by seam's API, by route and status."
            );
            let _ = writeln!(out, "# TYPE seam_http_requests_total counter");
            for ((route, status), n) in &t.http {
                let _ = writeln!(
                    out,
                    "seam_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_renders_prometheus_text() {
        let t = Telemetry::default();
        t.job_finished(1, JobStatus::Succeeded);
        t.rows_loaded(1, 42);
        t.source_requests(1, 10, 2);
        let text = t.render();
        assert!(
            text.contains("seam_jobs_total{source_id=\"1\",outcome=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(text.contains("seam_rows_loaded_total{source_id=\"1\"} 42"));
        assert!(text.contains("seam_source_api_rate_limited_total{source_id=\"1\"} 2"));
    }
}
