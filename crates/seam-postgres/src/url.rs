//! Splitting a `postgres://` URL: the parameters seam handles itself (TLS, and `tcp_user_timeout`,
//! which the driver would read in seconds where libpq reads milliseconds) come out, the rest goes
//! to the driver; and the URL as it may be shown (password hidden).
//!
//! The URL is cut the way the driver (`tokio-postgres`) reads it: credentials up to the first `@`,
//! then host and port up to `/` or `?`, the database name up to `?`, then `key=value` parameters
//! separated by `&`.

use percent_encoding::percent_decode_str;

/// The URL schemes seam accepts.
pub(crate) const SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

/// What a URL holds, for seam.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    /// The URL without the parameters seam handles (for the driver).
    pub driver_url: String,
    /// `sslmode`, decoded.
    pub ssl_mode: Option<String>,
    /// `sslrootcert`, decoded.
    pub ssl_root_cert: Option<String>,
    /// `tcp_user_timeout`, decoded: milliseconds for libpq, seconds for the driver, so seam reads it.
    pub tcp_user_timeout: Option<String>,
    /// Parameters libpq knows that seam does not support (client certificates and the like).
    pub unsupported: Vec<String>,
    /// The names of the parameters passed on to the driver, decoded.
    pub driver_keys: Vec<String>,
}

/// libpq's TLS parameters that seam does not implement: refused with a clear error rather than
/// silently ignored (the driver would call them unknown options).
const UNSUPPORTED: [&str; 6] = [
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
];

/// Splits `url` (which starts with one of [`SCHEMES`]).
pub(crate) fn split(url: &str) -> Split {
    let (head, query) = match query_start(url) {
        Some(q) => (&url[..q], Some(&url[q + 1..])),
        None => (url, None),
    };
    let mut out = Split {
        driver_url: head.to_owned(),
        ssl_mode: None,
        ssl_root_cert: None,
        tcp_user_timeout: None,
        unsupported: Vec::new(),
        driver_keys: Vec::new(),
    };
    let mut kept: Vec<&str> = Vec::new();
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key_decoded = decode(key);
        match key_decoded.as_str() {
            "sslmode" => out.ssl_mode = Some(decode(value)),
            "sslrootcert" => out.ssl_root_cert = Some(decode(value)),
            "tcp_user_timeout" => out.tcp_user_timeout = Some(decode(value)),
            k if UNSUPPORTED.contains(&k) => out.unsupported.push(k.to_owned()),
            _ => {
                out.driver_keys.push(key_decoded);
                kept.push(param);
            }
        }
    }
    if !kept.is_empty() {
        out.driver_url.push('?');
        out.driver_url.push_str(&kept.join("&"));
    }
    out
}

/// The URL with its password (in the credentials or a `password` parameter) replaced by `***`.
pub fn redact(url: &str) -> String {
    let scheme_end = SCHEMES
        .iter()
        .find(|s| url.starts_with(*s))
        .map_or(0, |s| s.len());
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..scheme_end]);
    let rest = &url[scheme_end..];
    let rest = match rest.find('@') {
        Some(at) => {
            let creds = &rest[..at];
            match creds.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(creds),
            }
            &rest[at..]
        }
        None => rest,
    };
    match rest.find('?') {
        None => out.push_str(rest),
        Some(q) => {
            out.push_str(&rest[..=q]);
            let params: Vec<String> = rest[q + 1..]
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if decode(k) == "password" => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
    }
    out
}

/// Where the parameters start (the `?`), read as the driver reads it.
fn query_start(url: &str) -> Option<usize> {
    let scheme_end = SCHEMES
        .iter()
        .find(|s| url.starts_with(*s))
        .map_or(0, |s| s.len());
    let after_creds = url[scheme_end..]
        .find('@')
        .map_or(scheme_end, |at| scheme_end + at + 1);
    url[after_creds..].find('?').map(|q| after_creds + q)
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_come_out_and_the_rest_stays() {
        let s = split("postgres://u:p%40ss@h:5432/db?application_name=seam&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca%20x.pem&connect_timeout=5");
        assert_eq!(
            s.driver_url,
            "postgres://u:p%40ss@h:5432/db?application_name=seam&connect_timeout=5"
        );
        assert_eq!(s.ssl_mode.as_deref(), Some("verify-full"));
        assert_eq!(s.ssl_root_cert.as_deref(), Some("/tmp/ca x.pem"));
        assert!(s.unsupported.is_empty());
        let s = split("postgresql://h/db?sslmode=require");
        assert_eq!(s.driver_url, "postgresql://h/db");
        let s = split("postgres://h/db?sslcert=/c.pem&sslkey=/k.pem");
        assert_eq!(s.unsupported, ["sslcert", "sslkey"]);
        // A `?` in the password is read as the driver reads it (credentials end at the first `@`).
        let s = split("postgres://u:a?b@h/db");
        assert_eq!(s.driver_url, "postgres://u:a?b@h/db");
        assert_eq!(s.ssl_mode, None);
    }

    #[test]
    fn redaction_hides_every_password() {
        assert_eq!(
            redact("postgres://seam:hunter2@db:5432/w?sslmode=require"),
            "postgres://seam:***@db:5432/w?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://seam@db/w?password=hunter2&sslmode=require"),
            "postgresql://seam@db/w?password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://seam:a%3Ab@db/w?pass%77ord=x"),
            "postgres://seam:***@db/w?pass%77ord=***"
        );
        assert_eq!(redact("postgres://db/w"), "postgres://db/w");
        assert_eq!(redact("postgres://:p@db"), "postgres://:***@db");
    }
}
