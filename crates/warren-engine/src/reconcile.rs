//! The reconciler: level-triggered, as in kube-rs's controllers. It compares what a record says
//! with what exists (is its supervisor alive?), acts, and says when to look again; running it
//! twice, or from two processes at once, is safe. `gc`, the sweep that `list` keeps for
//! daemonless auto-teardown, and a server's loop run it. Reads never do: [`assess`] is the pure
//! half, which a read may show.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use warren_domain::{AgentEvent, ErrorInfo, ReasonCode, SandboxId, SandboxState, UserFacing};
use warren_store::{Lease, SandboxRecord, StateStore};

/// A `new` sandbox waits this long for its supervisor to take the lease before it counts as lost.
pub const NEW_GRACE: Duration = Duration::from_secs(60);

/// What the reconciler makes of one sandbox. Pure: computed from the record and its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Assessment {
    /// Nothing to do.
    Settled,
    /// A supervisor holds it; look again when its lease would lapse.
    Supervised,
    /// Just recorded; its supervisor has until the grace ends to take the lease.
    Starting { grace_left_ms: u64 },
    /// Its state needs a live supervisor and none holds its lease: it is lost.
    SupervisorLost,
}

impl Assessment {
    /// When the reconciler should look at this sandbox again; a supervised one when its lease,
    /// of `lease_ttl`, would lapse.
    pub fn requeue_after(&self, lease_ttl: Duration) -> Option<Duration> {
        match self {
            Self::Settled | Self::SupervisorLost => None,
            Self::Supervised => Some(lease_ttl),
            Self::Starting { grace_left_ms } => Some(Duration::from_millis(*grace_left_ms)),
        }
    }
}

/// The states only a live supervisor may leave a sandbox in.
pub fn needs_supervisor(state: SandboxState) -> bool {
    matches!(
        state,
        SandboxState::New
            | SandboxState::Queued
            | SandboxState::Provisioning
            | SandboxState::Running
            | SandboxState::Saving
            | SandboxState::TearingDown
    )
}

/// `lease` is the sandbox's live lease as the store reports it (a dead holder's reads as none).
pub fn assess(record: &SandboxRecord, lease: Option<&Lease>, now: OffsetDateTime) -> Assessment {
    if !needs_supervisor(record.state) {
        return Assessment::Settled;
    }
    if lease.is_some() {
        return Assessment::Supervised;
    }
    if record.state == SandboxState::New {
        let age = now - record.created_at;
        let grace = time::Duration::try_from(NEW_GRACE).unwrap_or(time::Duration::ZERO);
        if age < grace {
            let left = (grace - age).whole_milliseconds().max(0);
            return Assessment::Starting {
                grace_left_ms: u64::try_from(left).unwrap_or(u64::MAX),
            };
        }
    }
    Assessment::SupervisorLost
}

/// One pass over one sandbox: assess it and act on what needs acting on. Returns the record as
/// it is now and the assessment that led there.
pub fn reconcile(
    store: &dyn StateStore,
    record: SandboxRecord,
) -> Result<(SandboxRecord, Assessment), ErrorInfo> {
    let lease = store.lease(&record.id).map_err(|e| e.to_error_info())?;
    let verdict = assess(&record, lease.as_ref(), OffsetDateTime::now_utc());
    if verdict != Assessment::SupervisorLost {
        return Ok((record, verdict));
    }
    let error = lost_error(&record);
    // The transition re-checks the state under the write lock: a supervisor that moved the
    // sandbox on meanwhile, or another reconciler that got there first, wins, and this is a no-op.
    match store.mark_lost(&record.id, record.state, &error.message) {
        Ok(true) => {
            let _ = store.set_error(&record.id, &error);
            let _ = store.append_event(
                &record.id,
                &AgentEvent::StateChanged {
                    state: SandboxState::Error,
                    detail: Some(error.message.clone()),
                },
            );
        }
        Ok(false) => tracing::debug!("{} was taken up or moved on meanwhile", record.name),
        Err(e) => return Err(e.to_error_info()),
    }
    let record = store.get(&record.id).map_err(|e| e.to_error_info())?;
    Ok((record, verdict))
}

/// The error of a sandbox whose supervisor died: what the reconciler records, and what a read
/// shows before it does.
pub fn lost_error(record: &SandboxRecord) -> ErrorInfo {
    ErrorInfo::new(
        ReasonCode::SupervisorLost,
        format!(
            "sandbox {} was {} but nothing supervises it any more (its supervisor died)",
            record.name, record.state
        ),
    )
    .with_hint(
        "the work in its workspace is kept: export or pull it, or tear the sandbox down with force to discard it",
    )
}

/// How long a stopped supervisor gets to end its agent and keep its work before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Stops the process holding a sandbox's lease (a monitor, or a foreground run), by its pid,
/// while the store still sees that process as the live holder (the store checks the pid's start
/// time, so a reused pid is never signalled). Asked first (SIGTERM: its host cancels it), killed
/// after [`STOP_GRACE`]. Never this process: an operation here is stopped by its token.
pub fn stop_holder(store: &dyn StateStore, id: &SandboxId) {
    let live_pid = || {
        store
            .lease(id)
            .ok()
            .flatten()
            .and_then(|l| l.pid)
            .filter(|pid| *pid != std::process::id())
    };
    for (signal, wait) in [
        (rustix::process::Signal::TERM, STOP_GRACE),
        (rustix::process::Signal::KILL, Duration::from_secs(5)),
    ] {
        let Some(pid) = live_pid()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            return;
        };
        let _ = rustix::process::kill_process(pid, signal);
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        while waited < wait {
            if live_pid().is_none() {
                return;
            }
            std::thread::sleep(step);
            waited += step;
        }
    }
}
