//! Which store a server (and its tokens) uses: SQLite in the data directory by default, or a
//! PostgreSQL database several `warren serve` replicas share (`--store` / `WARREN_STORE`). The
//! one place that turns the spec into open, migrated handles; the server sees only the traits.

use std::path::Path;
use std::sync::Arc;

use warren_domain::{ErrorInfo, ReasonCode, UserFacing};
use warren_store::{DatabaseProblem, StateStore, StoreError, TenancyStore};
use warren_store_postgres::PostgresStore;

use super::{CmdResult, open_store};

/// The state and the tokens of one store (the same object behind both traits).
pub(crate) struct Stores {
    pub state: Arc<dyn StateStore>,
    pub tenancy: Arc<dyn TenancyStore>,
}

/// Opens (creating and migrating) the store `spec` names: `None` or `sqlite` for SQLite at the
/// data directory's default path, a `postgres://` or `postgresql://` URL for PostgreSQL.
/// Anything else, or a URL PostgreSQL cannot parse, is `invalid_argument` (exit 2); a database
/// that cannot be reached is `store_failed`, retryable.
pub(crate) fn open_stores(spec: Option<&str>, data_dir: &Path) -> CmdResult<Stores> {
    let spec = spec.map(str::trim).filter(|s| !s.is_empty());
    match spec {
        None | Some("sqlite") => {
            let store = open_store(data_dir)?;
            Ok(Stores {
                state: store.clone(),
                tenancy: store,
            })
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = Arc::new(PostgresStore::open(url).map_err(opening_failed)?);
            Ok(Stores {
                state: store.clone(),
                tenancy: store,
            })
        }
        Some(_) => Err(ErrorInfo::new(
            ReasonCode::InvalidArgument,
            "the store is neither 'sqlite' nor a postgres:// URL",
        )
        .with_hint(
            "pass --store postgres://USER:PASSWORD@HOST:PORT/DATABASE (or set WARREN_STORE), or leave it unset for SQLite in the data directory",
        )
        .into()),
    }
}

/// A URL that does not parse is the caller's mistake; a server that does not answer may come
/// back.
fn opening_failed(err: StoreError) -> ErrorInfo {
    let mut info = err.to_error_info();
    match &err {
        StoreError::Database {
            problem: DatabaseProblem::Config,
            ..
        } => info.reason_code = ReasonCode::InvalidArgument,
        StoreError::Database {
            problem: DatabaseProblem::Unreachable,
            ..
        } => info.retryable = true,
        _ => {}
    }
    info
}
