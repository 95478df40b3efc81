//! The event stream of a sandbox: what the agent did (typed from OpenCode's JSON events, with
//! anything unrecognised kept verbatim) and what warren did around it. Every event gets a
//! monotonic `seq` per sandbox so a reader can resume a stream without gaps or repeats.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ErrorInfo;
use crate::lifecycle::SandboxState;

/// Token usage as OpenCode reports it in a step finish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub reasoning: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub cost: f64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input + self.output + self.reasoning
    }

    pub fn add(&mut self, other: &Usage) {
        self.input += other.input;
        self.output += other.output;
        self.reasoning += other.reasoning;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
        self.cost += other.cost;
    }
}

/// Who sent a request through the model gateway: the agent in the sandbox, or warren's own
/// structurer (the outcome contract's extraction call). Each gateway serves one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestSource {
    #[default]
    Agent,
    Structurer,
}

impl RequestSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Structurer => "structurer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Pending,
    Running,
    Completed,
    Error,
    #[serde(other)]
    Unknown,
}

/// One event. Agent events mirror OpenCode's `run --format json` stream; the rest are warren's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The sandbox moved to a new lifecycle state.
    StateChanged {
        state: SandboxState,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        detail: Option<String>,
    },
    /// The workspace was filled from the user's repository.
    SyncedIn {
        files: u64,
        bytes: u64,
        dirty: bool,
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        skipped: Vec<String>,
    },
    /// Host changes since the last sync were sent into the workspace (`warren sync`, or before
    /// an exec). `conflicts` were changed by the agent too and kept as the agent left them.
    Resynced {
        updated: u64,
        deleted: u64,
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        conflicts: Vec<String>,
    },
    /// OpenCode began a model step.
    StepStart { session_id: String },
    /// Assistant text.
    Text { text: String },
    /// Model reasoning, when the model emits it.
    Reasoning { text: String },
    /// A tool call and its result.
    ToolUse {
        tool: String,
        call_id: String,
        status: ToolStatus,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        title: Option<String>,
        #[serde(default)]
        input: serde_json::Value,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        output: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        error: Option<String>,
    },
    /// A model step finished, with its token usage.
    StepFinish { reason: String, usage: Usage },
    /// OpenCode reported an error.
    AgentError {
        name: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        status_code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        retryable: Option<bool>,
    },
    /// A line OpenCode printed that warren does not model; kept verbatim.
    Unknown { raw: serde_json::Value },
    /// The model gateway saw something the run should know about (e.g. an unreachable upstream).
    Gateway { message: String },
    /// One request the model gateway forwarded, metered there from the upstream's answer (not
    /// from what the agent reports about itself).
    ModelRequest {
        source: RequestSource,
        /// What was asked for: `chat/completions`, `models`, `models/<id>`.
        endpoint: String,
        /// The `model` of the request body, when it had one.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        model: Option<String>,
        /// The HTTP status the requester got (502 when the upstream could not be reached).
        status: u16,
        /// The upstream's `usage`, when its answer reported one.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        input_tokens: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        output_tokens: Option<u64>,
        /// From receiving the request to the end of the response body.
        latency_ms: u64,
        /// Why the exchange did not complete (no connection, a broken or cut-short body).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        error: Option<String>,
        /// US dollars, from the `[budget.prices]` entry of the model (absent without one).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        cost_usd: Option<f64>,
        /// The OpenCode session the request belongs to, when it was known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        session_id: Option<String>,
    },
    // --- budgets (issue 12) ---
    /// The budgets a run starts with: its own, and the sandbox's over all its runs. (Boxed:
    /// limits are large and this event is rare. Not `sandbox`: a record's `sandbox` is its name.)
    Budget {
        #[serde(default)]
        run_limits: Box<crate::budget::BudgetLimits>,
        #[serde(default)]
        sandbox_limits: Box<crate::budget::BudgetLimits>,
        /// The `--budget` the sandbox was given, which its later runs keep.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        given: Option<Box<crate::budget::BudgetLimits>>,
        /// The owner's daily budget with what the owner had spent today when the run started.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        owner: Option<Box<crate::budget::OwnerBudget>>,
    },
    /// A budget reached 80% of its limit.
    BudgetWarning {
        scope: crate::budget::BudgetScope,
        budget: crate::budget::BudgetKind,
        spent: f64,
        limit: f64,
    },
    /// A budget ran out: the gateway refused the next model request and the agent was stopped.
    BudgetExceeded {
        scope: crate::budget::BudgetScope,
        budget: crate::budget::BudgetKind,
        spent: f64,
        limit: f64,
    },
    // --- end budgets ---
    /// A retryable failure: the agent runs again after `delay_ms`.
    Retrying {
        attempt: u32,
        max_attempts: u32,
        reason_code: crate::error::ReasonCode,
        message: String,
        delay_ms: u64,
    },
    /// Waiting for a slot in a concurrency pool; `position` 1 is next.
    Queued { pool: String, position: u64 },
    /// The role's outcome, parsed from the agent's answer (or recovered by the structurer).
    Outcome {
        outcome: String,
        summary: String,
        /// How it was obtained: fenced_block, whole_text, last_balanced_object, structurer, or
        /// missing (an ERROR outcome carrying the raw output).
        via: String,
        #[serde(default)]
        fields: serde_json::Map<String, serde_json::Value>,
    },
    /// The agent's changes were exported as a branch.
    Exported {
        branch: String,
        files_changed: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        commit: Option<String>,
    },
    /// The agent asked for a permission an approval rule covers; the run waits for an answer
    /// (`warren approve` / `deny`) until `timeout_secs`, then it is denied.
    ApprovalRequested(crate::approval::ApprovalRequest),
    /// Someone answered a request (from any process): the supervisor applies the first answer
    /// it reads and records it as `approval_decided`.
    ApprovalAnswered {
        request_id: String,
        decision: crate::approval::Decision,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        reason: Option<String>,
    },
    /// What the agent was told: the answer applied, or a denial after the timeout.
    ApprovalDecided {
        request_id: String,
        decision: crate::approval::Decision,
        /// `user` (an answer), `timeout` or `run_ended`.
        by: crate::approval::DecidedBy,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        reason: Option<String>,
    },
    /// One decision of the sandbox's egress proxy (`[policy] egress = "allow-list"`): a request
    /// or tunnel it let through (with what it carried, once it ended) or refused (with why).
    Egress {
        decision: EgressDecision,
        /// `CONNECT` for a TLS tunnel, else the plain HTTP request's method.
        method: String,
        /// As the client asked for it (a name or a literal address).
        host: String,
        port: u16,
        /// The address connected to: resolved and checked on the host.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        address: Option<String>,
        /// The allow-list entry that allowed it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        rule: Option<String>,
        /// Why it was refused, or why an allowed connection failed.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        reason: Option<String>,
        /// The HTTP status the client got (200 for an established tunnel).
        status: u16,
        bytes_up: u64,
        bytes_down: u64,
        duration_ms: u64,
    },
    /// The run ended; `error` is set when it failed.
    Finished {
        success: bool,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        error: Option<ErrorInfo>,
    },
}

