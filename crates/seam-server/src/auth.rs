//! Bearer-token auth. Tokens are random, shown once, and stored as their SHA-256 only.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use rand::RngCore as _;
use seam_metastore::{Metastore, MetastoreError};
use sha2::{Digest, Sha256};

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
