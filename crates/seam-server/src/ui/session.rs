//! The dashboard's sign-in: one admin account, sessions kept in the metastore, CSRF tokens.
//!
//! - The admin password is stored as an argon2id PHC string in the metastore setting
//!   [`ADMIN_PASSWORD_SETTING`], next to the API token hashes (with the default SQLite metastore that
//!   is `<data_dir>/metastore.sqlite`). It is created on first start ([`bootstrap_admin`]): taken from
//!   `SEAM_ADMIN_PASSWORD` when set (which also replaces a different stored one on every start), otherwise
//!   generated and returned once so the caller can print it.
//! - A session is a random 256-bit id in the cookie [`SESSION_COOKIE`] (`HttpOnly; SameSite=Strict`).
//!   Sessions live in the metastore, stored by the SHA-256 of their id (never the id itself): every
//!   `seam serve` sharing the metastore knows them, and a restart signs nobody out. A session ends
//!   after [`SESSION_IDLE`] without a request, at sign-out, and as soon as the stored admin password
//!   changes (`seam admin reset-password`, `SEAM_ADMIN_PASSWORD`): it keeps a fingerprint (SHA-256)
//!   of the password hash it signed in against, compared with the stored hash on every request.
//! - Every session has its own CSRF token; state-changing requests must echo it in the
//!   [`CSRF_HEADER`] header (or the `csrf_token` form field). The sign-in form, which has no session
//!   yet, uses a double-submit cookie ([`SIGNIN_COOKIE`]).

use argon2::password_hash::{Output, PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::http::header::COOKIE;
use axum::http::HeaderMap;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use seam_metastore::{DashboardSession, Metastore, MetastoreError};
use seam_runtime::clock::Clock;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The only account's user name.
pub const ADMIN_USERNAME: &str = "admin";
/// Environment variable that sets the admin password.
pub const ADMIN_PASSWORD_ENV: &str = "SEAM_ADMIN_PASSWORD";
/// Metastore setting holding the admin password's argon2 hash.
pub const ADMIN_PASSWORD_SETTING: &str = "ui_admin_password_argon2";
/// Session cookie.
pub const SESSION_COOKIE: &str = "seam_session";
/// Double-submit cookie of the sign-in form.
pub const SIGNIN_COOKIE: &str = "seam_signin";
/// Header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 60 * 60);
/// Shortest password `SEAM_ADMIN_PASSWORD` may set.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Setting up or checking the admin account failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The metastore failed.
    #[error(transparent)]
    Metastore(#[from] MetastoreError),
    /// The password could not be hashed.
    #[error("cannot hash the admin password: {0}")]
    Hash(String),
    /// `SEAM_ADMIN_PASSWORD` is too short.
    #[error("{ADMIN_PASSWORD_ENV} is too short: use at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
}

/// A random URL-safe token of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A password people can type: 20 characters from an alphabet without look-alikes (~115 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// argon2id hash (PHC string) of `password` with a random salt.
pub fn hash_password(password: &str) -> Result<String, AdminError> {
    let salt =
        SaltString::encode_b64(random_token(16).as_bytes()).map_err(|e| AdminError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AdminError::Hash(e.to_string()))
}

/// argon2 working memory kept between checks (at most [`KEPT_BUFFERS`] of them). A check needs
/// m_cost KiB (19 MiB with the defaults); allocating it afresh on whichever blocking thread runs the
/// check made the allocator keep a copy per thread: 64 parallel wrong sign-ins grew the process by
/// hundreds of megabytes. Reused buffers keep it at a few buffers' worth.
static BUFFERS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());
/// Buffers kept for reuse (as many as checks run at once by default, plus slack).
pub const KEPT_BUFFERS: usize = 4;

