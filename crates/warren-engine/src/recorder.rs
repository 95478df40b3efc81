//! The one place events and state changes are written: every event goes to the store (getting
//! its `seq`) and then to whoever is watching; every state change goes through the store's state
//! machine and is announced as an event.

use std::sync::Arc;

use crate::cancel::Cancel;
use tokio::sync::Notify;
use warren_domain::{AgentEvent, ErrorInfo, EventRecord, SandboxId, SandboxState, UserFacing};
use warren_store::StateStore;

/// Receives everything an operation reports, as it happens.
pub trait RunObserver: Send {
    fn event(&mut self, record: &EventRecord);
    /// A step of warren's own work (for a progress line); not recorded.
    fn progress(&mut self, _message: &str) {}
}

/// For operations nobody watches live (a detached monitor): the store is the audience.
pub struct NullObserver;

impl RunObserver for NullObserver {
    fn event(&mut self, _record: &EventRecord) {}
}

/// Wakes in-process event streams (see [`crate::events::EventStream`]) when an event is written,
/// so they read the store at once instead of at their next poll.
pub(crate) struct WakeObserver(pub Arc<Notify>);

impl RunObserver for WakeObserver {
    fn event(&mut self, _record: &EventRecord) {
        self.0.notify_waiters();
    }
}

pub(crate) struct Recorder<'a> {
    pub store: &'a dyn StateStore,
    pub id: SandboxId,
    pub observer: &'a mut dyn RunObserver,
    /// Fires when whoever started the operation wants the agent stopped (Ctrl-C in the CLI, a
    /// cancel call on a server, SIGTERM to a monitor); the work so far is kept.
    pub cancel: Cancel,
}

impl Recorder<'_> {
    /// A store failure is logged, never fatal to the agent: the agent's work matters more.
    pub fn emit(&mut self, event: AgentEvent) {
        match self.store.append_event(&self.id, &event) {
            Ok(record) => self.observer.event(&record),
            Err(e) => tracing::warn!("could not record event: {e}"),
        }
    }

    pub fn transition(&mut self, to: SandboxState, detail: Option<&str>) -> Result<(), ErrorInfo> {
        self.store
            .transition(&self.id, to, detail)
            .map_err(|e| e.to_error_info())?;
        self.emit(AgentEvent::StateChanged {
            state: to,
            detail: detail.map(str::to_owned),
        });
        Ok(())
    }

    /// Records a failure: the error on the record and the `error` state.
    pub fn fail(&mut self, error: ErrorInfo) -> ErrorInfo {
        let _ = self.store.set_error(&self.id, &error);
        let _ = self.transition(SandboxState::Error, Some(&error.message));
        error
    }
}
