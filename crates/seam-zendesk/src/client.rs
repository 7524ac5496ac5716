//! The HTTP client: authentication, timeouts, the rate limiter, and the retry loop that asks core's
//! [`RetryPolicy`] about every failure.
//!
//! Every wait — the rate limiter's, a backoff, a `Retry-After` pause, the request itself — races the
//! caller's cancel token, so a cancelled read stops within moments whatever it is waiting on. A wait
//! Zendesk asks for that is longer than the policy's `max_wait` is not waited out: it becomes
//! [`ApiError::WaitTooLong`], which says what Zendesk asked for.

use crate::config::{Auth, ZendeskConfig};
use crate::error::ApiError;
use crate::headers::{self, Asked};
use crate::rate_limit::{EndpointClass, RateLimiter, RateLimits};
use base64::Engine;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use reqwest::StatusCode;
use seam_core::{Classify, ErrorKind, RetryDecision, RetryPolicy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The user agent seam sends.
pub const USER_AGENT: &str = concat!("seam-zendesk/", env!("CARGO_PKG_VERSION"));

/// An authenticated, rate-limited Zendesk client. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ZendeskClient {
    http: reqwest::Client,
    base_url: String,
    headers: HeaderMap,
    subdomain: String,
    email: Option<String>,
    limiter: RateLimiter,
    policy: RetryPolicy,
    requests: AtomicU64,
}

/// The client could not be built (TLS backend, invalid header value).
#[derive(Debug, thiserror::Error)]
#[error("could not build the zendesk http client: {0}")]
pub struct ClientBuildError(String);

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn retry_after(headers: &HeaderMap) -> Option<Asked> {
    let v = headers.get(headers::RETRY_AFTER)?.to_str().ok()?;
    headers::retry_after(v, SystemTime::now())
}

/// The message a 403 body carries (`{"error": {"title", "message"}}` or `{"error", "description"}`).
fn forbidden_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Option<serde_json::Value>,
        description: Option<String>,
    }
    let Ok(b) = serde_json::from_slice::<Body>(body) else {
        return snippet(body);
    };
    if let Some(m) = b
        .error
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
    {
        return m.to_owned();
    }
    b.description
        .or_else(|| b.error.and_then(|e| e.as_str().map(str::to_owned)))
        .unwrap_or_else(|| snippet(body))
}

impl ZendeskClient {
    /// Builds a client for `config`, deciding retries with `policy` and pacing with `limits`.
    pub fn new(
        config: &ZendeskConfig,
        mut policy: RetryPolicy,
        mut limits: RateLimits,
    ) -> Result<Self, ClientBuildError> {
        policy.max_wait = config.max_rate_limit_wait;
        let mut headers = HeaderMap::new();
        let auth = match &config.auth {
            Auth::ApiToken { email, token } => {
                let raw = format!("{email}/token:{}", token.expose());
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
            }
            Auth::OAuth { token } => format!("Bearer {}", token.expose()),
        };
        let mut auth =
            HeaderValue::from_str(&auth).map_err(|e| ClientBuildError(format!("credentials: {e}")))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in &config.marketplace_headers {
            let v = HeaderValue::from_str(value).map_err(|e| ClientBuildError(format!("{name}: {e}")))?;
            headers.insert(HeaderName::from_static_lowercase(name), v);
        }
        if config.custom_base_url && config.base_url.starts_with("http://") {
            // A loopback base URL is the simulator (or a local proxy): name the account in `Host`
            // as Zendesk's own routing does, so an unknown subdomain is answered as Zendesk would.
            let host = format!("{}.zendesk.com", config.subdomain);
            headers.insert(
                HOST,
                HeaderValue::from_str(&host).map_err(|e| ClientBuildError(format!("host: {e}")))?,
            );
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(30)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientBuildError(e.to_string()))?;
        limits.account_cap = config.max_requests_per_minute;
        limits.exports_per_window = config.export_requests_per_minute;
        Ok(ZendeskClient {
            http,
            base_url: config.base_url.clone(),
            headers,
            subdomain: config.subdomain.clone(),
            email: config.email().map(str::to_owned),
            limiter: RateLimiter::new(limits),
            policy,
            requests: AtomicU64::new(0),
        })
    }

