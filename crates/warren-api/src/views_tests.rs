#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every view round-trips through JSON and what it serialises matches its own schema: a client
//! that reads a line with these types gets back what was printed.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use time::macros::datetime;
use warren_domain::{
    AgentEvent, ErrorInfo, Outcome, OutcomeKind, ReasonCode, SandboxId, SandboxName, SandboxState,
    ToolStatus, Usage,
};

use crate::*;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, view: &T) {
    let value = serde_json::to_value(view).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema(name).unwrap())
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{value:#}");
    let back: T = serde_json::from_value(value).unwrap();
    assert_eq!(&back, view, "{name}");
}

fn sandbox() -> SandboxView {
    SandboxView {
        id: SandboxId::from_stored("0190aa"),
        name: SandboxName::parse("fix-login").unwrap(),
        repo: "/home/u/repo".into(),
        provider: "docker".into(),
        state: SandboxState::Completed,
        created_at: datetime!(2026-01-02 03:04:05.5 UTC),
        updated_at: datetime!(2026-01-02 03:04:06 UTC),
        state_changed_at: datetime!(2026-01-02 03:04:07 UTC),
        model: Some("p/m".into()),
        prompt: None,
        role: None,
        session_id: Some("ses_1".into()),
        workspace: None,
        sync: Some(json!({ "files": 3 })),
        outcome: None,
        error: Some(ErrorInfo::new(ReasonCode::SupervisorLost, "lost").with_hint("export it")),
        branch: None,
        usage: Usage::default(),
        changed_files: Some(1),
        exported_at: None,
        destroyed_at: Some(datetime!(2026-01-02 03:04:09 UTC)),
    }
}

fn summary(success: bool) -> RunSummary {
    RunSummary {
        sandbox_id: "0190aa".into(),
        name: "fix-login".into(),
        success,
        error: (!success).then(|| ErrorInfo::new(ReasonCode::Timeout, "too slow")),
        branch: success.then(|| "warren/fix-login".into()),
        files_changed: 2,
        session_id: None,
        usage: Usage::default(),
        outcome: TaskOutcome {
            attempts: 2,
            outcome: Some(Outcome {
                outcome: OutcomeKind::NeedsInfo,
                summary: "which database?".into(),
                fields: [("verdict".to_owned(), json!(true))].into_iter().collect(),
            }),
            via: Some("fenced_block".into()),
            raw_output: None,
        },
        duration_ms: 12.5,
        phases: Phases::default(),
        kept_workspace: (!success).then(|| "/data/ws".into()),
        stderr_tail: if success {
            Vec::new()
        } else {
            vec!["boom".into()]
        },
        stray_stdout: Vec::new(),
    }
}

#[test]
fn run_lines_round_trip() {
    round_trip(
        "summary",
        &SummaryEnvelope {
            summary: summary(true),
        },
    );
    round_trip(
        "summary",
        &SummaryEnvelope {
            summary: summary(false),
        },
    );
    round_trip(
        "error",
        &ErrorEnvelope {
            error: ErrorInfo::new(ReasonCode::NotAGitRepo, "no repo"),
        },
    );
    for event in [
        AgentEvent::StateChanged {
            state: SandboxState::Running,
            detail: None,
        },
        AgentEvent::ToolUse {
            tool: "write".into(),
            call_id: "c1".into(),
            status: ToolStatus::Completed,
            title: Some("a.txt".into()),
            input: json!({ "filePath": "a.txt" }),
            output: None,
            error: None,
        },
        AgentEvent::Unknown {
            raw: json!([1, "x"]),
        },
        AgentEvent::Finished {
            success: false,
            error: Some(ErrorInfo::new(ReasonCode::Inactive, "quiet")),
        },
    ] {
        round_trip(
            "event",
            &EventRecord {
                seq: 1,
                at: datetime!(2026-01-02 03:04:05 UTC),
                sandbox: "fix-login".into(),
                event,
            },
        );
    }
}

