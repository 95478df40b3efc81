//! Removing a sandbox: a warm OpenCode server is stopped first (every other agent run ends with
//! its sandbox destroyed); what remains is its directories and the baseline ref that pinned its
//! user tree. The record stays, `destroyed`.

use std::path::Path;

use warren_domain::{ErrorInfo, SandboxState, UserFacing};

use crate::paths::SandboxDirs;
use crate::recorder::Recorder;

/// Called under the sandbox's lease, from whatever state the sandbox was left in (a forced
/// teardown takes over from a supervisor it stopped mid-operation).
pub(crate) fn remove_sandbox(
    rec: &mut Recorder<'_>,
    repo_root: &Path,
    dirs: &SandboxDirs,
    detail: Option<&str>,
) -> Result<(), ErrorInfo> {
    let state = rec.store.get(&rec.id).map_err(|e| e.to_error_info())?.state;
    if state == SandboxState::Destroyed {
        // The supervisor a forced teardown stopped finished the job itself (a one-shot run).
        return Ok(());
    }
    if state == SandboxState::TearingDown {
        // An earlier teardown died half-way: say so, then start again.
        rec.transition(
            SandboxState::Error,
            Some("an earlier teardown did not finish"),
        )?;
    }
    rec.transition(SandboxState::TearingDown, detail)?;
    crate::warm_control::stop_warm_monitor(dirs);
    // The repository may have been moved or deleted since; then there is no ref left to release.
    if let Ok(repo) = warren_sync::inspect_repo(repo_root) {
        let _ = warren_sync::release_baseline(&repo, rec.id.short());
    }
    if let Err(e) = dirs.remove() {
        return Err(rec.fail(e));
    }
    rec.transition(SandboxState::Destroyed, None)
}
