-- warren store, schema version 3: concurrency pools. A pool limits how many agent runs use one
-- model backend at once; runs beyond the limit queue, first come first served, across processes.
-- Both tables name the process behind each row (pid, its start time, host) exactly as leases do,
-- so a row whose process died can be recognised and removed instead of blocking the pool forever.

-- Runs waiting for a slot. `ticket` orders the queue within a pool: a newcomer gets one more than
-- the largest ticket waiting, so it queues behind everyone already there.
CREATE TABLE pool_waiters (
    pool           TEXT NOT NULL,
    sandbox_id     TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    ticket         INTEGER NOT NULL,
    holder         TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    pid_start_time INTEGER,
    host           TEXT NOT NULL,
    enqueued_at    TEXT NOT NULL,
    PRIMARY KEY (pool, sandbox_id)
) WITHOUT ROWID;

CREATE UNIQUE INDEX pool_waiters_order ON pool_waiters (pool, ticket);

-- Runs holding a slot; a pool's row count is its current use.
CREATE TABLE pool_slots (
    pool           TEXT NOT NULL,
    sandbox_id     TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    holder         TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    pid_start_time INTEGER,
    host           TEXT NOT NULL,
    acquired_at    TEXT NOT NULL,
    PRIMARY KEY (pool, sandbox_id)
) WITHOUT ROWID;
