//! The SQLite [`SqliteStore`]: opening the database, creating and finding sandboxes, the one
//! function that changes a sandbox's lifecycle state.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use time::OffsetDateTime;
use warren_domain::{SandboxId, SandboxName, SandboxState};

use crate::clock;
use crate::error::{Cause, StoreError, failed};
use crate::liveness::{Liveness, ProcessLiveness};
use crate::record::{
    NewSandbox, RawSandbox, SANDBOX_COLUMNS, SandboxRecord, TransitionRecord, parse_state, to_u64,
};
use crate::schema;

/// warren's state in one SQLite file. `Send + Sync`: the connection sits behind a mutex
/// taken for each call (one statement, or one whole transaction), so threads sharing a handle
/// take turns; threads or processes wanting to overlap open their own [`Store::open`] on the
/// same file, and SQLite's locks order them. Holders are judged by [`ProcessLiveness`] unless
/// [`SqliteStore::with_liveness`] says otherwise.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    pub(crate) path: PathBuf,
    pub(crate) liveness: Arc<dyn Liveness>,
}

/// The name callers have always used for the SQLite store.
pub type Store = SqliteStore;

// Checked at compile time: the engine's futures hold `&Store` across awaits, and a server must be
// able to spawn them on a multi-threaded runtime.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
};

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("liveness", &self.liveness)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(failed(path, "creating the data directory"))?;
        }
        let conn = Connection::open(path).map_err(failed(path, "opening the database"))?;
        let mode = schema::configure(&conn).map_err(failed(path, "configuring the database"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some filesystems (network mounts) refuse WAL; SQLite then keeps its rollback
            // journal, which is still correct, only slower under concurrent readers.
            tracing::warn!(path = %path.display(), mode, "SQLite refused WAL journal mode");
        }
        Self::migrated(conn, path.to_path_buf())
    }

    /// A private database that vanishes with the handle; for tests.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(failed(&path, "opening the database"))?;
        schema::configure(&conn).map_err(failed(&path, "configuring the database"))?;
        Self::migrated(conn, path)
    }

    fn migrated(mut conn: Connection, path: PathBuf) -> Result<SqliteStore, StoreError> {
        schema::migrate(&mut conn).map_err(failed(&path, "migrating the schema"))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path,
            liveness: Arc::new(ProcessLiveness),
        })
    }

    /// Judges lease and pool holders by `liveness` from now on (the default is
    /// [`ProcessLiveness`]; [`TtlLiveness`](crate::TtlLiveness) for holders on several hosts).
    pub fn with_liveness(mut self, liveness: Arc<dyn Liveness>) -> SqliteStore {
        self.liveness = liveness;
        self
    }

    /// The connection, for one call. A panic while it was held (a bug, not a database state)
    /// leaves nothing half-done: an open transaction rolls back as it unwinds, so a poisoned
    /// lock is taken over rather than turned into an error for every later call.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The database file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Begins a transaction that takes the write lock up front. Any read-then-write must use
    /// this: a deferred transaction that upgrades to writing fails at once with `SQLITE_BUSY`
    /// when another process wrote in between, instead of waiting out the busy timeout.
    /// The caller holds the connection's lock (`self.conn()`) for the transaction's lifetime.
    pub(crate) fn immediate<'c>(
        &self,
        conn: &'c Connection,
        operation: &str,
    ) -> Result<Transaction<'c>, StoreError> {
        Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(failed(&self.path, operation))
    }

    pub(crate) fn fail<'a, E: Into<Cause>>(
        &'a self,
        operation: &'a str,
    ) -> impl FnOnce(E) -> StoreError + 'a {
        failed(&self.path, operation)
    }

    pub(crate) fn now_text(&self, operation: &str) -> Result<(OffsetDateTime, String), StoreError> {
        let now = clock::now();
        let text = clock::format(now).map_err(self.fail(operation))?;
        Ok((now, text))
    }

    /// Records a new sandbox in state `new`.
    pub(crate) fn create_sandbox(&self, new: NewSandbox) -> Result<SandboxRecord, StoreError> {
        const OP: &str = "recording a new sandbox";
        let repo = path_text(&new.repo).map_err(self.fail(OP))?;
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        // Stamped under the write lock so time order matches commit order.
        let (_, now) = self.now_text(OP)?;
        // Checked inside the write transaction so the answer cannot go stale before the insert;
        // the partial unique index stays as the last line of defence.
        let taken = tx
            .query_row(
                "SELECT 1 FROM sandboxes WHERE name = ?1 AND state != 'destroyed'",
                [new.name.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map_err(self.fail(OP))?
            .is_some();
        if taken {
            return Err(StoreError::NameTaken { name: new.name });
        }
        tx.execute(
            "INSERT INTO sandboxes (id, name, repo, provider, state, created_at, updated_at, \
             state_changed_at, model, prompt, role) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?7, ?8, ?9)",
            params![
                new.id.as_str(),
                new.name.as_str(),
                repo,
                new.provider,
                SandboxState::New.as_str(),
                now,
                new.model,
                new.prompt,
                new.role,
            ],
        )
        .map_err(self.fail(OP))?;
        // Read back inside the transaction: the lock is already held, and the row is exactly
        // what was committed.
        let record = self.get_with(&tx, &new.id)?;
        tx.commit().map_err(self.fail(OP))?;
        Ok(record)
    }

    pub(crate) fn get(&self, id: &SandboxId) -> Result<SandboxRecord, StoreError> {
        self.get_with(&self.conn(), id)
    }

    pub(crate) fn get_with(
        &self,
        conn: &Connection,
        id: &SandboxId,
    ) -> Result<SandboxRecord, StoreError> {
        const OP: &str = "reading a sandbox";
        let sql = format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = ?1");
        let raw = conn
            .query_row(&sql, [id.as_str()], RawSandbox::from_row)
            .optional()
            .map_err(self.fail(OP))?
            .ok_or_else(|| StoreError::NotFound {
                sandbox: id.to_string(),
            })?;
        raw.into_record().map_err(self.fail(OP))
    }

    /// The sandbox using `name`: the live one, or else the most recently created destroyed one.
    pub(crate) fn get_by_name(&self, name: &SandboxName) -> Result<SandboxRecord, StoreError> {
        const OP: &str = "reading a sandbox by name";
        let sql = format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE name = ?1 \
             ORDER BY state = 'destroyed', created_at DESC, rowid DESC LIMIT 1"
        );
        let raw = self
            .conn()
            .query_row(&sql, [name.as_str()], RawSandbox::from_row)
            .optional()
            .map_err(self.fail(OP))?
            .ok_or_else(|| StoreError::NotFound {
                sandbox: name.to_string(),
            })?;
        raw.into_record().map_err(self.fail(OP))
    }

    /// All sandboxes, newest first; destroyed ones only when asked.
    pub(crate) fn list(&self, include_destroyed: bool) -> Result<Vec<SandboxRecord>, StoreError> {
        const OP: &str = "listing sandboxes";
        let filter = if include_destroyed {
            ""
        } else {
            "WHERE state != 'destroyed'"
        };
        let sql = format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes {filter} ORDER BY created_at DESC, rowid DESC"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(self.fail(OP))?;
        let raws = stmt
            .query_map([], RawSandbox::from_row)
            .map_err(self.fail(OP))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.fail(OP))?;
        raws.into_iter()
            .map(|raw| raw.into_record().map_err(self.fail(OP)))
            .collect()
    }

    /// Moves a sandbox to `to` if the lifecycle table allows it, and logs the change. This is the
    /// only code in warren that writes a sandbox's state.
    pub(crate) fn transition(
        &self,
        id: &SandboxId,
        to: SandboxState,
        reason: Option<&str>,
    ) -> Result<SandboxRecord, StoreError> {
        const OP: &str = "changing a sandbox's state";
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        let record = self.transition_in(&tx, id, to, reason)?;
        tx.commit().map_err(self.fail(OP))?;
        Ok(record)
    }

    /// [`Store::transition`] inside the caller's write transaction.
    pub(crate) fn transition_in(
        &self,
        tx: &Transaction<'_>,
        id: &SandboxId,
        to: SandboxState,
        reason: Option<&str>,
    ) -> Result<SandboxRecord, StoreError> {
        const OP: &str = "changing a sandbox's state";
        // Stamped under the write lock so time order matches commit order.
        let (_, now) = self.now_text(OP)?;
        let from: String = tx
            .query_row(
                "SELECT state FROM sandboxes WHERE id = ?1",
                [id.as_str()],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.fail(OP))?
            .ok_or_else(|| StoreError::NotFound {
                sandbox: id.to_string(),
            })?;
        let from = parse_state(&from).map_err(self.fail(OP))?;
        let to = from
            .transition(to)
            .map_err(|e| StoreError::InvalidTransition {
                from: e.from,
                to: e.to,
            })?;
        let destroyed_at = (to == SandboxState::Destroyed).then_some(now.as_str());
        tx.execute(
            "UPDATE sandboxes SET state = ?2, state_changed_at = ?3, updated_at = ?3, \
             destroyed_at = COALESCE(?4, destroyed_at) WHERE id = ?1",
            params![id.as_str(), to.as_str(), now, destroyed_at],
        )
        .map_err(self.fail(OP))?;
        tx.execute(
            "INSERT INTO transitions (sandbox_id, seq, from_state, to_state, at, reason) \
             SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5 FROM transitions \
             WHERE sandbox_id = ?1",
            params![id.as_str(), from.as_str(), to.as_str(), now, reason],
        )
        .map_err(self.fail(OP))?;
        let record = self.get_with(tx, id)?;
        tracing::debug!(sandbox = %record.name, %from, %to, reason, "sandbox state changed");
        Ok(record)
    }

    /// The lifecycle audit log of one sandbox, oldest first.
    pub(crate) fn transitions(&self, id: &SandboxId) -> Result<Vec<TransitionRecord>, StoreError> {
        const OP: &str = "reading a sandbox's state history";
        let conn = self.conn();
        self.require(&conn, id, OP)?;
        let mut stmt = conn
            .prepare(
                "SELECT seq, from_state, to_state, at, reason FROM transitions \
                 WHERE sandbox_id = ?1 ORDER BY seq",
            )
            .map_err(self.fail(OP))?;
        let rows = stmt
            .query_map([id.as_str()], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })
            .map_err(self.fail(OP))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.fail(OP))?;
        rows.into_iter()
            .map(|(seq, from, to, at, reason)| {
                let parsed = (|| -> Result<TransitionRecord, Cause> {
                    Ok(TransitionRecord {
                        seq: to_u64(seq),
                        from: parse_state(&from)?,
                        to: parse_state(&to)?,
                        at: clock::parse(&at)?,
                        reason,
                    })
                })();
                parsed.map_err(self.fail(OP))
            })
            .collect()
    }

    /// The sandbox's name, or `NotFound`; also how readers tell "no rows" from "no sandbox".
    pub(crate) fn require(
        &self,
        conn: &Connection,
        id: &SandboxId,
        operation: &str,
    ) -> Result<String, StoreError> {
        conn.query_row(
            "SELECT name FROM sandboxes WHERE id = ?1",
            [id.as_str()],
            |row| row.get(0),
        )
        .optional()
        .map_err(self.fail(operation))?
        .ok_or_else(|| StoreError::NotFound {
            sandbox: id.to_string(),
        })
    }
}

/// Paths are stored as text so the database stays readable with ordinary tools; a path that is
/// not UTF-8 cannot be stored faithfully, so it is refused rather than mangled.
pub(crate) fn path_text(path: &Path) -> Result<&str, Cause> {
    path.to_str()
        .ok_or_else(|| format!("path {} is not valid UTF-8", path.display()).into())
}
