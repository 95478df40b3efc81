//! The store's failures, mapped onto warren's stable error contract so the CLI can print them
//! (and `--json` can carry them) without knowing anything about SQLite.

use std::path::PathBuf;

use time::OffsetDateTime;
use warren_domain::{ReasonCode, SandboxName, SandboxState, UserFacing};

use crate::clock;

/// Whatever went wrong underneath: SQLite, the filesystem, JSON or a corrupt row.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite, the filesystem or a corrupt row: reason `store_failed`.
    #[error("warren's state store {} failed while {operation}: {source}", path.display())]
    Failed {
        path: PathBuf,
        operation: String,
        #[source]
        source: Cause,
    },
    /// A database server (the PostgreSQL store) could not be reached, refused the connection, or
    /// failed a query: reason `store_failed`. `location` names the server without any password
    /// (`postgres://user@host:port/database`); `problem` decides the hint.
    #[error("warren's state store at {location} failed while {operation}: {source}")]
    Database {
        location: String,
        operation: String,
        problem: DatabaseProblem,
        #[source]
        source: Cause,
    },
    /// No sandbox has that id or name: reason `sandbox_not_found`.
    #[error("no sandbox {sandbox:?} is known")]
    NotFound { sandbox: String },
    /// A sandbox that is not destroyed already uses the name: reason `invalid_argument`.
    #[error("a sandbox named {name} already exists and is not destroyed")]
    NameTaken { name: SandboxName },
    /// The lifecycle table does not allow the change: reason `invalid_transition`.
    #[error("a sandbox cannot go from {from} to {to}")]
    InvalidTransition {
        from: SandboxState,
        to: SandboxState,
    },
    /// Another live process holds the sandbox's lease: reason `sandbox_busy`.
    #[error(
        "sandbox {sandbox} is busy: {operation} held by {holder} until {}; try again when it finishes",
        clock::display(*expires_at)
    )]
    Busy {
        sandbox: String,
        holder: String,
        operation: String,
        expires_at: OffsetDateTime,
    },
    /// The caller's lease is gone, so its operation is no longer protected: reason `sandbox_busy`.
    #[error(
        "lost the lease on sandbox {sandbox}: the lease expired or was taken by another process"
    )]
    LeaseLost { sandbox: String },
}

/// What kind of failure a [`StoreError::Database`] is, so the hint can say what to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseProblem {
    /// The store's URL could not be parsed, or names something the client cannot do.
    Config,
    /// No server answered at the address (refused, timed out, no route, closed mid-call).
    Unreachable,
    /// The server answered but refused the user, the password or the database.
    Rejected,
    /// The server was reached and a statement failed.
    Failed,
}

impl UserFacing for StoreError {
    fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Failed { .. } | Self::Database { .. } => ReasonCode::StoreFailed,
            Self::NotFound { .. } => ReasonCode::SandboxNotFound,
            Self::NameTaken { .. } => ReasonCode::InvalidArgument,
            Self::InvalidTransition { .. } => ReasonCode::InvalidTransition,
            Self::Busy { .. } | Self::LeaseLost { .. } => ReasonCode::SandboxBusy,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Failed { path, .. } => Some(format!(
                "check the permissions of {} and the free disk space, or set WARREN_DATA_DIR to another directory",
                path.display()
            )),
            Self::Database {
                location, problem, ..
            } => Some(match problem {
                DatabaseProblem::Config => "check the store URL; its form is \
                    postgres://USER:PASSWORD@HOST:PORT/DATABASE"
                    .to_owned(),
                DatabaseProblem::Unreachable => format!(
                    "check that PostgreSQL is running at {location} and accepts TCP connections \
                     from this host (listen_addresses, port, firewall)"
                ),
                DatabaseProblem::Rejected => format!(
                    "check the user name and password in the store URL (or PGPASSWORD), that the \
                     database exists, and that pg_hba.conf lets this user connect to {location}"
                ),
                DatabaseProblem::Failed => {
                    format!("check the PostgreSQL server's log at {location}")
                }
            }),
            Self::NotFound { .. } => {
                Some("check the name or id; `warren list` shows the sandboxes warren knows".into())
            }
            Self::NameTaken { name } => Some(format!(
                "choose another --name, or tear the sandbox named {name} down first"
            )),
            Self::InvalidTransition { .. } => None,
            Self::Busy { .. } => {
                Some("wait for it to finish, or run 'warren gc' if its holder died".into())
            }
            Self::LeaseLost { sandbox } => Some(format!(
                "check what else is working on {sandbox}, then run the command again"
            )),
        }
    }
}

/// Builds [`StoreError::Failed`] for one operation, so every call site names what it was doing.
pub(crate) fn failed<'a, E: Into<Cause>>(
    path: &'a std::path::Path,
    operation: &'a str,
) -> impl FnOnce(E) -> StoreError + 'a {
    move |source| StoreError::Failed {
        path: path.to_path_buf(),
        operation: operation.to_owned(),
        source: source.into(),
    }
}
