-- warren store, schema version 4: the server's API tokens and the owner of each sandbox.
-- Only the hash of a token's secret is kept. A sandbox without an owner (made by the CLI) is
-- visible to admin tokens only.

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    admin      INTEGER NOT NULL DEFAULT 0,
    hash       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

ALTER TABLE sandboxes ADD COLUMN owner TEXT;
CREATE INDEX sandboxes_owner ON sandboxes (owner);
