//! [`SqliteStore`]'s implementation of [`StateStore`]. The operations live in the module of their
//! tables (`store`, `leases`, `pools`, `events`, `update`); this file only routes the contract to
//! them, so each operation has one body.

use std::path::Path;
use std::time::Duration;

use warren_domain::{
    AgentEvent, ErrorInfo, EventRecord, SandboxId, SandboxName, SandboxState, Usage,
};

use crate::error::StoreError;
use crate::holder::LeaseHolder;
use crate::leases::Lease;
use crate::pools::PoolTry;
use crate::record::{NewSandbox, SandboxRecord, TransitionRecord};
use crate::state_store::StateStore;
use crate::store::SqliteStore;

impl StateStore for SqliteStore {
    fn create_sandbox(&self, new: NewSandbox) -> Result<SandboxRecord, StoreError> {
        SqliteStore::create_sandbox(self, new)
    }

    fn get(&self, id: &SandboxId) -> Result<SandboxRecord, StoreError> {
        SqliteStore::get(self, id)
    }

    fn get_by_name(&self, name: &SandboxName) -> Result<SandboxRecord, StoreError> {
        SqliteStore::get_by_name(self, name)
    }

    fn list(&self, include_destroyed: bool) -> Result<Vec<SandboxRecord>, StoreError> {
        SqliteStore::list(self, include_destroyed)
    }

    fn transition(
        &self,
        id: &SandboxId,
        to: SandboxState,
        reason: Option<&str>,
    ) -> Result<SandboxRecord, StoreError> {
        SqliteStore::transition(self, id, to, reason)
    }

    fn mark_lost(
        &self,
        id: &SandboxId,
        expected: SandboxState,
        reason: &str,
    ) -> Result<bool, StoreError> {
        SqliteStore::mark_lost(self, id, expected, reason)
    }

    fn transitions(&self, id: &SandboxId) -> Result<Vec<TransitionRecord>, StoreError> {
        SqliteStore::transitions(self, id)
    }

    fn set_error(&self, id: &SandboxId, error: &ErrorInfo) -> Result<(), StoreError> {
        SqliteStore::set_error(self, id, error)
    }

    fn set_session_id(&self, id: &SandboxId, session_id: &str) -> Result<(), StoreError> {
        SqliteStore::set_session_id(self, id, session_id)
    }

    fn set_workspace(&self, id: &SandboxId, path: &Path) -> Result<(), StoreError> {
        SqliteStore::set_workspace(self, id, path)
    }

    fn set_sync_json(&self, id: &SandboxId, sync: &serde_json::Value) -> Result<(), StoreError> {
        SqliteStore::set_sync_json(self, id, sync)
    }

    fn set_outcome_json(
        &self,
        id: &SandboxId,
        outcome: &serde_json::Value,
    ) -> Result<(), StoreError> {
        SqliteStore::set_outcome_json(self, id, outcome)
    }

    fn set_export(
        &self,
        id: &SandboxId,
        branch: &str,
        changed_files: u64,
    ) -> Result<(), StoreError> {
        SqliteStore::set_export(self, id, branch, changed_files)
    }

    fn add_usage(&self, id: &SandboxId, usage: &Usage) -> Result<(), StoreError> {
        SqliteStore::add_usage(self, id, usage)
    }

    fn append_event(&self, id: &SandboxId, event: &AgentEvent) -> Result<EventRecord, StoreError> {
        SqliteStore::append_event(self, id, event)
    }

    fn events(
        &self,
        id: &SandboxId,
        since_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        SqliteStore::events(self, id, since_seq, limit)
    }

    fn acquire_lease_as(
        &self,
        id: &SandboxId,
        operation: &str,
        ttl: Duration,
        who: &LeaseHolder,
    ) -> Result<Lease, StoreError> {
        SqliteStore::acquire_lease_as(self, id, operation, ttl, who)
    }

    fn renew_lease_as(
        &self,
        id: &SandboxId,
        ttl: Duration,
        who: &LeaseHolder,
    ) -> Result<Lease, StoreError> {
        SqliteStore::renew_lease_as(self, id, ttl, who)
    }

    fn release_lease_as(&self, id: &SandboxId, who: &LeaseHolder) -> Result<(), StoreError> {
        SqliteStore::release_lease_as(self, id, who)
    }

    fn lease(&self, id: &SandboxId) -> Result<Option<Lease>, StoreError> {
        SqliteStore::lease(self, id)
    }

    fn expire_dead_leases(&self) -> Result<Vec<Lease>, StoreError> {
        SqliteStore::expire_dead_leases(self)
    }

    fn pool_try_acquire_as(
        &self,
        pool: &str,
        id: &SandboxId,
        max: u32,
        who: &LeaseHolder,
    ) -> Result<PoolTry, StoreError> {
        SqliteStore::pool_try_acquire_as(self, pool, id, max, who)
    }

    fn pool_release(&self, pool: &str, id: &SandboxId) -> Result<(), StoreError> {
        SqliteStore::pool_release(self, pool, id)
    }

    fn pool_usage(&self, pool: &str) -> Result<(Vec<SandboxId>, Vec<SandboxId>), StoreError> {
        SqliteStore::pool_usage(self, pool)
    }
}