/// True when `password` matches the PHC string `hash` (argon2 with the parameters in the hash,
/// compared in constant time), with reused working memory.
pub fn verify_password(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed))
    else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    let taken = BUFFERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .pop();
    let mut memory = match taken {
        Some(m) if m.len() == blocks => m,
        _ => vec![Block::default(); blocks],
    };
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        &mut memory,
    );
    let mut kept = BUFFERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if kept.len() < KEPT_BUFFERS {
        kept.push(memory);
    }
    drop(kept);
    // `Output`'s equality is constant-time.
    computed.is_ok() && Output::new(&out).is_ok_and(|o| o == expected)
}

/// Sets the admin password (hashing it).
pub async fn set_admin_password(metastore: &dyn Metastore, password: &str) -> Result<(), AdminError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AdminError::TooShort);
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AdminError::Hash(e.to_string()))??;
    metastore.set_setting(ADMIN_PASSWORD_SETTING, &hash).await?;
    Ok(())
}

/// Sets up the admin account on first start. With `env_password` (the value of
/// `SEAM_ADMIN_PASSWORD`) that password is stored, replacing any other one, and `None` is returned;
/// a stored hash of that same password is kept, so starting (or restarting) a process with the
/// variable set ends no session. Without it, a stored password is kept (`None`); on first start a
/// password is generated, stored hashed and returned: the caller prints it once, it is never shown
/// again.
pub async fn bootstrap_admin(
    metastore: &dyn Metastore,
    env_password: Option<&str>,
) -> Result<Option<String>, AdminError> {
    if let Some(password) = env_password.filter(|p| !p.is_empty()) {
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(AdminError::TooShort);
        }
        if verify_sign_in(metastore, ADMIN_USERNAME, password)
            .await?
            .is_none()
        {
            set_admin_password(metastore, password).await?;
        }
        return Ok(None);
    }
    if metastore.get_setting(ADMIN_PASSWORD_SETTING).await?.is_some() {
        return Ok(None);
    }
    let password = generate_password();
    set_admin_password(metastore, &password).await?;
    Ok(Some(password))
}

/// Checks a sign-in against the stored hash (off the async runtime: argon2 is slow on purpose).
pub async fn check_sign_in(
    metastore: &dyn Metastore,
    username: &str,
    password: &str,
) -> Result<bool, AdminError> {
    Ok(verify_sign_in(metastore, username, password).await?.is_some())
}

/// [`check_sign_in`], returning the stored hash the password matched: a session remembers it and
/// ends when the password changes (`seam admin reset-password`).
pub async fn verify_sign_in(
    metastore: &dyn Metastore,
    username: &str,
    password: &str,
) -> Result<Option<String>, AdminError> {
    let Some(hash) = metastore.get_setting(ADMIN_PASSWORD_SETTING).await? else {
        return Ok(None);
    };
    let password = password.to_owned();
    let checked = hash.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&checked, &password))
        .await
        .map_err(|e| AdminError::Hash(e.to_string()))?;
    Ok((ok && username == ADMIN_USERNAME).then_some(hash))
}

/// A signed-in browser. `Debug` does not show the CSRF token.
#[derive(Clone)]
pub struct Session {
    /// The token state-changing requests must echo.
    pub csrf_token: String,
    /// Who signed in.
    pub username: String,
    /// [`password_fingerprint`] of the stored hash this session signed in against: a new password
    /// ends the session.
    password_fingerprint: String,
    last_seen: DateTime<Utc>,
}

impl Session {
    /// True while the stored password hash is still the one this session signed in against.
    pub fn password_unchanged(&self, stored_hash: Option<&str>) -> bool {
        stored_hash.is_some_and(|h| same_secret(&password_fingerprint(h), &self.password_fingerprint))
    }
}

