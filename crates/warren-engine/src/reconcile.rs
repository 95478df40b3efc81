//! Keeping records honest. A sandbox whose operation has no live lease holder (its monitor was
//! killed, the machine rebooted) cannot still be provisioning or running: the next command that
//! looks at it moves it to `error`, with a reason that says its work is still exportable.

use std::time::Duration;

use time::OffsetDateTime;
use warren_domain::{AgentEvent, ErrorInfo, ReasonCode, SandboxId, SandboxState, UserFacing};
use warren_store::{SandboxRecord, StateStore, Store};

/// A `new` sandbox waits this long for its monitor to take the lease before it counts as lost.
const NEW_GRACE: Duration = Duration::from_secs(60);

pub fn reconcile(store: &Store, record: SandboxRecord) -> Result<SandboxRecord, ErrorInfo> {
    let in_flight = matches!(
        record.state,
        SandboxState::Provisioning
            | SandboxState::Running
            | SandboxState::Saving
            | SandboxState::TearingDown
    );
    let stale_new = record.state == SandboxState::New
        && OffsetDateTime::now_utc() - record.created_at > NEW_GRACE;
    if !(in_flight || stale_new) {
        return Ok(record);
    }
    if store
        .lease(&record.id)
        .map_err(|e| e.to_error_info())?
        .is_some()
    {
        return Ok(record);
    }
    let error = ErrorInfo::new(
        ReasonCode::SandboxFailed,
        format!(
            "sandbox {} was {} but nothing supervises it any more (its monitor died)",
            record.name, record.state
        ),
    )
    .with_hint(format!(
        "the work in its workspace is kept: export it with 'warren export {n}', or remove it with 'warren teardown {n} --force'",
        n = record.name
    ));
    // Another process may have reconciled it first; then its answer stands.
    match store.transition(&record.id, SandboxState::Error, Some(&error.message)) {
        Ok(_) => {
            let _ = store.set_error(&record.id, &error);
            let _ = store.append_event(
                &record.id,
                &AgentEvent::StateChanged {
                    state: SandboxState::Error,
                    detail: Some(error.message.clone()),
                },
            );
        }
        Err(e) => tracing::debug!("reconcile of {} lost a race: {e}", record.name),
    }
    store.get(&record.id).map_err(|e| e.to_error_info())
}

/// Stops the process holding a sandbox's lease (a monitor), by its pid, while the store still
/// sees that process as the live holder (the store checks the pid's start time, so a reused pid is
/// never signalled).
pub fn stop_holder(store: &Store, id: &SandboxId) {
    let live_pid = || store.lease(id).ok().flatten().and_then(|l| l.pid);
    for signal in [rustix::process::Signal::TERM, rustix::process::Signal::KILL] {
        let Some(pid) = live_pid()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            return;
        };
        let _ = rustix::process::kill_process(pid, signal);
        for _ in 0..100 {
            if live_pid().is_none() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
