//! Configuration: the raw JSON a user writes ([`ZendeskConfigRaw`], tap-zendesk's keys plus seam's),
//! validated without IO into [`ZendeskConfig`]. Connectivity is [`crate::ZendeskSource`]'s `check`.

use chrono::{DateTime, Utc};
use seam_core::Secret;
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;
use thiserror::Error;

/// Default `request_timeout` in seconds (tap-zendesk's default).
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 300;
/// Default page size for list endpoints (`page[size]`; Zendesk's maximum for most lists).
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Default export page size (`per_page` on incremental exports; Zendesk's maximum).
pub const EXPORT_PAGE_SIZE: u32 = 1000;
/// Default streams read at once.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default incremental-export budget per minute (Zendesk: 10; 30 with the High Volume add-on).
pub const DEFAULT_EXPORT_REQUESTS_PER_MINUTE: u32 = 10;
/// Zendesk's per-ticket audits budget per minute.
pub const AUDITS_REQUESTS_PER_MINUTE: u32 = 450;
/// Default `max_rate_limit_wait_seconds`: five minutes.
pub const DEFAULT_MAX_RATE_LIMIT_WAIT_SECS: u64 = 300;
/// Largest `max_rate_limit_wait_seconds`: a day.
pub const MAX_RATE_LIMIT_WAIT_SECS: f64 = 86_400.0;

/// The config file as written: tap-zendesk's keys (so an existing tap-zendesk config works as is)
/// plus seam's. Unknown keys are errors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskConfigRaw {
    /// Account subdomain: `acme` for `acme.zendesk.com`. Required.
    pub subdomain: Option<String>,
    /// API user's email (with `api_token`).
    pub email: Option<String>,
    /// API token (with `email`): Basic `{email}/token:{api_token}`.
    pub api_token: Option<Secret>,
    /// OAuth access token (Bearer); wins over `email` + `api_token` when both are given.
    pub access_token: Option<Secret>,
    /// Replicate records changed since this time (RFC 3339). Default: one year ago (Stitch's default).
    pub start_date: Option<String>,
    /// Seconds before one request times out. Default 300. A number or a numeric string (tap-zendesk).
    pub request_timeout: Option<NumberOrString>,
    /// `page[size]` for list endpoints, 1..=100 (tap-zendesk accepts up to 1000; Zendesk caps lists at 100).
    pub page_size: Option<NumberOrString>,
    /// Ignored (tap-zendesk's User-Agent); seam sends its own.
    pub user_agent: Option<String>,
    /// Ignored (tap-zendesk's legacy search window).
    pub search_window_size: Option<NumberOrString>,
    /// Sent as `X-Zendesk-Marketplace-Name`.
    pub marketplace_name: Option<String>,
    /// Sent as `X-Zendesk-Marketplace-Organization-Id`.
    pub marketplace_organization_id: Option<NumberOrString>,
    /// Sent as `X-Zendesk-Marketplace-App-Id`.
    pub marketplace_app_id: Option<NumberOrString>,
    /// Accepted for tap-zendesk compatibility; seam does not refresh OAuth tokens itself.
    pub refresh_token: Option<Secret>,
    /// Accepted for tap-zendesk compatibility.
    pub client_id: Option<String>,
    /// Accepted for tap-zendesk compatibility.
    pub client_secret: Option<Secret>,
    /// seam: send requests here instead of `https://{subdomain}.zendesk.com` (the simulator, a proxy).
    /// `http://` only for loopback hosts.
    pub base_url: Option<String>,
    /// seam: the account-wide request budget per minute seam may use, so the customer's other Zendesk
    /// apps keep room. Default: what Zendesk's `X-Rate-Limit` header says the plan allows.
    pub max_requests_per_minute: Option<u32>,
    /// seam: incremental-export requests per minute (10; 30 with the High Volume add-on).
    pub export_requests_per_minute: Option<u32>,
    /// seam: where ticket_comments and ticket_audits come from: `ticket_events` (default: the bulk
    /// incremental ticket-events export) or `ticket_audits` (one request per changed ticket).
    pub comments_source: Option<String>,
    /// seam: streams read at once (1..=16, default 4).
    pub concurrency: Option<usize>,
    /// seam: the longest wait Zendesk may ask for (`Retry-After`, `ratelimit-reset`) before seam
    /// gives up the run with an error saying so (the next scheduled run tries again). Seconds,
    /// 1..=86400, default 300.
    pub max_rate_limit_wait_seconds: Option<NumberOrString>,
}

