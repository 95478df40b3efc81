//! Request records: what each chat-completion request carried and how the script answered, so
//! tests can check what OpenCode actually sent (served at `GET /_script/requests`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One chat-completion request as received, and the script's answer to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// 0-based arrival order among chat-completion requests.
    pub index: usize,
    /// The `model` field of the request (empty when absent).
    pub model: String,
    /// The raw `Authorization` header value, if any.
    pub authorization: Option<String>,
    /// Whether the request carried a non-empty `tools` array.
    pub has_tools: bool,
    /// Whether the request asked for a streamed reply.
    pub stream: bool,
    /// The full JSON body (`null` when the body was not JSON).
    pub body: Value,
    /// How the script answered.
    pub outcome: Outcome,
    /// The token usage the answer reported: set for a complete reply, plain or streamed with
    /// `stream_options.include_usage` (as OpenAI-compatible servers do); unset for faults,
    /// rejections and streams that did not ask for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::scenario::Usage>,
}

/// How the script answered one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Served by scripted turn `turn` (index into `turns`), possibly playing a fault.
    Turn { turn: usize, fault: Option<String> },
    /// Served by the fallback, possibly playing a fault.
    Fallback { fault: Option<String> },
    /// Refused before any turn was chosen: bad key (401), unknown model (404), bad body (400),
    /// or a request with tools that no turn matched (500, scenario exhausted).
    Rejected { status: u16, reason: String },
}

impl RecordedRequest {
    /// The scripted turn that served this request, if one did.
    pub fn turn(&self) -> Option<usize> {
        match &self.outcome {
            Outcome::Turn { turn, .. } => Some(*turn),
            _ => None,
        }
    }

    /// The fault played for this request (`status 429`, `hang`, `drop`, ...), if any.
    pub fn fault(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Turn { fault, .. } | Outcome::Fallback { fault } => fault.as_deref(),
            Outcome::Rejected { .. } => None,
        }
    }

    /// The text of the last `user` message of the request.
    pub fn last_user_text(&self) -> String {
        crate::select::RequestFacts::from_body(&self.body).last_user_text
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Turn { turn, fault: None } => write!(f, "served turn {turn}"),
            Outcome::Turn {
                turn,
                fault: Some(fault),
            } => write!(f, "turn {turn}: fault {fault}"),
            Outcome::Fallback { fault: None } => write!(f, "served fallback"),
            Outcome::Fallback { fault: Some(fault) } => write!(f, "fallback: fault {fault}"),
            Outcome::Rejected { status, reason } => write!(f, "rejected with {status}: {reason}"),
        }
    }
}
