//! The approval views: what `approve`/`deny --json` print and `POST
//! /v1/sandboxes/{name}/approvals/{request}` takes and answers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use warren_domain::{ApprovalRequest, DecidedBy, Decision};

/// The body of `POST /v1/sandboxes/{name}/approvals/{request}` (`request` may be `current`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    pub decision: Decision,
    /// For a denial: told to the agent.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `{"approval": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalEnvelope {
    pub approval: ApprovalView,
}

/// An answer and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalView {
    /// The request answered.
    pub request: ApprovalRequest,
    /// The answer given.
    pub answer: Decision,
    /// What the agent was told, once the run's supervisor applied it (`null` if it had not
    /// within a few seconds); a timeout that came first wins over a late answer.
    pub decision: Option<Decision>,
    pub decided_by: Option<DecidedBy>,
}

/// Approval rules a request adds to the server's `[policy.approvals]` for its prompts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRules {
    /// Bash commands the agent must ask for, as OpenCode matches them (`git push*`).
    #[serde(default)]
    pub bash: Vec<String>,
    /// Paths, relative to the workspace, the agent must ask to edit.
    #[serde(default)]
    pub edit: Vec<String>,
    /// Denied when unanswered for this long, 1 to 604800; the server's
    /// `policy.approvals.timeout_secs` when absent.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}
