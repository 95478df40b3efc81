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
