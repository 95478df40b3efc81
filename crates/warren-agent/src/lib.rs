//! The agent runtime for OpenCode: how warren configures it inside a sandbox, how its JSON event
//! stream becomes typed [`warren_domain::AgentEvent`]s, and how one run is supervised.

pub mod attach;
pub mod classify;
pub mod contract;
pub mod events;
pub mod opencode;
pub mod supervise;

pub use classify::classify_failure;
pub use classify::{
    ClassifyPatterns, classify_failure_with, is_context_length, is_fatal,
    is_retryable_model_failure,
};
pub use contract::{
    ContractError, ContractSpec, Outcome, OutcomeKind, ParsedVia, STRUCTURER_MARKER,
    StructurerRequest, call_structurer, instruction_block, parse_outcome,
};
pub use events::{Parsed, parse_line};
pub use opencode::EgressRoute;
pub use opencode::{GATEWAY_PORT, GatewayRoute, OpencodeLaunch, PLACEHOLDER_API_KEY};
pub use supervise::{AgentRun, EndReason, Limits, supervise};
