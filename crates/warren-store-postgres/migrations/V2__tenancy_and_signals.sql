-- warren's PostgreSQL store, schema version 2: what a server adds (the SQLite store's version 4)
-- and the signal other replicas wait on.
--
-- API tokens keep only the SHA-256 of their secret. A sandbox without an owner (made by the CLI)
-- is visible to admin tokens only; the owner is set once and kept.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    -- Creation order, the tie-break for equal `created_at`.
    created_order BIGINT GENERATED ALWAYS AS IDENTITY,
    owner      TEXT NOT NULL,
    admin      BOOLEAN NOT NULL DEFAULT FALSE,
    hash       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

ALTER TABLE sandboxes ADD COLUMN owner TEXT;
CREATE INDEX sandboxes_owner ON sandboxes (owner);

-- Every appended event is announced on the channel `warren_events` with its sandbox's id as the
-- payload, delivered when the appending transaction commits. A replica streaming that sandbox's
-- events to a client (LISTENing on the channel) reads the store at once instead of at its next
-- poll. A trigger, so every writer announces, whatever its code.
CREATE FUNCTION warren_announce_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('warren_events', NEW.sandbox_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_announce AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION warren_announce_event();
