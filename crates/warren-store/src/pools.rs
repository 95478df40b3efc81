//! Concurrency pools: named limits on how many agent runs use one model backend at once (a
//! single-slot local model server, say). Runs beyond the limit queue and start in the order they
//! asked, even when they live in different warren processes, because the queue is in the store
//! and every decision is made inside one IMMEDIATE transaction.
//!
//! Slots and queue places belong to a sandbox and record the process working for it, exactly as
//! leases do (pid, start time, host). Nothing expires on a timer: a row goes away when it is
//! released or when its process is found dead, which every call checks before it decides.

use rusqlite::{Transaction, params};
use serde::Serialize;
use time::OffsetDateTime;
use warren_domain::SandboxId;

use crate::clock;
use crate::error::{Cause, StoreError};
use crate::holder::{self, LeaseHolder};
use crate::liveness::{Liveness, RecordedHolder, RecordedLease};
use crate::record::{to_i64, to_u64};
use crate::store::SqliteStore;

/// The answer to [`StateStore::pool_try_acquire`](crate::StateStore::pool_try_acquire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PoolTry {
    /// The sandbox holds a slot until [`StateStore::pool_release`](crate::StateStore::pool_release) (or its holder is found dead).
    Granted,
    /// The sandbox is queued. `position` 1 is next in line; `holders` are the names of the
    /// sandboxes holding the pool's slots, oldest first, so a waiting run can say what it waits for.
    Waiting {
        position: usize,
        holders: Vec<String>,
    },
}

/// The two tables of a pool, which record their processes the same way.
#[derive(Debug, Clone, Copy)]
enum Table {
    Waiters,
    Slots,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Waiters => "pool_waiters",
            Table::Slots => "pool_slots",
        }
    }
}

/// The identity columns of a waiter or slot row, with the sandbox's lease beside it: enough for
/// a [`Liveness`] policy to judge whether the row still counts.
struct Owner {
    sandbox_id: String,
    holder: String,
    pid: i64,
    pid_start_time: Option<i64>,
    host: String,
    /// The sandbox's lease, if it has one.
    lease: Option<LeaseColumns>,
}

/// The columns of the sandbox's lease a policy may judge a pool row by.
struct LeaseColumns {
    holder: String,
    pid: Option<i64>,
    pid_start_time: Option<i64>,
    host: Option<String>,
    expires_at: String,
}

impl Owner {
    fn is_live(&self, liveness: &dyn Liveness, now: OffsetDateTime) -> Result<bool, Cause> {
        // A pid no process can have was not written by warren; it must not block the pool.
        let Ok(pid) = u32::try_from(self.pid) else {
            return Ok(false);
        };
        let entry = RecordedHolder {
            name: &self.holder,
            pid: Some(pid),
            start_time: self.pid_start_time.map_or(0, to_u64),
            host: Some(&self.host),
        };
        let lease = match &self.lease {
            Some(lease) => Some(RecordedLease {
                holder: RecordedHolder {
                    name: &lease.holder,
                    pid: lease.pid.and_then(|pid| u32::try_from(pid).ok()),
                    start_time: lease.pid_start_time.map_or(0, to_u64),
                    host: lease.host.as_deref(),
                },
                expires_at: clock::parse(&lease.expires_at)?,
            }),
            None => None,
        };
        Ok(liveness.pool_entry_is_live(&entry, lease.as_ref(), now))
    }
}

