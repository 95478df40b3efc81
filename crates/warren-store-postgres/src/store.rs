//! [`PostgresStore`]: opening it (parsing the URL, connecting, migrating), the pool and the
//! worker thread behind it, and the helpers every operation uses (a pooled connection, the
//! database's clock, the sandbox row lock, error mapping).

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use time::OffsetDateTime;
use tokio_postgres::{Config, NoTls, Transaction};
use warren_domain::{SandboxId, SandboxState};
use warren_store::{Cause, DatabaseProblem, Liveness, StoreError, TtlLiveness};

use crate::error::{classify, classify_pool, database, location};
use crate::replicas::{Lead, Signals};
use crate::schema;
use crate::worker::Worker;

/// How long to wait for a server that does not answer, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call waits for a free pooled connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// How to open a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The most connections this handle keeps open at once (its pool's size); calls beyond it
    /// wait for a free one. Default 8.
    pub max_connections: usize,
    /// How holders are judged. Default [`TtlLiveness`]: replicas on several hosts cannot check
    /// each other's pids, so a lease is live exactly while unexpired.
    pub liveness: Arc<dyn Liveness>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 8,
            liveness: Arc::new(TtlLiveness),
        }
    }
}

/// warren's state in a PostgreSQL database, shared by every replica of a server. `Send + Sync`;
/// each handle has its own connection pool and its own worker thread (see the crate's docs), and
/// its methods may be called from any thread, inside a tokio runtime's context or not.
pub struct PostgresStore {
    // Dropped before the worker, so the pool's connections close while its runtime still runs.
    ctx: Ctx,
    worker: Worker,
}

const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<PostgresStore>();
};

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.ctx.location)
            .field("liveness", &self.ctx.liveness)
            .finish()
    }
}

/// What an operation needs, cloned into each job: the pool, where it points, the policy.
#[derive(Clone)]
pub(crate) struct Ctx {
    pool: Pool,
    pub(crate) location: Arc<str>,
    pub(crate) liveness: Arc<dyn Liveness>,
    /// For the sessions kept outside the pool (the lead, the event listener).
    pub(crate) config: Config,
    pub(crate) lead: Arc<tokio::sync::Mutex<Lead>>,
    pub(crate) signals: Arc<Signals>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, or
    /// the key-value form libpq takes) with the default [`PostgresOptions`], and brings its
    /// schema up to date. Fails with [`StoreError::Database`] when the URL is wrong, the server
    /// is unreachable or the credentials are refused.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        Self::open_with(url, PostgresOptions::default())
    }

    /// [`PostgresStore::open`] with explicit options.
    pub fn open_with(url: &str, options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        const OP: &str = "reading the store URL";
        let mut config = Config::from_str(url).map_err(|err| {
            // The URL may hold a password, so it is not repeated here.
            database(
                "the configured URL",
                OP,
                DatabaseProblem::Config,
                Box::new(err) as Cause,
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("warren");
        }
        let location: Arc<str> = location(&config).into();
        let worker = Worker::start().map_err(|err| {
            database(
                &location,
                "starting the store's worker thread",
                DatabaseProblem::Failed,
                err,
            )
        })?;

        // One connection of its own to check the server and migrate, before any pool exists.
        let migrate = {
            let (config, location) = (config.clone(), Arc::clone(&location));
            async move { schema::migrate(&config, &location).await }
        };
        worker
            .run(migrate)
            .unwrap_or_else(|| Err(worker_gone(&location, "migrating the schema")))?;

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|err| {
                database(
                    &location,
                    "creating the connection pool",
                    DatabaseProblem::Failed,
                    err,
                )
            })?;
        Ok(PostgresStore {
            ctx: Ctx {
                pool,
                location,
                liveness: options.liveness,
                config,
                lead: Arc::default(),
                signals: Arc::default(),
            },
            worker,
        })
    }

    /// Judges lease and pool holders by `liveness` from now on (the default is
    /// [`TtlLiveness`]; [`ProcessLiveness`](warren_store::ProcessLiveness) for one host).
    pub fn with_liveness(mut self, liveness: Arc<dyn Liveness>) -> PostgresStore {
        self.ctx.liveness = liveness;
        self
    }

    /// The server and database this store uses, without the password.
    pub fn location(&self) -> &str {
        &self.ctx.location
    }

    /// The signal of sandbox `id`'s appends, starting the store's listener on first use.
    pub(crate) fn signal(&self, id: &SandboxId) -> Arc<tokio::sync::Notify> {
        let signal = self.ctx.signals.signal(id.as_str());
        if self.ctx.signals.start() {
            let listener =
                crate::replicas::listen(self.ctx.config.clone(), self.ctx.signals.clone());
            // Returns once the listener is spawned; it runs as long as the worker does.
            let _ = self.worker.run(async move {
                tokio::spawn(listener);
            });
        }
        signal
    }

    /// Runs one operation on the worker and waits for it.
    pub(crate) fn call<T, F, Fut>(&self, operation: &'static str, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Ctx) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.worker
            .run(op(self.ctx.clone()))
            .unwrap_or_else(|| Err(worker_gone(&self.ctx.location, operation)))
    }
}

