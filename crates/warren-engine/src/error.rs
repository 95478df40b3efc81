//! The engine's errors, typed until the boundary. Each front end turns one into its wire form
//! once (`UserFacing::to_error_info`), adding the hints that name its own commands; nothing here
//! knows a command's name, and nothing anywhere decides by reading a message.

use std::path::PathBuf;

use warren_domain::{ErrorInfo, ReasonCode, SandboxName, SandboxState, UserFacing};
use warren_provider::ProviderError;
use warren_store::StoreError;
use warren_sync::SyncError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The operation needs the sandbox in another state.
    #[error("cannot {operation} sandbox {name}: it is {state}")]
    WrongState {
        name: SandboxName,
        state: SandboxState,
        operation: &'static str,
    },
    /// Another live operation holds the sandbox's lease.
    #[error("sandbox {name} is busy: {operation} is held by {holder}")]
    Busy {
        name: SandboxName,
        holder: String,
        operation: String,
    },
    /// Tearing the sandbox down would lose work that was never exported.
    #[error(
        "sandbox {name} holds changes that were never exported; tearing it down would lose them"
    )]
    UnexportedChanges { name: SandboxName },
    /// warren never overwrites a branch.
    #[error("branch {branch} already exists in {}", repo.display())]
    BranchExists { branch: String, repo: PathBuf },
    /// The sandbox has no workspace to work on.
    #[error("sandbox {name} was never synced: it has no workspace to work on")]
    NeverSynced { name: SandboxName },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A failure already classified where it happened (the agent runtime, the config, a check),
    /// in its wire form.
    #[error("{}", .0.message)]
    Failed(ErrorInfo),
}

impl From<ErrorInfo> for EngineError {
    fn from(info: ErrorInfo) -> Self {
        Self::Failed(info)
    }
}

impl UserFacing for EngineError {
    fn reason_code(&self) -> ReasonCode {
        match self {
            Self::WrongState { .. } => ReasonCode::WrongState,
            Self::Busy { .. } => ReasonCode::SandboxBusy,
            Self::UnexportedChanges { .. } => ReasonCode::UnexportedChanges,
            Self::BranchExists { .. } => ReasonCode::BranchExists,
            Self::NeverSynced { .. } => ReasonCode::SyncFailed,
            Self::Store(e) => e.reason_code(),
            Self::Sync(e) => e.reason_code(),
            Self::Provider(e) => e.reason_code(),
            Self::Failed(info) => info.reason_code,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.retryable(),
            Self::Sync(e) => e.retryable(),
            Self::Provider(e) => e.retryable(),
            Self::Failed(info) => info.retryable,
            _ => self.reason_code().exit_class() == warren_domain::ExitClass::Retryable,
        }
    }

    /// Hints in the engine's own terms; front ends replace them with ones naming their commands.
    fn hint(&self) -> Option<String> {
        match self {
            Self::WrongState { state, .. } => Some(match state {
                SandboxState::Destroyed => "it was torn down; launch a new one".to_owned(),
                SandboxState::New
                | SandboxState::Queued
                | SandboxState::Provisioning
                | SandboxState::Running => {
                    "wait for the agent to finish, or stop it with a forced teardown".to_owned()
                }
                _ => "check the sandbox's state".to_owned(),
            }),
            Self::Busy { .. } => Some(
                "wait for the operation to finish; if its holder died, the reconciler frees the sandbox"
                    .to_owned(),
            ),
            Self::UnexportedChanges { .. } => Some(
                "export the changes first, or discard them with a forced teardown".to_owned(),
            ),
            Self::BranchExists { branch, .. } => Some(format!(
                "choose another name, or delete the branch with 'git branch -D {branch}'"
            )),
            Self::NeverSynced { .. } => Some("tear it down with force".to_owned()),
            Self::Store(e) => e.hint(),
            Self::Sync(e) => e.hint(),
            Self::Provider(e) => e.hint(),
            Self::Failed(info) => info.hint.clone(),
        }
    }

    fn to_error_info(&self) -> ErrorInfo {
        match self {
            Self::Failed(info) => info.clone(),
            _ => ErrorInfo {
                reason_code: self.reason_code(),
                message: self.to_string(),
                retryable: self.retryable(),
                hint: self.hint(),
            },
        }
    }
}