impl SqliteStore {
    /// Asks for one of `pool`'s `max` slots for sandbox `id`, on behalf of `who`. Call it again
    /// (polling) until it answers `Granted`; each call is one IMMEDIATE transaction.
    ///
    /// - Rows whose process died are removed first, so a crashed run never blocks the pool.
    /// - The sandbox joins the queue if it is not in it, behind everyone already waiting; if it
    ///   is, it keeps its place (calling again is idempotent), and a sandbox already holding a
    ///   slot stays `Granted`.
    /// - It takes a slot when one is free for it: with `free = max - held` slots open, the first
    ///   `free` waiters in ticket order may take one, in whatever order they happen to call. No
    ///   waiter ever takes a slot an earlier waiter needs, so with `max = 1` runs start strictly
    ///   in the order they asked.
    /// - The row records `who` as the process working for the sandbox; a later call from another
    ///   process for the same sandbox (the sandbox's lease makes that a hand-over, not a second
    ///   run) takes the row over, keeping the place or the slot.
    ///
    /// `max = 0` is treated as 1: a pool that admits nothing would queue runs forever, and the
    /// configuration already rejects 0, so a 0 here is a caller's slip, not an intent.
    pub(crate) fn pool_try_acquire_as(
        &self,
        pool: &str,
        id: &SandboxId,
        max: u32,
        who: &LeaseHolder,
    ) -> Result<PoolTry, StoreError> {
        const OP: &str = "asking for a concurrency pool slot";
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        // Stamped under the write lock, so time order matches the order decisions were made in.
        let (_, now) = self.now_text(OP)?;
        let sandbox = self.require(&tx, id, OP)?;
        self.prune_pool(&tx, pool, OP)?;
        // 0 is "unknown"; NULL says so in the table too.
        let start_time = (who.start_time != 0).then(|| to_i64(who.start_time));
        let owner = params![
            pool,
            id.as_str(),
            who.name,
            who.pid,
            start_time,
            holder::hostname(),
            now,
        ];

        let holding = tx
            .execute(
                "UPDATE pool_slots SET holder = ?3, pid = ?4, pid_start_time = ?5, host = ?6 \
                 WHERE pool = ?1 AND sandbox_id = ?2",
                &owner[..6],
            )
            .map_err(self.fail(OP))?;
        if holding > 0 {
            tx.commit().map_err(self.fail(OP))?;
            return Ok(PoolTry::Granted);
        }

        // Joins the queue behind everyone waiting, or keeps the ticket it already has. The WHERE
        // clause also keeps SQLite from reading ON CONFLICT as part of the SELECT.
        tx.execute(
            "INSERT INTO pool_waiters (pool, sandbox_id, ticket, holder, pid, pid_start_time, \
             host, enqueued_at) \
             SELECT ?1, ?2, COALESCE(MAX(ticket), 0) + 1, ?3, ?4, ?5, ?6, ?7 FROM pool_waiters \
             WHERE pool = ?1 \
             ON CONFLICT (pool, sandbox_id) DO UPDATE SET holder = excluded.holder, \
             pid = excluded.pid, pid_start_time = excluded.pid_start_time, host = excluded.host",
            owner,
        )
        .map_err(self.fail(OP))?;
        let position: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM pool_waiters WHERE pool = ?1 AND ticket <= \
                 (SELECT ticket FROM pool_waiters WHERE pool = ?1 AND sandbox_id = ?2)",
                params![pool, id.as_str()],
                |row| row.get(0),
            )
            .map_err(self.fail(OP))?;
        let held: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM pool_slots WHERE pool = ?1",
                [pool],
                |row| row.get(0),
            )
            .map_err(self.fail(OP))?;
        let free = i64::from(max.max(1)) - held;

        if position <= free {
            tx.execute(
                "DELETE FROM pool_waiters WHERE pool = ?1 AND sandbox_id = ?2",
                params![pool, id.as_str()],
            )
            .map_err(self.fail(OP))?;
            tx.execute(
                "INSERT INTO pool_slots (pool, sandbox_id, holder, pid, pid_start_time, host, \
                 acquired_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                owner,
            )
            .map_err(self.fail(OP))?;
            tx.commit().map_err(self.fail(OP))?;
            tracing::debug!(pool, %sandbox, held = held + 1, max, "took a pool slot");
            return Ok(PoolTry::Granted);
        }

        let holders = {
            let mut stmt = tx
                .prepare(
                    "SELECT s.name FROM pool_slots p JOIN sandboxes s ON s.id = p.sandbox_id \
                     WHERE p.pool = ?1 ORDER BY p.acquired_at, p.sandbox_id",
                )
                .map_err(self.fail(OP))?;
            stmt.query_map([pool], |row| row.get::<_, String>(0))
                .map_err(self.fail(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(self.fail(OP))?
        };
        tx.commit().map_err(self.fail(OP))?;
        Ok(PoolTry::Waiting {
            position: usize::try_from(position).unwrap_or(usize::MAX),
            holders,
        })
    }

    /// Gives up sandbox `id`'s slot in `pool` and its place in the queue, whichever it has.
    /// Doing so when it has neither is a no-op, so a run can release on every exit path.
    pub(crate) fn pool_release(&self, pool: &str, id: &SandboxId) -> Result<(), StoreError> {
        const OP: &str = "releasing a concurrency pool slot";
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        for table in [Table::Slots, Table::Waiters] {
            tx.execute(
                &format!(
                    "DELETE FROM {} WHERE pool = ?1 AND sandbox_id = ?2",
                    table.name()
                ),
                params![pool, id.as_str()],
            )
            .map_err(self.fail(OP))?;
        }
        tx.commit().map_err(self.fail(OP))
    }

    /// Who uses `pool` now: the sandboxes holding its slots (oldest first) and those waiting, in
    /// queue order. Rows whose process died are removed first, so neither list shows them.
    pub(crate) fn pool_usage(
        &self,
        pool: &str,
    ) -> Result<(Vec<SandboxId>, Vec<SandboxId>), StoreError> {
        const OP: &str = "reading a concurrency pool's use";
        // Immediate rather than read-only: it prunes, and both lists then come from one moment.
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        self.prune_pool(&tx, pool, OP)?;
        let holding = self.pool_ids(
            &tx,
            "SELECT sandbox_id FROM pool_slots WHERE pool = ?1 ORDER BY acquired_at, sandbox_id",
            pool,
            OP,
        )?;
        let waiting = self.pool_ids(
            &tx,
            "SELECT sandbox_id FROM pool_waiters WHERE pool = ?1 ORDER BY ticket",
            pool,
            OP,
        )?;
        tx.commit().map_err(self.fail(OP))?;
        Ok((holding, waiting))
    }

    fn pool_ids(
        &self,
        tx: &Transaction<'_>,
        sql: &str,
        pool: &str,
        operation: &str,
    ) -> Result<Vec<SandboxId>, StoreError> {
        let mut stmt = tx.prepare(sql).map_err(self.fail(operation))?;
        let ids = stmt
            .query_map([pool], |row| row.get::<_, String>(0))
            .map_err(self.fail(operation))?
            .map(|id| id.map(SandboxId::from_stored))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.fail(operation))?;
        Ok(ids)
    }

    /// Deletes `pool`'s waiters and slot holders the liveness policy finds dead. Runs inside the caller's
    /// transaction, so the decision that follows sees the pool without them.
    fn prune_pool(
        &self,
        tx: &Transaction<'_>,
        pool: &str,
        operation: &str,
    ) -> Result<(), StoreError> {
        for table in [Table::Waiters, Table::Slots] {
            let owners = {
                let mut stmt = tx
                    .prepare(&format!(
                        "SELECT p.sandbox_id, p.holder, p.pid, p.pid_start_time, p.host, \
                         l.holder, l.pid, l.pid_start_time, l.host, l.expires_at FROM {} p \
                         LEFT JOIN leases l ON l.sandbox_id = p.sandbox_id WHERE p.pool = ?1",
                        table.name()
                    ))
                    .map_err(self.fail(operation))?;
                stmt.query_map([pool], |row| {
                    Ok(Owner {
                        sandbox_id: row.get(0)?,
                        holder: row.get(1)?,
                        pid: row.get(2)?,
                        pid_start_time: row.get(3)?,
                        host: row.get(4)?,
                        lease: match (row.get(5)?, row.get(9)?) {
                            (Some(holder), Some(expires_at)) => Some(LeaseColumns {
                                holder,
                                pid: row.get(6)?,
                                pid_start_time: row.get(7)?,
                                host: row.get(8)?,
                                expires_at,
                            }),
                            _ => None,
                        },
                    })
                })
                .map_err(self.fail(operation))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(self.fail(operation))?
            };
            let now = clock::now();
            let mut dead = Vec::new();
            for owner in owners {
                if !owner
                    .is_live(self.liveness.as_ref(), now)
                    .map_err(self.fail(operation))?
                {
                    dead.push(owner);
                }
            }
            for dead in &dead {
                tracing::info!(
                    pool,
                    sandbox_id = %dead.sandbox_id,
                    holder = %dead.holder,
                    table = ?table,
                    "removing a pool entry whose process died"
                );
                tx.execute(
                    &format!(
                        "DELETE FROM {} WHERE pool = ?1 AND sandbox_id = ?2",
                        table.name()
                    ),
                    params![pool, dead.sandbox_id],
                )
                .map_err(self.fail(operation))?;
            }
        }
        Ok(())
    }
}
