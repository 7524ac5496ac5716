-- The dashboard's sessions and sign-in throttle live in the metastore, so several `seam serve`
-- processes sharing it serve the same browsers and a restart signs nobody out.
-- A session is stored by the SHA-256 of its id (the cookie value itself is never stored), with its
-- CSRF token and the SHA-256 of the admin password hash it signed in against (a new password ends it).
CREATE TABLE ui_sessions (
    id_hash TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    username TEXT NOT NULL,
    password_fingerprint TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE INDEX ui_sessions_last_seen ON ui_sessions(last_seen);
-- Sign-in throttling: a token bucket per client ('client/<address>') and one for all clients
-- ('overall'), each stored as the time it is full again. A row whose time has passed is a full bucket,
-- the same as no row.
CREATE TABLE ui_sign_in_buckets (
    bucket TEXT PRIMARY KEY,
    full_at TEXT NOT NULL
);
CREATE INDEX ui_sign_in_buckets_full_at ON ui_sign_in_buckets(full_at);
