//! Authentication as Zendesk does it
//! (<https://developer.zendesk.com/api-reference/introduction/security-and-auth/>):
//! `Authorization: Basic base64("{email}/token:{api_token}")` or `Authorization: Bearer {oauth_token}`.
//! Anything else is a 401 `{"error":"Couldn't authenticate you"}`.

use base64::Engine;

/// Credentials the simulated account accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The API user's email (compared case-insensitively).
    pub email: String,
    /// The API token.
    pub api_token: String,
    /// An OAuth access token, if OAuth is enabled.
    pub oauth_token: Option<String>,
}

impl Credentials {
    /// True when the `Authorization` header value authenticates the API user.
    pub fn check(&self, header: Option<&str>) -> bool {
        let Some(h) = header else { return false };
        let h = h.trim();
        if let Some(token) = h.strip_prefix("Bearer ") {
            return self.oauth_token.as_deref().is_some_and(|t| t == token.trim());
        }
        let Some(b64) = h.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let Ok(raw) = String::from_utf8(raw) else {
            return false;
        };
        let Some((user, secret)) = raw.split_once(':') else {
            return false;
        };
        let Some(email) = user.strip_suffix("/token") else {
            return false;
        };
        email.eq_ignore_ascii_case(&self.email) && secret == self.api_token
    }
}

/// What the `Host` header says about the account being addressed.
#[derive(Debug, PartialEq, Eq)]
pub enum HostCheck {
    /// The configured account (its `*.zendesk.com` name, or loopback / localhost / no host).
    Ok,
    /// `<other>.zendesk.com`: an account that does not exist.
    UnknownAccount(String),
}

/// Checks the `Host` header against the configured subdomain.
pub fn check_host(host: Option<&str>, subdomain: &str) -> HostCheck {
    let Some(host) = host else { return HostCheck::Ok };
    let name = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    match name.strip_suffix(".zendesk.com") {
        Some(sub) if !sub.eq_ignore_ascii_case(subdomain) => HostCheck::UnknownAccount(sub.to_owned()),
        _ => HostCheck::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            email: "admin@acme.test".into(),
            api_token: "sim-token".into(),
            oauth_token: Some("oauth-1".into()),
        }
    }

    fn basic(s: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s))
    }

    #[test]
    fn basic_token_auth() {
        let c = creds();
        assert!(c.check(Some(&basic("admin@acme.test/token:sim-token"))));
        assert!(c.check(Some(&basic("ADMIN@acme.test/token:sim-token"))));
        assert!(!c.check(Some(&basic("admin@acme.test:sim-token"))));
        assert!(!c.check(Some(&basic("admin@acme.test/token:wrong"))));
        assert!(!c.check(None));
    }

    #[test]
    fn bearer_auth() {
        let c = creds();
        assert!(c.check(Some("Bearer oauth-1")));
        assert!(!c.check(Some("Bearer nope")));
    }

    #[test]
    fn host_check() {
        assert_eq!(check_host(Some("127.0.0.1:8080"), "acme"), HostCheck::Ok);
        assert_eq!(check_host(Some("acme.zendesk.com"), "acme"), HostCheck::Ok);
        assert_eq!(
            check_host(Some("other.zendesk.com"), "acme"),
            HostCheck::UnknownAccount("other".into())
        );
    }
}
