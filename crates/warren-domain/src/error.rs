//! The stable error contract: every failure a user can see maps to a `reason_code`, a message,
//! whether retrying can help, and an optional hint. Codes are part of warren's interface and are
//! listed in `docs/errors.md`; never rename one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Stable, snake_case identifiers for every user-visible failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// The `--repo` path is not a git work tree.
    NotAGitRepo,
    /// A required program (bubblewrap, opencode, git) is missing.
    MissingDependency,
    /// Configuration is invalid: unknown key, bad value, unknown model.
    InvalidConfig,
    /// A command-line argument is invalid (bad name, conflicting flags).
    InvalidArgument,
    /// The export branch already exists in the user's repository.
    BranchExists,
    /// The model endpoint could not be reached (connection refused, DNS, reset).
    ModelUnreachable,
    /// The model endpoint rejected the credential.
    ModelAuth,
    /// The model endpoint rate limited the request.
    RateLimited,
    /// The model endpoint answered with an error the agent could not recover from.
    ModelError,
    /// The model name is not known to the endpoint.
    UnknownModel,
    /// The conversation no longer fits the model's context window.
    ContextLength,
    /// The agent ran past the hard wall-clock limit.
    Timeout,
    /// The agent produced no event and no output for the inactivity limit.
    Inactive,
    /// The agent process failed (non-zero exit, error event) for another reason.
    AgentFailed,
    /// The sandbox could not be created or supervised.
    SandboxFailed,
    /// Reading the sandbox's changes or writing the branch failed.
    SyncFailed,
    /// Something the sandbox returned was refused as unsafe (path escape, oversize).
    UnsafeSandboxOutput,
    /// The state store could not be opened or written.
    StoreFailed,
    /// A lifecycle transition the state machine does not allow.
    InvalidTransition,
    /// Another operation holds the sandbox's lease.
    SandboxBusy,
    /// No sandbox has that name.
    SandboxNotFound,
    /// The sandbox holds changes that were never exported; tearing it down would lose them.
    UnexportedChanges,
    /// The operation needs the sandbox in another state (e.g. exec while the agent still runs).
    WrongState,
    /// The run was interrupted by the user (Ctrl-C).
    Interrupted,
    /// The operation was stopped by another command before it finished (`teardown --force`, a
    /// cancel request): its work so far is kept where the sandbox still exists.
    Stopped,
    /// The sandbox was in the middle of an operation whose supervisor died (killed, crashed,
    /// machine restarted); its work is kept.
    SupervisorLost,
    /// A request to the server carried no valid bearer token (missing, unknown or revoked).
    Unauthorized,
    /// A request's body is larger than the server accepts.
    RequestTooLarge,
    /// A launch named its repository in a form the server does not take: a relative path, a URL
    /// with a scheme other than https, http, ssh, git or file, or an unknown bundle id.
    UnsupportedSource,
    /// An uploaded git bundle was refused: not a bundle, incomplete, or holding objects that
    /// fail git's fsck (`..` or `.git` entries in a tree, malformed objects).
    InvalidBundle,
    /// The server could not fetch a git URL (unreachable, refused, needs credentials, too
    /// large or too slow) or push a branch back to it.
    RemoteGitFailed,
    /// The warren server (`WARREN_SERVER` / `--server`) could not be reached, or answered with
    /// something that is not warren's API.
    ServerUnreachable,
    /// A token already holds as many open event streams as the server allows.
    TooManyStreams,
    /// `approve`/`deny` found no request waiting for an answer on that sandbox (none was asked,
    /// or it was already answered or timed out).
    NoPendingApproval,
    /// An egress allow-list entry (`[policy] allow`, a role's `allow`, `--allow`, the API's
    /// `allow`) is not a host, IP or CIDR with an optional port, or a method is not one.
    InvalidEgressRule,
    /// The sandbox provider cannot enforce an egress allow-list; the sandbox is not started
    /// rather than run with open network.
    EgressUnenforceable,
    /// A bug in warren.
    Internal,
    // --- budgets (issue 12) ---
    /// A budget (tokens, cost, requests, time) of the run or the sandbox ran out: the agent was
    /// stopped and its work kept; raise the budget to go on.
    BudgetExceeded,
    /// `warren audit` was given a commit warren did not make (no `Warren-Sandbox` trailer).
    NotAWarrenCommit,
    // --- end budgets ---
    // --- kubernetes (issue 13) ---
    /// The sandbox went away under a running agent (its pod evicted or deleted, its node lost):
    /// what the run wrote since its last sync-in may be gone; running again elsewhere can work.
    SandboxLost,
    // --- end kubernetes ---
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAGitRepo => "not_a_git_repo",
            Self::MissingDependency => "missing_dependency",
            Self::InvalidConfig => "invalid_config",
            Self::InvalidArgument => "invalid_argument",
            Self::BranchExists => "branch_exists",
            Self::ModelUnreachable => "model_unreachable",
            Self::ModelAuth => "model_auth",
            Self::RateLimited => "rate_limited",
            Self::ModelError => "model_error",
            Self::UnknownModel => "unknown_model",
            Self::ContextLength => "context_length",
            Self::Timeout => "timeout",
            Self::Inactive => "inactive",
            Self::AgentFailed => "agent_failed",
            Self::SandboxFailed => "sandbox_failed",
            Self::SyncFailed => "sync_failed",
            Self::UnsafeSandboxOutput => "unsafe_sandbox_output",
            Self::StoreFailed => "store_failed",
            Self::InvalidTransition => "invalid_transition",
            Self::SandboxBusy => "sandbox_busy",
            Self::SandboxNotFound => "sandbox_not_found",
            Self::UnexportedChanges => "unexported_changes",
            Self::WrongState => "wrong_state",
            Self::Interrupted => "interrupted",
            Self::Stopped => "stopped",
            Self::SupervisorLost => "supervisor_lost",
            Self::Unauthorized => "unauthorized",
            Self::RequestTooLarge => "request_too_large",
            Self::UnsupportedSource => "unsupported_source",
            Self::InvalidBundle => "invalid_bundle",
            Self::RemoteGitFailed => "remote_git_failed",
            Self::ServerUnreachable => "server_unreachable",
            Self::TooManyStreams => "too_many_streams",
            Self::NoPendingApproval => "no_pending_approval",
            Self::InvalidEgressRule => "invalid_egress_rule",
            Self::EgressUnenforceable => "egress_unenforceable",
            Self::Internal => "internal",
            Self::BudgetExceeded => "budget_exceeded",
            Self::NotAWarrenCommit => "not_a_warren_commit",
            Self::SandboxLost => "sandbox_lost",
        }
    }

    /// The exit class a failure with this code maps to.
    pub fn exit_class(self) -> ExitClass {
        match self {
            Self::NotAGitRepo
            | Self::MissingDependency
            | Self::InvalidConfig
            | Self::InvalidArgument
            | Self::BranchExists
            | Self::InvalidTransition
            | Self::SandboxNotFound
            | Self::UnexportedChanges
            | Self::WrongState
            | Self::ModelAuth
            | Self::ContextLength
            | Self::UnknownModel
            | Self::Unauthorized
            | Self::RequestTooLarge
            | Self::UnsupportedSource
            | Self::InvalidBundle
            | Self::NoPendingApproval
            | Self::InvalidEgressRule
            | Self::EgressUnenforceable => ExitClass::User,
            Self::BudgetExceeded | Self::NotAWarrenCommit => ExitClass::User,
            Self::ModelUnreachable
            | Self::RateLimited
            | Self::SandboxBusy
            | Self::TooManyStreams
            | Self::Timeout
            | Self::Inactive
            | Self::ModelError
            | Self::AgentFailed
            | Self::RemoteGitFailed
            | Self::ServerUnreachable
            | Self::SandboxLost => ExitClass::Retryable,
            Self::Interrupted | Self::Stopped => ExitClass::Interrupted,
            Self::SandboxFailed
            | Self::SupervisorLost
            | Self::SyncFailed
            | Self::UnsafeSandboxOutput
            | Self::StoreFailed
            | Self::Internal => ExitClass::Internal,
        }
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Process exit codes by failure class (documented in `docs/cli.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// 2: the user must change something (input, config, environment).
    User,
    /// 3: the condition may clear; running again can succeed.
    Retryable,
    /// 4: warren or the machine failed.
    Internal,
    /// 130: interrupted by the user.
    Interrupted,
}

impl ExitClass {
    pub fn code(self) -> i32 {
        match self {
            Self::User => 2,
            Self::Retryable => 3,
            Self::Internal => 4,
            Self::Interrupted => 130,
        }
    }
}

/// The wire form of an error: what `--json` prints under `{"error": ...}` and what the store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorInfo {
    pub reason_code: ReasonCode,
    pub message: String,
    pub retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hint: Option<String>,
}

impl ErrorInfo {
    pub fn new(reason_code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            reason_code,
            message: message.into(),
            retryable: reason_code.exit_class() == ExitClass::Retryable,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.reason_code)
    }
}

impl std::error::Error for ErrorInfo {}

/// Implemented by every library error enum so the CLI can map it to the wire form in one place.
pub trait UserFacing: std::error::Error {
    fn reason_code(&self) -> ReasonCode;

    fn hint(&self) -> Option<String> {
        None
    }

    fn retryable(&self) -> bool {
        self.reason_code().exit_class() == ExitClass::Retryable
    }

    fn to_error_info(&self) -> ErrorInfo {
        ErrorInfo {
            reason_code: self.reason_code(),
            message: self.to_string(),
            retryable: self.retryable(),
            hint: self.hint(),
        }
    }
}

impl UserFacing for ErrorInfo {
    fn reason_code(&self) -> ReasonCode {
        self.reason_code
    }
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
    fn retryable(&self) -> bool {
        self.retryable
    }
}

/// The messages of an error's causes (not the error's own), each once. HTTP clients put the full
/// URL in their top-level message, which may carry credentials; the causes say what went wrong
/// ("tcp connect error: Connection refused").
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts
}