impl AgentEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::StateChanged { .. } => "state_changed",
            Self::SyncedIn { .. } => "synced_in",
            Self::Resynced { .. } => "resynced",
            Self::StepStart { .. } => "step_start",
            Self::Text { .. } => "text",
            Self::Reasoning { .. } => "reasoning",
            Self::ToolUse { .. } => "tool_use",
            Self::StepFinish { .. } => "step_finish",
            Self::AgentError { .. } => "agent_error",
            Self::Unknown { .. } => "unknown",
            Self::Gateway { .. } => "gateway",
            Self::ModelRequest { .. } => "model_request",
            Self::Budget { .. } => "budget",
            Self::BudgetWarning { .. } => "budget_warning",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::Retrying { .. } => "retrying",
            Self::Queued { .. } => "queued",
            Self::Outcome { .. } => "outcome",
            Self::Exported { .. } => "exported",
            Self::ApprovalRequested(_) => "approval_requested",
            Self::ApprovalAnswered { .. } => "approval_answered",
            Self::ApprovalDecided { .. } => "approval_decided",
            Self::Finished { .. } => "finished",
            Self::Egress { .. } => "egress",
        }
    }
}

/// What the model gateway metered for a sandbox, added up from its `model_request` events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayUsage {
    pub requests: u64,
    pub input: u64,
    pub output: u64,
    /// Requests that got a status >= 400 or did not complete.
    pub errors: u64,
}

