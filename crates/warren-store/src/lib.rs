//! warren's durable state: one SQLite file holding every sandbox, its lifecycle audit log, its
//! event stream, its operation lease and its place in concurrency pools, so short-lived CLI
//! processes can share one view of the world.
//!
//! The contract is the [`StateStore`] trait; [`SqliteStore`] (also called [`Store`]) implements it
//! on one SQLite file. Whether a lease's or pool entry's holder still exists is a pluggable
//! [`Liveness`] policy. With the `conformance` feature, `conformance` is the test suite every
//! implementation must pass.
//!
//! Every state change goes through [`StateStore::transition`], which checks the domain's
//! transition table atomically; nothing else writes a sandbox's state.

mod clock;
#[cfg(feature = "conformance")]
#[expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: a failed expectation is a panic"
)]
pub mod conformance;
mod error;
mod events;
mod holder;
mod leases;
mod liveness;
mod pools;
mod record;
mod schema;
mod sqlite_state_store;
mod state_store;
mod store;
mod tenancy;
mod update;

pub use error::{Cause, DatabaseProblem, StoreError};
pub use holder::{LeaseHolder, lease_holder_for_this_process, this_host};
pub use leases::Lease;
pub use liveness::{Liveness, ProcessLiveness, RecordedHolder, RecordedLease, TtlLiveness};
pub use pools::PoolTry;
pub use record::{NewSandbox, SandboxRecord, TransitionRecord};
pub use state_store::StateStore;
pub use store::{SqliteStore, Store};
pub use tenancy::{PageQuery, SandboxPage, TenancyStore, TokenRecord};

use std::path::{Path, PathBuf};

/// The database file inside warren's data directory.
pub fn default_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("warren.db")
}
