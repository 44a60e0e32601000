-- gsp-gateway schema (SQLite). Keep in step with ../../postgres/ of the same name.
CREATE TABLE taxpayers (
    id                  TEXT PRIMARY KEY NOT NULL,
    gstin               TEXT NOT NULL UNIQUE,
    username            TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    password_changed_at TIMESTAMP NOT NULL,
    legal_name          TEXT NOT NULL,
    trade_name          TEXT,
    email               TEXT,
    mobile              TEXT,
    registration_status TEXT NOT NULL DEFAULT 'Active',
    failed_logins       INTEGER NOT NULL DEFAULT 0,
    locked_until        TIMESTAMP,
    created_at          TIMESTAMP NOT NULL
);

CREATE TABLE gsp_clients (
    client_id   TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE api_access (
    taxpayer_id    TEXT PRIMARY KEY NOT NULL REFERENCES taxpayers (id),
    enabled        BOOLEAN NOT NULL,
    duration_hours INTEGER,
    enabled_at     TIMESTAMP,
    expires_at     TIMESTAMP,
    updated_at     TIMESTAMP NOT NULL
);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    taxpayer_id     TEXT NOT NULL REFERENCES taxpayers (id),
    gsp_client_id   TEXT NOT NULL REFERENCES gsp_clients (client_id),
    channel         TEXT NOT NULL DEFAULT 'rest',
    created_at      TIMESTAMP NOT NULL,
    last_used_at    TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    revoked_at      TIMESTAMP,
    revoked_reason  TEXT,
    gstn_token_hash TEXT UNIQUE,
    gstn_app_key    TEXT,
    gstn_sek        TEXT
);
CREATE INDEX sessions_by_taxpayer ON sessions (taxpayer_id, gsp_client_id);

CREATE TABLE refresh_tokens (
    token_hash    TEXT PRIMARY KEY NOT NULL,
    session_id    TEXT NOT NULL REFERENCES sessions (id),
    gsp_client_id TEXT NOT NULL REFERENCES gsp_clients (client_id),
    issued_at     TIMESTAMP NOT NULL,
    used_at       TIMESTAMP
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE otp_challenges (
    id            TEXT PRIMARY KEY NOT NULL,
    taxpayer_id   TEXT NOT NULL REFERENCES taxpayers (id),
    gsp_client_id TEXT NOT NULL REFERENCES gsp_clients (client_id),
    code_hash     TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    expires_at    TIMESTAMP NOT NULL,
    attempts_left INTEGER NOT NULL,
    state         TEXT NOT NULL
);
CREATE INDEX otp_challenges_by_pair ON otp_challenges (taxpayer_id, gsp_client_id, created_at);

CREATE TABLE otp_inbox (
    challenge_id TEXT PRIMARY KEY NOT NULL REFERENCES otp_challenges (id),
    taxpayer_id  TEXT NOT NULL REFERENCES taxpayers (id),
    gsp_name     TEXT NOT NULL,
    code         TEXT NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL
);
CREATE INDEX otp_inbox_by_taxpayer ON otp_inbox (taxpayer_id);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY NOT NULL,
    purpose       TEXT NOT NULL,
    algorithm     TEXT NOT NULL,
    private_key   TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    retired_at    TIMESTAMP,
    publish_until TIMESTAMP
);

CREATE TABLE audit_events (
    id            BIGINT PRIMARY KEY NOT NULL,
    at            TIMESTAMP NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    gstin         TEXT,
    gsp_client_id TEXT,
    session_id    TEXT,
    ip            TEXT,
    request_id    TEXT,
    detail        TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_events_by_gstin ON audit_events (gstin, id);

-- The head of the audit hash chain. Every append locks this row first, which serialises appends,
-- keeps ids gapless and makes the event id a change feed other instances can poll.
CREATE TABLE audit_chain (
    id        INTEGER PRIMARY KEY NOT NULL,
    last_id   BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_chain (id, last_id, last_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
