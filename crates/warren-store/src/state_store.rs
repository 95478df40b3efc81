//! The contract every implementation of warren's state keeps (SQLite today, PostgreSQL for a
//! server with several replicas), so the engine and the front ends depend on behaviour, not on a
//! database. The conformance suite (`conformance` feature) checks an implementation against it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use warren_domain::{
    AgentEvent, ErrorInfo, EventRecord, SandboxId, SandboxName, SandboxState, Usage,
};

use crate::error::StoreError;
use crate::holder::LeaseHolder;
use crate::leases::Lease;
use crate::pools::PoolTry;
use crate::record::{NewSandbox, SandboxRecord, TransitionRecord};

/// warren's durable state: sandboxes, their lifecycle log, their event streams, their operation
/// leases and their places in concurrency pools. Object safe (`Arc<dyn StateStore>`); every
/// method is synchronous (an async caller runs it on a blocking thread) and atomic: it either
/// happens whole or fails with a [`StoreError`], even with other handles, processes or hosts
/// acting on the same store at the same moment.
///
/// Holders are judged by the implementation's [`Liveness`](crate::Liveness) policy.
pub trait StateStore: Send + Sync {
    // --- sandboxes -----------------------------------------------------------------------------

    /// Records a new sandbox in state `new`. `NameTaken` if a sandbox that is not destroyed
    /// already has the name (checked atomically with the insert).
    fn create_sandbox(&self, new: NewSandbox) -> Result<SandboxRecord, StoreError>;

    /// The sandbox with this id, or `NotFound`.
    fn get(&self, id: &SandboxId) -> Result<SandboxRecord, StoreError>;

    /// The sandbox using `name`: the live one, or else the most recently created destroyed one.
    fn get_by_name(&self, name: &SandboxName) -> Result<SandboxRecord, StoreError>;

    /// All sandboxes, newest first; destroyed ones only when asked.
    fn list(&self, include_destroyed: bool) -> Result<Vec<SandboxRecord>, StoreError>;

    /// Moves a sandbox to `to` if the lifecycle table (`SandboxState::transition`) allows it from
    /// the state it is in at that moment, and logs the change; `InvalidTransition` otherwise,
    /// changing nothing. The only way a sandbox's state is written; `destroyed` stamps
    /// `destroyed_at`.
    fn transition(
        &self,
        id: &SandboxId,
        to: SandboxState,
        reason: Option<&str>,
    ) -> Result<SandboxRecord, StoreError>;

    /// The reconciler's one write: moves a sandbox found in `expected` with no live lease to
    /// `error`, checking both again atomically with the write, so a supervisor that took the
    /// lease or moved the sandbox on meanwhile always wins. `Ok(false)` when it did (or when
    /// the table does not allow `expected → error`), changing nothing.
    fn mark_lost(
        &self,
        id: &SandboxId,
        expected: SandboxState,
        reason: &str,
    ) -> Result<bool, StoreError>;

    /// The lifecycle log of one sandbox, oldest first, `seq` from 1 without gaps.
    fn transitions(&self, id: &SandboxId) -> Result<Vec<TransitionRecord>, StoreError>;

    // --- descriptive columns (never the state) -----------------------------------------------

    /// Records why the sandbox failed; replaces any earlier error.
    fn set_error(&self, id: &SandboxId, error: &ErrorInfo) -> Result<(), StoreError>;

    fn set_session_id(&self, id: &SandboxId, session_id: &str) -> Result<(), StoreError>;

    fn set_workspace(&self, id: &SandboxId, path: &Path) -> Result<(), StoreError>;

    /// Keeps the engine's sync-in report; the store does not interpret it.
    fn set_sync_json(&self, id: &SandboxId, sync: &serde_json::Value) -> Result<(), StoreError>;

    /// Keeps the engine's outcome summary; the store does not interpret it.
    fn set_outcome_json(
        &self,
        id: &SandboxId,
        outcome: &serde_json::Value,
    ) -> Result<(), StoreError>;

    /// Records that the sandbox's changes were exported as `branch`, stamping `exported_at`.
    fn set_export(
        &self,
        id: &SandboxId,
        branch: &str,
        changed_files: u64,
    ) -> Result<(), StoreError>;

    /// Adds one step's usage to the sandbox's totals; concurrent writers never lose an increment.
    fn add_usage(&self, id: &SandboxId, usage: &Usage) -> Result<(), StoreError>;

    // --- events --------------------------------------------------------------------------------

    /// Appends `event` with the sandbox's next sequence number (the first is 1). Concurrent
    /// appenders get distinct numbers with no gap, and time order agrees with `seq` order.
    fn append_event(&self, id: &SandboxId, event: &AgentEvent) -> Result<EventRecord, StoreError>;