    /// HTTP requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// GETs `path_and_query` (starting with `/api/v2/`) and parses the body with `parse`, retrying
    /// transient failures and rate limits as the policy says. A body that fails to parse is a
    /// transient failure (truncated or malformed) and is fetched again, so `parse` sees only whole pages.
    /// When `cancel` fires, whatever is being waited on is dropped and [`ApiError::Cancelled`] returned.
    pub async fn get<T, F>(
        &self,
        class: EndpointClass,
        path_and_query: &str,
        cancel: &CancellationToken,
        mut parse: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut(&[u8]) -> Result<T, serde_json::Error>,
    {
        let url = format!("{}{}", self.base_url, path_and_query);
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.take_turn(class, path, cancel).await?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let answer = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(cancelled(path)),
                answer = self.once(&url, path) => answer,
            };
            let err = match answer {
                Ok(body) => match parse(&body) {
                    Ok(v) => return Ok(v),
                    Err(source) => ApiError::Malformed {
                        path: path.to_owned(),
                        source,
                    },
                },
                Err(e) => e,
            };
            let kind = err.kind();
            match self.policy.decide(kind, attempt) {
                RetryDecision::RetryAfter(wait) => {
                    if let ErrorKind::RateLimited { .. } = kind {
                        self.limiter.pause(class, wait);
                    }
                    warn!(endpoint = path, attempt, wait_ms = wait.as_millis() as u64, error = %err, "retrying zendesk request");
                    sleep_or_cancel(wait, cancel, path).await?;
                }
                RetryDecision::GiveUp => return Err(self.too_long(err, path)),
            }
        }
    }

    /// A 429 given up on because Zendesk asked for more than `max_wait` becomes
    /// [`ApiError::WaitTooLong`]; any other error is returned as it is.
    fn too_long(&self, err: ApiError, path: &str) -> ApiError {
        match err {
            ApiError::RateLimited {
                retry_after: Some(asked),
                ..
            } if !self.policy.allows_wait(asked.wait) => ApiError::WaitTooLong {
                before: format!("retrying {path}"),
                asked,
                limit: self.policy.max_wait,
            },
            err => err,
        }
    }

    /// Waits for the rate limiter's go for one request of `class`. A pause Zendesk's headers asked
    /// for that is longer than the policy allows is an error, not a wait.
    async fn take_turn(
        &self,
        class: EndpointClass,
        path: &str,
        cancel: &CancellationToken,
    ) -> Result<(), ApiError> {
        while let Some(hold) = self.limiter.reserve(class) {
            if let Some(asked) = hold.asked.filter(|_| !self.policy.allows_wait(hold.wait)) {
                return Err(ApiError::WaitTooLong {
                    before: format!("the next request to {path}"),
                    asked,
                    limit: self.policy.max_wait,
                });
            }
            sleep_or_cancel(hold.wait, cancel, path).await?;
        }
        Ok(())
    }

    async fn once(&self, url: &str, path: &str) -> Result<bytes::Bytes, ApiError> {
        let network = |source| ApiError::Network {
            path: path.to_owned(),
            source,
        };
        let resp = self
            .http
            .get(url)
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(network)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        self.limiter.observe(&headers);
        let body = resp.bytes().await.map_err(network)?;
        debug!(
            endpoint = path,
            status = status.as_u16(),
            bytes = body.len(),
            "zendesk response"
        );
        if status.is_success() {
            return Ok(body);
        }
        let html = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("text/html"));
        Err(match status {
            StatusCode::UNAUTHORIZED => match &self.email {
                Some(email) => ApiError::BadApiToken { email: email.clone() },
                None => ApiError::BadOAuthToken,
            },
            StatusCode::FORBIDDEN => ApiError::Forbidden {
                path: path.to_owned(),
                message: forbidden_message(&body),
            },
            // The API answers unknown records and paths with JSON; an HTML 404 is the page Zendesk
            // serves for a subdomain without an account.
            StatusCode::NOT_FOUND if html => ApiError::UnknownAccount {
                subdomain: self.subdomain.clone(),
            },
            StatusCode::NOT_FOUND => ApiError::NotFound {
                path: path.to_owned(),
            },
            StatusCode::TOO_MANY_REQUESTS => ApiError::RateLimited {
                path: path.to_owned(),
                retry_after: retry_after(&headers),
            },
            s if s.is_server_error() || s == StatusCode::CONFLICT => ApiError::Server {
                status: s.as_u16(),
                path: path.to_owned(),
                snippet: snippet(&body),
            },
            s => ApiError::Rejected {
                status: s.as_u16(),
                path: path.to_owned(),
                snippet: snippet(&body),
            },
        })
    }
}

fn cancelled(path: &str) -> ApiError {
    ApiError::Cancelled {
        waiting_on: path.to_owned(),
    }
}

/// Sleeps `wait`, or less when `cancel` fires first (then [`ApiError::Cancelled`]).
async fn sleep_or_cancel(wait: Duration, cancel: &CancellationToken, path: &str) -> Result<(), ApiError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(cancelled(path)),
        () = tokio::time::sleep(wait) => Ok(()),
    }
}

trait FromStaticLowercase {
    fn from_static_lowercase(name: &'static str) -> HeaderName;
}

impl FromStaticLowercase for HeaderName {
    fn from_static_lowercase(name: &'static str) -> HeaderName {
        HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .unwrap_or(HeaderName::from_static("x-zendesk-marketplace"))
    }
}

/// Shared handle.
pub type SharedClient = Arc<ZendeskClient>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_forbidden_messages() {
        let b = br#"{"error":{"title":"Forbidden","message":"You do not have access to this page."}}"#;
        assert_eq!(forbidden_message(b), "You do not have access to this page.");
        let b = br#"{"error":"Forbidden","description":"Missing the following required scopes: read"}"#;
        assert_eq!(
            forbidden_message(b),
            "Missing the following required scopes: read"
        );
    }

    #[test]
    fn retry_after_header() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h).map(|a| a.wait), Some(Duration::from_secs(7)));
        // Used to panic in Duration::from_secs_f64.
        h.insert("retry-after", HeaderValue::from_static("1e20"));
        assert_eq!(retry_after(&h).map(|a| a.wait), Some(headers::LONGEST_WAIT));
    }
}
