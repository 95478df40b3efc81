//! Concurrency pools. A pool has no row of its own to lock, so every pool write first takes a
//! transaction-scoped advisory lock on the pool's name (`pg_advisory_xact_lock(class,
//! hashtext(pool))`): deciding who gets a slot, queueing, pruning dead entries and releasing are
//! one step per pool across replicas. A hash collision between two pool names only makes them
//! take turns. Pool transactions lock no sandbox row, so they cannot deadlock with lease ones.

use time::OffsetDateTime;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;
use warren_domain::SandboxId;
use warren_store::{
    Cause, LeaseHolder, Liveness, PoolTry, RecordedHolder, RecordedLease, StoreError, this_host,
};

use crate::schema::LOCK_CLASS;
use crate::store::{Ctx, to_i64, to_u64};

/// The class of the pools' advisory locks (the migration's is [`LOCK_CLASS`]).
const POOL_LOCK_CLASS: i32 = LOCK_CLASS + 1;

/// The two tables of a pool, which record their holders the same way.
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

/// A waiter or slot row with the sandbox's lease beside it: what a [`Liveness`] policy needs.
struct Owner {
    sandbox_id: String,
    holder: String,
    pid: i64,
    pid_start_time: Option<i64>,
    host: String,
    lease: Option<LeaseColumns>,
}

struct LeaseColumns {
    holder: String,
    pid: Option<i64>,
    pid_start_time: Option<i64>,
    host: Option<String>,
    expires_at: OffsetDateTime,
}

impl Owner {
    fn parse(row: &tokio_postgres::Row) -> Result<Owner, Cause> {
        let lease_holder: Option<String> = row.try_get(5)?;
        let expires_at: Option<OffsetDateTime> = row.try_get(9)?;
        Ok(Owner {
            sandbox_id: row.try_get(0)?,
            holder: row.try_get(1)?,
            pid: row.try_get(2)?,
            pid_start_time: row.try_get(3)?,
            host: row.try_get(4)?,
            lease: match (lease_holder, expires_at) {
                (Some(holder), Some(expires_at)) => Some(LeaseColumns {
                    holder,
                    pid: row.try_get(6)?,
                    pid_start_time: row.try_get(7)?,
                    host: row.try_get(8)?,
                    expires_at,
                }),
                _ => None,
            },
        })
    }

    fn is_live(&self, liveness: &dyn Liveness, now: OffsetDateTime) -> bool {
        // A pid no process can have was not written by warren; it must not block the pool.
        let Ok(pid) = u32::try_from(self.pid) else {
            return false;
        };
        let entry = RecordedHolder {
            name: &self.holder,
            pid: Some(pid),
            start_time: self.pid_start_time.map_or(0, to_u64),
            host: Some(&self.host),
        };
        let lease = self.lease.as_ref().map(|lease| RecordedLease {
            holder: RecordedHolder {
                name: &lease.holder,
                pid: lease.pid.and_then(|pid| u32::try_from(pid).ok()),
                start_time: lease.pid_start_time.map_or(0, to_u64),
                host: lease.host.as_deref(),
            },
            expires_at: lease.expires_at,
        });
        liveness.pool_entry_is_live(&entry, lease.as_ref(), now)
    }
}

