//! Each view serialises exactly as the type it is made from: a field added to a store or
//! engine type fails here until the view has it too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value, json};
use time::macros::datetime;
use warren_domain::{ErrorInfo, ReasonCode, SandboxId, SandboxName, SandboxState, Usage};

use super::*;

fn same<A: Serialize, B: Serialize>(original: &A, view: &B) {
    let original = serde_json::to_value(original).unwrap();
    let view = serde_json::to_value(view).unwrap();
    assert_eq!(view, original);
}

fn record() -> SandboxRecord {
    SandboxRecord {
        id: SandboxId::from_stored("0190aa"),
        name: SandboxName::parse("fix-login").unwrap(),
        repo: PathBuf::from("/home/u/repo"),
        provider: "local".into(),
        state: SandboxState::Completed,
        created_at: datetime!(2026-01-02 03:04:05.123 UTC),
        updated_at: datetime!(2026-01-02 03:04:06 UTC),
        state_changed_at: datetime!(2026-01-02 03:04:07 UTC),
        model: Some("p/m".into()),
        prompt: Some("fix it".into()),
        role: Some("coder".into()),
        session_id: Some("ses_1".into()),
        workspace: Some(PathBuf::from("/data/sandboxes/x/workspace")),
        sync: Some(json!({ "files": 3 })),
        outcome: Some(json!({ "attempts": 1 })),
        error: Some(ErrorInfo::new(ReasonCode::Timeout, "too slow").with_hint("wait")),
        branch: Some("warren/fix-login".into()),
        usage: Usage {
            input: 1,
            output: 2,
            reasoning: 3,
            cache_read: 4,
            cache_write: 5,
            cost: 0.5,
        },
        changed_files: Some(2),
        exported_at: Some(datetime!(2026-01-02 03:04:08 UTC)),
        destroyed_at: None,
    }
}

#[test]
fn sandbox_view_is_the_record() {
    let mut r = record();
    same(&r, &sandbox(&r));
    r.destroyed_at = r.exported_at;
    r.model = None;
    r.workspace = None;
    r.error = None;
    same(&r, &sandbox(&r));
}

#[test]
fn lease_and_warm_server_views_are_their_types() {
    let l = Lease {
        sandbox_id: SandboxId::from_stored("0190aa"),
        holder: "pid:7@host".into(),
        operation: "exec".into(),
        acquired_at: datetime!(2026-01-02 03:04:05 UTC),
        expires_at: datetime!(2026-01-02 03:04:35 UTC),
        pid: Some(7),
    };
    same(&l, &lease(&l));
    let w = WarmInfo {
        monitor: warren_store::LeaseHolder {
            name: "pid:7@host".into(),
            pid: 7,
            start_time: 99,
        },
        idle_since: "2026-01-02T03:04:05Z".into(),
        idle_secs: 300,
        boot_ms: 1234.5,
        socket: PathBuf::from("/data/sandboxes/x/run/opencode-7.sock"),
    };
    same(&w, &warm_server(&w));
}

#[test]
fn changed_files_are_path_and_lowercase_kind() {
    for (kind, name) in [
        (warren_sync::ChangeKind::Added, "added"),
        (warren_sync::ChangeKind::Modified, "modified"),
        (warren_sync::ChangeKind::Deleted, "deleted"),
    ] {
        let c = warren_sync::Change {
            path: PathBuf::from("src/a.rs"),
            kind,
            mode: None,
            size: 0,
        };
        // What status printed before the view: the Debug name, lowercased.
        assert_eq!(format!("{:?}", c.kind).to_lowercase(), name);
        same(
            &json!({ "path": "src/a.rs", "kind": name }),
            &changed_file(&c),
        );
    }
}

#[test]
fn export_pull_sync_and_gc_views_are_their_reports() {
    let full = Exported {
        branch: Some("warren/x".into()),
        patch: Some(PathBuf::from("/tmp/x.patch")),
        files_changed: 3,
        commit: Some("abc".into()),
        keep_cr: true,
        based_on: Some("def".into()),
        head_moved_to: Some("123".into()),
    };
    same(&full, &export(&full));
    same(&Exported::default(), &export(&Exported::default()));
    let p = warren_sync::PullReport {
        dir: PathBuf::from("/tmp/out"),
        written: 2,
        deleted: 1,
        manifest: PathBuf::from("/tmp/out/.warren-pull.json"),
    };
    same(&p, &pull(&p));
    let s = warren_sync::PartialSyncReport {
        updated: 2,
        deleted: 1,
        bytes: 10,
        user_tree: "tree".into(),
        conflicts: vec![PathBuf::from("a.txt")],
        head: Some("abc".into()),
        dirty: true,
        workspace_git_skipped: None,
    };
    same(&s, &sync(&s));
    let mut g = GcReport {
        expired_leases: vec!["a".into()],
        marked_error: vec!["b".into()],
        torn_down: vec!["c".into()],
        kept_unexported: vec!["d".into()],
        orphan_dirs_removed: vec!["e".into()],
        requeue_after_secs: Some(30),
    };
    same(&g, &gc(&g));
    g.requeue_after_secs = None;
    same(&g, &gc(&g));
}

#[test]
fn config_view_is_the_config_and_its_sources() {
    let loaded = warren_config::load(&warren_config::LoadOptions {
        user_file: Some(PathBuf::from("/nonexistent/warren/config.toml")),
        repo_dir: None,
        env: vec![("WARREN_TIMEOUT_RUN_SECS".into(), "60".into())],
        flags: Vec::new(),
    })
    .unwrap();
    let mut sources = loaded.sources.clone();
    sources.insert(
        "x.user".into(),
        warren_config::Source::UserFile(PathBuf::from("/u/config.toml")),
    );
    sources.insert(
        "x.repo".into(),
        warren_config::Source::RepoFile(PathBuf::from("/r/.warren.toml")),
    );
    sources.insert(
        "x.flag".into(),
        warren_config::Source::Flag("--timeout".into()),
    );
    let loaded = warren_config::Loaded {
        config: loaded.config,
        sources,
    };
    let view = config(&loaded).unwrap();
    let before: BTreeMap<&str, Value> = [
        ("config", serde_json::to_value(&loaded.config).unwrap()),
        ("sources", serde_json::to_value(&loaded.sources).unwrap()),
    ]
    .into();
    same(&before, &view);
}
