//! [`PostgresStore`]'s implementation of [`StateStore`]: each method hands its operation (an
//! `async` method of `Ctx`, in the module of its tables) to the worker thread and waits for it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use warren_domain::{
    AgentEvent, ErrorInfo, EventRecord, SandboxId, SandboxName, SandboxState, Usage,
};
use warren_store::{
    Lease, LeaseHolder, NewSandbox, PoolTry, SandboxRecord, StateStore, StoreError,
    TransitionRecord,
};

use crate::sandboxes::path_text;
use crate::store::{PostgresStore, to_i64};

impl StateStore for PostgresStore {
    fn create_sandbox(&self, new: NewSandbox) -> Result<SandboxRecord, StoreError> {
        self.call("recording a new sandbox", |ctx| async move {
            ctx.create_sandbox(new).await
        })
    }

    fn get(&self, id: &SandboxId) -> Result<SandboxRecord, StoreError> {
        let id = id.clone();
        self.call("reading a sandbox", |ctx| async move { ctx.get(id).await })
    }

    fn get_by_name(&self, name: &SandboxName) -> Result<SandboxRecord, StoreError> {
        let name = name.clone();
        self.call("reading a sandbox by name", |ctx| async move {
            ctx.get_by_name(name).await
        })
    }

    fn list(&self, include_destroyed: bool) -> Result<Vec<SandboxRecord>, StoreError> {
        self.call("listing sandboxes", move |ctx| async move {
            ctx.list(include_destroyed).await
        })
    }

    fn transition(
        &self,
        id: &SandboxId,
        to: SandboxState,
        reason: Option<&str>,
    ) -> Result<SandboxRecord, StoreError> {
        let (id, reason) = (id.clone(), reason.map(str::to_owned));
        self.call("changing a sandbox's state", move |ctx| async move {
            ctx.transition(id, to, reason).await
        })
    }

    fn mark_lost(
        &self,
        id: &SandboxId,
        expected: SandboxState,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let (id, reason) = (id.clone(), reason.to_owned());
        self.call(
            "marking a sandbox whose supervisor is gone",
            move |ctx| async move { ctx.mark_lost(id, expected, reason).await },
        )
    }

    fn transitions(&self, id: &SandboxId) -> Result<Vec<TransitionRecord>, StoreError> {
        let id = id.clone();
        self.call("reading a sandbox's state history", |ctx| async move {
            ctx.transitions(id).await
        })
    }

