//! The headless permission contract: what an agent asked for, how it was answered, and which
//! request is still waiting. The event stream is the record (`approval_requested`,
//! `approval_answered`, `approval_decided`), so any process that can read and append a sandbox's
//! events can see and answer a request, and the stream's `seq` orders concurrent answers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::AgentEvent;

/// One permission request of the agent, as OpenCode asked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRequest {
    /// OpenCode's request id (`per_...`): what `approve`/`deny` answer.
    pub request_id: String,
    /// The permission asked for: `bash`, `edit`, ...
    pub permission: String,
    /// What it would be used on: the command for `bash`, the paths for `edit`.
    pub patterns: Vec<String>,
    /// A one-line description for people (the command, or the file).
    pub title: String,
    /// Denied when unanswered for this long.
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// An answer (`approve`, `deny`, the API).
    User,
    /// Nobody answered within the timeout: denied.
    Timeout,
    /// The run ended first (stopped, its own time limit): denied, since nothing was run.
    RunEnded,
}

/// The request still waiting for a decision, if any: the last `approval_requested` with no
/// `approval_decided` after it. An answer alone does not close it: only the supervisor decides.
pub fn pending_approval<'a>(
    events: impl IntoIterator<Item = &'a AgentEvent>,
) -> Option<ApprovalRequest> {
    let mut pending: Option<ApprovalRequest> = None;
    for event in events {
        match event {
            AgentEvent::ApprovalRequested(request) => pending = Some(request.clone()),
            AgentEvent::ApprovalDecided { request_id, .. }
                if pending
                    .as_ref()
                    .is_some_and(|p| &p.request_id == request_id) =>
            {
                pending = None;
            }
            _ => {}
        }
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(id: &str) -> AgentEvent {
        AgentEvent::ApprovalRequested(ApprovalRequest {
            request_id: id.into(),
            permission: "bash".into(),
            patterns: vec!["git push origin main".into()],
            title: "git push origin main".into(),
            timeout_secs: 5,
        })
    }

    fn decided(id: &str) -> AgentEvent {
        AgentEvent::ApprovalDecided {
            request_id: id.into(),
            decision: Decision::Deny,
            by: DecidedBy::Timeout,
            reason: None,
        }
    }

    #[test]
    fn a_request_is_pending_until_it_is_decided_and_an_answer_alone_does_not_close_it() {
        let answered = AgentEvent::ApprovalAnswered {
            request_id: "per_1".into(),
            decision: Decision::Approve,
            reason: None,
        };
        assert_eq!(pending_approval(&[]), None);
        let waiting = [asked("per_1"), answered];
        assert_eq!(
            pending_approval(&waiting).map(|r| r.request_id),
            Some("per_1".to_owned())
        );
        assert_eq!(pending_approval(&[asked("per_1"), decided("per_1")]), None);
        // A decision of an earlier request does not close a later one.
        let later = [
            asked("per_1"),
            decided("per_1"),
            asked("per_2"),
            decided("per_1"),
        ];
        assert_eq!(
            pending_approval(&later).map(|r| r.request_id),
            Some("per_2".to_owned())
        );
    }

    #[test]
    fn the_events_keep_their_wire_names() {
        let json = serde_json::to_value(asked("per_1")).unwrap_or_default();
        assert_eq!(json["type"], "approval_requested");
        assert_eq!(json["request_id"], "per_1");
        let json = serde_json::to_value(decided("per_1")).unwrap_or_default();
        assert_eq!(json["by"], "timeout");
        assert_eq!(json["decision"], "deny");
    }
}
