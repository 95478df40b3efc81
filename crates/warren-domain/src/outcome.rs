//! The outcome contract's data: how an agent judged its task (complete, needs information,
//! failed), with a summary and the role's own fields. Parsing and validation live in
//! `warren-agent`; the type is here because run summaries and records carry it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the agent's task ended, in its own judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutcomeKind {
    /// The task is done.
    Complete,
    /// The agent cannot proceed without an answer from the user (the question is the summary).
    NeedsInfo,
    /// The agent cannot do the task.
    Error,
}

impl OutcomeKind {
    pub const ALL: [Self; 3] = [Self::Complete, Self::NeedsInfo, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "COMPLETE",
            Self::NeedsInfo => "NEEDS_INFO",
            Self::Error => "ERROR",
        }
    }

    /// Lenient on case and separators: models write "complete" or "needs-info" as often as the
    /// canonical spelling, and the meaning is not in doubt.
    pub fn parse(raw: &str) -> Option<Self> {
        let normal = raw.trim().to_ascii_uppercase().replace(['-', ' '], "_");
        Self::ALL.into_iter().find(|k| k.as_str() == normal)
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A validated outcome: the kind, a non-empty summary, and every other field the object carried
/// (the role's required fields among them, each non-null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    pub outcome: OutcomeKind,
    pub summary: String,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}
