//! The integration-name → warehouse-schema-name rule.
//!
//! Stitch derives an integration's schema name from its display name: "Stitch Zendesk" creates the
//! schema `stitch_zendesk`. seam applies the same observable rule:
//! lowercase; spaces and `-` become `_`; every other character outside `[a-z0-9_]` is dropped.
//! The result always matches `[a-z0-9_]+`; a name that leaves nothing behind is an error that says so.

use thiserror::Error;

/// Longest schema name seam derives (PostgreSQL identifiers are limited to 63 bytes).
pub const MAX_SCHEMA_NAME_LEN: usize = 63;

/// Why a name could not become a schema name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NamingError {
    /// Every character of the display name was dropped by the rule.
    #[error(
        "invalid name after deriving it from display_name ({display_name} -> ): a schema name needs at least \
         one letter, digit, space, '-' or '_'"
    )]
    Empty {
        /// The display name as given.
        display_name: String,
    },
    /// The derived name is longer than a warehouse identifier may be.
    #[error("schema name {name} is {len} characters long; the limit is {max}: choose a shorter name")]
    TooLong {
        /// The derived name.
        name: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An explicit schema name (not derived) breaks the `[a-z0-9_]+` rule.
    #[error("invalid schema name {name:?}: use only lowercase letters, digits and underscores")]
    Invalid {
        /// The name as given.
        name: String,
    },
}

/// Derives the warehouse schema name from an integration's display name.
///
/// ```
/// assert_eq!(seam_core::naming::schema_name("Stitch Zendesk").unwrap(), "stitch_zendesk");
/// assert_eq!(seam_core::naming::schema_name("Zendesk (EU) - v2.0").unwrap(), "zendesk_eu___v20");
/// assert!(seam_core::naming::schema_name("####").is_err());
/// ```
pub fn schema_name(display_name: &str) -> Result<String, NamingError> {
    let mut out = String::with_capacity(display_name.len());
    for c in display_name.trim().chars() {
        match c {
            ' ' | '-' | '_' => out.push('_'),
            c if c.is_ascii_alphanumeric() => out.push(c.to_ascii_lowercase()),
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(NamingError::Empty {
            display_name: display_name.to_owned(),
        });
    }
    check_len(out)
}

/// Validates a schema name given explicitly ("Use a different schema name?").
pub fn validate_schema_name(name: &str) -> Result<String, NamingError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(NamingError::Invalid {
            name: name.to_owned(),
        });
    }
    check_len(name.to_owned())
}

fn check_len(name: String) -> Result<String, NamingError> {
    if name.len() > MAX_SCHEMA_NAME_LEN {
        let len = name.len();
        return Err(NamingError::TooLong {
            name,
            len,
            max: MAX_SCHEMA_NAME_LEN,
        });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_example() {
        assert_eq!(schema_name("Stitch Zendesk").unwrap(), "stitch_zendesk");
        assert_eq!(schema_name("Recurly Stitch").unwrap(), "recurly_stitch");
        assert_eq!(
            schema_name("Stitch Zendesk Support").unwrap(),
            "stitch_zendesk_support"
        );
    }

    #[test]
    fn punctuation_is_dropped_and_separators_become_underscores() {
        assert_eq!(schema_name("DISPLAY_NAME!!!").unwrap(), "display_name");
        assert_eq!(schema_name("zendesk-eu.prod").unwrap(), "zendesk_euprod");
        assert_eq!(schema_name("  Zendesk  ").unwrap(), "zendesk");
        assert_eq!(schema_name("Zendésk ☃").unwrap(), "zendsk_");
    }

    #[test]
    fn empty_result_is_an_error_that_says_why() {
        let err = schema_name("####").unwrap_err();
        assert!(matches!(err, NamingError::Empty { .. }));
        assert!(err.to_string().contains("#### -> )"), "{err}");
        assert!(schema_name("").is_err());
    }

    #[test]
    fn too_long_is_an_error() {
        let long = "a".repeat(64);
        assert!(matches!(
            schema_name(&long),
            Err(NamingError::TooLong { len: 64, .. })
        ));
        assert!(schema_name(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn explicit_names_are_checked() {
        assert_eq!(validate_schema_name("zendesk_2").unwrap(), "zendesk_2");
        assert!(validate_schema_name("Zendesk").is_err());
        assert!(validate_schema_name("zen desk").is_err());
        assert!(validate_schema_name("").is_err());
    }

    proptest! {
        #[test]
        fn result_matches_the_rule(name in "\\PC{0,80}") {
            match schema_name(&name) {
                Ok(s) => {
                    prop_assert!(!s.is_empty());
                    prop_assert!(s.len() <= MAX_SCHEMA_NAME_LEN);
                    prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                }
                Err(NamingError::Empty { .. }) => {
                    prop_assert!(!name.trim().chars().any(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ' ')));
                }
                Err(NamingError::TooLong { len, .. }) => prop_assert!(len > MAX_SCHEMA_NAME_LEN),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        #[test]
        fn derivation_is_idempotent(name in "[ -~]{0,60}") {
            if let Ok(s) = schema_name(&name) {
                prop_assert_eq!(schema_name(&s).unwrap(), s.clone());
                prop_assert_eq!(validate_schema_name(&s).unwrap(), s);
            }
        }

        #[test]
        fn alphanumerics_are_kept_in_order(name in "[A-Za-z0-9]{1,40}") {
            prop_assert_eq!(schema_name(&name).unwrap(), name.to_ascii_lowercase());
        }
    }
}
