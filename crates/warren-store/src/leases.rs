//! Per-sandbox operation leases: a row written before an operation starts, so a second warren
//! process refuses to work on the same sandbox instead of racing it. Every check-then-write runs
//! in one IMMEDIATE transaction, which makes the check and the claim a single step across
//! processes.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;
use warren_domain::SandboxId;

use crate::clock;
use crate::error::{Cause, StoreError};
use crate::holder::{self, LeaseHolder};
use crate::liveness::{Liveness, RecordedHolder, RecordedLease};
use crate::record::{to_i64, to_u64};
use crate::store::SqliteStore;

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub sandbox_id: SandboxId,
    pub holder: String,
    pub operation: String,
    #[serde(with = "time::serde::rfc3339")]
    pub acquired_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub pid: Option<u32>,
}

/// A lease row with the identity columns [`Lease`] does not show.
struct Row {
    lease: Lease,
    pid_start_time: Option<u64>,
    host: Option<String>,
}

const COLUMNS: &str =
    "sandbox_id, holder, operation, acquired_at, expires_at, pid, pid_start_time, host";

/// A lease row as SQLite hands it over, before any parsing that could find it corrupt.
struct RawRow {
    sandbox_id: String,
    holder: String,
    operation: String,
    acquired_at: String,
    expires_at: String,
    pid: Option<i64>,
    pid_start_time: Option<i64>,
    host: Option<String>,
}

impl RawRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            sandbox_id: row.get(0)?,
            holder: row.get(1)?,
            operation: row.get(2)?,
            acquired_at: row.get(3)?,
            expires_at: row.get(4)?,
            pid: row.get(5)?,
            pid_start_time: row.get(6)?,
            host: row.get(7)?,
        })
    }

    fn parse(self) -> Result<Row, Cause> {
        let pid = self
            .pid
            .map(|p| u32::try_from(p).map_err(|_| format!("lease pid {p} is out of range")))
            .transpose()?;
        Ok(Row {
            lease: Lease {
                sandbox_id: SandboxId::from_stored(self.sandbox_id),
                holder: self.holder,
                operation: self.operation,
                acquired_at: clock::parse(&self.acquired_at)?,
                expires_at: clock::parse(&self.expires_at)?,
                pid,
            },
            pid_start_time: self.pid_start_time.map(to_u64),
            host: self.host,
        })
    }
}

impl Row {
    /// The lease as a [`Liveness`] policy sees it.
    fn recorded(&self) -> RecordedLease<'_> {
        RecordedLease {
            holder: RecordedHolder {
                name: &self.lease.holder,
                pid: self.lease.pid,
                start_time: self.pid_start_time.unwrap_or(0),
                host: self.host.as_deref(),
            },
            expires_at: self.lease.expires_at,
        }
    }

    /// Whether the lease still protects its operation, as `liveness` judges it.
    fn is_live(&self, liveness: &dyn Liveness, now: OffsetDateTime) -> bool {
        liveness.lease_is_live(&self.recorded(), now)
    }

    fn is_held_by(&self, who: &LeaseHolder) -> bool {
        self.lease.holder == who.name
            && self.lease.pid == Some(who.pid)
            && self.pid_start_time.unwrap_or(0) == who.start_time
            && self.host.as_deref() == Some(holder::hostname())
    }
}

impl SqliteStore {
    /// Takes the sandbox's lease for `operation` until `ttl` from now. A live lease of another
    /// holder is `Busy`; one of the same holder is taken again (re-entrant), with the new
    /// operation and expiry; an expired lease or one whose holder died is replaced.
    /// See [`StateStore::acquire_lease_as`](crate::StateStore::acquire_lease_as).
    pub(crate) fn acquire_lease_as(
        &self,
        id: &SandboxId,
        operation: &str,
        ttl: Duration,
        who: &LeaseHolder,
    ) -> Result<Lease, StoreError> {
        const OP: &str = "acquiring a sandbox lease";
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        // Judged under the write lock, so no other process can claim the lease in between.
        let (now, now_text) = self.now_text(OP)?;
        let sandbox = self.require(&tx, id, OP)?;
        if let Some(current) = self.lease_row(&tx, id, OP)? {
            if current.is_live(self.liveness.as_ref(), now) && !current.is_held_by(who) {
                return Err(StoreError::Busy {
                    sandbox,
                    holder: current.lease.holder,
                    operation: current.lease.operation,
                    expires_at: current.lease.expires_at,
                });
            }
            if !current.is_held_by(who) {
                tracing::info!(
                    %sandbox,
                    holder = %current.lease.holder,
                    operation = %current.lease.operation,
                    "taking over a lease whose holder expired or died"
                );
            }
        }
        let expires_at = expiry(now, ttl);
        let expires_text = clock::format(expires_at).map_err(self.fail(OP))?;
        tx.execute(
            "INSERT INTO leases (sandbox_id, holder, operation, acquired_at, expires_at, pid, \
             pid_start_time, host) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (sandbox_id) DO UPDATE SET holder = excluded.holder, \
             operation = excluded.operation, acquired_at = excluded.acquired_at, \
             expires_at = excluded.expires_at, pid = excluded.pid, \
             pid_start_time = excluded.pid_start_time, host = excluded.host",
            params![
                id.as_str(),
                who.name,
                operation,
                now_text,
                expires_text,
                who.pid,
                // 0 is "unknown"; NULL says so in the table too.
                (who.start_time != 0).then(|| to_i64(who.start_time)),
                holder::hostname(),
            ],
        )
        .map_err(self.fail(OP))?;
        tx.commit().map_err(self.fail(OP))?;
        Ok(Lease {
            sandbox_id: id.clone(),
            holder: who.name.clone(),
            operation: operation.to_owned(),
            acquired_at: now,
            expires_at,
            pid: Some(who.pid),
        })
    }

