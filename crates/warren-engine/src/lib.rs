//! The engine: where a sandbox's life is orchestrated, hosted the same way by the CLI and by a
//! server. It owns no mechanism of its own; it sequences the store (every state change through
//! the state machine), a provider, the sync engine, the model gateway and the agent runtime.
//! Every agent operation runs under the sandbox's lease through one supervision path
//! (`supervisor.rs`, `jobs.rs`); reads never write; the reconciler (`reconcile.rs`, `gc.rs`) is
//! the only code that acts on what it finds.

mod agent;
pub mod approvals;
pub mod audit;
pub mod budget;
pub mod cancel;
pub mod egress;
pub mod engine;
pub mod error;
pub mod events;
pub mod export;
pub mod gc;
pub mod jobs;
pub mod launcher;
pub mod leftovers;
mod monitor;
pub mod ops;
pub mod paths;
pub mod preflight;
pub mod prepare;
mod provision;
pub mod reconcile;
pub mod recorder;
pub mod resolve;
pub mod run;
pub mod source;
mod stamp;
pub mod status;
pub mod supervisor;
mod task;
mod teardown;
pub mod tools;
mod transfer;
pub mod views;
mod warm;
pub mod warm_control;

pub use cancel::Cancel;
pub use engine::{Engine, RunHandle};
pub use error::EngineError;
pub use events::{EventStream, StreamEnd};
pub use export::{ExportTarget, Exported};
pub use gc::GcReport;
pub use jobs::MonitorJob;
pub use launcher::{LaunchedSupervisor, SupervisorLauncher};
pub use ops::{LaunchRequest, Lifecycle};
pub use paths::{SandboxDirs, default_data_dir};
pub use reconcile::{Assessment, assess};
pub use recorder::{NullObserver, RunObserver};
pub use run::{Phases, RunRequest, RunSummary};
pub use task::TaskOutcome;
pub use tools::Tools;
