-- warren store, schema version 2: who holds a lease, precisely enough to tell a dead holder from a
-- live one. The holder text alone is not enough: a pid can be reused after its process exits,
-- so the process start time (field 22 of /proc/<pid>/stat) is kept next to it, and the host,
-- because a pid only means something on the machine that issued it.

ALTER TABLE leases ADD COLUMN pid INTEGER;
ALTER TABLE leases ADD COLUMN pid_start_time INTEGER;
ALTER TABLE leases ADD COLUMN host TEXT;
