//! The one-shot run's report: `warren run --json` ends with `{"summary": ...}`. The engine
//! builds these types directly (`warren_engine::RunSummary` is this one).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use warren_domain::{ErrorInfo, Outcome, Usage};

/// Wall-clock time of each phase, for the summary and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Phases {
    pub preflight_ms: f64,
    pub sync_in_ms: f64,
    pub gateway_ms: f64,
    pub sandbox_create_ms: f64,
    pub agent_ms: f64,
    /// Part of `agent_ms`: OpenCode's boot, until its first event.
    pub opencode_ready_ms: f64,
    pub export_ms: f64,
    pub teardown_ms: f64,
    pub total_ms: f64,
}

/// What a task produced, for the summary and the record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskOutcome {
    pub attempts: u32,
    /// The role's outcome, when its contract asked for one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub outcome: Option<Outcome>,
    /// How the outcome was obtained (`fenced_block`, `structurer`, `missing`, ...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub via: Option<String>,
    /// The agent's raw final text, kept when no valid outcome could be obtained.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_output: Option<String>,
}

/// How a one-shot run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunSummary {
    pub sandbox_id: String,
    pub name: String,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorInfo>,
    /// The exported branch; none when the agent changed no files.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub branch: Option<String>,
    pub files_changed: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session_id: Option<String>,
    pub usage: Usage,
    /// Attempts, and the role's outcome when it asked for one.
    pub outcome: TaskOutcome,
    pub duration_ms: f64,
    pub phases: Phases,
    /// Set when the workspace was kept because its changes could not be exported.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kept_workspace: Option<PathBuf>,
    /// OpenCode's last stderr lines and any non-JSON stdout, kept for diagnosis on failure.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub stderr_tail: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub stray_stdout: Vec<String>,
}

/// `{"summary": ...}`: the last line of `warren run --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SummaryEnvelope {
    pub summary: RunSummary,
}
