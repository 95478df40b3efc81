//! What a warren that died mid-run left on a backend that keeps sandboxes after their process (a
//! pod outlives the warren that made it). Such a sandbox may hold the run's work, which the host
//! directories do not have yet, so it is read back before it is removed:
//! - before a sandbox's next run creates a new one ([`recover_before_run`]): the host directories
//!   get the leftover's files first, so the next run starts from them;
//! - by the sweep (`warren gc`, `warren list`, the server's reconciler), for a sandbox no live
//!   operation holds. A leftover whose record is gone (or never was, past a grace period) is
//!   removed without reading: nothing could take its files.
//!
//! A sandbox's leftover exists only until one of these runs, and a later run recovers it before
//! making its own, so a newer run's work is never overwritten by an older leftover.
//!
//! A warm sandbox between prompts is the exception: its last prompt's work already came back,
//! and the host's workspace may have moved on since (a `warren sync`), so its leftover's
//! workspace is older than the host's. The warm server says so with a marker beside the
//! sandbox's directories ([`set_workspace_current`]); such a leftover gives back only its HOME
//! (OpenCode's session store, which the idle server kept writing).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use warren_domain::{ErrorInfo, SandboxId, SandboxState, UserFacing};
use warren_provider::{Mounts, Provider, Sandbox};

use crate::error::EngineError;
use crate::ops::Lifecycle;
use crate::paths::SandboxDirs;
use warren_store::StateStore;

/// A leftover younger than this whose sandbox has no record is never removed: its record may
/// not be written yet (the same grace as the docker provider's containers).
pub const LEFTOVER_GRACE_SECS: i64 = 60;

/// Which sandboxes may have a backend sandbox right now, and where the settled ones keep files.
#[derive(Default)]
pub struct Accounted {
    /// A live lease holds them, or a live monitor keeps their agent warm: never touched.
    live: HashSet<String>,
    /// Recorded, past `new`, not live: a leftover of theirs is read back into these directories
    /// (unless torn down) and removed, at once.
    settled: HashMap<String, (SandboxId, Option<SandboxDirs>)>,
    /// Where a recovery takes the sandbox's lease: a sandbox settled when it was read may be
    /// taken up again (an `exec` in another terminal) before its leftover is read back.
    store: Option<Arc<dyn StateStore>>,
}

impl Accounted {
    pub fn is_live(&self, sandbox_id: &str) -> bool {
        self.live.contains(sandbox_id)
    }

    pub fn is_settled(&self, sandbox_id: &str) -> bool {
        self.settled.contains_key(sandbox_id)
    }
}

impl<P: Provider> Lifecycle<'_, P> {
    /// Reads the store (and each sandbox's warm monitor) to tell live sandboxes from settled ones.
    pub fn accounted(&self) -> Result<Accounted, EngineError> {
        let mut accounted = Accounted {
            store: Some(self.store.clone()),
            ..Accounted::default()
        };
        for r in self.store.list(true)? {
            let dirs = SandboxDirs::new(self.data_dir, &r.id);
            // A monitor on another host (a replica elsewhere) cannot be judged by its pid here:
            // its warm pod is never taken for a leftover by this host.
            let warm = crate::warm_control::warm_info(&dirs)
                .is_some_and(|w| w.monitor.is_alive() || !on_this_host(&w.monitor.name));
            if warm || self.store.lease(&r.id)?.is_some() {
                accounted.live.insert(r.id.to_string());
            } else if r.state != SandboxState::New {
                let keep = !matches!(r.state, SandboxState::Destroyed | SandboxState::TearingDown)
                    && dirs.workspace.is_dir();
                accounted
                    .settled
                    .insert(r.id.to_string(), (r.id.clone(), keep.then_some(dirs)));
            }
        }
        Ok(accounted)
    }
}

/// Whether a holder named `pid:<pid>@<host>` runs on this host (a name without a host does).
fn on_this_host(holder: &str) -> bool {
    holder
        .rsplit_once('@')
        .is_none_or(|(_, host)| host == warren_store::this_host())
}

/// What a sweep did.
#[derive(Debug, Default, Serialize)]
pub struct LeftoverReport {
    /// Leftovers whose files came back into their sandbox's directories, then removed.
    pub recovered: Vec<String>,
    /// Leftovers removed without reading (no record, torn down, or unreadable: the reason).
    pub removed: Vec<String>,
}

/// Reads back and removes every leftover that no live operation accounts for. A backend that
/// cannot be asked is no error here (the sweep runs beside every `list`); it is logged.
pub async fn sweep_leftovers<P: Provider>(
    provider: &P,
    accounted: &Accounted,
    limits: &warren_sync::Limits,
) -> LeftoverReport {
    let mut report = LeftoverReport::default();
    let leftovers = match provider.leftovers().await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(
                "cannot list the {} provider's leftovers: {e}",
                provider.name()
            );
            return report;
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for leftover in leftovers {
        let id = leftover.sandbox_id.as_str();
        if accounted.is_live(id) {
            continue;
        }
        let (sandbox, dirs) = match accounted.settled.get(id) {
            Some((sandbox, dirs)) => (Some(sandbox), dirs.as_ref()),
            None if leftover
                .created_unix
                .is_some_and(|t| now - t <= LEFTOVER_GRACE_SECS) =>
            {
                continue;
            }
            None => (None, None),
        };
        // Reading files back into a sandbox's directories is a write: under its lease, so an
        // operation that took the sandbox up since it was read (and recovers the pod itself)
        // is never raced. Busy: that operation has it.
        let lease = match (sandbox, dirs, &accounted.store) {
            (Some(sandbox), Some(_), Some(store)) => match take_lease(store, sandbox).await {
                Some(held) => Some(held),
                None => continue,
            },
            _ => None,
        };
        let settled = settle(provider, &leftover, dirs, limits).await;
        if let (Some(sandbox), Some(store)) = (lease, &accounted.store) {
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || store.release_lease(&sandbox)).await;
        }
        match settled {
            Ok(true) => report.recovered.push(leftover.handle),
            Ok(false) => report.removed.push(leftover.handle),
            Err(e) => report
                .removed
                .push(format!("{} (not removed: {})", leftover.handle, e.message)),
        }
    }
    report
}

