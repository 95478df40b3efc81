//! Creating, finding, listing and describing sandboxes against a real database file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{file_store, name, new_sandbox};
use warren_domain::{ErrorInfo, ReasonCode, SandboxId, SandboxState, Usage, UserFacing};
use warren_store::{Store, StoreError, default_db_path};

#[test]
fn the_store_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();

    // One handle used from several threads at once: each call takes the connection in turn.
    let (_dir, store) = file_store();
    let store = std::sync::Arc::new(store);
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                let rec = store
                    .create_sandbox(new_sandbox(&format!("shared-{n}")))
                    .unwrap();
                store
                    .transition(&rec.id, SandboxState::Provisioning, None)
                    .unwrap();
                store.get(&rec.id).unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().state, SandboxState::Provisioning);
    }
    assert_eq!(store.list(false).unwrap().len(), 4);
}

#[test]
fn open_creates_parent_dirs_and_turns_on_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = default_db_path(&dir.path().join("a").join("b"));
    assert!(path.ends_with("a/b/warren.db"));
    let store = Store::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(store.path(), path);

    // A second connection sees WAL too: the mode is persistent in the file.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    // Reopening an existing store runs no migration and keeps the data.
    let rec = store.create_sandbox(new_sandbox("again")).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get(&rec.id).unwrap(), rec);
}

#[test]
fn open_reports_an_unusable_path_as_store_failed() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let err = Store::open(&blocker.join("warren.db")).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::StoreFailed);
    let info = err.to_error_info();
    assert!(info.message.contains("warren.db"), "{}", info.message);
    assert!(info.hint.unwrap().contains("WARREN_DATA_DIR"));
}

#[test]
fn create_then_get_list_and_get_by_name() {
    let (_dir, store) = file_store();
    let created = store.create_sandbox(new_sandbox("fix-login")).unwrap();
    assert_eq!(created.state, SandboxState::New);
    assert_eq!(created.name.as_str(), "fix-login");
    assert_eq!(created.provider, "local");
    assert_eq!(created.usage, Usage::default());
    assert_eq!(created.created_at, created.state_changed_at);
    assert!(created.error.is_none() && created.destroyed_at.is_none());

    assert_eq!(store.get(&created.id).unwrap(), created);
    assert_eq!(store.get_by_name(&name("fix-login")).unwrap(), created);

    let second = store.create_sandbox(new_sandbox("second")).unwrap();
    let listed: Vec<_> = store
        .list(false)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        listed,
        vec![second.id.clone(), created.id.clone()],
        "newest first"
    );
}

#[test]
fn unknown_sandboxes_are_not_found() {
    let (_dir, store) = file_store();
    let missing = SandboxId::new();
    for err in [
        store.get(&missing).unwrap_err(),
        store.get_by_name(&name("nobody")).unwrap_err(),
        store.set_session_id(&missing, "s").unwrap_err(),
        store
            .transition(&missing, SandboxState::Queued, None)
            .unwrap_err(),
        store.events(&missing, 0, None).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
        assert_eq!(err.reason_code(), ReasonCode::SandboxNotFound);
    }
}

fn destroy(store: &Store, id: &SandboxId) {
    for to in [SandboxState::TearingDown, SandboxState::Destroyed] {
        store.transition(id, to, Some("test")).unwrap();
    }
}

#[test]
fn a_live_name_is_refused_and_a_destroyed_one_reused() {
    let (_dir, store) = file_store();
    let first = store.create_sandbox(new_sandbox("dup")).unwrap();

    let err = store.create_sandbox(new_sandbox("dup")).unwrap_err();
    assert!(matches!(&err, StoreError::NameTaken { name } if name.as_str() == "dup"));
    assert_eq!(err.reason_code(), ReasonCode::InvalidArgument);
    assert!(err.hint().unwrap().contains("--name"));

    destroy(&store, &first.id);
    let destroyed = store.get(&first.id).unwrap();
    assert_eq!(destroyed.state, SandboxState::Destroyed);
    assert!(destroyed.destroyed_at.is_some());
    assert_eq!(
        store.get_by_name(&name("dup")).unwrap().id,
        first.id,
        "newest destroyed one"
    );

    let second = store.create_sandbox(new_sandbox("dup")).unwrap();
    assert_eq!(
        store.get_by_name(&name("dup")).unwrap().id,
        second.id,
        "the live one wins"
    );

    let live: Vec<_> = store
        .list(false)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(live, vec![second.id.clone()]);
    let all: Vec<_> = store
        .list(true)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(all, vec![second.id.clone(), first.id.clone()]);

    // With both destroyed, the most recent one answers for the name.
    destroy(&store, &second.id);
    assert_eq!(store.get_by_name(&name("dup")).unwrap().id, second.id);
}

#[test]
fn usage_accumulates() {
    let (_dir, store) = file_store();
    let rec = store.create_sandbox(new_sandbox("usage")).unwrap();
    let step = Usage {
        input: 100,
        output: 20,
        reasoning: 5,
        cache_read: 1000,
        cache_write: 50,
        cost: 0.25,
    };
    store.add_usage(&rec.id, &step).unwrap();
    store.add_usage(&rec.id, &step).unwrap();
    let mut expected = step;
    expected.add(&step);
    assert_eq!(store.get(&rec.id).unwrap().usage, expected);
}

#[test]
fn descriptive_columns_round_trip() {
    let (_dir, store) = file_store();
    let rec = store.create_sandbox(new_sandbox("describe")).unwrap();
    let error = ErrorInfo::new(ReasonCode::ModelUnreachable, "connection refused")
        .with_hint("start the model server");
    let sync = serde_json::json!({"files": 12, "bytes": 3456, "skipped": ["target"]});
    let outcome = serde_json::json!({"success": true, "summary": {"files_changed": 3}});

    store.set_error(&rec.id, &error).unwrap();
    store.set_session_id(&rec.id, "ses_123").unwrap();
    store
        .set_workspace(&rec.id, std::path::Path::new("/tmp/ws/describe"))
        .unwrap();
    store.set_sync_json(&rec.id, &sync).unwrap();
    store.set_outcome_json(&rec.id, &outcome).unwrap();
    store.set_export(&rec.id, "warren/describe", 3).unwrap();

    let got = store.get(&rec.id).unwrap();
    assert_eq!(got.error, Some(error));
    assert_eq!(got.session_id.as_deref(), Some("ses_123"));
    assert_eq!(
        got.workspace.as_deref(),
        Some(std::path::Path::new("/tmp/ws/describe"))
    );
    assert_eq!(got.sync, Some(sync));
    assert_eq!(got.outcome, Some(outcome));
    assert_eq!(got.branch.as_deref(), Some("warren/describe"));
    assert_eq!(got.changed_files, Some(3));
    assert!(got.exported_at.is_some());
    assert!(got.updated_at >= rec.updated_at);
    assert_eq!(
        got.state,
        SandboxState::New,
        "describing never changes the state"
    );
}

#[test]
fn records_serialise_for_json_output() {
    let store = Store::open_in_memory().unwrap();
    let rec = store.create_sandbox(new_sandbox("json")).unwrap();
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["name"], "json");
    assert_eq!(json["state"], "new");
    assert_eq!(json["usage"]["input"], 0);
    assert!(json["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(json["destroyed_at"].is_null());
    let back: warren_store::SandboxRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, rec);
}
