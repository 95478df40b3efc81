//! Operation leases. Every lease write first locks the sandbox's row (`Ctx::lock_sandbox`), so
//! the check ("is there a live lease of someone else?") and the claim are one step for every
//! replica: a second acquirer waits on the lock, then sees the winner's lease. The row that is
//! locked is the sandbox's, not the lease's, because a lease that does not exist yet cannot be.

use std::time::Duration;

use time::OffsetDateTime;
use tokio_postgres::Transaction;
use warren_domain::SandboxId;
use warren_store::{
    Cause, Lease, LeaseHolder, Liveness, RecordedHolder, RecordedLease, StoreError, this_host,
};

use crate::sandboxes::expiry;
use crate::store::{Ctx, to_i64, to_u64};

const COLUMNS: &str =
    "sandbox_id, holder, operation, acquired_at, expires_at, pid, pid_start_time, host";

/// A lease row with the identity columns [`Lease`] does not show.
pub(crate) struct Row {
    lease: Lease,
    pid_start_time: Option<u64>,
    host: Option<String>,
}

impl Row {
    fn parse(row: &tokio_postgres::Row) -> Result<Row, Cause> {
        let pid: Option<i64> = row.try_get(5)?;
        let pid = pid
            .map(|p| u32::try_from(p).map_err(|_| format!("lease pid {p} is out of range")))
            .transpose()?;
        let start: Option<i64> = row.try_get(6)?;
        Ok(Row {
            lease: Lease {
                sandbox_id: SandboxId::from_stored(row.try_get::<_, String>(0)?),
                holder: row.try_get(1)?,
                operation: row.try_get(2)?,
                acquired_at: row.try_get(3)?,
                expires_at: row.try_get(4)?,
                pid,
            },
            pid_start_time: start.map(to_u64),
            host: row.try_get(7)?,
        })
    }

    /// Whether the lease still protects its operation, as `liveness` judges it.
    pub(crate) fn is_live(&self, liveness: &dyn Liveness, now: OffsetDateTime) -> bool {
        liveness.lease_is_live(
            &RecordedLease {
                holder: RecordedHolder {
                    name: &self.lease.holder,
                    pid: self.lease.pid,
                    start_time: self.pid_start_time.unwrap_or(0),
                    host: self.host.as_deref(),
                },
                expires_at: self.lease.expires_at,
            },
            now,
        )
    }

    fn is_held_by(&self, who: &LeaseHolder) -> bool {
        self.lease.holder == who.name
            && self.lease.pid == Some(who.pid)
            && self.pid_start_time.unwrap_or(0) == who.start_time
            && self.host.as_deref() == Some(this_host())
    }
}

/// The sandbox's lease row, if any, read inside the caller's transaction.
pub(crate) async fn lease_row(
    ctx: &Ctx,
    client: &impl tokio_postgres::GenericClient,
    id: &SandboxId,
    operation: &str,
) -> Result<Option<Row>, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM leases WHERE sandbox_id = $1"),
            &[&id.as_str()],
        )
        .await
        .map_err(ctx.fail(operation))?;
    row.as_ref()
        .map(Row::parse)
        .transpose()
        .map_err(ctx.corrupt(operation))
}

/// 0 is "unknown"; NULL says so in the table too.
fn start_time_column(who: &LeaseHolder) -> Option<i64> {
    (who.start_time != 0).then(|| to_i64(who.start_time))
}

impl Ctx {
    pub(crate) async fn acquire_lease_as(
        &self,
        id: SandboxId,
        operation: String,
        ttl: Duration,
        who: LeaseHolder,
    ) -> Result<Lease, StoreError> {
        const OP: &str = "acquiring a sandbox lease";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(self.fail(OP))?;
        let sandbox = self.lock_sandbox(&tx, &id, OP).await?.name;
        let now = self.now(&tx, OP).await?;
        if let Some(current) = lease_row(self, &*tx, &id, OP).await? {
            let theirs = !current.is_held_by(&who);
            if theirs && current.is_live(self.liveness.as_ref(), now) {
                return Err(StoreError::Busy {
                    sandbox,
                    holder: current.lease.holder,
                    operation: current.lease.operation,
                    expires_at: current.lease.expires_at,
                });
            }
            if theirs {
                tracing::info!(
                    %sandbox,
                    holder = %current.lease.holder,
                    operation = %current.lease.operation,
                    "taking over a lease whose holder expired or died"
                );
            }
        }
        let expires_at = expiry(now, ttl);
        tx.execute(
            "INSERT INTO leases (sandbox_id, holder, operation, acquired_at, expires_at, pid, \
             pid_start_time, host) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (sandbox_id) DO UPDATE SET holder = EXCLUDED.holder, \
             operation = EXCLUDED.operation, acquired_at = EXCLUDED.acquired_at, \
             expires_at = EXCLUDED.expires_at, pid = EXCLUDED.pid, \
             pid_start_time = EXCLUDED.pid_start_time, host = EXCLUDED.host",
            &[
                &id.as_str(),
                &who.name,
                &operation,
                &now,
                &expires_at,
                &i64::from(who.pid),
                &start_time_column(&who),
                &this_host(),
            ],
        )
        .await
        .map_err(self.fail(OP))?;
        tx.commit().await.map_err(self.fail(OP))?;
        Ok(Lease {
            sandbox_id: id,
            holder: who.name,
            operation,
            acquired_at: now,
            expires_at,
            pid: Some(who.pid),
        })
    }