impl From<DashboardSession> for Session {
    fn from(s: DashboardSession) -> Self {
        Session {
            csrf_token: s.csrf_token,
            username: s.username,
            password_fingerprint: s.password_fingerprint,
            last_seen: s.last_seen,
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("csrf_token", &"***")
            .field("username", &self.username)
            .field("last_seen", &self.last_seen)
            .finish()
    }
}

/// What a session keeps of the admin password hash it signed in against: its hex SHA-256 (the
/// sessions table holds no copy of the hash itself).
pub fn password_fingerprint(password_hash: &str) -> String {
    crate::auth::hash_token(password_hash)
}

/// The dashboard's sessions, kept in the metastore: every process sharing it knows every session.
/// Cheap to clone; `Debug` shows no session id (the cookies are never stored, only their hashes).
#[derive(Debug, Clone)]
pub struct Sessions {
    metastore: Arc<dyn Metastore>,
    clock: Arc<dyn Clock>,
}

impl Sessions {
    /// The sessions in `metastore`, timed by `clock`.
    pub fn new(metastore: Arc<dyn Metastore>, clock: Arc<dyn Clock>) -> Self {
        Sessions { metastore, clock }
    }

    /// Sessions last seen at or before this are over.
    fn idle_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(SESSION_IDLE)
            .ok()
            .and_then(|idle| now.checked_sub_signed(idle))
            // Unreachable for a 12-hour timeout; ending every session is the safe answer.
            .unwrap_or(now)
    }

    /// Starts a session for a sign-in checked against `password_hash`; returns its id (the cookie
    /// value). Only the id's hash is stored.
    pub async fn create(&self, username: &str, password_hash: &str) -> Result<String, MetastoreError> {
        let id = random_token(32);
        let now = self.clock.now();
        let session = DashboardSession {
            id_hash: crate::auth::hash_token(&id),
            csrf_token: random_token(32),
            username: username.to_owned(),
            password_fingerprint: password_fingerprint(password_hash),
            created_at: now,
            last_seen: now,
        };
        self.metastore
            .create_session(&session, Self::idle_cutoff(now))
            .await?;
        Ok(id)
    }

    /// The live session with this id, refreshing its idle timer.
    pub async fn get(&self, id: &str) -> Result<Option<Session>, MetastoreError> {
        let now = self.clock.now();
        let found = self
            .metastore
            .touch_session(&crate::auth::hash_token(id), now, Self::idle_cutoff(now))
            .await?;
        Ok(found.map(Session::from))
    }

    /// Ends a session.
    pub async fn remove(&self, id: &str) -> Result<(), MetastoreError> {
        self.metastore.delete_session(&crate::auth::hash_token(id)).await
    }

    /// The session of a request, from its cookie.
    pub async fn from_headers(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(String, Session)>, MetastoreError> {
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        Ok(self.get(&id).await?.map(|session| (id, session)))
    }
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, whole site; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_memory_verifies_like_the_reference() {
        use argon2::password_hash::PasswordVerifier as _;
        let a = hash_password("first password").expect("hash");
        let b = hash_password("second password").expect("hash");
        for _ in 0..3 {
            for (hash, right, wrong) in [
                (&a, "first password", "second password"),
                (&b, "second password", "first password"),
            ] {
                assert!(verify_password(hash, right));
                assert!(!verify_password(hash, wrong));
                let parsed = PasswordHash::new(hash).expect("phc");
                assert!(Argon2::default()
                    .verify_password(right.as_bytes(), &parsed)
                    .is_ok());
            }
        }
        let kept = BUFFERS.lock().expect("lock").len();
        assert!((1..=KEPT_BUFFERS).contains(&kept), "{kept}");
        // Other parameters than the default (an older hash): its own buffer size.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).expect("params"),
        )
        .hash_password(b"pw", &SaltString::encode_b64(b"0123456789abcdef").expect("salt"))
        .expect("hash")
        .to_string();
        assert!(verify_password(&small, "pw") && !verify_password(&small, "px"));
        assert!(verify_password(&a, "first password"), "after another size");
    }

