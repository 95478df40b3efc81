-- warren store, schema version 1. Timestamps are fixed-width RFC 3339 UTC text.

CREATE TABLE sandboxes (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    repo             TEXT NOT NULL,
    provider         TEXT NOT NULL,
    state            TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    state_changed_at TEXT NOT NULL,
    model            TEXT,
    prompt           TEXT,
    role             TEXT,
    session_id       TEXT,
    workspace        TEXT,
    sync_json        TEXT,
    outcome_json     TEXT,
    error_json       TEXT,
    branch           TEXT,
    tokens_input       INTEGER NOT NULL DEFAULT 0,
    tokens_output      INTEGER NOT NULL DEFAULT 0,
    tokens_reasoning   INTEGER NOT NULL DEFAULT 0,
    tokens_cache_read  INTEGER NOT NULL DEFAULT 0,
    tokens_cache_write INTEGER NOT NULL DEFAULT 0,
    cost             REAL NOT NULL DEFAULT 0,
    changed_files    INTEGER,
    exported_at      TEXT,
    destroyed_at     TEXT
);

-- A name belongs to at most one sandbox that is not destroyed; destroyed ones free it.
CREATE UNIQUE INDEX sandboxes_live_name ON sandboxes (name) WHERE state != 'destroyed';
CREATE INDEX sandboxes_name ON sandboxes (name, created_at);
CREATE INDEX sandboxes_created ON sandboxes (created_at);

CREATE TABLE transitions (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    at         TEXT NOT NULL,
    reason     TEXT,
    PRIMARY KEY (sandbox_id, seq)
) WITHOUT ROWID;

CREATE TABLE events (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, seq)
) WITHOUT ROWID;

CREATE TABLE leases (
    sandbox_id  TEXT PRIMARY KEY NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    holder      TEXT NOT NULL,
    operation   TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
