//! The engine: where a sandbox's life is orchestrated. It owns no mechanism of its own; it
//! sequences the store (every state change through the state machine), a provider, the sync
//! engine, the model gateway and the agent runtime, and reports progress to an observer.

pub mod paths;
pub mod preflight;
pub mod run;
pub mod tools;

pub use paths::{SandboxDirs, default_data_dir};
pub use run::{Phases, RunObserver, RunRequest, RunSummary, run};
pub use tools::Tools;
