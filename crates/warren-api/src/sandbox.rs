//! The views of sandboxes: one sandbox as recorded, its status (lease, warm server, changed
//! files), and the list.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use warren_domain::{ErrorInfo, SandboxId, SandboxName, SandboxState, Usage};

/// One sandbox as recorded: what `launch`, `exec --detach` and `teardown` print under
/// `"sandbox"`, and each entry of `list`. Paths are text (a non-UTF-8 path is shown lossily).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxView {
    pub id: SandboxId,
    pub name: SandboxName,
    /// The user's repository, absolute.
    pub repo: String,
    /// `local` (bubblewrap) or `docker`.
    pub provider: String,
    pub state: SandboxState,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub state_changed_at: OffsetDateTime,
    /// `provider/model`.
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub role: Option<String>,
    /// OpenCode's session, which `exec` continues.
    pub session_id: Option<String>,
    /// The host directory holding the sandbox's copy of the repository.
    pub workspace: Option<String>,
    /// The engine's sync-in report (opaque).
    pub sync: Option<serde_json::Value>,
    /// The last task's outcome or run summary (opaque).
    pub outcome: Option<serde_json::Value>,
    pub error: Option<ErrorInfo>,
    /// The branch the work was exported to.
    pub branch: Option<String>,
    pub usage: Usage,
    pub changed_files: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub exported_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub destroyed_at: Option<OffsetDateTime>,
}

/// `{"sandbox": ...}`: what `launch`, `exec --detach` and `teardown` print.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxEnvelope {
    pub sandbox: SandboxView,
}

/// `warren list --json`: the sandboxes, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListView {
    pub sandboxes: Vec<SandboxView>,
    /// The server's pagination: pass it as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_cursor: Option<String>,
}

/// The lease an operation holds on a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseView {
    pub sandbox_id: SandboxId,
    /// `pid:N@host`.
    pub holder: String,
    /// What holds it: `run`, `launch`, `exec`, `export`, `pull`, `sync`, `teardown`, ...
    pub operation: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub acquired_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub expires_at: OffsetDateTime,
    pub pid: Option<u32>,
}

/// The process holding a warm OpenCode server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MonitorView {
    pub name: String,
    pub pid: u32,
    /// The pid's start time in clock ticks after boot (0 when unknown).
    pub start_time: u64,
}

/// A sandbox's warm OpenCode server, while one runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WarmServerView {
    pub monitor: MonitorView,
    /// When the server last finished a prompt (RFC 3339).
    pub idle_since: String,
    /// It stops this many seconds after `idle_since` unless a prompt comes.
    pub idle_secs: u64,
    /// From creating the sandbox to the server accepting connections.
    pub boot_ms: f64,
    /// The server's HTTP API on the host, a Unix socket.
    pub socket: String,
}

/// How a path differs from the sandbox's baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Modified => "modified",
            Self::Deleted => "deleted",
        }
    }
}

/// One path the agent changed in the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChangedFile {
    /// Relative to the workspace root.
    pub path: String,
    pub kind: ChangeKind,
}

/// `warren status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusView {
    pub sandbox: SandboxView,
    /// The lease an operation holds, if any.
    pub lease: Option<LeaseView>,
    /// An operation holds the sandbox (whatever its state says at this instant).
    pub busy: bool,
    /// The sandbox is mid-operation but nothing supervises it any more; `warren gc` records it.
    pub supervisor_lost: bool,
    /// The warm OpenCode server, `null` when none runs.
    pub warm_server: Option<WarmServerView>,
    /// The files changed in an idle sandbox's workspace (empty while the agent runs).
    pub changed_files: Vec<ChangedFile>,
    /// What the model gateway metered from the model's own answers (agent and structurer),
    /// beside what OpenCode reported (`sandbox.usage`).
    pub gateway_usage: warren_domain::GatewayUsage,
    /// The egress proxy's decisions (allowed and denied requests and tunnels, bytes through
    /// allowed ones), from the sandbox's `egress` events; zero when its egress is `none`.
    #[serde(default)]
    pub egress: warren_domain::EgressUsage,
    /// The permission request the agent waits on (`warren approve` / `deny` answer it); `null`
    /// when none. The sandbox stays `running` meanwhile (docs/state-machine.md says why).
    pub awaiting_approval: Option<warren_domain::ApprovalRequest>,
    /// The budgets in force (the last run's and the sandbox's) against what was spent; absent
    /// when no budget applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatusView>,
}

/// Spend against each budget, as the gateway metered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetStatusView {
    /// One line per limit set: its scope, what it counts, the figure spent and the limit.
    pub lines: Vec<warren_domain::BudgetLine>,
    /// What the last (or current) run spent.
    pub run: warren_domain::Spend,
    /// What all the sandbox's runs spent.
    pub sandbox: warren_domain::Spend,
}
