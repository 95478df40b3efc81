//! Hints that name `warren` commands live in the CLI: the engine and the store describe what
//! happened in their own terms, and the front end says which command fixes it.

use warren_domain::{ErrorInfo, ReasonCode, SandboxName, SandboxState, UserFacing};
use warren_engine::EngineError;
use warren_store::StoreError;

/// `error` about the sandbox `name`, with a hint naming the commands that deal with it.
pub fn for_sandbox(mut error: ErrorInfo, name: &SandboxName) -> ErrorInfo {
    let hint = match error.reason_code {
        ReasonCode::SupervisorLost => Some(format!(
            "its work is kept: export it with 'warren export {name}' (or copy it out with 'warren pull {name} --to DIR'), or discard it with 'warren teardown {name} --force'"
        )),
        ReasonCode::Stopped => Some(format!(
            "its work is kept: see 'warren status {name}', export it with 'warren export {name}'"
        )),
        _ => None,
    };
    if let Some(hint) = hint {
        error.hint = Some(hint);
    }
    error
}

/// The CLI's boundary for engine errors: the wire form, with a hint naming this CLI's commands
/// where the engine's own hint speaks in general terms. Decided by the error's variant, never by
/// its message.
pub fn engine_error(error: &EngineError) -> ErrorInfo {
    let mut info = error.to_error_info();
    let hint = match error {
        EngineError::WrongState { name, state, .. } => Some(match state {
            SandboxState::New
            | SandboxState::Queued
            | SandboxState::Provisioning
            | SandboxState::Running => format!(
                "wait for the agent to finish ('warren logs {name} -f'), or stop it with 'warren teardown {name} --force'"
            ),
            SandboxState::Destroyed => "it was torn down; launch a new one".to_owned(),
            _ => format!("see 'warren status {name}'"),
        }),
        EngineError::Busy { name, .. } => Some(busy_hint(name.as_str())),
        EngineError::Store(StoreError::Busy { sandbox, .. }) => Some(busy_hint(sandbox)),
        EngineError::UnexportedChanges { name } => Some(format!(
            "export them first ('warren export {name}' or 'warren teardown {name} --export'), or discard them with --force"
        )),
        EngineError::BranchExists { branch, .. } => Some(format!(
            "choose another name (--name or --branch), or delete it with 'git branch -D {branch}'"
        )),
        EngineError::NeverSynced { name } => Some(format!(
            "tear it down with 'warren teardown {name} --force'"
        )),
        EngineError::Failed(inner) if info.hint.is_none() => inner.hint.clone(),
        _ => None,
    };
    if let Some(hint) = hint {
        info.hint = Some(hint);
    }
    info
}

fn busy_hint(name: &str) -> String {
    format!(
        "wait for it to finish ('warren logs {name} -f'), or stop it with 'warren teardown {name} --force'; if its holder died, 'warren gc' frees it"
    )
}
