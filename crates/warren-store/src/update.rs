//! Writes of a sandbox's descriptive columns (error, session, workspace, reports, export, usage).
//! Each is a single UPDATE, so it needs no read-then-write transaction; none touches `state`.

use std::path::Path;

use rusqlite::ToSql;
use warren_domain::{ErrorInfo, SandboxId, Usage};

use crate::error::StoreError;
use crate::record::to_i64;
use crate::store::{SqliteStore, path_text};

impl SqliteStore {
    /// Runs `UPDATE sandboxes SET {set}, updated_at = ?1 WHERE id = ?2`; `set` numbers its own
    /// parameters from `?3`.
    fn update(
        &self,
        id: &SandboxId,
        operation: &str,
        set: &str,
        values: &[&dyn ToSql],
    ) -> Result<(), StoreError> {
        let (_, now) = self.now_text(operation)?;
        let sql = format!("UPDATE sandboxes SET {set}, updated_at = ?1 WHERE id = ?2");
        let id_text = id.as_str();
        let mut all: Vec<&dyn ToSql> = vec![&now, &id_text];
        all.extend_from_slice(values);
        let changed = self
            .conn()
            .execute(&sql, all.as_slice())
            .map_err(self.fail(operation))?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                sandbox: id.to_string(),
            });
        }
        Ok(())
    }

    /// Records why the sandbox failed; replaces any earlier error.
    pub(crate) fn set_error(&self, id: &SandboxId, error: &ErrorInfo) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's error";
        let json = serde_json::to_string(error).map_err(self.fail(OP))?;
        self.update(id, OP, "error_json = ?3", &[&json])
    }

    pub(crate) fn set_session_id(
        &self,
        id: &SandboxId,
        session_id: &str,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "recording a sandbox's agent session",
            "session_id = ?3",
            &[&session_id],
        )
    }

    pub(crate) fn set_workspace(&self, id: &SandboxId, path: &Path) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's workspace";
        let path = path_text(path).map_err(self.fail(OP))?;
        self.update(id, OP, "workspace = ?3", &[&path])
    }

    /// Keeps the engine's sync-in report; the store does not interpret it.
    pub(crate) fn set_sync_json(
        &self,
        id: &SandboxId,
        sync: &serde_json::Value,
    ) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's sync report";
        let json = serde_json::to_string(sync).map_err(self.fail(OP))?;
        self.update(id, OP, "sync_json = ?3", &[&json])
    }

    /// Keeps the engine's outcome summary; the store does not interpret it.
    pub(crate) fn set_outcome_json(
        &self,
        id: &SandboxId,
        outcome: &serde_json::Value,
    ) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's outcome";
        let json = serde_json::to_string(outcome).map_err(self.fail(OP))?;
        self.update(id, OP, "outcome_json = ?3", &[&json])
    }

    /// Records that the sandbox's changes were exported as `branch`, stamping `exported_at`.
    pub(crate) fn set_export(
        &self,
        id: &SandboxId,
        branch: &str,
        changed_files: u64,
    ) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's export";
        let changed_files = to_i64(changed_files);
        self.update(
            id,
            OP,
            "branch = ?3, changed_files = ?4, exported_at = ?1",
            &[&branch, &changed_files],
        )
    }

    /// Adds one step's usage to the sandbox's totals. A single UPDATE of `x = x + ?`, so
    /// concurrent writers cannot lose an increment.
    pub(crate) fn add_usage(&self, id: &SandboxId, usage: &Usage) -> Result<(), StoreError> {
        self.update(
            id,
            "adding to a sandbox's token usage",
            "tokens_input = tokens_input + ?3, tokens_output = tokens_output + ?4, \
             tokens_reasoning = tokens_reasoning + ?5, tokens_cache_read = tokens_cache_read + ?6, \
             tokens_cache_write = tokens_cache_write + ?7, cost = cost + ?8",
            &[
                &to_i64(usage.input),
                &to_i64(usage.output),
                &to_i64(usage.reasoning),
                &to_i64(usage.cache_read),
                &to_i64(usage.cache_write),
                &usage.cost,
            ],
        )
    }
}
