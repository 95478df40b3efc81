//! What every handler shares: where the data lives, how to pick a provider and load settings
//! (both handed over by the host, so this crate depends on no provider), the supervisors it runs
//! as tasks, and the shutdown signal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use warren_config::Config;
use warren_domain::{ErrorInfo, ReasonCode, SandboxState};
use warren_engine::Lifecycle;
use warren_provider::Provider;
use warren_store::{SandboxRecord, StateStore, TenancyStore};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::tasks::Tasks;

/// Builds the provider of kind `local`/`docker` for settings and a repository.
pub type ProviderFactory<P> =
    Arc<dyn Fn(&str, &Config, Option<&Path>) -> Result<P, ErrorInfo> + Send + Sync>;

/// Loads the settings that apply to a repository (its `.warren.toml` included), or the
/// server's own without one.
pub type ConfigLoader = Arc<dyn Fn(Option<&Path>) -> Result<Config, ErrorInfo> + Send + Sync>;

pub struct App<P> {
    /// Where sandboxes keep their host directories.
    pub data_dir: PathBuf,
    /// The state, opened by the host (which chooses the implementation), shared by every
    /// handler, task and engine the server runs.
    pub store: Arc<dyn StateStore>,
    /// Tokens and sandbox owners (one store object can be both handles).
    pub tenancy: Arc<dyn TenancyStore>,
    pub providers: ProviderFactory<P>,
    pub config: ConfigLoader,
    pub tasks: Tasks,
    pub shutdown: CancellationToken,
    /// The event streams each token holds open.
    pub streams: Arc<crate::limits::StreamLimits>,
    /// Requests and operation durations, for `/metrics`.
    pub meter: crate::meter::Meter,
    pub runs_succeeded: AtomicU64,
    pub runs_failed: AtomicU64,
}

impl<P: Provider + 'static> App<P> {
    /// Runs `body` on a blocking thread: the store, sync and export are synchronous.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        body: impl FnOnce(&Arc<Self>) -> ApiResult<T> + Send + 'static,
    ) -> ApiResult<T> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || body(&app))
            .await
            .map_err(|e| ApiError::new(ReasonCode::Internal, format!("a task failed: {e}")))?
    }

    /// The settings for an existing sandbox: its repository's layers included when it is there.
    pub fn config_for(&self, record: &SandboxRecord) -> ApiResult<Config> {
        let repo = record.repo.is_dir().then_some(record.repo.as_path());
        Ok((self.config)(repo)?)
    }

    /// A lifecycle handle for operations that never start an agent (the provider is not used).
    pub fn with_lifecycle<T>(
        &self,
        config: &Config,
        body: impl FnOnce(&Lifecycle<'_, P>) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let provider = (self.providers)("local", config, None)?;
        let lc = Lifecycle::new(&provider, config, &self.data_dir, self.store.clone());
        body(&lc)
    }

    /// The sandbox `name` if `who` may see it; another owner's sandbox is "not found".
    pub fn find(&self, who: &Principal, name: &str) -> ApiResult<SandboxRecord> {
        let parsed = warren_domain::SandboxName::parse(name)
            .map_err(|e| ApiError::new(ReasonCode::InvalidArgument, e.to_string()))?;
        let record = self.store.get_by_name(&parsed)?;
        if !who.sees(self.tenancy.owner(&record.id)?.as_deref()) {
            return Err(warren_store::StoreError::NotFound {
                sandbox: name.to_owned(),
            }
            .into());
        }
        Ok(record)
    }

    pub fn count_run(&self, ok: bool) {
        let counter = if ok {
            &self.runs_succeeded
        } else {
            &self.runs_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether a sandbox has nothing more to write for now: no state that needs a supervisor and no
/// lease held (an event stream without `follow` ends then).
pub fn is_idle(store: &dyn StateStore, record: &SandboxRecord) -> bool {
    !warren_engine::reconcile::needs_supervisor(record.state)
        && record.state != SandboxState::New
        && store.lease(&record.id).ok().flatten().is_none()
}
