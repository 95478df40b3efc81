//! The engine: where a sandbox's life is orchestrated. It owns no mechanism of its own; it
//! sequences the store (every state change through the state machine), a provider, the sync
//! engine, the model gateway and the agent runtime, and reports progress to an observer.

mod agent;
pub mod export;
pub mod gc;
pub mod monitor;
pub mod ops;
pub mod paths;
pub mod preflight;
pub mod prepare;
mod provision;
pub mod reconcile;
pub mod recorder;
pub mod run;
mod task;
mod teardown;
pub mod tools;
mod warm;
pub mod warm_control;

pub use export::{ExportTarget, Exported};
pub use gc::GcReport;
pub use monitor::{MonitorJob, run_monitor};
pub use ops::{LaunchRequest, Lifecycle, MONITOR_CONFIG_ENV};
pub use paths::{SandboxDirs, default_data_dir};
pub use recorder::{NullObserver, RunObserver};
pub use run::{Phases, RunRequest, RunSummary, run};
pub use task::TaskOutcome;
pub use tools::Tools;
