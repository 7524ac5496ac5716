//! The one place connectors are registered: a name and a constructor from a JSON config.

use seam_core::{ErrorKind, Source, SourceError};

/// The connectors seam knows, by name.
pub const CONNECTORS: &[&str] = &["zendesk"];

/// The named connector is not registered.
#[derive(Debug, thiserror::Error)]
#[error("unknown connector {name:?}: known connectors are {}", CONNECTORS.join(", "))]
pub struct UnknownConnector {
    /// The name asked for.
    pub name: String,
}

/// Builds the source called `name` from its JSON config (validated without IO).
pub fn build_source(name: &str, config_json: &str) -> Result<Box<dyn Source>, SourceError> {
    match name {
        "zendesk" => Ok(Box::new(crate::ZendeskSource::from_json(config_json)?)),
        _ => Err(SourceError::new(
            ErrorKind::Config,
            UnknownConnector {
                name: name.to_owned(),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_known_ones() {
        let Err(e) = build_source("salesforce", "{}") else {
            panic!("salesforce is not a connector")
        };
        assert!(e.to_string().contains("known connectors are zendesk"), "{e}");
        assert!(build_source(
            "zendesk",
            r#"{"subdomain":"acme","email":"a@b.c","api_token":"t"}"#
        )
        .is_ok());
    }
}