#[test]
fn sandbox_views_round_trip() {
    round_trip("sandbox", &SandboxEnvelope { sandbox: sandbox() });
    round_trip(
        "list",
        &ListView {
            sandboxes: vec![sandbox(), sandbox()],
            next_cursor: None,
        },
    );
    round_trip(
        "status",
        &StatusView {
            sandbox: sandbox(),
            lease: Some(LeaseView {
                sandbox_id: SandboxId::from_stored("0190aa"),
                holder: "pid:7@host".into(),
                operation: "export".into(),
                acquired_at: datetime!(2026-01-02 03:04:05 UTC),
                expires_at: datetime!(2026-01-02 03:04:35 UTC),
                pid: Some(7),
            }),
            busy: true,
            gateway_usage: warren_domain::GatewayUsage {
                requests: 2,
                input: 1000,
                output: 50,
                errors: 0,
            },
            budget: None,
            egress: warren_domain::EgressUsage {
                allowed: 3,
                denied: 1,
                bytes_up: 120,
                bytes_down: 4096,
            },
            supervisor_lost: false,
            warm_server: Some(WarmServerView {
                monitor: MonitorView {
                    name: "pid:7@host".into(),
                    pid: 7,
                    start_time: 0,
                },
                idle_since: "2026-01-02T03:04:05Z".into(),
                idle_secs: 300,
                boot_ms: 900.0,
                socket: "/data/run/opencode-7.sock".into(),
            }),
            changed_files: vec![ChangedFile {
                path: "a.txt".into(),
                kind: ChangeKind::Deleted,
            }],
            awaiting_approval: Some(approval_request()),
        },
    );
}

fn approval_request() -> warren_domain::ApprovalRequest {
    warren_domain::ApprovalRequest {
        request_id: "per_1".into(),
        permission: "bash".into(),
        patterns: vec!["git push origin main".into()],
        title: "git push origin main".into(),
        timeout_secs: 300,
    }
}

#[test]
fn approval_views_round_trip() {
    round_trip(
        "approval",
        &crate::ApprovalEnvelope {
            approval: crate::ApprovalView {
                request: approval_request(),
                answer: warren_domain::Decision::Deny,
                decision: Some(warren_domain::Decision::Deny),
                decided_by: Some(warren_domain::DecidedBy::Timeout),
            },
        },
    );
}

#[test]
fn operation_views_round_trip() {
    round_trip(
        "export",
        &ExportEnvelope {
            export: ExportView {
                patch: Some("/tmp/x.patch".into()),
                files_changed: 1,
                keep_cr: true,
                ..ExportView::default()
            },
        },
    );
    round_trip(
        "pull",
        &PullEnvelope {
            pull: PullView {
                dir: "/tmp/out".into(),
                written: 1,
                deleted: 0,
                manifest: "/tmp/out/.warren-pull.json".into(),
            },
        },
    );
    round_trip(
        "sync",
        &SyncEnvelope {
            sync: SyncView {
                updated: 1,
                deleted: 2,
                bytes: 3,
                user_tree: "t".into(),
                conflicts: vec!["a.txt".into()],
                head: None,
                dirty: false,
                workspace_git_skipped: Some("no commit".into()),
            },
        },
    );
    round_trip(
        "open",
        &OpenEnvelope {
            open: OpenView {
                name: SandboxName::parse("x").unwrap(),
                provider: "local".into(),
                state: SandboxState::Completed,
                workspace: "/w".into(),
                session_id: None,
                exec: "warren exec x \"...\"".into(),
                logs: "warren logs x -f".into(),
                server_socket: None,
            },
        },
    );
    round_trip("gc", &GcView::default());
    round_trip(
        "image",
        &ImageEnvelope {
            image: ImageView {
                tag: "t".into(),
                id: "sha256:1".into(),
            },
        },
    );
    round_trip(
        "config",
        &ConfigView {
            config: [("model".to_owned(), json!({ "default": "p/m" }))]
                .into_iter()
                .collect(),
            sources: [
                (
                    "model.default".to_owned(),
                    ConfigSource::Env("WARREN_MODEL".into()),
                ),
                ("sandbox.provider".to_owned(), ConfigSource::Default),
            ]
            .into_iter()
            .collect(),
        },
    );
}

#[test]
fn a_bad_sandbox_name_is_refused_when_read() {
    let mut value = serde_json::to_value(SandboxEnvelope { sandbox: sandbox() }).unwrap();
    value["sandbox"]["name"] = json!("../evil");
    assert!(serde_json::from_value::<SandboxEnvelope>(value).is_err());
}
