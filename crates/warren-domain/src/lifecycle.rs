//! The sandbox lifecycle: one table of allowed transitions. Every state write in warren goes
//! through [`SandboxState::transition`], so no record can reach a state the table does not allow.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Recorded, nothing created yet.
    New,
    /// Waiting for a slot in a concurrency pool.
    Queued,
    /// Workspace, sandbox and gateway being created.
    Provisioning,
    /// The agent is working.
    Running,
    /// The agent finished (successfully or not); the workspace holds its work.
    Completed,
    /// The agent's changes are being exported or checkpointed.
    Saving,
    /// Processes, mounts and scratch directories are being removed.
    TearingDown,
    /// Gone; only the record remains.
    Destroyed,
    /// Something failed outside the agent's own work; see the recorded error.
    Error,
}

pub const ALL_STATES: [SandboxState; 9] = [
    SandboxState::New,
    SandboxState::Queued,
    SandboxState::Provisioning,
    SandboxState::Running,
    SandboxState::Completed,
    SandboxState::Saving,
    SandboxState::TearingDown,
    SandboxState::Destroyed,
    SandboxState::Error,
];

/// Every allowed transition, in one place.
const TRANSITIONS: &[(SandboxState, &[SandboxState])] = {
    use SandboxState::*;
    &[
        (New, &[Queued, Provisioning, TearingDown, Error]),
        (Queued, &[Provisioning, Running, TearingDown, Error]),
        (
            Provisioning,
            &[Queued, Running, Completed, TearingDown, Error],
        ),
        (Running, &[Completed, Saving, TearingDown, Error]),
        (Completed, &[Queued, Running, Saving, TearingDown, Error]),
        (Saving, &[Completed, TearingDown, Error]),
        (TearingDown, &[Destroyed, Error]),
        (Destroyed, &[]),
        (Error, &[Saving, TearingDown]),
    ]
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sandbox cannot go from {from} to {to}")]
pub struct TransitionError {
    pub from: SandboxState,
    pub to: SandboxState,
}

impl SandboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Queued => "queued",
            Self::Provisioning => "provisioning",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Saving => "saving",
            Self::TearingDown => "tearing_down",
            Self::Destroyed => "destroyed",
            Self::Error => "error",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        ALL_STATES.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn allowed_next(self) -> &'static [SandboxState] {
        TRANSITIONS
            .iter()
            .find(|(from, _)| *from == self)
            .map(|(_, to)| *to)
            .unwrap_or(&[])
    }

    pub fn can_transition_to(self, to: SandboxState) -> bool {
        self.allowed_next().contains(&to)
    }

    /// Checks a transition against the table; the only way to compute a new state.
    pub fn transition(self, to: SandboxState) -> Result<SandboxState, TransitionError> {
        if self.can_transition_to(to) {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }

    pub fn is_terminal(self) -> bool {
        self == Self::Destroyed
    }
}

impl std::fmt::Display for SandboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_state_has_a_row_and_names_round_trip() {
        for s in ALL_STATES {
            assert!(
                TRANSITIONS.iter().any(|(from, _)| *from == s),
                "{s} has no row"
            );
            assert_eq!(SandboxState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn destroyed_is_final_and_every_other_state_can_reach_it() {
        assert!(SandboxState::Destroyed.allowed_next().is_empty());
        for s in ALL_STATES {
            let mut seen = vec![s];
            let mut frontier = vec![s];
            while let Some(cur) = frontier.pop() {
                for next in cur.allowed_next() {
                    if !seen.contains(next) {
                        seen.push(*next);
                        frontier.push(*next);
                    }
                }
            }
            assert!(
                seen.contains(&SandboxState::Destroyed),
                "{s} cannot reach destroyed"
            );
        }
    }

    proptest! {
        #[test]
        fn random_walks_only_take_allowed_edges(targets in proptest::collection::vec(0usize..9, 0..64)) {
            let mut state = SandboxState::New;
            for t in targets {
                let to = ALL_STATES[t];
                match state.transition(to) {
                    Ok(next) => {
                        prop_assert!(state.allowed_next().contains(&next));
                        state = next;
                    }
                    Err(e) => {
                        prop_assert!(!state.allowed_next().contains(&to));
                        prop_assert_eq!(e.from, state);
                    }
                }
            }
        }
    }
}
