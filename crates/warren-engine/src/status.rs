//! A sandbox's status as one view (`warren status`, `GET /v1/sandboxes/{name}/status`): the
//! record, its lease, whether its supervisor is lost, its warm server, the files its agent
//! changed and what the gateway metered. Assembled once here so both front ends show the same.
//! A pure read: nothing is written.

use std::path::Path;

use warren_api::StatusView;
use warren_config::Config;
use warren_domain::{EgressUsage, ErrorInfo, GatewayUsage, SandboxState, UserFacing};
use warren_store::{SandboxRecord, StateStore};

use crate::paths::SandboxDirs;
use crate::reconcile::{Assessment, assess};

/// The status of `record`, and a warning when its changed files could not be listed (the
/// status is still shown, with none).
pub fn status(
    store: &dyn StateStore,
    data_dir: &Path,
    config: &Config,
    record: &SandboxRecord,
) -> Result<(StatusView, Option<ErrorInfo>), ErrorInfo> {
    let lease = store.lease(&record.id).map_err(|e| e.to_error_info())?;
    let dirs = SandboxDirs::new(data_dir, &record.id);
    // While the agent runs its files are in motion; the list is for an idle sandbox.
    let listed = if !dirs.workspace.is_dir()
        || record.sync.is_none()
        || record.state == SandboxState::Running
    {
        Ok(Vec::new())
    } else {
        crate::export::collect(config, &dirs)
            .map(|c| c.changes.iter().map(crate::views::changed_file).collect())
    };
    let (changed_files, warning) = match listed {
        Ok(files) => (files, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let warm = crate::warm_control::warm_info(&dirs);
    let lost = assess(record, lease.as_ref(), time::OffsetDateTime::now_utc())
        == Assessment::SupervisorLost;
    let events = store
        .events(&record.id, 0, None)
        .map_err(|e| e.to_error_info())?;
    let view = StatusView {
        sandbox: crate::views::sandbox(record),
        // A held sandbox is never idle, whatever its state says at this instant.
        busy: lease.is_some(),
        lease: lease.as_ref().map(crate::views::lease),
        supervisor_lost: lost,
        warm_server: warm.as_ref().map(crate::views::warm_server),
        changed_files,
        gateway_usage: GatewayUsage::from_events(events.iter().map(|e| &e.event)),
        // Only a running agent can be waiting; a request left by a run that ended is history.
        awaiting_approval: (record.state == SandboxState::Running)
            .then(|| warren_domain::pending_approval(events.iter().map(|e| &e.event)))
            .flatten(),
        budget: crate::budget::status(&events, time::OffsetDateTime::now_utc()),
        egress: EgressUsage::from_events(events.iter().map(|e| &e.event)),
    };
    Ok((view, warning))
}
