//! Notifications: stored in-app, and POSTed as JSON to the configured webhook.
//!
//! Webhook delivery:
//! - redirects are not followed (a 3xx answer is a failed delivery that says so): the URL the user set
//!   is the only place the notification goes;
//! - failures are logged with the URL's host only: webhook URLs often carry a secret in their path
//!   (Slack's `/services/T000/B000/XXXX`);
//! - with [`WebhookPolicy::refuse_private_addresses`], seam refuses to deliver to loopback, private,
//!   link-local and other non-public addresses. The check runs on the addresses the host resolves
//!   to, inside the HTTP client's resolver, so the connection goes only to an address that passed
//!   it (a name that resolves to a public address at check time and a private one at connect time
//!   gets nowhere). Proxies from the environment are not used then: they would resolve the host
//!   themselves.

use crate::api::notifications::notification_json;
use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use seam_metastore::{Metastore, NewNotification};
use seam_runtime::notify::{Notifier, SETTING_WEBHOOK_URL};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tracing::{info, warn};

/// How long a webhook delivery may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where notification webhooks may go.
#[derive(Debug, Clone, Default)]
pub struct WebhookPolicy {
    /// Refuse hosts whose addresses are loopback, private, link-local or otherwise not on the public
    /// internet (default `false`: a webhook receiver on the local network is common for a
    /// self-hosted service).
    pub refuse_private_addresses: bool,
}

/// A webhook delivery failed. Messages name the host, never the URL's path or query.
#[derive(Debug, Error)]
pub enum WebhookError {
    /// The URL does not parse or has no host.
    #[error("the notification webhook URL is not a valid http(s) URL with a host")]
    BadUrl,
    /// The host is (or resolves only to) a non-public address and the policy refuses those.
    #[error(
        "the notification webhook host {host} is a loopback, private or link-local address, which this seam \
         refuses (started with --webhook-refuse-private-addresses): use a public receiver"
    )]
    PrivateAddress {
        /// The host.
        host: String,
    },
    /// The receiver answered with a redirect, which seam does not follow.
    #[error(
        "the notification webhook at {host} answered {status} (a redirect, not followed): set the URL it \
         redirects to"
    )]
    Redirect {
        /// The host.
        host: String,
        /// The status.
        status: u16,
    },
    /// The receiver answered with an error.
    #[error("the notification webhook at {host} answered {status}")]
    Status {
        /// The host.
        host: String,
        /// The status.
        status: u16,
    },
    /// The receiver could not be reached.
    #[error("the notification webhook at {host} could not be reached: {source}")]
    Request {
        /// The host.
        host: String,
        /// The cause (without the URL).
        #[source]
        source: reqwest::Error,
    },
}

/// True for an address on the public internet: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast, documentation or reserved; IPv4 inside IPv6 (mapped,
/// compatible, NAT64) is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || s[0] & 0xfe00 == 0xfc00 // unique local
        || s[0] & 0xffc0 == 0xfe80 // link-local
        || s[0] & 0xffc0 == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated) and the like
}

/// A resolver that keeps only public addresses and fails when none is left.
#[derive(Debug)]
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(WebhookError::PrivateAddress { host })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The host of a webhook URL, for messages.
fn host_of(url: &reqwest::Url) -> String {
    url.host_str().unwrap_or("?").to_owned()
}

