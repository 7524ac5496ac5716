//! Credentials at rest: sealed with ChaCha20-Poly1305 under a 32-byte key that never enters the
//! metastore, and bound to the integration they belong to.
//!
//! The key comes from `SEAM_SECRET_KEY` (base64 of 32 bytes) or from a key file under the data
//! directory, created with mode 0600 on first start. A sealed blob is
//! `version (1 byte) || nonce (12 bytes) || ciphertext+tag`; the plaintext is the JSON of
//! [`Credentials`]. A blob sealed under another key fails to open with a message that says so.
//!
//! Versions:
//! - `2` (current): the AEAD's associated data is the integration's id ([`associated_data`]), so a
//!   blob copied onto another integration's row (someone with write access to the metastore but not
//!   the key) fails to open instead of sending one account's credentials to another account's site.
//! - `1` (legacy: sealed before credentials were bound to their integration): no associated data. [`SecretCipher::open`] refuses
//!   it; [`reseal_legacy_credentials`] (run by the service on every start, before anything opens a
//!   blob) re-seals each one as version 2 under its integration's id.

use crate::model::IntegrationId;
use crate::{Metastore, MetastoreError};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore as _;
use seam_core::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The environment variable holding the key (base64 of 32 bytes).
pub const SECRET_KEY_ENV: &str = "SEAM_SECRET_KEY";
/// The key file's name under the data directory.
pub const KEY_FILE: &str = "secret.key";

/// Blobs sealed without associated data (before credentials were bound to their integration).
const LEGACY_VERSION: u8 = 1;
/// Blobs whose associated data is the integration id.
const VERSION: u8 = 2;
const NONCE_LEN: usize = 12;

/// The AEAD associated data of an integration's credentials: binds a blob to that integration.
pub fn associated_data(integration_id: IntegrationId) -> Vec<u8> {
    format!("seam:integration:{integration_id}").into_bytes()
}

/// True when `blob` is in the legacy format (sealed without associated data): it must be re-sealed
/// with [`SecretCipher::reseal_legacy`] before [`SecretCipher::open`] accepts it.
pub fn is_legacy(blob: &[u8]) -> bool {
    blob.first() == Some(&LEGACY_VERSION)
}

/// An integration's credentials, in memory only: the connector's secret properties by name (for
/// Zendesk, `api_token` or `access_token`). `Debug` shows `***` for each value.
///
/// Sealed as a JSON object of name → value, which is also what releases before the connector
/// registry sealed (`{"api_token": …}`, `{"access_token": …}`): their blobs open unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credentials(BTreeMap<String, Secret>);

impl Credentials {
    /// The secret named `name`.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.0.get(name)
    }

    /// Sets (or, with `None` or an empty value, removes) the secret named `name`.
    pub fn set(&mut self, name: &str, value: Option<Secret>) {
        match value.filter(|v| !v.is_empty()) {
            Some(v) => {
                self.0.insert(name.to_owned(), v);
            }
            None => {
                self.0.remove(name);
            }
        }
    }

    /// The same, by value.
    pub fn with(mut self, name: &str, value: impl Into<Secret>) -> Credentials {
        self.set(name, Some(value.into()));
        self
    }

    /// The secrets' names and values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Secret)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// True when no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
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
    /// A blob is in the legacy format, sealed before credentials were bound to their integration.
    #[error(
        "stored credentials of integration {integration_id} are in the old format: restart seam serve to \
         re-seal them (it does so on start)"
    )]
    Legacy {
        /// The integration.
        integration_id: IntegrationId,
    },
    /// A blob did not open: wrong key, or damaged.
    #[error(
        "stored credentials cannot be decrypted: the secret key differs from the one they were sealed with \
         (check {SECRET_KEY_ENV} or the key file), or the record is damaged or belongs to another integration"
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

    /// Seals an integration's credentials with a fresh random nonce, bound to `integration_id`: the
    /// blob opens only for that id.
    pub fn seal(
        &self,
        integration_id: IntegrationId,
        credentials: &Credentials,
    ) -> Result<Vec<u8>, CryptoError> {
        let plain = serde_json::to_vec(credentials).map_err(|_| CryptoError::Seal)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = associated_data(integration_id);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens the sealed credentials of integration `integration_id`. A blob sealed for another
    /// integration, under another key, or damaged is [`CryptoError::Open`]; a legacy blob is
    /// [`CryptoError::Legacy`].
    pub fn open(&self, integration_id: IntegrationId, blob: &[u8]) -> Result<Credentials, CryptoError> {
        match blob.first() {
            Some(&VERSION) => self.decrypt(blob, &associated_data(integration_id)),
            Some(&LEGACY_VERSION) => Err(CryptoError::Legacy { integration_id }),
            _ => Err(CryptoError::Open),
        }
    }

    /// Re-seals a legacy blob (sealed without associated data) of integration `integration_id` in the
    /// current format, bound to that id.
    pub fn reseal_legacy(&self, integration_id: IntegrationId, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if !is_legacy(blob) {
            return Err(CryptoError::Open);
        }
        let credentials = self.decrypt(blob, &[])?;
        self.seal(integration_id, &credentials)
    }

    fn decrypt(&self, blob: &[u8], aad: &[u8]) -> Result<Credentials, CryptoError> {
        if blob.len() < 1 + NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, sealed) = blob[1..].split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Open)?;
        serde_json::from_slice(&plain).map_err(|_| CryptoError::Open)
    }
}

