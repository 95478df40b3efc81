//! Filling a new sandbox's workspace: its directories, the sync from the user's repository, and
//! the sync report kept on the record so later operations (exec, export, pull) can find it.

use warren_domain::{AgentEvent, ErrorInfo, ReasonCode, SandboxName, UserFacing};
use warren_store::SandboxRecord;
use warren_sync::{RepoInfo, SyncInReport};

use crate::paths::SandboxDirs;
use crate::recorder::Recorder;

pub(crate) fn provision(
    rec: &mut Recorder<'_>,
    repo: &RepoInfo,
    dirs: &SandboxDirs,
    name: &SandboxName,
) -> Result<SyncInReport, ErrorInfo> {
    dirs.create()?;
    rec.store
        .set_workspace(&rec.id, &dirs.workspace)
        .map_err(|e| e.to_error_info())?;
    let sync = warren_sync::sync_in(
        repo,
        &dirs.workspace,
        &dirs.baseline,
        &warren_sync::SyncOptions::new(rec.id.short(), name.as_str()),
    )
    .map_err(|e| e.to_error_info())?;
    if let Ok(value) = serde_json::to_value(&sync) {
        let _ = rec.store.set_sync_json(&rec.id, &value);
    }
    rec.emit(AgentEvent::SyncedIn {
        files: sync.files as u64,
        bytes: sync.bytes,
        dirty: sync.dirty,
        skipped: sync
            .skipped_submodules
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    });
    Ok(sync)
}

/// The sync report a provisioned sandbox recorded.
pub fn sync_report(record: &SandboxRecord) -> Result<SyncInReport, ErrorInfo> {
    let value = record.sync.clone().ok_or_else(|| {
        crate::error::EngineError::NeverSynced {
            name: record.name.clone(),
        }
        .to_error_info()
    })?;
    serde_json::from_value(value).map_err(|e| {
        ErrorInfo::new(
            ReasonCode::Internal,
            format!("the sync record of {} is unreadable: {e}", record.name),
        )
    })
}

/// Sends the host's changes since the last sync into an existing workspace and records the new
/// baseline. The caller holds the sandbox's lease.
pub(crate) fn resync(
    rec: &mut Recorder<'_>,
    record: &SandboxRecord,
    dirs: &SandboxDirs,
) -> Result<warren_sync::PartialSyncReport, ErrorInfo> {
    let previous = sync_report(record)?;
    let repo = warren_sync::inspect_repo(&record.repo).map_err(|e| e.to_error_info())?;
    let (next, report) =
        warren_sync::sync_partial(&repo, &previous, &dirs.workspace, &dirs.baseline)
            .map_err(|e| e.to_error_info())?;
    if let Ok(value) = serde_json::to_value(&next) {
        let _ = rec.store.set_sync_json(&rec.id, &value);
    }
    rec.emit(AgentEvent::Resynced {
        updated: report.updated as u64,
        deleted: report.deleted as u64,
        conflicts: report
            .conflicts
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    });
    Ok(report)
}