    pub(crate) async fn renew_lease_as(
        &self,
        id: SandboxId,
        ttl: Duration,
        who: LeaseHolder,
    ) -> Result<Lease, StoreError> {
        const OP: &str = "renewing a sandbox lease";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(self.fail(OP))?;
        let sandbox = self.lock_sandbox(&tx, &id, OP).await?.name;
        let now = self.now(&tx, OP).await?;
        let mut current = match lease_row(self, &*tx, &id, OP).await? {
            Some(row) if row.is_held_by(&who) => row,
            _ => return Err(StoreError::LeaseLost { sandbox }),
        };
        let expires_at = expiry(now, ttl);
        tx.execute(
            "UPDATE leases SET expires_at = $2 WHERE sandbox_id = $1",
            &[&id.as_str(), &expires_at],
        )
        .await
        .map_err(self.fail(OP))?;
        tx.commit().await.map_err(self.fail(OP))?;
        current.lease.expires_at = expires_at;
        Ok(current.lease)
    }

    pub(crate) async fn release_lease_as(
        &self,
        id: SandboxId,
        who: LeaseHolder,
    ) -> Result<(), StoreError> {
        const OP: &str = "releasing a sandbox lease";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(self.fail(OP))?;
        // A sandbox that does not exist has no lease to release: a no-op, as in SQLite.
        match self.lock_sandbox(&tx, &id, OP).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(err) => return Err(err),
        }
        let ours = lease_row(self, &*tx, &id, OP)
            .await?
            .is_some_and(|row| row.is_held_by(&who));
        if ours {
            tx.execute("DELETE FROM leases WHERE sandbox_id = $1", &[&id.as_str()])
                .await
                .map_err(self.fail(OP))?;
        }
        tx.commit().await.map_err(self.fail(OP))
    }

    /// The live lease; reads never write, so a dead one stays until taken over or expired.
    pub(crate) async fn lease(&self, id: SandboxId) -> Result<Option<Lease>, StoreError> {
        const OP: &str = "reading a sandbox lease";
        let client = self.client(OP).await?;
        let now: OffsetDateTime = client
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(self.fail(OP))?;
        Ok(lease_row(self, &**client, &id, OP)
            .await?
            .filter(|row| row.is_live(self.liveness.as_ref(), now))
            .map(|row| row.lease))
    }

    /// Deletes every expired or dead lease and returns them. Locks the rows of every sandbox
    /// that has a lease, in id order (the only transaction that locks more than one sandbox,
    /// so the order rules out deadlocks), then reads the leases afresh and judges them.
    pub(crate) async fn expire_dead_leases(&self) -> Result<Vec<Lease>, StoreError> {
        const OP: &str = "expiring dead sandbox leases";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(self.fail(OP))?;
        let locked: Vec<String> = tx
            .query(
                "SELECT s.id FROM sandboxes s WHERE EXISTS \
                 (SELECT 1 FROM leases l WHERE l.sandbox_id = s.id) \
                 ORDER BY s.id FOR NO KEY UPDATE OF s",
                &[],
            )
            .await
            .map_err(self.fail(OP))?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(self.fail(OP))?;
        let now = self.now(&tx, OP).await?;
        let dead = self.dead_leases(&tx, &locked, now).await?;
        for lease in &dead {
            tx.execute(
                "DELETE FROM leases WHERE sandbox_id = $1",
                &[&lease.sandbox_id.as_str()],
            )
            .await
            .map_err(self.fail(OP))?;
        }
        tx.commit().await.map_err(self.fail(OP))?;
        Ok(dead)
    }

    /// The leases of `ids` that are not live at `now`, in id order.
    async fn dead_leases(
        &self,
        tx: &Transaction<'_>,
        ids: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<Lease>, StoreError> {
        const OP: &str = "expiring dead sandbox leases";
        let rows = tx
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM leases WHERE sandbox_id = ANY($1) ORDER BY sandbox_id"
                ),
                &[&ids],
            )
            .await
            .map_err(self.fail(OP))?;
        let mut dead = Vec::new();
        for row in &rows {
            let row = Row::parse(row).map_err(self.corrupt(OP))?;
            if !row.is_live(self.liveness.as_ref(), now) {
                dead.push(row.lease);
            }
        }
        Ok(dead)
    }
}