    /// Events with `seq > since_seq`, oldest first, at most `limit` of them.
    fn events(
        &self,
        id: &SandboxId,
        since_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<EventRecord>, StoreError>;

    // --- leases --------------------------------------------------------------------------------

    /// Takes the sandbox's lease for `operation` until `ttl` from now, as `who`. A live lease of
    /// another holder is `Busy`; one of the same holder is taken again (re-entrant) with the new
    /// operation and expiry; an expired lease or one whose holder is dead is replaced. The check
    /// and the claim are one atomic step: of two racing holders exactly one wins.
    fn acquire_lease_as(
        &self,
        id: &SandboxId,
        operation: &str,
        ttl: Duration,
        who: &LeaseHolder,
    ) -> Result<Lease, StoreError>;

    /// [`StateStore::acquire_lease_as`] as this process.
    fn acquire_lease(
        &self,
        id: &SandboxId,
        operation: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.acquire_lease_as(id, operation, ttl, &LeaseHolder::this_process())
    }

    /// Extends `who`'s lease to `ttl` from now; `LeaseLost` if the lease is gone or is someone
    /// else's. A lease of `who` past its expiry but still in place is renewed: nobody took it
    /// over, so the operation was never actually exposed.
    fn renew_lease_as(
        &self,
        id: &SandboxId,
        ttl: Duration,
        who: &LeaseHolder,
    ) -> Result<Lease, StoreError>;

    /// [`StateStore::renew_lease_as`] as this process.
    fn renew_lease(&self, id: &SandboxId, ttl: Duration) -> Result<Lease, StoreError> {
        self.renew_lease_as(id, ttl, &LeaseHolder::this_process())
    }

    /// Gives up `who`'s lease. Does nothing if there is none or it belongs to someone else, so a
    /// holder that lost its lease cannot free the new holder's.
    fn release_lease_as(&self, id: &SandboxId, who: &LeaseHolder) -> Result<(), StoreError>;

    /// [`StateStore::release_lease_as`] as this process.
    fn release_lease(&self, id: &SandboxId) -> Result<(), StoreError> {
        self.release_lease_as(id, &LeaseHolder::this_process())
    }

    /// The sandbox's live lease; an expired one or one whose holder is dead reads as `None`.
    /// Reads never write: a dead lease stays until taken over or expired by `gc`.
    fn lease(&self, id: &SandboxId) -> Result<Option<Lease>, StoreError>;

    /// Deletes every lease that is expired or whose holder is dead, and returns them, so `gc`
    /// can report what it freed.
    fn expire_dead_leases(&self) -> Result<Vec<Lease>, StoreError>;

    // --- concurrency pools ---------------------------------------------------------------------

    /// Asks for one of `pool`'s `max` slots for sandbox `id`, on behalf of `who`; callers poll it
    /// until it answers `Granted`. Each call is atomic:
    ///
    /// - entries whose holder is dead are removed first, so a crashed run never blocks the pool;
    /// - the sandbox joins the queue behind everyone waiting, or keeps its place (idempotent),
    ///   and a sandbox already holding a slot stays `Granted`;
    /// - with `free = max - held` slots open, the first `free` waiters in queue order may take
    ///   one, in whatever order they call, so with `max = 1` runs start strictly in queue order;
    /// - a call from another holder for the same sandbox takes the entry over, keeping its place
    ///   or slot (a hand-over; the sandbox's lease keeps two holders from working on it at once).
    ///
    /// `max = 0` is treated as 1. `NotFound` for an unknown sandbox.
    fn pool_try_acquire_as(
        &self,
        pool: &str,
        id: &SandboxId,
        max: u32,
        who: &LeaseHolder,
    ) -> Result<PoolTry, StoreError>;

    /// [`StateStore::pool_try_acquire_as`] as this process.
    fn pool_try_acquire(
        &self,
        pool: &str,
        id: &SandboxId,
        max: u32,
    ) -> Result<PoolTry, StoreError> {
        self.pool_try_acquire_as(pool, id, max, &LeaseHolder::this_process())
    }

    /// Gives up sandbox `id`'s slot in `pool` and its place in the queue, whichever it has; a
    /// no-op if it has neither.
    fn pool_release(&self, pool: &str, id: &SandboxId) -> Result<(), StoreError>;

    /// Who uses `pool` now: the sandboxes holding its slots (oldest first) and those waiting, in
    /// queue order, both without entries whose holder is dead.
    fn pool_usage(&self, pool: &str) -> Result<(Vec<SandboxId>, Vec<SandboxId>), StoreError>;

    // --- replicas ------------------------------------------------------------------------------

    /// Whether this handle may run the reconciler's loop now. Where several server replicas
    /// share the store, at most one handle leads at a time and the lead passes on when its
    /// holder resigns or dies (PostgreSQL: a session advisory lock). A store for one replica may
    /// let every handle lead (the default, SQLite's: always this one). Asking again while
    /// leading keeps the lead. The reconciler's writes are safe from several processes at once
    /// anyway ([`StateStore::mark_lost`]); the lead only keeps replicas from repeating the work.
    fn try_lead_reconciler(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Gives the reconciler's lead up (a draining server), so another replica takes it at once.
    fn resign_reconciler(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A signal woken whenever an event of `id` may have been appended, by any writer on any
    /// host, so a reader waiting for the next event reads at once instead of at its next poll.
    /// Readers wait on it with a poll as a fallback (a signal may be missed while the store
    /// reconnects). `None` where the store has no such signal (the default): readers poll.
    fn event_signal(&self, id: &SandboxId) -> Option<Arc<tokio::sync::Notify>> {
        let _ = id;
        None
    }
}
