//! The embedded, versioned migrations (`migrations/V<n>__<name>.sql`, applied by refinery) and
//! the first connection a store makes: it proves the server reachable and the credentials good,
//! then brings the schema up to date under an advisory lock, so replicas that start together
//! migrate once and the others wait, then find nothing to do.

use tokio_postgres::{Config, NoTls};
use warren_store::{DatabaseProblem, StoreError};

use crate::error::{classify, database};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// refinery's history table, named for warren so it cannot collide with another application's
/// in a shared database.
const HISTORY_TABLE: &str = "warren_schema_history";

/// The class (first key) of warren's advisory locks, so they cannot meet another
/// application's in the same database (`'warr'` in ASCII).
pub(crate) const LOCK_CLASS: i32 = 0x7761_7272;
/// Second key of the migration lock in [`LOCK_CLASS`]; pools lock in their own class.
const MIGRATION_LOCK: i32 = 0;

/// Connects once, takes the migration lock, applies pending migrations, and disconnects.
pub(crate) async fn migrate(config: &Config, location: &str) -> Result<(), StoreError> {
    const CONNECT: &str = "connecting to the database";
    const OP: &str = "migrating the schema";
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|err| database(location, CONNECT, classify(&err, true), err))?;
    let connection = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "the migration connection ended with an error");
        }
    });
    let fail = |err: tokio_postgres::Error| database(location, OP, classify(&err, false), err);
    client
        .execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&LOCK_CLASS, &MIGRATION_LOCK],
        )
        .await
        .map_err(fail)?;
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    let report = runner.run_async(&mut client).await;
    // The lock also ends with the session; unlocking first lets a waiting replica go on at once.
    let unlocked = client
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&LOCK_CLASS, &MIGRATION_LOCK],
        )
        .await;
    let report =
        report.map_err(|err| database(location, OP, DatabaseProblem::Failed, Box::new(err)))?;
    unlocked.map_err(fail)?;
    for migration in report.applied_migrations() {
        tracing::info!(%location, version = migration.version(), name = migration.name(), "applied a store migration");
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}