/// Checks a webhook URL against the policy before it is saved: a literal non-public address, or a
/// name that resolves only to such addresses, is refused. A name that does not resolve now passes
/// (delivery checks again).
pub async fn check_target(url: &reqwest::Url, policy: &WebhookPolicy) -> Result<(), WebhookError> {
    if !policy.refuse_private_addresses {
        return Ok(());
    }
    let host = url.host().ok_or(WebhookError::BadUrl)?;
    let private = || WebhookError::PrivateAddress { host: host_of(url) };
    match host {
        url::Host::Ipv4(ip) if !is_public_v4(ip) => Err(private()),
        url::Host::Ipv6(ip) if !is_public_v6(ip) => Err(private()),
        url::Host::Domain(name) => {
            let lookup = tokio::time::timeout(WEBHOOK_TIMEOUT, tokio::net::lookup_host((name, 0))).await;
            match lookup {
                Ok(Ok(addrs)) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if !addrs.is_empty() && addrs.iter().all(|a| !is_public(a.ip())) {
                        Err(private())
                    } else {
                        Ok(())
                    }
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Stores every notification, then delivers it to `notification_webhook_url` when one is set.
/// Delivery runs in the background with a timeout; failures are logged, never fatal.
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    metastore: Arc<dyn Metastore>,
    client: reqwest::Client,
    policy: WebhookPolicy,
}

impl WebhookNotifier {
    /// A notifier over `metastore` that delivers as `policy` allows.
    pub fn new(metastore: Arc<dyn Metastore>, policy: WebhookPolicy) -> Self {
        let mut builder = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .connect_timeout(WEBHOOK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if policy.refuse_private_addresses {
            builder = builder.dns_resolver(Arc::new(PublicOnly)).no_proxy();
        }
        let client = builder.build().unwrap_or_else(|e| {
            warn!(error = %e, "cannot build the webhook client: webhooks are delivered with default settings");
            reqwest::Client::new()
        });
        WebhookNotifier {
            metastore,
            client,
            policy,
        }
    }

    /// POSTs `body` to `url` once; a failure is logged (host only) and returned.
    pub async fn deliver(&self, url: &str, body: &Value) -> Result<(), WebhookError> {
        let result = self.try_deliver(url, body).await;
        if let Err(e) = &result {
            warn!(error = %e, "notification webhook delivery failed");
        }
        result
    }

    async fn try_deliver(&self, url: &str, body: &Value) -> Result<(), WebhookError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| WebhookError::BadUrl)?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(WebhookError::BadUrl);
        }
        let host = host_of(&parsed);
        // Literal addresses never reach the resolver: check them here.
        if self.policy.refuse_private_addresses {
            let literal = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if literal.is_some_and(|ip| !is_public(ip)) {
                return Err(WebhookError::PrivateAddress { host });
            }
        }
        let response = self.client.post(parsed).json(body).send().await.map_err(|e| {
            let refused = std::error::Error::source(&e)
                .into_iter()
                .flat_map(|s| std::iter::successors(Some(s), |s| s.source()))
                .any(|s| s.downcast_ref::<WebhookError>().is_some());
            if refused {
                WebhookError::PrivateAddress { host: host.clone() }
            } else {
                WebhookError::Request {
                    host: host.clone(),
                    source: e.without_url(),
                }
            }
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(WebhookError::Redirect {
                host,
                status: status.as_u16(),
            })
        } else {
            Err(WebhookError::Status {
                host,
                status: status.as_u16(),
            })
        }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, notification: NewNotification) {
        let stored = match self.metastore.add_notification(notification).await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "could not store a notification");
                return;
            }
        };
        info!(code = %stored.code, level = stored.level.as_str(), subject = %stored.subject, "notification");
        let url = match self.metastore.get_setting(SETTING_WEBHOOK_URL).await {
            Ok(Some(u)) if !u.is_empty() => u,
            Ok(_) => return,
            Err(e) => {
                warn!(error = %e, "could not read the webhook setting");
                return;
            }
        };
        let body = notification_json(&stored);
        let notifier = self.clone();
        tokio::spawn(async move {
            let _ = notifier.deliver(&url, &body).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_addresses() {
        for private in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            let ip: IpAddr = private.parse().expect("ip");
            assert!(!is_public(ip), "{private} is not public");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = public.parse().expect("ip");
            assert!(is_public(ip), "{public} is public");
        }
    }

    #[test]
    fn errors_name_the_host_only() {
        let e = WebhookError::Status {
            host: "hooks.example.com".into(),
            status: 500,
        };
        assert_eq!(
            e.to_string(),
            "the notification webhook at hooks.example.com answered 500"
        );
    }
}