    fn set_error(&self, id: &SandboxId, error: &ErrorInfo) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's error";
        let json = serde_json::to_string(error).map_err(|e| self.invalid(OP, e))?;
        self.update(id, OP, "error_json = $2", vec![Box::new(json)])
    }

    fn set_session_id(&self, id: &SandboxId, session_id: &str) -> Result<(), StoreError> {
        self.update(
            id,
            "recording a sandbox's agent session",
            "session_id = $2",
            vec![Box::new(session_id.to_owned())],
        )
    }

    fn set_workspace(&self, id: &SandboxId, path: &Path) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's workspace";
        let path = path_text(path).map_err(|e| self.invalid(OP, e))?;
        self.update(id, OP, "workspace = $2", vec![Box::new(path)])
    }

    fn set_sync_json(&self, id: &SandboxId, sync: &serde_json::Value) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's sync report";
        let json = serde_json::to_string(sync).map_err(|e| self.invalid(OP, e))?;
        self.update(id, OP, "sync_json = $2", vec![Box::new(json)])
    }

    fn set_outcome_json(
        &self,
        id: &SandboxId,
        outcome: &serde_json::Value,
    ) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's outcome";
        let json = serde_json::to_string(outcome).map_err(|e| self.invalid(OP, e))?;
        self.update(id, OP, "outcome_json = $2", vec![Box::new(json)])
    }

    fn set_export(
        &self,
        id: &SandboxId,
        branch: &str,
        changed_files: u64,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "recording a sandbox's export",
            "branch = $2, changed_files = $3, exported_at = statement_timestamp()",
            vec![Box::new(branch.to_owned()), Box::new(to_i64(changed_files))],
        )
    }

    /// One `UPDATE ... SET x = x + $n`, so concurrent writers cannot lose an increment.
    fn add_usage(&self, id: &SandboxId, usage: &Usage) -> Result<(), StoreError> {
        self.update(
            id,
            "adding to a sandbox's token usage",
            "tokens_input = tokens_input + $2, tokens_output = tokens_output + $3, \
             tokens_reasoning = tokens_reasoning + $4, \
             tokens_cache_read = tokens_cache_read + $5, \
             tokens_cache_write = tokens_cache_write + $6, cost = cost + $7",
            vec![
                Box::new(to_i64(usage.input)),
                Box::new(to_i64(usage.output)),
                Box::new(to_i64(usage.reasoning)),
                Box::new(to_i64(usage.cache_read)),
                Box::new(to_i64(usage.cache_write)),
                Box::new(usage.cost),
            ],
        )
    }

    fn append_event(&self, id: &SandboxId, event: &AgentEvent) -> Result<EventRecord, StoreError> {
        let (id, event) = (id.clone(), event.clone());
        self.call("appending a sandbox event", |ctx| async move {
            ctx.append_event(id, event).await
        })
    }

    fn events(
        &self,
        id: &SandboxId,
        since_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let id = id.clone();
        self.call("reading sandbox events", move |ctx| async move {
            ctx.events(id, since_seq, limit).await
        })
    }

    fn acquire_lease_as(
        &self,
        id: &SandboxId,
        operation: &str,
        ttl: Duration,
        who: &LeaseHolder,
    ) -> Result<Lease, StoreError> {
        let (id, operation, who) = (id.clone(), operation.to_owned(), who.clone());
        self.call("acquiring a sandbox lease", move |ctx| async move {
            ctx.acquire_lease_as(id, operation, ttl, who).await
        })
    }

    fn renew_lease_as(
        &self,
        id: &SandboxId,
        ttl: Duration,
        who: &LeaseHolder,
    ) -> Result<Lease, StoreError> {
        let (id, who) = (id.clone(), who.clone());
        self.call("renewing a sandbox lease", move |ctx| async move {
            ctx.renew_lease_as(id, ttl, who).await
        })
    }

    fn release_lease_as(&self, id: &SandboxId, who: &LeaseHolder) -> Result<(), StoreError> {
        let (id, who) = (id.clone(), who.clone());
        self.call("releasing a sandbox lease", |ctx| async move {
            ctx.release_lease_as(id, who).await
        })
    }

    fn lease(&self, id: &SandboxId) -> Result<Option<Lease>, StoreError> {
        let id = id.clone();
        self.call("reading a sandbox lease", |ctx| async move {
            ctx.lease(id).await
        })
    }

    fn expire_dead_leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.call("expiring dead sandbox leases", |ctx| async move {
            ctx.expire_dead_leases().await
        })
    }

    fn pool_try_acquire_as(
        &self,
        pool: &str,
        id: &SandboxId,
        max: u32,
        who: &LeaseHolder,
    ) -> Result<PoolTry, StoreError> {
        let (pool, id, who) = (pool.to_owned(), id.clone(), who.clone());
        self.call(
            "asking for a concurrency pool slot",
            move |ctx| async move { ctx.pool_try_acquire_as(pool, id, max, who).await },
        )
    }

    fn pool_release(&self, pool: &str, id: &SandboxId) -> Result<(), StoreError> {
        let (pool, id) = (pool.to_owned(), id.clone());
        self.call("releasing a concurrency pool slot", |ctx| async move {
            ctx.pool_release(pool, id).await
        })
    }

    fn pool_usage(&self, pool: &str) -> Result<(Vec<SandboxId>, Vec<SandboxId>), StoreError> {
        let pool = pool.to_owned();
        self.call("reading a concurrency pool's use", |ctx| async move {
            ctx.pool_usage(pool).await
        })
    }

    fn try_lead_reconciler(&self) -> Result<bool, StoreError> {
        self.call("taking the reconciler's lead", |ctx| async move {
            ctx.try_lead().await
        })
    }

    fn resign_reconciler(&self) -> Result<(), StoreError> {
        self.call("giving up the reconciler's lead", |ctx| async move {
            ctx.resign().await
        })
    }

    fn event_signal(&self, id: &SandboxId) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.signal(id))
    }
}

impl PostgresStore {
    fn update(
        &self,
        id: &SandboxId,
        operation: &'static str,
        set: &'static str,
        values: Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.call(operation, move |ctx| async move {
            ctx.update(id, operation, set, values).await
        })
    }
}
