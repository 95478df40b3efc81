//! From the engine's and the store's types to the protocol's views (`warren-api`): what the
//! CLI's `--json` prints and the server serves, converted in one place. Each view serialises
//! exactly as the type it is made from did before the views existed (`views_tests.rs` holds them
//! to it), except that paths are always text.

use std::path::Path;

use crate::warm_control::WarmInfo;
use crate::{Exported, GcReport};
use warren_api::{
    ChangeKind, ChangedFile, ConfigSource, ConfigView, ExportView, GcReportView, LeaseView,
    MonitorView, PullView, SandboxView, SyncView, WarmServerView,
};
use warren_domain::{ErrorInfo, ReasonCode};
use warren_store::{Lease, SandboxRecord};

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

pub fn sandbox(r: &SandboxRecord) -> SandboxView {
    SandboxView {
        id: r.id.clone(),
        name: r.name.clone(),
        repo: text(&r.repo),
        provider: r.provider.clone(),
        state: r.state,
        created_at: r.created_at,
        updated_at: r.updated_at,
        state_changed_at: r.state_changed_at,
        model: r.model.clone(),
        prompt: r.prompt.clone(),
        role: r.role.clone(),
        session_id: r.session_id.clone(),
        workspace: r.workspace.as_deref().map(text),
        sync: r.sync.clone(),
        outcome: r.outcome.clone(),
        error: r.error.clone(),
        branch: r.branch.clone(),
        usage: r.usage,
        changed_files: r.changed_files,
        exported_at: r.exported_at,
        destroyed_at: r.destroyed_at,
    }
}

pub fn lease(l: &Lease) -> LeaseView {
    LeaseView {
        sandbox_id: l.sandbox_id.clone(),
        holder: l.holder.clone(),
        operation: l.operation.clone(),
        acquired_at: l.acquired_at,
        expires_at: l.expires_at,
        pid: l.pid,
    }
}

pub fn warm_server(w: &WarmInfo) -> WarmServerView {
    WarmServerView {
        monitor: MonitorView {
            name: w.monitor.name.clone(),
            pid: w.monitor.pid,
            start_time: w.monitor.start_time,
        },
        idle_since: w.idle_since.clone(),
        idle_secs: w.idle_secs,
        boot_ms: w.boot_ms,
        socket: text(&w.socket),
    }
}

pub fn changed_file(c: &warren_sync::Change) -> ChangedFile {
    ChangedFile {
        path: text(&c.path),
        kind: match c.kind {
            warren_sync::ChangeKind::Added => ChangeKind::Added,
            warren_sync::ChangeKind::Modified => ChangeKind::Modified,
            warren_sync::ChangeKind::Deleted => ChangeKind::Deleted,
        },
    }
}

/// `GET /v1/sandboxes/{name}/changes`: the changed files and their diff.
pub fn changes(
    name: &str,
    set: &warren_sync::ChangeSet,
    diff: &warren_sync::ChangesDiff,
) -> warren_api::ChangesView {
    warren_api::ChangesView {
        name: name.to_owned(),
        files: set.changes.iter().map(changed_file).collect(),
        diff: String::from_utf8_lossy(&diff.patch).into_owned(),
        truncated: diff.truncated,
        binary: diff.binary.iter().map(|p| text(p)).collect(),
        symlinks: diff.symlinks.iter().map(|p| text(p)).collect(),
    }
}

pub fn export(e: &Exported) -> ExportView {
    ExportView {
        branch: e.branch.clone(),
        patch: e.patch.as_deref().map(text),
        files_changed: e.files_changed,
        commit: e.commit.clone(),
        keep_cr: e.keep_cr,
        based_on: e.based_on.clone(),
        head_moved_to: e.head_moved_to.clone(),
        pushed_to: None,
    }
}

pub fn pull(p: &warren_sync::PullReport) -> PullView {
    PullView {
        dir: text(&p.dir),
        written: count(p.written),
        deleted: count(p.deleted),
        manifest: text(&p.manifest),
    }
}

pub fn sync(s: &warren_sync::PartialSyncReport) -> SyncView {
    SyncView {
        updated: count(s.updated),
        deleted: count(s.deleted),
        bytes: s.bytes,
        user_tree: s.user_tree.clone(),
        conflicts: s.conflicts.iter().map(|p| text(p)).collect(),
        head: s.head.clone(),
        dirty: s.dirty,
        workspace_git_skipped: s.workspace_git_skipped.clone(),
    }
}

pub fn gc(r: &GcReport) -> GcReportView {
    GcReportView {
        expired_leases: r.expired_leases.clone(),
        marked_error: r.marked_error.clone(),
        torn_down: r.torn_down.clone(),
        kept_unexported: r.kept_unexported.clone(),
        orphan_dirs_removed: r.orphan_dirs_removed.clone(),
        requeue_after_secs: r.requeue_after_secs,
    }
}

fn config_source(s: &warren_config::Source) -> ConfigSource {
    use warren_config::Source;
    match s {
        Source::Default => ConfigSource::Default,
        Source::UserFile(p) => ConfigSource::UserFile(text(p)),
        Source::RepoFile(p) => ConfigSource::RepoFile(text(p)),
        Source::Env(var) => ConfigSource::Env(var.clone()),
        Source::Flag(flag) => ConfigSource::Flag(flag.clone()),
    }
}

pub fn config(loaded: &warren_config::Loaded) -> Result<ConfigView, ErrorInfo> {
    let config = match serde_json::to_value(&loaded.config) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(other) => {
            return Err(ErrorInfo::new(
                ReasonCode::Internal,
                format!("the configuration serialised as {other}, not an object"),
            ));
        }
        Err(e) => return Err(ErrorInfo::new(ReasonCode::Internal, e.to_string())),
    };
    Ok(ConfigView {
        config,
        sources: loaded
            .sources
            .iter()
            .map(|(key, source)| (key.clone(), config_source(source)))
            .collect(),
    })
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;

pub fn approval(
    a: &crate::approvals::Answered,
    answer: warren_domain::Decision,
) -> warren_api::ApprovalView {
    warren_api::ApprovalView {
        request: a.request.clone(),
        answer,
        decision: a.decided.map(|(d, _)| d),
        decided_by: a.decided.map(|(_, by)| by),
    }
}