/// What [`reseal_legacy_credentials`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Integrations whose legacy blob was re-sealed in the current format.
    pub resealed: Vec<IntegrationId>,
    /// Integrations whose legacy blob does not open under this key (left as they are: a later start
    /// with the right key re-seals them).
    pub unreadable: Vec<IntegrationId>,
}

/// Re-seals every integration's legacy credentials (deleted integrations too) bound to its id. The
/// service runs this on start, before the scheduler or the API open any blob; it is idempotent.
pub async fn reseal_legacy_credentials(
    store: &dyn Metastore,
    cipher: &SecretCipher,
) -> Result<ResealReport, MetastoreError> {
    let mut report = ResealReport::default();
    for integration in store.list_integrations(true).await? {
        if !is_legacy(&integration.sealed_credentials) {
            continue;
        }
        match cipher.reseal_legacy(integration.id, &integration.sealed_credentials) {
            Ok(blob) => {
                store.set_sealed_credentials(integration.id, &blob).await?;
                report.resealed.push(integration.id);
            }
            Err(_) => report.unreadable.push(integration.id),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::default().with("api_token", Secret::new("tok-very-secret"))
    }

    /// A blob exactly as seam sealed credentials before they were bound to their integration.
    fn seal_the_old_way(key: [u8; 32], credentials: &Credentials) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
        let nonce = [3u8; NONCE_LEN];
        let plain = serde_json::to_vec(credentials).expect("json");
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .expect("seal");
        let mut out = vec![1u8];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    #[test]
    fn round_trip_and_no_plaintext() {
        let c = SecretCipher::from_key([7; 32]);
        let blob = c.seal(1, &creds()).expect("seal");
        assert!(!blob.windows(15).any(|w| w == b"tok-very-secret"));
        assert_eq!(c.open(1, &blob).expect("open"), creds());
        assert_ne!(c.seal(1, &creds()).expect("seal"), blob, "fresh nonce each time");
        assert!(!format!("{:?}", creds()).contains("tok-very-secret"));
    }

    #[test]
    fn a_blob_opens_only_for_its_own_integration() {
        let c = SecretCipher::from_key([7; 32]);
        let blob = c.seal(1, &creds()).expect("seal");
        let err = c.open(2, &blob).expect_err("copied onto integration 2");
        assert!(matches!(err, CryptoError::Open), "{err}");
        assert!(err.to_string().contains("another integration"), "{err}");
        assert_eq!(c.open(1, &blob).expect("its own integration"), creds());
    }

    #[test]
    fn legacy_blobs_are_refused_until_resealed_then_bound() {
        let old = seal_the_old_way([7; 32], &creds());
        assert!(is_legacy(&old));
        let c = SecretCipher::from_key([7; 32]);
        assert!(matches!(
            c.open(5, &old),
            Err(CryptoError::Legacy { integration_id: 5 })
        ));
        let new = c.reseal_legacy(5, &old).expect("reseal");
        assert!(!is_legacy(&new));
        assert_eq!(c.open(5, &new).expect("open"), creds());
        assert!(c.open(6, &new).is_err(), "bound to integration 5 now");
        assert!(
            SecretCipher::from_key([8; 32]).reseal_legacy(5, &old).is_err(),
            "a wrong key cannot reseal"
        );
    }

    #[test]
    fn wrong_key_or_damage_fails_clearly() {
        let blob = SecretCipher::from_key([7; 32]).seal(1, &creds()).expect("seal");
        let err = SecretCipher::from_key([8; 32])
            .open(1, &blob)
            .expect_err("wrong key");
        assert!(err.to_string().contains("SEAM_SECRET_KEY"), "{err}");
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(SecretCipher::from_key([7; 32]).open(1, &bad).is_err());
        assert!(SecretCipher::from_key([7; 32]).open(1, &[]).is_err());
        assert!(SecretCipher::from_key([7; 32]).open(1, &[2, 0]).is_err());
        assert!(SecretCipher::from_base64("c2hvcnQ=", "test").is_err());
    }
}
