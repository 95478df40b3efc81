//! One error type for the crate so the CLI can map every sync failure to a stable reason code,
//! and so every message says which file and which step failed.

use std::path::PathBuf;

use warren_domain::{ReasonCode, UserFacing};

pub type Result<T, E = SyncError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{} is not inside a git work tree ({detail})", .path.display())]
    NotAGitRepo { path: PathBuf, detail: String },

    #[error("git is not installed or not on PATH; it is needed for {step} in {}", .path.display())]
    GitMissing { step: String, path: PathBuf },

    #[error("{step} failed in {}: `git {command}` {status}: {stderr}", .path.display())]
    Git {
        step: String,
        path: PathBuf,
        command: String,
        status: String,
        stderr: String,
    },

    #[error("{step} failed for {}: {source}", .path.display())]
    Io {
        step: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{step} failed for {}: {detail}", .path.display())]
    Failed {
        step: String,
        path: PathBuf,
        detail: String,
    },

    #[error("refusing sandbox output {} while {step}: {reason}", .path.display())]
    Unsafe {
        step: String,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "refusing sandbox output {} while {step}: {what} is {actual}, over the limit of {limit} set by {key}",
        .path.display()
    )]
    LimitExceeded {
        step: String,
        path: PathBuf,
        what: &'static str,
        actual: u64,
        limit: u64,
        key: &'static str,
    },

    #[error("branch '{branch}' already exists in {}", .repo.display())]
    BranchExists { branch: String, repo: PathBuf },

    #[error("invalid {what} '{value}' for {}: {detail}", .repo.display())]
    InvalidName {
        what: &'static str,
        value: String,
        repo: PathBuf,
        detail: String,
    },
}

impl SyncError {
    pub(crate) fn io(
        step: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            step: step.into(),
            path: path.into(),
            source,
        }
    }

    pub(crate) fn failed(
        step: impl Into<String>,
        path: impl Into<PathBuf>,
        detail: impl Into<String>,
    ) -> Self {
        Self::Failed {
            step: step.into(),
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn unsafe_output(
        step: impl Into<String>,
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Unsafe {
            step: step.into(),
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl UserFacing for SyncError {
    fn reason_code(&self) -> ReasonCode {
        match self {
            Self::NotAGitRepo { .. } => ReasonCode::NotAGitRepo,
            Self::GitMissing { .. } => ReasonCode::MissingDependency,
            Self::Git { .. } | Self::Io { .. } | Self::Failed { .. } => ReasonCode::SyncFailed,
            Self::Unsafe { .. } | Self::LimitExceeded { .. } => ReasonCode::UnsafeSandboxOutput,
            Self::BranchExists { .. } => ReasonCode::BranchExists,
            Self::InvalidName { .. } => ReasonCode::InvalidArgument,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::NotAGitRepo { .. } => {
                Some("run 'git init' there or pass --repo pointing at a git work tree".to_owned())
            }
            Self::GitMissing { .. } => Some(
                "install git (for example 'apt-get install git') and make sure it is on PATH"
                    .to_owned(),
            ),
            Self::BranchExists { branch, .. } => Some(format!(
                "choose another --name or delete it with 'git branch -D {branch}'"
            )),
            Self::LimitExceeded { key, .. } => Some(format!(
                "raise {key} in warren's config if this output is expected"
            )),
            Self::InvalidName { what, .. } => {
                Some(format!("pick a {what} that 'git check-ref-format' accepts"))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_maps_to_its_reason_code_and_hint() {
        let path = PathBuf::from("/r");
        let cases: Vec<(SyncError, ReasonCode, bool)> = vec![
            (
                SyncError::NotAGitRepo {
                    path: path.clone(),
                    detail: "no".into(),
                },
                ReasonCode::NotAGitRepo,
                true,
            ),
            (
                SyncError::GitMissing {
                    step: "s".into(),
                    path: path.clone(),
                },
                ReasonCode::MissingDependency,
                true,
            ),
            (
                SyncError::failed("s", &path, "d"),
                ReasonCode::SyncFailed,
                false,
            ),
            (
                SyncError::unsafe_output("s", &path, "r"),
                ReasonCode::UnsafeSandboxOutput,
                false,
            ),
            (
                SyncError::BranchExists {
                    branch: "b".into(),
                    repo: path.clone(),
                },
                ReasonCode::BranchExists,
                true,
            ),
        ];
        for (err, code, has_hint) in cases {
            assert_eq!(err.reason_code(), code, "{err}");
            assert_eq!(err.hint().is_some(), has_hint, "{err}");
            assert!(err.to_string().contains("/r"), "{err}");
            assert!(!err.retryable());
        }
    }
}