/// A number written as a number or as a string (tap-zendesk configs do both).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumberOrString {
    /// `300`
    Number(f64),
    /// `"300"`
    String(String),
}

impl NumberOrString {
    fn as_f64(&self) -> Option<f64> {
        match self {
            NumberOrString::Number(n) => Some(*n),
            NumberOrString::String(s) => s.trim().parse().ok(),
        }
    }

    fn as_text(&self) -> String {
        match self {
            NumberOrString::Number(n) => format!("{n}"),
            NumberOrString::String(s) => s.clone(),
        }
    }
}

/// How seam authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// Basic `{email}/token:{api_token}`.
    ApiToken {
        /// The API user's email.
        email: String,
        /// The token.
        token: Secret,
    },
    /// Bearer OAuth access token.
    OAuth {
        /// The token.
        token: Secret,
    },
}

/// Where ticket comments and audits are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentsSource {
    /// `/api/v2/incremental/ticket_events.json?include=comment_events`: ~1 request per 1,000 audits.
    TicketEvents,
    /// `/api/v2/tickets/{id}/audits.json` for each changed ticket: 1 request per ticket, 450/min.
    TicketAudits,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct ZendeskConfig {
    /// Account subdomain.
    pub subdomain: String,
    /// Credentials.
    pub auth: Auth,
    /// Where replication starts for streams without a bookmark.
    pub start_date: DateTime<Utc>,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// `page[size]` for list endpoints.
    pub page_size: u32,
    /// `https://{subdomain}.zendesk.com` or the configured `base_url`, without a trailing slash.
    pub base_url: String,
    /// True when `base_url` was configured.
    pub custom_base_url: bool,
    /// Account budget cap per minute, if configured.
    pub max_requests_per_minute: Option<u32>,
    /// Export budget per minute.
    pub export_requests_per_minute: u32,
    /// Comments / audits path.
    pub comments_source: CommentsSource,
    /// Streams read at once.
    pub concurrency: usize,
    /// Marketplace headers to send.
    pub marketplace_headers: Vec<(&'static str, String)>,
    /// The longest wait Zendesk may ask for before seam gives up the run.
    pub max_rate_limit_wait: Duration,
}

/// A configuration value is missing or wrong. Names the key and the rule.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    /// The JSON does not parse into the config shape (unknown key, wrong type).
    #[error("invalid zendesk config: {0}")]
    Parse(String),
    /// A required key is absent.
    #[error("zendesk config: {key} is required: {hint}")]
    Missing {
        /// The key.
        key: &'static str,
        /// What to set.
        hint: &'static str,
    },
    /// A key's value breaks a rule.
    #[error("zendesk config: {key} {value:?} is invalid: {rule}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The value as given (never a secret).
        value: String,
        /// The rule.
        rule: &'static str,
    },
}

impl ZendeskConfigRaw {
    /// Parses a config from JSON; unknown keys and wrong types are errors naming the key.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Checks every rule without IO and returns the typed config.
    pub fn validate(self) -> Result<ZendeskConfig, ConfigError> {
        self.validate_at(Utc::now())
    }