impl Ctx {
    /// Takes the pool's lock for the rest of the transaction.
    async fn lock_pool(
        &self,
        tx: &Transaction<'_>,
        pool: &str,
        operation: &str,
    ) -> Result<(), StoreError> {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&POOL_LOCK_CLASS, &pool],
        )
        .await
        .map_err(self.fail(operation))?;
        Ok(())
    }

    /// See [`StateStore::pool_try_acquire_as`](warren_store::StateStore::pool_try_acquire_as);
    /// the same steps as the SQLite store's, under the pool's lock.
    pub(crate) async fn pool_try_acquire_as(
        &self,
        pool: String,
        id: SandboxId,
        max: u32,
        who: LeaseHolder,
    ) -> Result<PoolTry, StoreError> {
        const OP: &str = "asking for a concurrency pool slot";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(self.fail(OP))?;
        self.lock_pool(&tx, &pool, OP).await?;
        let sandbox = self.require(&*tx, &id, OP).await?;
        let now = self.now(&tx, OP).await?;
        self.prune_pool(&tx, &pool, now, OP).await?;
        let start_time = (who.start_time != 0).then(|| to_i64(who.start_time));
        let pid = i64::from(who.pid);
        let id_text = id.as_str();
        let owner: [&(dyn ToSql + Sync); 7] = [
            &pool,
            &id_text,
            &who.name,
            &pid,
            &start_time,
            &this_host(),
            &now,
        ];

        let holding = tx
            .execute(
                "UPDATE pool_slots SET holder = $3, pid = $4, pid_start_time = $5, host = $6 \
                 WHERE pool = $1 AND sandbox_id = $2",
                &owner[..6],
            )
            .await
            .map_err(self.fail(OP))?;
        if holding > 0 {
            tx.commit().await.map_err(self.fail(OP))?;
            return Ok(PoolTry::Granted);
        }

        // Joins the queue behind everyone waiting, or keeps the ticket it already has.
        tx.execute(
            "INSERT INTO pool_waiters (pool, sandbox_id, ticket, holder, pid, pid_start_time, \
             host, enqueued_at) \
             SELECT $1, $2, COALESCE(MAX(ticket), 0) + 1, $3, $4, $5, $6, $7 FROM pool_waiters \
             WHERE pool = $1 \
             ON CONFLICT (pool, sandbox_id) DO UPDATE SET holder = EXCLUDED.holder, \
             pid = EXCLUDED.pid, pid_start_time = EXCLUDED.pid_start_time, host = EXCLUDED.host",
            &owner,
        )
        .await
        .map_err(self.fail(OP))?;
        let counts = tx
            .query_one(
                "SELECT (SELECT COUNT(*) FROM pool_waiters WHERE pool = $1 AND ticket <= \
                 (SELECT ticket FROM pool_waiters WHERE pool = $1 AND sandbox_id = $2)), \
                 (SELECT COUNT(*) FROM pool_slots WHERE pool = $1)",
                &[&pool, &id_text],
            )
            .await
            .map_err(self.fail(OP))?;
        let position: i64 = counts.try_get(0).map_err(self.fail(OP))?;
        let held: i64 = counts.try_get(1).map_err(self.fail(OP))?;
        let free = i64::from(max.max(1)) - held;

        if position <= free {
            tx.execute(
                "DELETE FROM pool_waiters WHERE pool = $1 AND sandbox_id = $2",
                &[&pool, &id_text],
            )
            .await
            .map_err(self.fail(OP))?;
            tx.execute(
                "INSERT INTO pool_slots (pool, sandbox_id, holder, pid, pid_start_time, host, \
                 acquired_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &owner,
            )
            .await
            .map_err(self.fail(OP))?;
            tx.commit().await.map_err(self.fail(OP))?;
            tracing::debug!(pool, %sandbox, held = held + 1, max, "took a pool slot");
            return Ok(PoolTry::Granted);
        }

        let holders = tx
            .query(
                "SELECT s.name FROM pool_slots p JOIN sandboxes s ON s.id = p.sandbox_id \
                 WHERE p.pool = $1 ORDER BY p.acquired_at, p.sandbox_id",
                &[&pool],
            )
            .await
            .map_err(self.fail(OP))?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<Vec<String>, _>>()
            .map_err(self.fail(OP))?;
        tx.commit().await.map_err(self.fail(OP))?;
        Ok(PoolTry::Waiting {
            position: usize::try_from(position).unwrap_or(usize::MAX),
            holders,
        })
    }

    /// Drops the sandbox's slot and queue place, whichever it has; a no-op if neither.
    pub(crate) async fn pool_release(&self, pool: String, id: SandboxId) -> Result<(), StoreError> {
        const OP: &str = "releasing a concurrency pool slot";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(self.fail(OP))?;
        self.lock_pool(&tx, &pool, OP).await?;
        for table in [Table::Slots, Table::Waiters] {
            tx.execute(
                &format!(
                    "DELETE FROM {} WHERE pool = $1 AND sandbox_id = $2",
                    table.name()
                ),
                &[&pool, &id.as_str()],
            )
            .await
            .map_err(self.fail(OP))?;
        }
        tx.commit().await.map_err(self.fail(OP))
    }

    /// The sandboxes holding `pool`'s slots (oldest first) and those waiting (in queue order),
    /// after removing dead entries; both lists from one moment.
    pub(crate) async fn pool_usage(
        &self,
        pool: String,
    ) -> Result<(Vec<SandboxId>, Vec<SandboxId>), StoreError> {
        const OP: &str = "reading a concurrency pool's use";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(self.fail(OP))?;
        self.lock_pool(&tx, &pool, OP).await?;
        let now = self.now(&tx, OP).await?;
        self.prune_pool(&tx, &pool, now, OP).await?;
        let mut lists = Vec::with_capacity(2);
        for sql in [
            "SELECT sandbox_id FROM pool_slots WHERE pool = $1 ORDER BY acquired_at, sandbox_id",
            "SELECT sandbox_id FROM pool_waiters WHERE pool = $1 ORDER BY ticket",
        ] {
            let ids = tx
                .query(sql, &[&pool])
                .await
                .map_err(self.fail(OP))?
                .iter()
                .map(|row| row.try_get::<_, String>(0).map(SandboxId::from_stored))
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.fail(OP))?;
            lists.push(ids);
        }
        tx.commit().await.map_err(self.fail(OP))?;
        let waiting = lists.pop().unwrap_or_default();
        let holding = lists.pop().unwrap_or_default();
        Ok((holding, waiting))
    }

    /// Deletes `pool`'s waiters and slot holders the liveness policy finds dead at `now`,
    /// inside the caller's transaction (which holds the pool's lock).
    async fn prune_pool(
        &self,
        tx: &Transaction<'_>,
        pool: &str,
        now: OffsetDateTime,
        operation: &str,
    ) -> Result<(), StoreError> {
        for table in [Table::Waiters, Table::Slots] {
            let rows = tx
                .query(
                    &format!(
                        "SELECT p.sandbox_id, p.holder, p.pid, p.pid_start_time, p.host, \
                         l.holder, l.pid, l.pid_start_time, l.host, l.expires_at FROM {} p \
                         LEFT JOIN leases l ON l.sandbox_id = p.sandbox_id WHERE p.pool = $1",
                        table.name()
                    ),
                    &[&pool],
                )
                .await
                .map_err(self.fail(operation))?;
            for row in &rows {
                let owner = Owner::parse(row).map_err(self.corrupt(operation))?;
                if owner.is_live(self.liveness.as_ref(), now) {
                    continue;
                }
                tracing::info!(
                    pool,
                    sandbox_id = %owner.sandbox_id,
                    holder = %owner.holder,
                    table = ?table,
                    "removing a pool entry whose holder is gone"
                );
                tx.execute(
                    &format!(
                        "DELETE FROM {} WHERE pool = $1 AND sandbox_id = $2",
                        table.name()
                    ),
                    &[&pool, &owner.sandbox_id],
                )
                .await
                .map_err(self.fail(operation))?;
            }
        }
        Ok(())
    }
}
