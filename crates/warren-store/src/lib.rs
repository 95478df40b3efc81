//! warren's durable state: one SQLite file holding every sandbox, its lifecycle audit log, its
//! event stream, its operation lease and its place in concurrency pools, so short-lived CLI
//! processes can share one view of the world.
//!
//! Every state change goes through [`Store::transition`], which checks the domain's transition
//! table inside an immediate transaction; nothing else in this crate writes a sandbox's state.

mod clock;
mod error;
mod events;
mod holder;
mod leases;
mod pools;
mod record;
mod schema;
mod store;
mod update;

pub use error::StoreError;
pub use holder::{LeaseHolder, lease_holder_for_this_process};
pub use leases::Lease;
pub use pools::PoolTry;
pub use record::{NewSandbox, SandboxRecord, TransitionRecord};
pub use store::Store;

use std::path::{Path, PathBuf};

/// The database file inside warren's data directory.
pub fn default_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("warren.db")
}