    /// [`Self::validate`] with an explicit "now" (the default start date is a year before it).
    pub fn validate_at(self, now: DateTime<Utc>) -> Result<ZendeskConfig, ConfigError> {
        let subdomain = self.subdomain.clone().ok_or(ConfigError::Missing {
            key: "subdomain",
            hint: "set it to the NAME in NAME.zendesk.com",
        })?;
        let subdomain = subdomain.trim().to_ascii_lowercase();
        let valid_sub = subdomain
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && subdomain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_sub {
            return Err(ConfigError::Invalid {
                key: "subdomain",
                value: subdomain,
                rule: "must be the NAME in NAME.zendesk.com: letters, digits and '-', starting with a letter or digit",
            });
        }
        let auth = match (&self.access_token, &self.email, &self.api_token) {
            (Some(t), _, _) if !t.is_empty() => Auth::OAuth { token: t.clone() },
            (_, Some(email), Some(token)) => {
                if !email.contains('@') {
                    return Err(ConfigError::Invalid {
                        key: "email",
                        value: email.clone(),
                        rule: "must be an email address",
                    });
                }
                if token.is_empty() {
                    return Err(ConfigError::Missing {
                        key: "api_token",
                        hint: "paste the API token from Admin Center",
                    });
                }
                Auth::ApiToken {
                    email: email.trim().to_owned(),
                    token: token.clone(),
                }
            }
            (_, Some(_), None) => {
                return Err(ConfigError::Missing {
                    key: "api_token",
                    hint: "set api_token with email, or access_token",
                })
            }
            (_, None, Some(_)) => {
                return Err(ConfigError::Missing {
                    key: "email",
                    hint: "set the API user's email with api_token",
                })
            }
            _ => {
                return Err(ConfigError::Missing {
                    key: "api_token",
                    hint: "set email and api_token (or an OAuth access_token)",
                })
            }
        };
        let start_date = match &self.start_date {
            Some(s) => DateTime::parse_from_rfc3339(s.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ConfigError::Invalid {
                    key: "start_date",
                    value: s.clone(),
                    rule: "must be an RFC 3339 time like 2024-01-01T00:00:00Z",
                })?,
            None => now - chrono::Duration::days(365),
        };
        let request_timeout = match &self.request_timeout {
            None => Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            Some(v) => match v.as_f64() {
                Some(s) if s > 0.0 && s <= 3600.0 => Duration::from_secs_f64(s),
                // tap-zendesk treats 0 / empty as "use the default".
                Some(0.0) => Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "request_timeout",
                        value: v.as_text(),
                        rule: "must be a number of seconds between 1 and 3600",
                    })
                }
            },
        };
        let page_size = match &self.page_size {
            None => DEFAULT_PAGE_SIZE,
            Some(v) => match v.as_f64() {
                // Zendesk caps cursor-paginated lists at 100; tap-zendesk allows up to 1000 for exports.
                Some(n) if n.fract() == 0.0 && (1.0..=1000.0).contains(&n) => {
                    (n as u32).min(DEFAULT_PAGE_SIZE)
                }
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "page_size",
                        value: v.as_text(),
                        rule: "must be a whole number between 1 and 1000",
                    })
                }
            },
        };
        let (base_url, custom_base_url) = match &self.base_url {
            None => (format!("https://{subdomain}.zendesk.com"), false),
            Some(u) => (validate_base_url(u)?, true),
        };
        if let Some(n) = self.max_requests_per_minute {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    key: "max_requests_per_minute",
                    value: n.to_string(),
                    rule: "must be at least 1",
                });
            }
        }
        let export_requests_per_minute = match self.export_requests_per_minute {
            None => DEFAULT_EXPORT_REQUESTS_PER_MINUTE,
            Some(0) => {
                return Err(ConfigError::Invalid {
                    key: "export_requests_per_minute",
                    value: "0".into(),
                    rule: "must be at least 1 (Zendesk allows 10, or 30 with High Volume)",
                })
            }
            Some(n) => n,
        };
        let comments_source = match self.comments_source.as_deref().map(str::trim) {
            None | Some("ticket_events") => CommentsSource::TicketEvents,
            Some("ticket_audits") | Some("audits") => CommentsSource::TicketAudits,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "comments_source",
                    value: other.to_owned(),
                    rule: "must be \"ticket_events\" (bulk export) or \"ticket_audits\" (per-ticket audits)",
                })
            }
        };
        let concurrency = match self.concurrency {
            None => DEFAULT_CONCURRENCY,
            Some(n) if (1..=16).contains(&n) => n,
            Some(n) => {
                return Err(ConfigError::Invalid {
                    key: "concurrency",
                    value: n.to_string(),
                    rule: "must be between 1 and 16",
                })
            }
        };
        let max_rate_limit_wait = match &self.max_rate_limit_wait_seconds {
            None => Duration::from_secs(DEFAULT_MAX_RATE_LIMIT_WAIT_SECS),
            Some(v) => match v.as_f64() {
                Some(s) if (1.0..=MAX_RATE_LIMIT_WAIT_SECS).contains(&s) => Duration::from_secs_f64(s),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "max_rate_limit_wait_seconds",
                        value: v.as_text(),
                        rule: "must be a number of seconds between 1 and 86400",
                    })
                }
            },
        };
        let mut marketplace_headers = Vec::new();
        if let Some(v) = &self.marketplace_name {
            marketplace_headers.push(("X-Zendesk-Marketplace-Name", v.clone()));
        }
        if let Some(v) = &self.marketplace_organization_id {
            marketplace_headers.push(("X-Zendesk-Marketplace-Organization-Id", v.as_text()));
        }
        if let Some(v) = &self.marketplace_app_id {
            marketplace_headers.push(("X-Zendesk-Marketplace-App-Id", v.as_text()));
        }
        Ok(ZendeskConfig {
            subdomain,
            auth,
            start_date,
            request_timeout,
            page_size,
            base_url,
            custom_base_url,
            max_requests_per_minute: self.max_requests_per_minute,
            export_requests_per_minute,
            comments_source,
            concurrency,
            marketplace_headers,
            max_rate_limit_wait,
        })
    }
}