    #[test]
    fn passwords_hash_and_verify() {
        let p = generate_password();
        assert_eq!(p.len(), 20);
        let h = hash_password(&p).expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, &p));
        assert!(!verify_password(&h, "wrong"));
        assert!(!verify_password("not a hash", &p));
    }

    #[test]
    fn cookies_parse_and_set() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; seam_session=abc; b=2".parse().expect("header"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let set = set_cookie(SESSION_COOKIE, "x", None);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    }

    /// Sessions in an in-memory metastore, timed by tokio's clock.
    fn sessions() -> (Sessions, Arc<dyn Metastore>) {
        let metastore: Arc<dyn Metastore> =
            Arc::new(seam_metastore::SqliteMetastore::open_in_memory().expect("in-memory metastore"));
        let clock: Arc<dyn Clock> = Arc::new(seam_runtime::clock::TokioClock::new());
        (Sessions::new(Arc::clone(&metastore), clock), metastore)
    }

    #[tokio::test]
    async fn debug_never_shows_session_ids_or_csrf_tokens() {
        let (s, _) = sessions();
        let id = s.create(ADMIN_USERNAME, "$argon2id$hash").await.expect("created");
        let session = s.get(&id).await.expect("read").expect("live");
        let shown = format!("{s:?} {session:?}");
        assert!(!shown.contains(&id), "{shown}");
        assert!(!shown.contains(&session.csrf_token), "{shown}");
        assert!(!shown.contains("argon2"), "{shown}");
        assert!(session.password_unchanged(Some("$argon2id$hash")));
        assert!(!session.password_unchanged(Some("$argon2id$other")));
        assert!(!session.password_unchanged(None));
    }

    #[tokio::test]
    async fn restarting_with_the_same_admin_password_keeps_sessions() {
        let (s, metastore) = sessions();
        let stored = || async {
            metastore
                .get_setting(ADMIN_PASSWORD_SETTING)
                .await
                .expect("read")
                .expect("set")
        };
        bootstrap_admin(metastore.as_ref(), Some("the first password"))
            .await
            .expect("set");
        let first = stored().await;
        let id = s.create(ADMIN_USERNAME, &first).await.expect("created");
        // Every start of every process with SEAM_ADMIN_PASSWORD set runs this again.
        bootstrap_admin(metastore.as_ref(), Some("the first password"))
            .await
            .expect("kept");
        assert_eq!(stored().await, first, "the same password keeps its hash");
        let session = s.get(&id).await.expect("read").expect("live");
        assert!(session.password_unchanged(Some(&stored().await)));
        bootstrap_admin(metastore.as_ref(), Some("another password"))
            .await
            .expect("replaced");
        assert!(!session.password_unchanged(Some(&stored().await)));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_and_end() {
        let (s, metastore) = sessions();
        let id = s.create(ADMIN_USERNAME, "h").await.expect("created");
        assert!(s.get(&id).await.expect("read").is_some());
        let (now, long_ago) = (s.clock.now(), DateTime::UNIX_EPOCH);
        let by_id = metastore.touch_session(&id, now, long_ago).await.expect("read");
        let by_hash = metastore
            .touch_session(&crate::auth::hash_token(&id), now, long_ago)
            .await
            .expect("read");
        assert!(
            by_id.is_none() && by_hash.is_some(),
            "the metastore knows the session by its id's hash only"
        );
        s.remove(&id).await.expect("removed");
        assert!(s.get(&id).await.expect("read").is_none());
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));

        let id = s.create(ADMIN_USERNAME, "h").await.expect("created");
        tokio::time::advance(SESSION_IDLE - Duration::from_secs(1)).await;
        assert!(
            s.get(&id).await.expect("read").is_some(),
            "a request keeps it alive"
        );
        tokio::time::advance(SESSION_IDLE - Duration::from_secs(1)).await;
        assert!(s.get(&id).await.expect("read").is_some());
        tokio::time::advance(SESSION_IDLE).await;
        assert!(s.get(&id).await.expect("read").is_none(), "idle too long");
    }
}
