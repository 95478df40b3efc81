//! Hints that name `warren` commands live in the CLI: the engine and the store describe what
//! happened in their own terms, and the front end says which command fixes it.

use warren_domain::{ErrorInfo, ReasonCode, SandboxName};
use warren_store::SandboxRecord;

/// The recorded error of a sandbox, with the hint a user of this CLI needs.
pub fn recorded_error(record: &SandboxRecord) -> Option<ErrorInfo> {
    let error = record.error.clone()?;
    Some(for_sandbox(error, &record.name))
}

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
