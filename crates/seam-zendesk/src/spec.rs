//! What the Zendesk connector declares to the service: its type, its settings (the seed page's site
//! prefix, login email and API token, or an OAuth access token) and their rules.

use seam_core::{ConnectorSpec, PropertySpec};
use serde_json::{Map, Value};

/// The Zendesk connector's type.
pub const TYPE: &str = "platform.zendesk";

/// Checks a Zendesk site prefix: `[a-z0-9][a-z0-9-]*`, at most 63 characters. This is what keeps seam
/// from being aimed at any host other than `<prefix>.zendesk.com`.
pub fn check_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "subdomain {s:?} is invalid: enter only the Zendesk site prefix (acme for acme.zendesk.com): lowercase \
             letters, digits and '-', starting with a letter or digit"
        ))
    }
}

fn rules(config: &Map<String, Value>, has_secret: &dyn Fn(&str) -> bool) -> Result<(), String> {
    if let Some(s) = config.get("subdomain").and_then(Value::as_str) {
        check_subdomain(s)?;
    }
    let email = config.get("email").and_then(Value::as_str);
    if let Some(e) = email {
        if !e.contains('@') || e.chars().any(char::is_whitespace) {
            return Err(format!("email {e:?} is not an email address"));
        }
    }
    if !has_secret("access_token") && (!has_secret("api_token") || email.is_none()) {
        return Err(
            "credentials are required: give properties.email and properties.api_token, or properties.access_token \
             (OAuth)"
                .to_owned(),
        );
    }
    Ok(())
}

/// The Zendesk connector's spec.
pub fn connector_spec() -> ConnectorSpec {
    ConnectorSpec {
        type_name: TYPE.to_owned(),
        display_name: "Zendesk Support".to_owned(),
        properties: vec![
            PropertySpec::string(
                "subdomain",
                "Zendesk site prefix",
                "the Zendesk site prefix (acme for acme.zendesk.com)",
            )
            .required()
            .identity(),
            PropertySpec::string(
                "email",
                "Login email",
                "the email of a Zendesk admin, for API-token sign-in",
            ),
            PropertySpec::string(
                "api_token",
                "API token",
                "an API token from Zendesk's Admin Center (Apps and integrations > Zendesk API)",
            )
            .secret(),
            PropertySpec::string(
                "access_token",
                "OAuth access token",
                "an OAuth access token, instead of the email and API token",
            )
            .secret(),
        ],
        rules: Some(rules),
        open: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subdomains_cannot_name_another_host() {
        for ok in ["acme", "acme-eu", "a1", "0day"] {
            assert!(check_subdomain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-acme",
            "Acme",
            "acme.evil.com",
            "acme/..",
            "127.0.0.1",
            "a b",
            "acme:80",
            "évil",
        ] {
            assert!(check_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_an_api_token_with_an_email_or_an_access_token() {
        let spec = connector_spec();
        let config = |v: Value| v.as_object().cloned().unwrap_or_default();
        let only = |names: &'static [&'static str]| move |n: &str| names.contains(&n);
        let with_email = config(json!({"subdomain": "acme", "email": "a@acme.test"}));
        assert_eq!(spec.validate(&with_email, &only(&["api_token"])), Ok(()));
        assert_eq!(
            spec.validate(&config(json!({"subdomain": "acme"})), &only(&["access_token"])),
            Ok(())
        );
        let missing = spec
            .validate(&config(json!({"subdomain": "acme"})), &only(&["api_token"]))
            .unwrap_err();
        assert!(missing.starts_with("credentials are required"), "{missing}");
        assert_eq!(
            spec.validate(&config(json!({"email": "a@acme.test"})), &only(&["api_token"])),
            Err(
                "properties.subdomain is required: the Zendesk site prefix (acme for acme.zendesk.com)"
                    .into()
            )
        );
        let bad = spec
            .validate(
                &config(json!({"subdomain": "acme.evil.com"})),
                &only(&["access_token"]),
            )
            .unwrap_err();
        assert!(bad.starts_with("subdomain \"acme.evil.com\" is invalid"), "{bad}");
        assert_eq!(
            spec.validate(
                &config(json!({"subdomain": "acme", "email": "nobody"})),
                &only(&["api_token"])
            ),
            Err("email \"nobody\" is not an email address".into())
        );
    }
}
