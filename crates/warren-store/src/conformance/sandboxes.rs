//! Creating, finding, listing and describing sandboxes.

use std::path::Path;

use warren_domain::{ErrorInfo, ReasonCode, SandboxId, SandboxState, Usage, UserFacing};

use super::{Factory, name, new_sandbox, open};
use crate::{SandboxRecord, StateStore, StoreError};

pub fn a_new_sandbox_is_found_by_id_and_name_and_listed(f: &dyn Factory) {
    let store = open(f);
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

pub fn unknown_sandboxes_are_not_found(f: &dyn Factory) {
    let store = open(f);
    let missing = SandboxId::new();
    for err in [
        store.get(&missing).unwrap_err(),
        store.get_by_name(&name("nobody")).unwrap_err(),
        store.set_session_id(&missing, "s").unwrap_err(),
        store
            .transition(&missing, SandboxState::Queued, None)
            .unwrap_err(),
        store.transitions(&missing).unwrap_err(),
        store.events(&missing, 0, None).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
        assert_eq!(err.reason_code(), ReasonCode::SandboxNotFound);
    }
}

fn destroy(store: &dyn StateStore, id: &SandboxId) {
    for to in [SandboxState::TearingDown, SandboxState::Destroyed] {
        store.transition(id, to, Some("test")).unwrap();
    }
}

pub fn a_live_name_is_refused_and_a_destroyed_one_reused(f: &dyn Factory) {
    let store = open(f);
    let first = store.create_sandbox(new_sandbox("dup")).unwrap();

    let err = store.create_sandbox(new_sandbox("dup")).unwrap_err();
    assert!(matches!(&err, StoreError::NameTaken { name } if name.as_str() == "dup"));
    assert_eq!(err.reason_code(), ReasonCode::InvalidArgument);
    assert!(err.hint().unwrap().contains("--name"));

    destroy(&*store, &first.id);
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
    destroy(&*store, &second.id);
    assert_eq!(store.get_by_name(&name("dup")).unwrap().id, second.id);
}

pub fn usage_accumulates(f: &dyn Factory) {
    let store = open(f);
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

pub fn descriptive_columns_round_trip(f: &dyn Factory) {
    let store = open(f);
    let rec = store.create_sandbox(new_sandbox("describe")).unwrap();
    let error = ErrorInfo::new(ReasonCode::ModelUnreachable, "connection refused")
        .with_hint("start the model server");
    let sync = serde_json::json!({"files": 12, "bytes": 3456, "skipped": ["target"]});
    let outcome = serde_json::json!({"success": true, "summary": {"files_changed": 3}});

    store.set_error(&rec.id, &error).unwrap();
    store.set_session_id(&rec.id, "ses_123").unwrap();
    store
        .set_workspace(&rec.id, Path::new("/tmp/ws/describe"))
        .unwrap();
    store.set_sync_json(&rec.id, &sync).unwrap();
    store.set_outcome_json(&rec.id, &outcome).unwrap();
    store.set_export(&rec.id, "warren/describe", 3).unwrap();

    let got = store.get(&rec.id).unwrap();
    assert_eq!(got.error, Some(error));
    assert_eq!(got.session_id.as_deref(), Some("ses_123"));
    assert_eq!(
        got.workspace.as_deref(),
        Some(Path::new("/tmp/ws/describe"))
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

pub fn records_serialise_for_json_output(f: &dyn Factory) {
    let store = open(f);
    let rec = store.create_sandbox(new_sandbox("json")).unwrap();
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["name"], "json");
    assert_eq!(json["state"], "new");
    assert_eq!(json["usage"]["input"], 0);
    assert!(json["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(json["destroyed_at"].is_null());
    let back: SandboxRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, rec);
}
