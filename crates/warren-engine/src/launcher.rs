//! Starting a detached supervisor is the host's business: the CLI starts a `warren __monitor`
//! process (so no terminal needs to stay open), a server runs a task. The engine asks through
//! this trait and watches what it got back only to notice a supervisor that ended before the
//! sandbox started.

use warren_config::Config;
use warren_domain::ErrorInfo;

use crate::jobs::MonitorJob;

pub trait SupervisorLauncher: Send + Sync {
    /// Starts a supervisor for `job` with exactly these settings.
    fn launch(
        &self,
        job: &MonitorJob,
        config: &Config,
    ) -> Result<Box<dyn LaunchedSupervisor>, ErrorInfo>;

    /// The daily budget of the sandbox's owner with what the owner spent today, for a host that
    /// knows owners (a server); none by default.
    fn owner_budget(
        &self,
        _sandbox: &warren_domain::SandboxId,
        _config: &Config,
    ) -> Option<warren_domain::OwnerBudget> {
        None
    }
}

/// A supervisor that was started (or a warm one that accepted the job).
pub trait LaunchedSupervisor: Send {
    /// How it ended, once it has (reaping a child process); `None` while it runs.
    fn exited(&mut self) -> Option<String>;
}

/// The sandbox's warm monitor, which accepted the job over its control socket.
pub(crate) struct WarmMonitor(pub Option<warren_store::LeaseHolder>);

impl LaunchedSupervisor for WarmMonitor {
    fn exited(&mut self) -> Option<String> {
        match &self.0 {
            Some(holder) if holder.is_alive() => None,
            _ => Some("the warm monitor is gone".to_owned()),
        }
    }
}
