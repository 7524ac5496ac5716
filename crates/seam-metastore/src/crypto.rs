//! Credentials at rest: sealed with ChaCha20-Poly1305 under a 32-byte key that never enters the
//! metastore.
//!
//! The key comes from `SEAM_SECRET_KEY` (base64 of 32 bytes) or from a key file under the data
//! directory, created with mode 0600 on first start. A sealed blob is
//! `version (1 byte) || nonce (12 bytes) || ciphertext+tag`; the plaintext is the JSON of
//! [`Credentials`]. A blob sealed under another key fails to open with a message that says so.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore as _;
use seam_core::Secret;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The environment variable holding the key (base64 of 32 bytes).
pub const SECRET_KEY_ENV: &str = "SEAM_SECRET_KEY";
/// The key file's name under the data directory.
pub const KEY_FILE: &str = "secret.key";

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// An integration's credentials, in memory only. `Debug` shows `***` for each secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Zendesk API token (used with the integration's email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<Secret>,
    /// OAuth access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
}

/// Sealing or opening failed.
#[derive(Debug, Error)]
pub enum CryptoError {
    /// `SEAM_SECRET_KEY` or the key file is not base64 of 32 bytes.
    #[error("{origin} must hold a base64-encoded 32-byte key: {detail}")]
    BadKey {
        /// Where the key came from.
        origin: String,
        /// Why it was refused.
        detail: String,
    },
    /// The key file could not be read or created.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A blob did not open: wrong key, or damaged.
    #[error(
        "stored credentials cannot be decrypted: the secret key differs from the one they were sealed with \
         (check {SECRET_KEY_ENV} or the key file), or the record is damaged"
    )]
    Open,
    /// Encryption failed (cannot happen with a valid key; kept for completeness).
    #[error("credentials could not be encrypted")]
    Seal,
}

/// Seals and opens credentials. `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretCipher {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCipher(***)")
    }
}

impl SecretCipher {
    /// A cipher from raw key bytes.
    pub fn from_key(key: [u8; 32]) -> Self {
        SecretCipher {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// A cipher from base64 text; `origin` names the source in errors.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self, CryptoError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| CryptoError::BadKey {
                origin: origin.to_owned(),
                detail: e.to_string(),
            })?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| CryptoError::BadKey {
            origin: origin.to_owned(),
            detail: format!("decoded to {} bytes", bytes.len()),
        })?;
        Ok(Self::from_key(key))
    }

    /// The key from `SEAM_SECRET_KEY` when set, else from `<data_dir>/secret.key`, which is created
    /// (mode 0600) with a random key when missing. Returns the cipher and whether a file was created.
    pub fn load_or_create(data_dir: &Path) -> Result<(Self, bool), CryptoError> {
        if let Ok(text) = std::env::var(SECRET_KEY_ENV) {
            return Ok((Self::from_base64(&text, SECRET_KEY_ENV)?, false));
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok((Self::from_base64(&text, &path.display().to_string())?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CryptoError::KeyFile { path, source }),
        }
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        let text = base64::engine::general_purpose::STANDARD.encode(key);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(|source| CryptoError::KeyFile {
            path: path.clone(),
            source,
        })?;
        file.write_all(text.as_bytes())
            .map_err(|source| CryptoError::KeyFile {
                path: path.clone(),
                source,
            })?;
        file.sync_all()
            .map_err(|source| CryptoError::KeyFile { path, source })?;
        Ok((Self::from_key(key), true))
    }

    /// Seals credentials with a fresh random nonce.
    pub fn seal(&self, credentials: &Credentials) -> Result<Vec<u8>, CryptoError> {
        let plain = serde_json::to_vec(credentials).map_err(|_| CryptoError::Seal)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a sealed blob.
    pub fn open(&self, blob: &[u8]) -> Result<Credentials, CryptoError> {
        if blob.len() < 1 + NONCE_LEN || blob[0] != VERSION {
            return Err(CryptoError::Open);
        }
        let (nonce, sealed) = blob[1..].split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| CryptoError::Open)?;
        serde_json::from_slice(&plain).map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            api_token: Some(Secret::new("tok-very-secret")),
            access_token: None,
        }
    }

    #[test]
    fn round_trip_and_no_plaintext() {
        let c = SecretCipher::from_key([7; 32]);
        let blob = c.seal(&creds()).expect("seal");
        assert!(!blob.windows(15).any(|w| w == b"tok-very-secret"));
        assert_eq!(c.open(&blob).expect("open"), creds());
        assert_ne!(c.seal(&creds()).expect("seal"), blob, "fresh nonce each time");
        assert!(!format!("{:?}", creds()).contains("tok-very-secret"));
    }

    #[test]
    fn wrong_key_or_damage_fails_clearly() {
        let blob = SecretCipher::from_key([7; 32]).seal(&creds()).expect("seal");
        let err = SecretCipher::from_key([8; 32])
            .open(&blob)
            .expect_err("wrong key");
        assert!(err.to_string().contains("SEAM_SECRET_KEY"), "{err}");
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(SecretCipher::from_key([7; 32]).open(&bad).is_err());
        assert!(SecretCipher::from_base64("c2hvcnQ=", "test").is_err());
    }
}
