//! Shared fixtures for the SQLite store's own integration tests: a store on a real file in a temp dir and
//! a quick way to describe a new sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::PathBuf;

use tempfile::TempDir;
use warren_domain::{SandboxId, SandboxName};
use warren_store::{NewSandbox, Store};

/// A store on disk; keep the `TempDir` alive as long as the store.
pub fn file_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data").join("warren.db")).unwrap();
    (dir, store)
}

pub fn name(raw: &str) -> SandboxName {
    SandboxName::parse(raw).unwrap()
}

pub fn new_sandbox(raw_name: &str) -> NewSandbox {
    NewSandbox {
        id: SandboxId::new(),
        name: name(raw_name),
        repo: PathBuf::from("/home/user/project"),
        provider: "local".into(),
        model: Some("anthropic/claude-sonnet".into()),
        prompt: Some("fix the login test".into()),
        role: None,
    }
}
