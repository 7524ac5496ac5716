-- seam metastore, PostgreSQL. Same layout as the SQLite one; times are RFC 3339 UTC text with
-- microseconds ("...Z"), so they sort as text and both backends share one representation.
CREATE TABLE integrations (
    id BIGSERIAL PRIMARY KEY,
    display_name TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    properties TEXT NOT NULL,
    sealed_credentials BYTEA NOT NULL,
    paused_at TEXT,
    deleted_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    catalog TEXT,
    state TEXT
);
CREATE UNIQUE INDEX integrations_live_name ON integrations(name) WHERE deleted_at IS NULL;

CREATE TABLE connection_checks (
    id BIGSERIAL PRIMARY KEY,
    integration_id BIGINT NOT NULL REFERENCES integrations(id),
    status TEXT NOT NULL,
    start_time TEXT NOT NULL,
    completion_time TEXT,
    check_exit_status INTEGER,
    check_error_message TEXT,
    discovery_exit_status INTEGER,
    discovery_error_message TEXT
);
CREATE INDEX connection_checks_by_integration ON connection_checks(integration_id, id);

CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    integration_id BIGINT NOT NULL REFERENCES integrations(id),
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time TEXT NOT NULL,
    completion_time TEXT,
    discovery_exit_status INTEGER,
    tap_exit_status INTEGER,
    target_exit_status INTEGER,
    error_message TEXT,
    rows_loaded BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_integration ON jobs(integration_id, id);

CREATE TABLE job_logs (
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    seq BIGINT NOT NULL,
    at TEXT NOT NULL,
    location TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE table_loads (
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    integration_id BIGINT NOT NULL REFERENCES integrations(id),
    table_name TEXT NOT NULL,
    rows BIGINT NOT NULL,
    last_batch_loaded_at TEXT,
    max_bookmark TEXT,
    error TEXT,
    PRIMARY KEY (job_id, table_name)
);
CREATE INDEX table_loads_by_integration ON table_loads(integration_id, job_id);

CREATE TABLE usage_daily (
    integration_id BIGINT NOT NULL REFERENCES integrations(id),
    day TEXT NOT NULL,
    table_name TEXT NOT NULL,
    rows BIGINT NOT NULL,
    PRIMARY KEY (integration_id, day, table_name)
);
CREATE INDEX usage_daily_by_day ON usage_daily(day);

CREATE TABLE notifications (
    id BIGSERIAL PRIMARY KEY,
    level TEXT NOT NULL,
    code TEXT NOT NULL,
    integration_id BIGINT,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TEXT NOT NULL,
    dismissed_at TEXT
);

CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
