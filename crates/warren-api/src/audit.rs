//! The audit trail of a sandbox: every model request its agent (and warren's structurer) made,
//! as the gateway metered it, with what the exported commit's trailers say. `warren audit REV`
//! and `GET /v1/sandboxes/{name}/audit` print it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use warren_domain::{RequestSource, SandboxId, SandboxName};

/// `warren audit REV --json`, `GET /v1/sandboxes/{name}/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditView {
    pub sandbox_id: SandboxId,
    pub name: SandboxName,
    /// The OpenCode session the sandbox's prompts ran in.
    pub session_id: Option<String>,
    /// `provider/model` the sandbox was created with.
    pub model: Option<String>,
    /// The commit the trail was looked up from (`warren audit`); absent from the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<AuditCommit>,
    /// Every metered model request, oldest first.
    pub requests: Vec<AuditRequest>,
    pub totals: AuditTotals,
}

/// What the commit's `Warren-*` trailers said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditCommit {
    /// The full commit id.
    pub id: String,
    /// Each `Warren-*` trailer, in the commit's order.
    pub trailers: Vec<AuditTrailer>,
}

/// One `Key: value` trailer of a commit message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditTrailer {
    pub key: String,
    pub value: String,
}

/// One model request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditRequest {
    /// The event's sequence number in the sandbox's log.
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub at: OffsetDateTime,
    pub source: RequestSource,
    pub endpoint: String,
    pub model: Option<String>,
    pub session_id: Option<String>,
    /// The HTTP status the requester got.
    pub status: u16,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// US dollars, from the price table.
    pub cost_usd: Option<f64>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// Which attempt of its prompt the request belonged to: 1, or more after warren retried a
    /// failed run (rate limit, server error).
    pub attempt: u32,
}

/// The requests added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditTotals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// Requests answered with a status >= 400 or that did not complete.
    pub errors: u64,
}