fn validate_base_url(raw: &str) -> Result<String, ConfigError> {
    let invalid = |rule: &'static str| ConfigError::Invalid {
        key: "base_url",
        value: raw.to_owned(),
        rule,
    };
    let url = url::Url::parse(raw.trim())
        .map_err(|_| invalid("must be an absolute URL like https://proxy.example.com"))?;
    let host = url.host_str().ok_or_else(|| invalid("must name a host"))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let h = host.trim_start_matches('[').trim_end_matches(']');
            let loopback =
                h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(invalid(
                    "http:// is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost); use https://",
                ));
            }
        }
        _ => {
            return Err(invalid(
                "must start with https:// (or http:// for a loopback host)",
            ))
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl ZendeskConfig {
    /// The account's email when authenticating with an API token.
    pub fn email(&self) -> Option<&str> {
        match &self.auth {
            Auth::ApiToken { email, .. } => Some(email),
            Auth::OAuth { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: serde_json::Value) -> Result<ZendeskConfig, ConfigError> {
        ZendeskConfigRaw::from_json(&v.to_string())?.validate()
    }

    #[test]
    fn accepts_a_tap_zendesk_config() {
        let c = raw(serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t",
            "start_date": "2024-01-01T00:00:00Z", "request_timeout": "300", "page_size": 100,
            "user_agent": "Stitch", "search_window_size": 30, "marketplace_name": "x", "marketplace_app_id": 1,
            "marketplace_organization_id": "2", "refresh_token": "r", "client_id": "c", "client_secret": "s"}))
        .unwrap();
        assert_eq!(c.base_url, "https://acme.zendesk.com");
        assert_eq!(c.email(), Some("a@b.c"));
        assert_eq!(c.request_timeout, Duration::from_secs(300));
        assert_eq!(c.marketplace_headers.len(), 3);
        assert_eq!(c.comments_source, CommentsSource::TicketEvents);
        assert_eq!(c.max_rate_limit_wait, Duration::from_secs(300));
        let c = raw(
            serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t",
            "max_rate_limit_wait_seconds": "600"}),
        )
        .unwrap();
        assert_eq!(c.max_rate_limit_wait, Duration::from_secs(600));
        let c = raw(serde_json::json!({"subdomain": "acme", "access_token": "o", "email": "a@b.c"})).unwrap();
        assert!(matches!(c.auth, Auth::OAuth { .. }));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = raw(
            serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "sub_domain": "x"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("sub_domain"), "{e}");
        for (v, key) in [
            (
                serde_json::json!({"subdomain": "Acme.zendesk.com", "email": "a@b.c", "api_token": "t"}),
                "subdomain",
            ),
            (
                serde_json::json!({"subdomain": "-x", "email": "a@b.c", "api_token": "t"}),
                "subdomain",
            ),
            (
                serde_json::json!({"subdomain": "acme", "email": "a@b.c"}),
                "api_token",
            ),
            (
                serde_json::json!({"subdomain": "acme", "api_token": "t"}),
                "email",
            ),
            (
                serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "start_date": "yesterday"}),
                "start_date",
            ),
            (
                serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "page_size": 0}),
                "page_size",
            ),
            (
                serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "request_timeout": "x"}),
                "request_timeout",
            ),
            (
                serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "comments_source": "x"}),
                "comments_source",
            ),
            (
                serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "concurrency": 0}),
                "concurrency",
            ),
            (
                serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "max_rate_limit_wait_seconds": 0}),
                "max_rate_limit_wait_seconds",
            ),
            (
                serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "max_rate_limit_wait_seconds": "1e20"}),
                "max_rate_limit_wait_seconds",
            ),
            (
                serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "base_url": "http://example.com"}),
                "base_url",
            ),
            (
                serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "base_url": "ftp://127.0.0.1"}),
                "base_url",
            ),
        ] {
            let e = raw(v).unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn http_base_url_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:9000/",
            "http://localhost:1",
            "https://proxy.example.com",
        ] {
            let c = raw(
                serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "base_url": ok}),
            )
            .unwrap();
            assert!(!c.base_url.ends_with('/'), "{}", c.base_url);
            assert!(c.custom_base_url);
        }
        for bad in [
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "http://0.0.0.0:80",
        ] {
            assert!(raw(serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "t", "base_url": bad})).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c =
            raw(serde_json::json!({"subdomain": "acme", "email": "a@b.c", "api_token": "hunter2"})).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
