//! warren's durable state in PostgreSQL, for a server with several replicas sharing one
//! database: [`PostgresStore`] implements [`warren_store::StateStore`] and passes the same
//! conformance suite as the SQLite store.
//!
//! - **Driver and threads.** tokio-postgres connections in a deadpool pool, driven by one
//!   current-thread tokio runtime on a thread each store owns (`worker`). The trait's
//!   synchronous methods send their work to it and wait on a std channel, so they are safe from
//!   plain threads, `spawn_blocking`, and futures under `Handle::block_on` alike.
//! - **Atomicity.** READ COMMITTED transactions with explicit locks: every read-then-write about
//!   one sandbox first locks its row (`SELECT ... FOR NO KEY UPDATE`); every pool write first
//!   takes the pool's advisory lock; the name check is the partial unique index.
//! - **Time.** The database's clock (`clock_timestamp()`), one for every replica.
//! - **Liveness.** [`TtlLiveness`](warren_store::TtlLiveness) by default (holders on several
//!   hosts), any [`Liveness`](warren_store::Liveness) by [`PostgresOptions`] or
//!   [`PostgresStore::with_liveness`].
//! - **Replicas.** The reconciler's lead is a session advisory lock; appends NOTIFY, so a
//!   replica streaming events hears of another's write at once (`replicas`). Tokens and
//!   sandbox owners ([`warren_store::TenancyStore`]) live here too, shared by every replica.
//! - **Schema.** Embedded, versioned migrations (refinery) applied at open under an advisory
//!   lock.
//!
//! With the `testing` feature, `testing` starts a throwaway PostgreSQL server for tests.

mod error;
mod events;
mod leases;
mod pools;
mod replicas;
mod sandboxes;
mod schema;
mod state_store;
mod store;
mod tenancy;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub use store::{PostgresOptions, PostgresStore};
