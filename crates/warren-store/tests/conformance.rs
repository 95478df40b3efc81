//! The conformance suite (`warren_store::conformance`) against the SQLite store: every case on a
//! database file (second handles are new connections to it, as other processes would open), and
//! again on a private in-memory database (racing cases share the one handle between threads).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use tempfile::TempDir;
use warren_store::conformance::{Factory, Harness};
use warren_store::{Liveness, SqliteStore, StateStore, TenancyStore};

struct OnFile {
    // Dropped after the store, which holds the file open.
    store: Arc<SqliteStore>,
    path: PathBuf,
    liveness: Arc<dyn Liveness>,
    _dir: TempDir,
}

impl Harness for OnFile {
    fn store(&self) -> Arc<dyn StateStore> {
        self.store.clone()
    }

    fn second_handle(&self) -> Option<Arc<dyn StateStore>> {
        let store = SqliteStore::open(&self.path)
            .unwrap()
            .with_liveness(Arc::clone(&self.liveness));
        Some(Arc::new(store))
    }

    fn tenancy(&self) -> Arc<dyn TenancyStore> {
        self.store.clone()
    }
}

struct FileFactory;

impl Factory for FileFactory {
    fn open(&self, liveness: Arc<dyn Liveness>) -> Box<dyn Harness> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("warren.db");
        let store = SqliteStore::open(&path)
            .unwrap()
            .with_liveness(Arc::clone(&liveness));
        Box::new(OnFile {
            store: Arc::new(store),
            path,
            liveness,
            _dir: dir,
        })
    }
}

struct InMemory(Arc<SqliteStore>);

impl Harness for InMemory {
    fn store(&self) -> Arc<dyn StateStore> {
        self.0.clone()
    }

    fn second_handle(&self) -> Option<Arc<dyn StateStore>> {
        None
    }

    fn tenancy(&self) -> Arc<dyn TenancyStore> {
        self.0.clone()
    }
}

struct MemoryFactory;

impl Factory for MemoryFactory {
    fn open(&self, liveness: Arc<dyn Liveness>) -> Box<dyn Harness> {
        let store = SqliteStore::open_in_memory()
            .unwrap()
            .with_liveness(liveness);
        Box::new(InMemory(Arc::new(store)))
    }
}

mod file {
    warren_store::conformance_tests!(super::FileFactory);
}

mod in_memory {
    warren_store::conformance_tests!(super::MemoryFactory);
}

/// `run_all` walks the same list the macro expands, so the two cannot drift apart.
#[test]
fn the_case_table_names_every_case_once() {
    let names: Vec<&str> = warren_store::conformance::CASES
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
    assert!(names.contains(&"two_handles_racing_for_one_lease_exactly_one_wins"));
}