impl GatewayUsage {
    pub fn add(&mut self, event: &AgentEvent) {
        if let AgentEvent::ModelRequest {
            status,
            input_tokens,
            output_tokens,
            error,
            ..
        } = event
        {
            self.requests += 1;
            self.input += input_tokens.unwrap_or(0);
            self.output += output_tokens.unwrap_or(0);
            if *status >= 400 || error.is_some() {
                self.errors += 1;
            }
        }
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a AgentEvent>) -> Self {
        let mut usage = Self::default();
        for event in events {
            usage.add(event);
        }
        usage
    }
}

/// Whether the egress proxy let a request out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EgressDecision {
    Allowed,
    Denied,
}

impl EgressDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
        }
    }
}

/// The egress proxy's decisions for a sandbox, added up from its `egress` events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EgressUsage {
    pub allowed: u64,
    pub denied: u64,
    /// Bytes the sandbox sent and received through allowed requests and tunnels.
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl EgressUsage {
    pub fn add(&mut self, event: &AgentEvent) {
        if let AgentEvent::Egress {
            decision,
            bytes_up,
            bytes_down,
            ..
        } = event
        {
            match decision {
                EgressDecision::Allowed => self.allowed += 1,
                EgressDecision::Denied => self.denied += 1,
            }
            self.bytes_up += bytes_up;
            self.bytes_down += bytes_down;
        }
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a AgentEvent>) -> Self {
        let mut usage = Self::default();
        for event in events {
            usage.add(event);
        }
        usage
    }
}

/// An event as stored and streamed: the sandbox, its sequence number and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventRecord {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub at: OffsetDateTime,
    pub sandbox: String,
    #[serde(flatten)]
    pub event: AgentEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialise_flat_with_a_type_tag() {
        let rec = EventRecord {
            seq: 3,
            at: time::macros::datetime!(2026-01-02 03:04:05 UTC),
            sandbox: "fix-login".into(),
            event: AgentEvent::Text { text: "hi".into() },
        };
        let json = serde_json::to_value(&rec).unwrap_or_default();
        assert_eq!(json["type"], "text");
        assert_eq!(json["seq"], 3);
        assert_eq!(json["text"], "hi");
        let back: EventRecord = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, rec);
    }

    fn request(status: u16, tokens: Option<(u64, u64)>, error: Option<&str>) -> AgentEvent {
        AgentEvent::ModelRequest {
            source: RequestSource::Structurer,
            endpoint: "chat/completions".into(),
            model: Some("m".into()),
            status,
            input_tokens: tokens.map(|t| t.0),
            output_tokens: tokens.map(|t| t.1),
            latency_ms: 12,
            error: error.map(str::to_owned),
            cost_usd: None,
            session_id: None,
        }
    }

    #[test]
    fn model_requests_serialise_with_their_source_and_add_up() {
        let json = serde_json::to_value(request(200, Some((7, 3)), None)).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "model_request", "source": "structurer", "endpoint": "chat/completions",
                "model": "m", "status": 200, "input_tokens": 7, "output_tokens": 3, "latency_ms": 12,
            })
        );
        let failed = serde_json::to_value(request(502, None, Some("refused"))).unwrap_or_default();
        assert!(failed.get("input_tokens").is_none(), "{failed}");

        let events = [
            request(200, Some((7, 3)), None),
            request(200, Some((100, 20)), None),
            request(429, None, None),
            request(502, None, Some("refused")),
            request(200, None, Some("cut short")),
            AgentEvent::Text { text: "x".into() },
        ];
        assert_eq!(
            GatewayUsage::from_events(&events),
            GatewayUsage {
                requests: 5,
                input: 107,
                output: 23,
                errors: 3
            }
        );
    }
}