/// How long a recovery's lease lasts unrenewed; the holder's death frees it sooner.
const RECOVERY_LEASE: std::time::Duration = std::time::Duration::from_secs(600);

/// Takes `sandbox`'s lease for a recovery, off the async threads (a store may block); `None`
/// when another holder has it or the store cannot say.
async fn take_lease(store: &Arc<dyn StateStore>, sandbox: &SandboxId) -> Option<SandboxId> {
    let (store, id) = (store.clone(), sandbox.clone());
    tokio::task::spawn_blocking(move || {
        store
            .acquire_lease(&id, "recover", RECOVERY_LEASE)
            .ok()
            .map(|_| id)
    })
    .await
    .ok()
    .flatten()
}

/// Before a run of `id` on a provider without shared directories: whatever an earlier run left
/// on the backend comes back into the host directories first, then goes.
pub(crate) async fn recover_before_run<P: Provider>(
    provider: &P,
    id: &SandboxId,
    dirs: &SandboxDirs,
    limits: &warren_sync::Limits,
) -> Result<(), ErrorInfo> {
    if provider.mounts() != Mounts::None {
        return Ok(());
    }
    let leftovers = provider.leftovers().await.map_err(|e| e.to_error_info())?;
    for leftover in leftovers.iter().filter(|l| l.sandbox_id == id.as_str()) {
        settle(provider, leftover, Some(dirs), limits).await?;
    }
    // A marker left without its sandbox must not speak for the one made next.
    set_workspace_current(dirs, false).map_err(|e| {
        ErrorInfo::new(
            warren_domain::ReasonCode::SandboxFailed,
            format!("cannot clear {}: {e}", current_marker(dirs).display()),
        )
    })?;
    Ok(())
}

/// The marker saying the host's workspace is at least as new as the warm sandbox's copy.
fn current_marker(dirs: &SandboxDirs) -> std::path::PathBuf {
    dirs.root.join("workspace-current")
}

/// Sets (the last prompt's work came back to the host) or clears (a prompt is about to run, or a
/// run's recovery settled the leftovers) the marker. Cleared before it matters: a marker that
/// cannot be cleared makes the prompt fail rather than its work be skipped by recovery.
pub(crate) fn set_workspace_current(dirs: &SandboxDirs, current: bool) -> std::io::Result<()> {
    let marker = current_marker(dirs);
    if current {
        std::fs::write(marker, b"")
    } else {
        match std::fs::remove_file(marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Reads `leftover` back into `dirs` (when given), then removes it. `Ok(true)`: its files came
/// back. A leftover that cannot be read (a pod that failed, was evicted) is removed anyway: its
/// files are gone with it, and keeping it would hold the sandbox's next run.
async fn settle<P: Provider>(
    provider: &P,
    leftover: &warren_provider::Leftover,
    dirs: Option<&SandboxDirs>,
    limits: &warren_sync::Limits,
) -> Result<bool, ErrorInfo> {
    let sandbox = provider
        .reattach(leftover)
        .await
        .map_err(|e| e.to_error_info())?;
    let recovered = match dirs {
        Some(dirs) => match recover_files(&sandbox, dirs, limits).await {
            Ok(()) => {
                tracing::info!(
                    "recovered the files of {} into sandbox {}",
                    leftover.handle,
                    leftover.sandbox_id
                );
                true
            }
            Err(e) => {
                tracing::warn!(
                    "the files of {} could not be recovered: {}",
                    leftover.handle,
                    e.message
                );
                false
            }
        },
        None => false,
    };
    sandbox.destroy().await.map_err(|e| e.to_error_info())?;
    Ok(recovered)
}

/// What of a leftover comes back: all of it, or only HOME when the host's workspace is newer.
async fn recover_files<S: Sandbox>(
    sandbox: &S,
    dirs: &SandboxDirs,
    limits: &warren_sync::Limits,
) -> Result<(), ErrorInfo> {
    let recovered = if current_marker(dirs).exists() {
        crate::transfer::download(sandbox, warren_provider::SANDBOX_HOME, &dirs.home, limits).await
    } else {
        crate::transfer::download_all(sandbox, dirs, limits).await
    };
    // The leftover goes either way: the marker spoke of it alone.
    let _ = set_workspace_current(dirs, false);
    recovered
}

#[cfg(test)]
mod tests {
    use super::on_this_host;

    #[test]
    fn a_monitor_on_another_host_is_not_judged_by_its_pid_here() {
        assert!(on_this_host(&format!(
            "pid:7@{}",
            warren_store::this_host()
        )));
        assert!(!on_this_host("pid:7@another-replica"));
        assert!(on_this_host("pid:7"));
    }
}
