mod conformance;
mod errors;
mod replicas;
mod runtime;
mod server;

use std::sync::Arc;

use warren_store::{Liveness, TtlLiveness};
use warren_store_postgres::{PostgresOptions, PostgresStore, testing};

/// A fresh database on the shared server, or `None` when the tests skip (no server binaries).
pub fn database() -> Option<String> {
    testing::shared().map(testing::TestServer::fresh_database)
}

/// A store on `url` judged by `liveness`, as a replica would open it.
pub fn open(url: &str, liveness: Arc<dyn Liveness>) -> PostgresStore {
    PostgresStore::open_with(
        url,
        PostgresOptions {
            liveness,
            ..PostgresOptions::default()
        },
    )
    .unwrap()
}

pub fn replica(url: &str) -> PostgresStore {
    open(url, Arc::new(TtlLiveness))
}