    /// Extends `who`'s lease to `ttl` from now; `LeaseLost` if the lease is gone or is someone
    /// else's. A lease of `who` that is past its expiry but still in place is renewed: nobody
    /// took it over, so the operation was never actually exposed.
    pub(crate) fn renew_lease_as(
        &self,
        id: &SandboxId,
        ttl: Duration,
        who: &LeaseHolder,
    ) -> Result<Lease, StoreError> {
        const OP: &str = "renewing a sandbox lease";
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        let (now, _) = self.now_text(OP)?;
        let sandbox = self.require(&tx, id, OP)?;
        let mut current = match self.lease_row(&tx, id, OP)? {
            Some(row) if row.is_held_by(who) => row,
            _ => return Err(StoreError::LeaseLost { sandbox }),
        };
        let expires_at = expiry(now, ttl);
        let expires_text = clock::format(expires_at).map_err(self.fail(OP))?;
        tx.execute(
            "UPDATE leases SET expires_at = ?2 WHERE sandbox_id = ?1",
            params![id.as_str(), expires_text],
        )
        .map_err(self.fail(OP))?;
        tx.commit().map_err(self.fail(OP))?;
        current.lease.expires_at = expires_at;
        Ok(current.lease)
    }

    /// Gives up `who`'s lease. Does nothing if there is none or it belongs to someone else, so a
    /// holder that lost its lease cannot free the new holder's.
    pub(crate) fn release_lease_as(
        &self,
        id: &SandboxId,
        who: &LeaseHolder,
    ) -> Result<(), StoreError> {
        const OP: &str = "releasing a sandbox lease";
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        let ours = self
            .lease_row(&tx, id, OP)?
            .is_some_and(|row| row.is_held_by(who));
        if ours {
            tx.execute("DELETE FROM leases WHERE sandbox_id = ?1", [id.as_str()])
                .map_err(self.fail(OP))?;
        }
        tx.commit().map_err(self.fail(OP))
    }

    /// The sandbox's live lease; an expired one or one whose holder died reads as `None`.
    pub(crate) fn lease(&self, id: &SandboxId) -> Result<Option<Lease>, StoreError> {
        const OP: &str = "reading a sandbox lease";
        let now = clock::now();
        Ok(self
            .lease_row(&self.conn(), id, OP)?
            .filter(|row| row.is_live(self.liveness.as_ref(), now))
            .map(|row| row.lease))
    }

    /// Deletes every lease that is expired or whose holder died, and returns them, so `gc` can
    /// report what it freed.
    pub(crate) fn expire_dead_leases(&self) -> Result<Vec<Lease>, StoreError> {
        const OP: &str = "expiring dead sandbox leases";
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        let (now, _) = self.now_text(OP)?;
        let rows = {
            let mut stmt = tx
                .prepare(&format!("SELECT {COLUMNS} FROM leases ORDER BY sandbox_id"))
                .map_err(self.fail(OP))?;
            let raws = stmt
                .query_map([], RawRow::from_row)
                .map_err(self.fail(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(self.fail(OP))?;
            raws.into_iter()
                .map(|raw| raw.parse().map_err(self.fail(OP)))
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut dead = Vec::new();
        for row in rows
            .into_iter()
            .filter(|row| !row.is_live(self.liveness.as_ref(), now))
        {
            tx.execute(
                "DELETE FROM leases WHERE sandbox_id = ?1",
                [row.lease.sandbox_id.as_str()],
            )
            .map_err(self.fail(OP))?;
            dead.push(row.lease);
        }
        tx.commit().map_err(self.fail(OP))?;
        Ok(dead)
    }

    fn lease_row(
        &self,
        conn: &Connection,
        id: &SandboxId,
        operation: &str,
    ) -> Result<Option<Row>, StoreError> {
        let raw = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM leases WHERE sandbox_id = ?1"),
                [id.as_str()],
                RawRow::from_row,
            )
            .optional()
            .map_err(self.fail(operation))?;
        raw.map(RawRow::parse)
            .transpose()
            .map_err(self.fail(operation))
    }
}

/// `now + ttl`, saturating at the latest time the stored format can hold, so an absurd TTL means
/// "until released" rather than an error.
fn expiry(now: OffsetDateTime, ttl: Duration) -> OffsetDateTime {
    const LATEST: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59.999999 UTC);
    time::Duration::try_from(ttl)
        .ok()
        .and_then(|ttl| now.checked_add(ttl))
        .filter(|at| *at <= LATEST)
        .unwrap_or(LATEST)
}

impl SqliteStore {
    /// The reconciler's one write: moves a sandbox that was found in `expected` with no live
    /// lease to `error`, checking both again under the write lock, so a supervisor that took
    /// the lease or moved the sandbox on meanwhile always wins. `Ok(false)` when it did.
    pub(crate) fn mark_lost(
        &self,
        id: &SandboxId,
        expected: warren_domain::SandboxState,
        reason: &str,
    ) -> Result<bool, StoreError> {
        const OP: &str = "marking a sandbox whose supervisor is gone";
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        let (now, _) = self.now_text(OP)?;
        let current = self.get_with(&tx, id)?;
        let supervised = self
            .lease_row(&tx, id, OP)?
            .is_some_and(|row| row.is_live(self.liveness.as_ref(), now));
        if current.state != expected || supervised {
            return Ok(false);
        }
        match self.transition_in(&tx, id, warren_domain::SandboxState::Error, Some(reason)) {
            Ok(_) => {}
            Err(StoreError::InvalidTransition { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        tx.commit().map_err(self.fail(OP))?;
        Ok(true)
    }
}
