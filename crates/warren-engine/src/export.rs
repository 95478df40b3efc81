//! Bringing a sandbox's work out: its changes relative to the baseline, as a branch in the user's
//! repository (never overwriting one), a patch series, or plain files in a directory.

use std::path::PathBuf;

use serde::Serialize;
use warren_config::Config;
use warren_domain::{AgentEvent, ErrorInfo, UserFacing};
use warren_sync::{ChangeSet, RepoInfo, SyncInReport};

use crate::paths::SandboxDirs;
use crate::recorder::Recorder;

#[derive(Debug, Clone)]
pub enum ExportTarget {
    Branch(String),
    Patch(PathBuf),
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Exported {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<PathBuf>,
    /// The agent's own changed paths (the user's uncommitted changes ride along uncounted).
    pub files_changed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The patch holds CRLF line endings: apply it with `git am --keep-cr`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_cr: bool,
    /// The commit the export is based on (HEAD when the workspace was last synced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub based_on: Option<String>,
    /// Set when the repository's HEAD has moved since that sync: the export is still based on
    /// the synced commit, and this says where HEAD is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_moved_to: Option<String>,
}

/// The configured caps on what a sandbox may hand back (`sync.*`).
pub fn sync_limits(config: &Config) -> warren_sync::Limits {
    warren_sync::Limits {
        max_file_bytes: config.sync.max_file_bytes,
        max_total_bytes: config.sync.max_total_bytes,
        max_files: usize::try_from(config.sync.max_files).unwrap_or(usize::MAX),
    }
}

/// The sandbox's changes relative to its baseline, with the configured size limits.
pub fn collect(config: &Config, dirs: &SandboxDirs) -> Result<ChangeSet, ErrorInfo> {
    let limits = sync_limits(config);
    warren_sync::collect_changes(&dirs.workspace, &dirs.baseline, &limits)
        .map_err(|e| e.to_error_info())
}

/// The sandbox's changes and their unified diff: exactly what an export would commit, its patch
/// capped at `max_bytes`. Writes nothing (the objects git needs go to a scratch store).
pub fn diff(
    config: &Config,
    record: &warren_store::SandboxRecord,
    dirs: &SandboxDirs,
    max_bytes: u64,
) -> Result<(ChangeSet, warren_sync::ChangesDiff), ErrorInfo> {
    let changes = collect(config, dirs)?;
    let sync = crate::provision::sync_report(record)?;
    let repo = warren_sync::inspect_repo(&record.repo).map_err(|e| e.to_error_info())?;
    let diff = warren_sync::diff_changes(&repo, &sync, &dirs.workspace, &changes, max_bytes)
        .map_err(|e| e.to_error_info())?;
    Ok((changes, diff))
}

pub(crate) struct ExportInput<'a> {
    pub config: &'a Config,
    pub repo: &'a RepoInfo,
    pub sync: &'a SyncInReport,
    pub dirs: &'a SandboxDirs,
    pub prompt: &'a str,
    pub target: ExportTarget,
}

/// `Ok` with no branch when the agent changed nothing: no empty branches.
pub(crate) fn export(
    rec: &mut Recorder<'_>,
    input: ExportInput<'_>,
) -> Result<Exported, ErrorInfo> {
    let changes = collect(input.config, input.dirs)?;
    if changes.is_empty() {
        return Ok(Exported::default());
    }
    let files = changes.len() as u64;
    let request = warren_sync::ExportRequest {
        branch: match &input.target {
            ExportTarget::Branch(b) => b.clone(),
            ExportTarget::Patch(_) => String::new(),
        },
        agent_message: format!(
            "{}\n{}",
            agent_commit_message(input.prompt),
            commit_trailers(rec)
        ),
        user_changes_message: "warren: your uncommitted changes at the start of the run".into(),
        agent_author: ("OpenCode via warren".into(), "warren@localhost".into()),
    };
    let exported = match &input.target {
        ExportTarget::Branch(_) => {
            let report = warren_sync::export_branch(
                input.repo,
                input.sync,
                &input.dirs.workspace,
                &changes,
                &request,
            )
            .map_err(|e| e.to_error_info())?;
            let _ = rec.store.set_export(&rec.id, &report.branch, files);
            Exported {
                branch: Some(report.branch),
                patch: None,
                files_changed: files,
                commit: report.agent_commit,
                keep_cr: false,
                based_on: None,
                head_moved_to: None,
            }
        }
        ExportTarget::Patch(file) => {
            let report = warren_sync::export_patch(
                input.repo,
                input.sync,
                &input.dirs.workspace,
                &changes,
                &request,
                file,
            )
            .map_err(|e| e.to_error_info())?;
            Exported {
                branch: None,
                patch: Some(report.file),
                keep_cr: report.keep_cr,
                files_changed: files,
                commit: None,
                based_on: None,
                head_moved_to: None,
            }
        }
    };
    let mut exported = exported;
    exported.based_on = input.sync.head.clone();
    if input.repo.head != input.sync.head {
        exported.head_moved_to = input.repo.head.clone();
    }
    rec.emit(AgentEvent::Exported {
        branch: exported
            .branch
            .clone()
            .or_else(|| {
                exported
                    .patch
                    .as_ref()
                    .map(|p| format!("patch:{}", p.display()))
            })
            .unwrap_or_default(),
        files_changed: files,
        commit: exported.commit.clone(),
    });
    Ok(exported)
}

/// The trailers that lead from the commit back to the sandbox's record (empty if the record
/// cannot be read: the export itself must not fail for it).
fn commit_trailers(rec: &Recorder<'_>) -> String {
    let Ok(record) = rec.store.get(&rec.id) else {
        return String::new();
    };
    let events = rec.store.events(&rec.id, 0, None).unwrap_or_default();
    crate::audit::trailers(&record, &events)
}

fn agent_commit_message(prompt: &str) -> String {
    let first_line = prompt.lines().next().unwrap_or("").trim();
    let mut subject: String = first_line.chars().take(60).collect();
    if first_line.chars().count() > 60 {
        subject.push('…');
    }
    format!(
        "warren: {subject}\n\nChanges made by an OpenCode agent in a warren sandbox.\n\nPrompt:\n{prompt}\n"
    )
}
