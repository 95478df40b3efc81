//! The conformance suite (`warren_store::conformance`) against PostgreSQL: every case on a
//! fresh database; second handles are separate stores (their own pool and worker thread) on the
//! same database, as another replica would open them.

use std::sync::Arc;

use warren_store::conformance::{Factory, Harness};
use warren_store::{Liveness, StateStore, TenancyStore};
use warren_store_postgres::{PostgresStore, testing};

struct OnServer {
    store: Arc<PostgresStore>,
    url: String,
    liveness: Arc<dyn Liveness>,
}

impl Harness for OnServer {
    fn store(&self) -> Arc<dyn StateStore> {
        self.store.clone()
    }

    fn second_handle(&self) -> Option<Arc<dyn StateStore>> {
        Some(Arc::new(super::open(&self.url, Arc::clone(&self.liveness))))
    }

    fn tenancy(&self) -> Arc<dyn TenancyStore> {
        self.store.clone()
    }
}

struct PostgresFactory;

impl Factory for PostgresFactory {
    fn open(&self, liveness: Arc<dyn Liveness>) -> Box<dyn Harness> {
        let url = super::database().expect("the cases run only with a server");
        Box::new(OnServer {
            store: Arc::new(super::open(&url, Arc::clone(&liveness))),
            url,
            liveness,
        })
    }
}

warren_store::conformance_tests!(PostgresFactory, when = testing::available());
