-- warren's PostgreSQL store, schema version 1: the SQLite store's schema (its version 3) in
-- PostgreSQL's types. Times are TIMESTAMPTZ (microseconds, UTC), counters BIGINT. Opaque JSON
-- (sync, outcome, error, event bodies) stays TEXT, as in SQLite: it round-trips byte for byte,
-- and JSONB would refuse a "\u0000" escape that an agent's output may contain.
--
-- Applied by refinery (history in `warren_schema_history`) under an advisory lock, so replicas
-- starting together migrate once. Never edit a released migration: add V2__..., V3__... instead.

CREATE TABLE sandboxes (
    id               TEXT PRIMARY KEY,
    -- Creation order, the tie-break for equal `created_at` (SQLite's rowid).
    created_order    BIGINT GENERATED ALWAYS AS IDENTITY,
    name             TEXT NOT NULL,
    repo             TEXT NOT NULL,
    provider         TEXT NOT NULL,
    state            TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    state_changed_at TIMESTAMPTZ NOT NULL,
    model            TEXT,
    prompt           TEXT,
    role             TEXT,
    session_id       TEXT,
    workspace        TEXT,
    sync_json        TEXT,
    outcome_json     TEXT,
    error_json       TEXT,
    branch           TEXT,
    tokens_input       BIGINT NOT NULL DEFAULT 0,
    tokens_output      BIGINT NOT NULL DEFAULT 0,
    tokens_reasoning   BIGINT NOT NULL DEFAULT 0,
    tokens_cache_read  BIGINT NOT NULL DEFAULT 0,
    tokens_cache_write BIGINT NOT NULL DEFAULT 0,
    cost             DOUBLE PRECISION NOT NULL DEFAULT 0,
    changed_files    BIGINT,
    exported_at      TIMESTAMPTZ,
    destroyed_at     TIMESTAMPTZ
);

-- A name belongs to at most one sandbox that is not destroyed; destroyed ones free it. This
-- index is what makes `create_sandbox`'s name check atomic.
CREATE UNIQUE INDEX sandboxes_live_name ON sandboxes (name) WHERE state <> 'destroyed';
CREATE INDEX sandboxes_name ON sandboxes (name, created_at);
CREATE INDEX sandboxes_created ON sandboxes (created_at, created_order);

-- Every state change, `seq` from 1 per sandbox without gaps.
CREATE TABLE transitions (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    reason     TEXT,
    PRIMARY KEY (sandbox_id, seq)
);

-- The append-only event stream, `seq` from 1 per sandbox without gaps.
CREATE TABLE events (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, seq)
);

-- At most one operation lease per sandbox, naming its holder (pid, its start time, host).
CREATE TABLE leases (
    sandbox_id     TEXT PRIMARY KEY REFERENCES sandboxes (id) ON DELETE CASCADE,
    holder         TEXT NOT NULL,
    operation      TEXT NOT NULL,
    acquired_at    TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    pid            BIGINT,
    pid_start_time BIGINT,
    host           TEXT
);

-- Runs waiting for a concurrency pool slot; `ticket` orders the queue within a pool.
CREATE TABLE pool_waiters (
    pool           TEXT NOT NULL,
    sandbox_id     TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    ticket         BIGINT NOT NULL,
    holder         TEXT NOT NULL,
    pid            BIGINT NOT NULL,
    pid_start_time BIGINT,
    host           TEXT NOT NULL,
    enqueued_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pool, sandbox_id)
);

CREATE UNIQUE INDEX pool_waiters_order ON pool_waiters (pool, ticket);

-- Runs holding a slot; a pool's row count is its current use.
CREATE TABLE pool_slots (
    pool           TEXT NOT NULL,
    sandbox_id     TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    holder         TEXT NOT NULL,
    pid            BIGINT NOT NULL,
    pid_start_time BIGINT,
    host           TEXT NOT NULL,
    acquired_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pool, sandbox_id)
);
