//! `warren gc`: a level-triggered sweep, safe to run any time and from several processes. It drops
//! leases whose holders died, marks sandboxes nothing supervises, tears down completed sandboxes
//! past their retention whose work is exported (never one whose lease is held: an export in
//! progress makes it wait for the next sweep), and removes directories no record owns.

use serde::Serialize;
use time::OffsetDateTime;
use warren_domain::{ErrorInfo, SandboxState, UserFacing};
use warren_provider::Provider;
use warren_store::StateStore;

use crate::ops::Lifecycle;
use crate::recorder::NullObserver;

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub expired_leases: Vec<String>,
    pub marked_error: Vec<String>,
    pub torn_down: Vec<String>,
    pub kept_unexported: Vec<String>,
    pub orphan_dirs_removed: Vec<String>,
}

impl<P: Provider> Lifecycle<'_, P> {
    pub fn gc(&self) -> Result<GcReport, ErrorInfo> {
        let mut report = GcReport::default();
        for lease in self
            .store
            .expire_dead_leases()
            .map_err(|e| e.to_error_info())?
        {
            report.expired_leases.push(format!(
                "{} ({} by {})",
                lease.sandbox_id, lease.operation, lease.holder
            ));
        }
        let records = self.store.list(true).map_err(|e| e.to_error_info())?;
        let mut live_dirs = std::collections::HashSet::new();
        for record in records {
            let before = record.state;
            let record = crate::reconcile::reconcile(&self.store, record)?;
            if before != record.state && record.state == SandboxState::Error {
                report.marked_error.push(record.name.to_string());
            }
            if record.state != SandboxState::Destroyed {
                live_dirs.insert(record.id.short().to_owned());
            }
            let retention = time::Duration::minutes(
                i64::try_from(self.config.sandbox.completed_retention_mins)
                    .unwrap_or(i64::MAX / 120),
            );
            let expired = OffsetDateTime::now_utc() - record.state_changed_at >= retention;
            if !(self.config.sandbox.auto_teardown
                && record.state == SandboxState::Completed
                && expired)
            {
                continue;
            }
            if self
                .store
                .lease(&record.id)
                .map_err(|e| e.to_error_info())?
                .is_some()
            {
                continue;
            }
            if self.unexported_changes(&record)? {
                report.kept_unexported.push(record.name.to_string());
                continue;
            }
            match self.teardown(record.name.as_str(), false, false, &mut NullObserver) {
                Ok(_) => report.torn_down.push(record.name.to_string()),
                Err(e) => tracing::warn!("gc could not tear down {}: {e}", record.name),
            }
        }
        let sandboxes = self.data_dir.join("sandboxes");
        for entry in std::fs::read_dir(&sandboxes)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live_dirs.contains(&name) && std::fs::remove_dir_all(entry.path()).is_ok() {
                report
                    .orphan_dirs_removed
                    .push(entry.path().display().to_string());
            }
        }
        Ok(report)
    }
}
