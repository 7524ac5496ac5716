//! Bearer-token auth. Tokens are random, shown once, and stored as their SHA-256 only.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use rand::RngCore as _;
use seam_metastore::{ApiToken, Metastore, MetastoreError};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Prefix of every token seam issues (makes leaked tokens easy to grep for).
pub const TOKEN_PREFIX: &str = "seam_";

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token (256 bits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// On first start (no token stored) creates one and returns it, to be printed once; otherwise `None`.
pub async fn bootstrap_token(
    metastore: &dyn Metastore,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>, MetastoreError> {
    if metastore.count_tokens().await? > 0 {
        return Ok(None);
    }
    let token = new_token();
    metastore.add_token("initial", &hash_token(&token), now).await?;
    Ok(Some(token))
}

/// Longest token name.
pub const MAX_TOKEN_NAME: usize = 64;

/// Managing tokens failed.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The metastore failed.
    #[error(transparent)]
    Metastore(#[from] MetastoreError),
    /// The name breaks a rule.
    #[error(
        "token name {0:?} is invalid: use 1 to {MAX_TOKEN_NAME} letters, digits, '-', '_' or '.', not only digits \
         (a number means a token id)"
    )]
    InvalidName(String),
    /// A token that is not revoked already has this name.
    #[error("a token named {name} already exists (id {id}): choose another name, or revoke it first")]
    NameTaken {
        /// The name.
        name: String,
        /// The existing token's id.
        id: i64,
    },
    /// No token has this id or name.
    #[error("no API token has the id or name {0}: `seam token list` shows them")]
    NotFound(String),
    /// Several tokens that are not revoked share the name.
    #[error("several tokens are named {name} (ids {ids}): revoke one by its id")]
    Ambiguous {
        /// The name.
        name: String,
        /// Their ids.
        ids: String,
    },
}

fn valid_token_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOKEN_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.bytes().all(|b| b.is_ascii_digit())
}

/// Creates a token named `name` (unique among tokens that are not revoked); returns it and the token
/// text, which exists nowhere else: show it once.
pub async fn create_token(
    metastore: &dyn Metastore,
    name: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(ApiToken, String), TokenError> {
    if !valid_token_name(name) {
        return Err(TokenError::InvalidName(name.to_owned()));
    }
    if let Some(live) = metastore
        .list_tokens()
        .await?
        .into_iter()
        .find(|t| t.name == name && t.revoked_at.is_none())
    {
        return Err(TokenError::NameTaken {
            name: name.to_owned(),
            id: live.id,
        });
    }
    let token = new_token();
    let stored = metastore.add_token(name, &hash_token(&token), now).await?;
    Ok((stored, token))
}

/// Revokes the token with this id (digits) or name (among tokens that are not revoked). The API
/// refuses it from the next request on.
pub async fn revoke_token(
    metastore: &dyn Metastore,
    id_or_name: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ApiToken, TokenError> {
    let tokens = metastore.list_tokens().await?;
    let target = match id_or_name.parse::<i64>() {
        Ok(id) => tokens
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(|| TokenError::NotFound(id_or_name.to_owned()))?,
        Err(_) => {
            let named: Vec<&ApiToken> = tokens
                .iter()
                .filter(|t| t.name == id_or_name && t.revoked_at.is_none())
                .collect();
            match named.as_slice() {
                [one] => *one,
                [] => return Err(TokenError::NotFound(id_or_name.to_owned())),
                many => {
                    return Err(TokenError::Ambiguous {
                        name: id_or_name.to_owned(),
                        ids: many
                            .iter()
                            .map(|t| t.id.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
    };
    Ok(metastore.revoke_token(target.id, now).await?)
}

/// Marks a request that the dashboard ([`crate::ui`]) forwards in-process to the API after it has
/// checked the session cookie and the CSRF token. Request extensions never come from the network and
/// only this crate can build one (private field), so its presence proves the request passed the
/// dashboard's checks; [`require_token`] accepts it in place of a bearer token.
#[derive(Debug, Clone, Copy)]
pub struct DashboardCaller(());

impl DashboardCaller {
    /// Only the dashboard's forwarding code creates these.
    pub(crate) fn new() -> Self {
        DashboardCaller(())
    }
}

/// Middleware: lets the request through only with `Authorization: Bearer <known token>`, or when the
/// dashboard forwarded it in-process (a [`DashboardCaller`] extension).
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.extensions().get::<DashboardCaller>().is_some() {
        return Ok(next.run(request).await);
    }
    let unauthorized = || {
        ApiError::Unauthorized("missing or unknown API token: send Authorization: Bearer <token>".to_owned())
    };
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(unauthorized)?;
    if state.metastore.find_token(&hash_token(token)).await?.is_none() {
        return Err(unauthorized());
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names() {
        for ok in ["initial", "ci", "grafana-prod", "a.b_c", "v2"] {
            assert!(valid_token_name(ok), "{ok}");
        }
        for bad in ["", "12", "a b", "x\n", "é", &"x".repeat(65)] {
            assert!(!valid_token_name(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn create_list_revoke_by_id_or_name() {
        let m = seam_metastore::SqliteMetastore::open_in_memory().expect("store");
        let now = chrono::Utc::now();
        let (ci, text) = create_token(&m, "ci", now).await.expect("create");
        assert!(text.starts_with(TOKEN_PREFIX));
        assert_eq!(
            m.find_token(&hash_token(&text)).await.expect("find"),
            Some(ci.clone())
        );
        assert!(matches!(
            create_token(&m, "ci", now).await,
            Err(TokenError::NameTaken { .. })
        ));
        let (other, _) = create_token(&m, "other", now).await.expect("create");
        let revoked = revoke_token(&m, "ci", now).await.expect("by name");
        assert_eq!(revoked.id, ci.id);
        assert!(m.find_token(&hash_token(&text)).await.expect("find").is_none());
        assert!(matches!(
            revoke_token(&m, "ci", now).await,
            Err(TokenError::NotFound(_))
        ));
        let (again, _) = create_token(&m, "ci", now)
            .await
            .expect("the name is free once revoked");
        assert_ne!(again.id, ci.id);
        let by_id = revoke_token(&m, &other.id.to_string(), now).await.expect("by id");
        assert_eq!(by_id.name, "other");
        assert!(matches!(
            revoke_token(&m, "999", now).await,
            Err(TokenError::NotFound(_))
        ));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() > 40);
        assert_ne!(a, new_token());
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