fn worker_gone(location: &str, operation: &str) -> StoreError {
    database(
        location,
        operation,
        DatabaseProblem::Failed,
        "the store's worker stopped before the call finished (see the log for a panic)",
    )
}

/// A sandbox row, locked for the rest of the transaction.
pub(crate) struct Locked {
    pub(crate) name: String,
    pub(crate) state: SandboxState,
}

impl Ctx {
    /// A connection from the pool, for one operation.
    pub(crate) async fn client(&self, operation: &str) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|err| database(&self.location, operation, classify_pool(&err), err))
    }

    /// Maps a driver error met while `operation` ran.
    pub(crate) fn fail<'a>(
        &'a self,
        operation: &'a str,
    ) -> impl FnOnce(tokio_postgres::Error) -> StoreError + 'a {
        move |err| database(&self.location, operation, classify(&err, false), err)
    }

    /// Maps a row that could not be read back (a corrupt value).
    pub(crate) fn corrupt<'a, E: Into<Cause>>(
        &'a self,
        operation: &'a str,
    ) -> impl FnOnce(E) -> StoreError + 'a {
        move |err| database(&self.location, operation, DatabaseProblem::Failed, err)
    }

    /// The database's clock, read now. One clock for every replica, so leases taken on one host
    /// are judged against the same time on another. Read after the locks a transaction needs,
    /// so time order follows the order the locks were granted in.
    pub(crate) async fn now(
        &self,
        tx: &Transaction<'_>,
        operation: &str,
    ) -> Result<OffsetDateTime, StoreError> {
        let row = tx
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .map_err(self.fail(operation))?;
        row.try_get(0).map_err(self.fail(operation))
    }

    /// Locks the sandbox's row until the transaction ends (`FOR NO KEY UPDATE`: it excludes
    /// every other transaction that locks it, but not the foreign-key checks of inserts into
    /// its events and pool rows) and returns its name and state, or `NotFound`. Every
    /// read-then-write about one sandbox starts here, so they take turns.
    pub(crate) async fn lock_sandbox(
        &self,
        tx: &Transaction<'_>,
        id: &SandboxId,
        operation: &str,
    ) -> Result<Locked, StoreError> {
        let row = tx
            .query_opt(
                "SELECT name, state FROM sandboxes WHERE id = $1 FOR NO KEY UPDATE",
                &[&id.as_str()],
            )
            .await
            .map_err(self.fail(operation))?
            .ok_or_else(|| StoreError::NotFound {
                sandbox: id.to_string(),
            })?;
        let name: String = row.try_get(0).map_err(self.fail(operation))?;
        let state: String = row.try_get(1).map_err(self.fail(operation))?;
        let state = parse_state(&state).map_err(self.corrupt(operation))?;
        Ok(Locked { name, state })
    }

    /// The sandbox's name, or `NotFound`; how readers tell "no rows" from "no sandbox".
    pub(crate) async fn require(
        &self,
        client: &impl tokio_postgres::GenericClient,
        id: &SandboxId,
        operation: &str,
    ) -> Result<String, StoreError> {
        let row = client
            .query_opt("SELECT name FROM sandboxes WHERE id = $1", &[&id.as_str()])
            .await
            .map_err(self.fail(operation))?
            .ok_or_else(|| StoreError::NotFound {
                sandbox: id.to_string(),
            })?;
        row.try_get(0).map_err(self.fail(operation))
    }
}

pub(crate) fn parse_state(raw: &str) -> Result<SandboxState, Cause> {
    SandboxState::parse(raw).ok_or_else(|| format!("unknown sandbox state {raw:?}").into())
}

/// Counters are only ever written from `u64`s, so a negative value can only be corruption;
/// reading it as zero keeps one bad counter from hiding the whole record.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// PostgreSQL integers are signed; counters past `i64::MAX` cannot occur, so saturate.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PostgresStore {
    /// An input the store cannot write (JSON that does not serialise, a path that is not UTF-8).
    pub(crate) fn invalid(&self, operation: &str, source: impl Into<Cause>) -> StoreError {
        database(
            &self.ctx.location,
            operation,
            DatabaseProblem::Failed,
            source,
        )
    }
}
