//! Turning the driver's and the pool's failures into [`StoreError::Database`], classified so the
//! hint says what to check: the URL, the server's address, or the credentials. Classification
//! uses SQLSTATE codes and the error's source chain, never message text.

use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::Config;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use warren_store::{Cause, DatabaseProblem, StoreError};

/// Where the store is, for messages: the URL without its password.
pub(crate) fn location(config: &Config) -> String {
    let user = config.get_user().unwrap_or("");
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let database = config.get_dbname().unwrap_or(user);
    let at = if user.is_empty() { "" } else { "@" };
    format!("postgres://{user}{at}{}/{database}", hosts.join(","))
}

/// The error for a failure while `operation` ran against the server at `location`.
pub(crate) fn database(
    location: &str,
    operation: &str,
    problem: DatabaseProblem,
    source: impl Into<Cause>,
) -> StoreError {
    StoreError::Database {
        location: location.to_owned(),
        operation: operation.to_owned(),
        problem,
        source: source.into(),
    }
}

/// What a driver error means once a connection was made (or was being made, when `connecting`).
pub(crate) fn classify(err: &tokio_postgres::Error, connecting: bool) -> DatabaseProblem {
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        let class = code.code().get(..2).unwrap_or_default();
        return if class == "28" || *code == SqlState::INVALID_CATALOG_NAME {
            // Invalid authorization (wrong password, no such role, pg_hba.conf) or no database.
            DatabaseProblem::Rejected
        } else if class == "08" || class == "57" || *code == SqlState::TOO_MANY_CONNECTIONS {
            // Connection exceptions; the server shutting down or not accepting connections yet.
            DatabaseProblem::Unreachable
        } else {
            DatabaseProblem::Failed
        };
    }
    if err.is_closed() || has_io_source(err) {
        return DatabaseProblem::Unreachable;
    }
    if connecting {
        // No server error and no I/O error while connecting: a timeout (no source), or the
        // client refusing to go on (a password the server asks for and the URL lacks; TLS).
        return match std::error::Error::source(err) {
            None => DatabaseProblem::Unreachable,
            Some(_) => DatabaseProblem::Rejected,
        };
    }
    DatabaseProblem::Failed
}

fn has_io_source(err: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// What a pool failure means: a new connection that could not be made is the server's
/// address or credentials; waiting too long for a free connection is overload.
pub(crate) fn classify_pool(err: &PoolError) -> DatabaseProblem {
    match err {
        PoolError::Backend(err) => classify(err, true),
        PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => {
            DatabaseProblem::Unreachable
        }
        _ => DatabaseProblem::Failed,
    }
}
