//! The one supervision path. Every operation that runs an agent (the foreground `run`, a detached
//! monitor's launch or follow-up, a server's task) holds the sandbox's lease under a holder
//! identity of its own and renews it from a heartbeat thread until the operation is over. A
//! sandbox is declared lost only when this lease is dead, so nothing that merely looks at a
//! sandbox can mistake a working supervisor for a dead one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use warren_domain::{ErrorInfo, SandboxId, SandboxState, UserFacing};
use warren_store::{LeaseHolder, StateStore};

/// How long a supervisor's lease lives without a heartbeat (`timeouts.lease_ttl_secs`).
pub fn lease_ttl(config: &warren_config::Config) -> Duration {
    Duration::from_secs(config.timeouts.lease_ttl_secs)
}

/// The lease identity of one operation: this process (liveness is judged by its pid and start
/// time) plus a token of the operation's own, so two operations in one process (a server's tasks)
/// never share a lease.
pub fn operation_holder() -> LeaseHolder {
    let mut holder = LeaseHolder::this_process();
    let token = uuid::Uuid::new_v4().simple().to_string();
    holder.name = format!("{}/{}", holder.name, &token[..8]);
    holder
}

/// A lease this operation holds, renewed until released (or dropped: a panic must not leave a
/// lease that looks alive for as long as this process runs).
pub(crate) struct HeldLease {
    id: SandboxId,
    holder: LeaseHolder,
    store: Arc<dyn StateStore>,
    heartbeat: Option<Heartbeat>,
}

impl HeldLease {
    /// Takes the sandbox's lease for `operation`; `SandboxBusy` when another live holder has it.
    pub fn acquire(
        store: &Arc<dyn StateStore>,
        id: &SandboxId,
        operation: &str,
        ttl: Duration,
    ) -> Result<Self, ErrorInfo> {
        let holder = operation_holder();
        store
            .acquire_lease_as(id, operation, ttl, &holder)
            .map_err(|e| e.to_error_info())?;
        let heartbeat = Heartbeat::start(store.clone(), id, &holder, ttl);
        Ok(Self {
            id: id.clone(),
            holder,
            store: store.clone(),
            heartbeat: Some(heartbeat),
        })
    }

    /// Stops the heartbeat and gives the lease up.
    pub fn release(mut self) {
        self.heartbeat.take();
        let _ = self.store.release_lease_as(&self.id, &self.holder);
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if self.heartbeat.take().is_some() {
            let _ = self.store.release_lease_as(&self.id, &self.holder);
        }
    }
}

/// Renews the lease until dropped, from its own thread, so a busy or blocked async runtime never
/// lets a live operation's lease lapse. It shares the operation's store handle (`Send + Sync`):
/// one connection per process, not one per heartbeat.
struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(
        store: Arc<dyn StateStore>,
        id: &SandboxId,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (id, holder) = (id.clone(), holder.clone());
        let thread = std::thread::spawn(move || {
            let tick = ttl / 3;
            let step = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(step);
                waited += step;
                if waited >= tick {
                    waited = Duration::ZERO;
                    if let Err(e) = store.renew_lease_as(&id, ttl, &holder) {
                        tracing::error!("a supervisor lost its lease: {e}");
                    }
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Records `error` on a supervised sandbox unless its state already says how it ended (an
/// `error` recorded by the work itself, or a sandbox torn down meanwhile).
pub(crate) fn record_failure(
    rec: &mut crate::recorder::Recorder<'_>,
    error: &ErrorInfo,
) -> Option<SandboxState> {
    let current = rec.store.get(&rec.id).map(|r| r.state).ok();
    if !matches!(
        current,
        Some(SandboxState::Error | SandboxState::Destroyed) | None
    ) {
        rec.fail(error.clone());
    }
    current
}
