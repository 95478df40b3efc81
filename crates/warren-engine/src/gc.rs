//! The reconciler's sweep over every sandbox: level-triggered, safe to run any time and from
//! several processes. It drops leases whose holders died, marks sandboxes whose supervisor is
//! gone, tears down completed sandboxes past their retention whose work is exported (never one
//! whose lease is held: an export in progress makes it wait for the next sweep), removes
//! directories no record owns (the server's repository sources too, once no sandbox needs them),
//! and says when it should run again.

use serde::Serialize;
use time::OffsetDateTime;
use warren_domain::SandboxState;
use warren_provider::Provider;

use crate::error::EngineError;
use crate::ops::Lifecycle;
use crate::recorder::NullObserver;

/// How long a source (`<data>/sources/<id>`) that no sandbox uses yet is left for its launch.
const SOURCE_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);
/// How long a torn-down sandbox's source is kept, so its exported branch can still be fetched.
const SOURCE_AFTER_TEARDOWN: time::Duration = time::Duration::hours(24);

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub expired_leases: Vec<String>,
    pub marked_error: Vec<String>,
    pub torn_down: Vec<String>,
    pub kept_unexported: Vec<String>,
    pub orphan_dirs_removed: Vec<String>,
    /// When the next sweep has something to look at (a lease to outlive, a grace or a retention
    /// to end); none when nothing is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requeue_after_secs: Option<u64>,
}

impl<P: Provider> Lifecycle<'_, P> {
    pub fn gc(&self) -> Result<GcReport, EngineError> {
        let mut report = GcReport::default();
        for lease in self.store.expire_dead_leases()? {
            report.expired_leases.push(format!(
                "{} ({} by {})",
                lease.sandbox_id, lease.operation, lease.holder
            ));
        }
        // The directories are read before the records are listed: a sandbox's record is created
        // before its directories, so every directory seen here has its record in the list below,
        // and a run starting meanwhile is never taken for an orphan.
        let sandboxes = self.data_dir.join("sandboxes");
        let dirs: Vec<_> = std::fs::read_dir(&sandboxes)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        let source_dirs: Vec<_> = std::fs::read_dir(crate::source::sources_dir(self.data_dir))
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        let records = self.store.list(true)?;
        let mut live_dirs = std::collections::HashSet::new();
        let mut live_sources = std::collections::HashSet::new();
        let mut next: Option<std::time::Duration> = None;
        let mut requeue = |after: Option<std::time::Duration>| {
            if let Some(after) = after {
                next = Some(next.map_or(after, |n| n.min(after)));
            }
        };
        for record in records {
            let before = record.state;
            let (record, verdict) = crate::reconcile::reconcile(&*self.store, record)?;
            requeue(verdict.requeue_after(crate::supervisor::lease_ttl(self.config)));
            if before != record.state && record.state == SandboxState::Error {
                report.marked_error.push(record.name.to_string());
            }
            if record.state != SandboxState::Destroyed {
                live_dirs.insert(record.id.short().to_owned());
            }
            // A source outlives its sandbox for a while: its branch can still be fetched.
            let since = OffsetDateTime::now_utc() - record.state_changed_at;
            if record.state != SandboxState::Destroyed || since < SOURCE_AFTER_TEARDOWN {
                live_sources.insert(record.repo.clone());
                if let Ok(real) = record.repo.canonicalize() {
                    live_sources.insert(real);
                }
            }
            let retention = time::Duration::minutes(
                i64::try_from(self.config.sandbox.completed_retention_mins)
                    .unwrap_or(i64::MAX / 120),
            );
            let age = OffsetDateTime::now_utc() - record.state_changed_at;
            let expired = age >= retention;
            if !(self.config.sandbox.auto_teardown && record.state == SandboxState::Completed) {
                continue;
            }
            if !expired {
                requeue(std::time::Duration::try_from(retention - age).ok());
                continue;
            }
            if self.store.lease(&record.id)?.is_some() {
                requeue(Some(crate::supervisor::lease_ttl(self.config)));
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
        for entry in dirs {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live_dirs.contains(&name) && std::fs::remove_dir_all(entry.path()).is_ok() {
                report
                    .orphan_dirs_removed
                    .push(entry.path().display().to_string());
            }
        }
        // A source no sandbox uses: an upload or a clone whose launch never came (given time to
        // come), or one whose sandbox was torn down long enough ago. The directories were read
        // before the records, so a source a launch just made is either in the records or young.
        for entry in source_dirs {
            let path = entry.path();
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().unwrap_or_default() < SOURCE_GRACE);
            if !young
                && !live_sources.contains(&path)
                && !path
                    .canonicalize()
                    .is_ok_and(|real| live_sources.contains(&real))
                && std::fs::remove_dir_all(&path).is_ok()
            {
                report.orphan_dirs_removed.push(path.display().to_string());
            }
        }
        report.requeue_after_secs = next.map(|d| d.as_secs().max(1));
        Ok(report)
    }
}
