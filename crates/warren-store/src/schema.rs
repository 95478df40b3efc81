//! Opening a connection the way several concurrent CLI processes need it (WAL, busy timeout,
//! foreign keys) and bringing its schema up to date with the embedded migrations.

use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use rusqlite_migration::{M, Migrations};

/// Append only: a released migration is never edited, a change is a new entry.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../migrations/0001_initial.sql")),
    M::up(include_str!("../migrations/0002_lease_holders.sql")),
    M::up(include_str!("../migrations/0003_pools.sql")),
    M::up(include_str!("../migrations/0004_tenancy.sql")),
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
    let mode = switch_to_wal(conn)?;
    // WAL makes a commit durable at the next checkpoint; losing the last moment of history on
    // power loss is acceptable for this state, corruption is not, and WAL rules that out.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(mode)
}

/// Switches a fresh database to WAL. The switch needs an exclusive lock, and SQLite answers
/// `SQLITE_BUSY` at once, without calling the busy handler, when it would deadlock against
/// another connection doing the same (several processes opening a new store together). So the
/// switch is retried here, for as long as the busy timeout.
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(err) if is_busy(&err) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
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
