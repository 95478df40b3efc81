//! Opening a connection the way several concurrent CLI processes need it (WAL, busy timeout,
//! foreign keys) and bringing its schema up to date with the embedded migrations.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};
use rusqlite_migration::{M, Migrations};

/// Append only: a released migration is never edited, a change is a new entry.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../migrations/0001_initial.sql")),
    M::up(include_str!("../migrations/0002_lease_holders.sql")),
    M::up(include_str!("../migrations/0003_pools.sql")),
];

/// Long enough to ride out another process's short write transaction, short enough that a
/// wedged process surfaces as an error instead of a hang.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

/// Sets the per-connection pragmas. Returns the journal mode SQLite actually chose.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<String> {
    // The busy timeout goes first: switching to WAL itself needs a lock another process may hold.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    // WAL makes a commit durable at the next checkpoint; losing the last moment of history on
    // power loss is acceptable for this state, corruption is not, and WAL rules that out.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(mode)
}

/// Applies pending migrations. Two processes opening a fresh store at once may both see it
/// unmigrated; the loser's attempt fails once the winner commits, and a second attempt then
/// finds nothing to do.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), rusqlite_migration::Error> {
    // Immediate, so the migration holds the write lock from its first read of the version.
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    let migrations = migrations();
    let result = migrations.to_latest(conn).or_else(|first| {
        tracing::debug!(error = %first, "migration raced another process; retrying");
        migrations.to_latest(conn)
    });
    conn.set_transaction_behavior(TransactionBehavior::Deferred);
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
