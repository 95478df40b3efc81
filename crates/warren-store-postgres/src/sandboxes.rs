//! Sandboxes: creating and finding them, the one function that writes a sandbox's state (through
//! the domain's transition table), the reconciler's `mark_lost`, and the descriptive columns.

use std::path::PathBuf;

use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};
use warren_domain::{ErrorInfo, SandboxId, SandboxName, SandboxState, Usage};
use warren_store::{Cause, NewSandbox, SandboxRecord, StoreError, TransitionRecord};

use crate::leases::lease_row;
use crate::store::{Ctx, parse_state, to_u64};

/// The column list every sandbox query selects, in [`record`]'s order.
pub(crate) const COLUMNS: &str = "id, name, repo, provider, state, created_at, updated_at, \
    state_changed_at, model, prompt, role, session_id, workspace, sync_json, outcome_json, \
    error_json, branch, tokens_input, tokens_output, tokens_reasoning, tokens_cache_read, \
    tokens_cache_write, cost, changed_files, exported_at, destroyed_at";

/// A sandbox row as a record; an error names the column that is corrupt.
pub(crate) fn record(row: &Row) -> Result<SandboxRecord, Cause> {
    let id: String = row.try_get(0)?;
    let corrupt = |what: &str, detail: String| -> Cause {
        format!("sandbox {id}: stored {what} is invalid: {detail}").into()
    };
    let name: String = row.try_get(1)?;
    let name = SandboxName::parse(&name).map_err(|e| corrupt("name", e.to_string()))?;
    let state: String = row.try_get(4)?;
    let state = parse_state(&state).map_err(|e| corrupt("state", e.to_string()))?;
    let json = |what: &str, idx: usize| -> Result<Option<serde_json::Value>, Cause> {
        let raw: Option<String> = row.try_get(idx)?;
        raw.map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt(what, e.to_string()))
    };
    let error: Option<String> = row.try_get(15)?;
    let error = error
        .map(|r| serde_json::from_str::<ErrorInfo>(&r))
        .transpose()
        .map_err(|e| corrupt("error", e.to_string()))?;
    let count = |idx: usize| -> Result<u64, Cause> { Ok(to_u64(row.try_get(idx)?)) };
    let changed_files: Option<i64> = row.try_get(23)?;
    Ok(SandboxRecord {
        name,
        state,
        repo: PathBuf::from(row.try_get::<_, String>(2)?),
        provider: row.try_get(3)?,
        created_at: row.try_get(5)?,
        updated_at: row.try_get(6)?,
        state_changed_at: row.try_get(7)?,
        model: row.try_get(8)?,
        prompt: row.try_get(9)?,
        role: row.try_get(10)?,
        session_id: row.try_get(11)?,
        workspace: row.try_get::<_, Option<String>>(12)?.map(PathBuf::from),
        sync: json("sync_json", 13)?,
        outcome: json("outcome_json", 14)?,
        error,
        branch: row.try_get(16)?,
        usage: Usage {
            input: count(17)?,
            output: count(18)?,
            reasoning: count(19)?,
            cache_read: count(20)?,
            cache_write: count(21)?,
            cost: row.try_get(22)?,
        },
        changed_files: changed_files.map(to_u64),
        exported_at: row.try_get(24)?,
        destroyed_at: row.try_get(25)?,
        id: SandboxId::from_stored(id.clone()),
    })
}

/// Paths are stored as text so the database stays readable with ordinary tools; a path that is
/// not UTF-8 cannot be stored faithfully, so it is refused rather than mangled.
pub(crate) fn path_text(path: &std::path::Path) -> Result<String, Cause> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("path {} is not valid UTF-8", path.display()).into())
}

impl Ctx {
    /// Records a new sandbox in state `new`. The partial unique index on live names makes the
    /// name check and the insert one atomic step.
    pub(crate) async fn create_sandbox(
        &self,
        new: NewSandbox,
    ) -> Result<SandboxRecord, StoreError> {
        const OP: &str = "recording a new sandbox";
        let repo = path_text(&new.repo).map_err(self.corrupt(OP))?;
        let client = self.client(OP).await?;
        let sql = format!(
            "WITH t AS (SELECT clock_timestamp() AS now) \
             INSERT INTO sandboxes (id, name, repo, provider, state, created_at, updated_at, \
             state_changed_at, model, prompt, role) \
             SELECT $1, $2, $3, $4, $5, now, now, now, $6, $7, $8 FROM t RETURNING {COLUMNS}"
        );
        let inserted = client
            .query_one(
                &sql,
                &[
                    &new.id.as_str(),
                    &new.name.as_str(),
                    &repo,
                    &new.provider,
                    &SandboxState::New.as_str(),
                    &new.model,
                    &new.prompt,
                    &new.role,
                ],
            )
            .await;
        match inserted {
            Ok(row) => record(&row).map_err(self.corrupt(OP)),
            Err(err)
                if err.as_db_error().is_some_and(|db| {
                    *db.code() == SqlState::UNIQUE_VIOLATION
                        && db.constraint() == Some("sandboxes_live_name")
                }) =>
            {
                Err(StoreError::NameTaken { name: new.name })
            }
            Err(err) => Err(self.fail(OP)(err)),
        }
    }

    pub(crate) async fn get(&self, id: SandboxId) -> Result<SandboxRecord, StoreError> {
        const OP: &str = "reading a sandbox";
        let client = self.client(OP).await?;
        self.get_with(&**client, &id, OP).await
    }

    async fn get_with(
        &self,
        client: &impl tokio_postgres::GenericClient,
        id: &SandboxId,
        operation: &str,
    ) -> Result<SandboxRecord, StoreError> {
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM sandboxes WHERE id = $1"),
                &[&id.as_str()],
            )
            .await
            .map_err(self.fail(operation))?
            .ok_or_else(|| StoreError::NotFound {
                sandbox: id.to_string(),
            })?;
        record(&row).map_err(self.corrupt(operation))
    }

    /// The sandbox using `name`: the live one, or else the most recently created destroyed one.
    pub(crate) async fn get_by_name(&self, name: SandboxName) -> Result<SandboxRecord, StoreError> {
        const OP: &str = "reading a sandbox by name";
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM sandboxes WHERE name = $1 \
                     ORDER BY state = 'destroyed', created_at DESC, created_order DESC LIMIT 1"
                ),
                &[&name.as_str()],
            )
            .await
            .map_err(self.fail(OP))?
            .ok_or_else(|| StoreError::NotFound {
                sandbox: name.to_string(),
            })?;
        record(&row).map_err(self.corrupt(OP))
    }

    /// All sandboxes, newest first; destroyed ones only when asked.
    pub(crate) async fn list(
        &self,
        include_destroyed: bool,
    ) -> Result<Vec<SandboxRecord>, StoreError> {
        const OP: &str = "listing sandboxes";
        let client = self.client(OP).await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM sandboxes WHERE $1 OR state <> 'destroyed' \
                     ORDER BY created_at DESC, created_order DESC"
                ),
                &[&include_destroyed],
            )
            .await
            .map_err(self.fail(OP))?;
        rows.iter()
            .map(|row| record(row).map_err(self.corrupt(OP)))
            .collect()
    }

    /// Moves a sandbox to `to` if the lifecycle table allows it from its state at this moment.
    pub(crate) async fn transition(
        &self,
        id: SandboxId,
        to: SandboxState,
        reason: Option<String>,
    ) -> Result<SandboxRecord, StoreError> {
        const OP: &str = "changing a sandbox's state";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(self.fail(OP))?;
        let record = self.transition_in(&tx, &id, to, reason.as_deref()).await?;
        tx.commit().await.map_err(self.fail(OP))?;
        Ok(record)
    }

    /// [`Ctx::transition`] inside the caller's transaction: locks the row, checks the table,
    /// writes the state and logs the change. The only code that writes `state`.
    async fn transition_in(
        &self,
        tx: &Transaction<'_>,
        id: &SandboxId,
        to: SandboxState,
        reason: Option<&str>,
    ) -> Result<SandboxRecord, StoreError> {
        const OP: &str = "changing a sandbox's state";
        let from = self.lock_sandbox(tx, id, OP).await?.state;
        let to = from
            .transition(to)
            .map_err(|e| StoreError::InvalidTransition {
                from: e.from,
                to: e.to,
            })?;
        let now = self.now(tx, OP).await?;
        let destroyed_at = (to == SandboxState::Destroyed).then_some(now);
        let row = tx
            .query_one(
                &format!(
                    "UPDATE sandboxes SET state = $2, state_changed_at = $3, updated_at = $3, \
                     destroyed_at = COALESCE($4, destroyed_at) WHERE id = $1 RETURNING {COLUMNS}"
                ),
                &[&id.as_str(), &to.as_str(), &now, &destroyed_at],
            )
            .await
            .map_err(self.fail(OP))?;
        // The row lock makes MAX + 1 safe: nobody else logs a change of this sandbox meanwhile.
        tx.execute(
            "INSERT INTO transitions (sandbox_id, seq, from_state, to_state, at, reason) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM transitions \
             WHERE sandbox_id = $1",
            &[&id.as_str(), &from.as_str(), &to.as_str(), &now, &reason],
        )
        .await
        .map_err(self.fail(OP))?;
        let record = record(&row).map_err(self.corrupt(OP))?;
        tracing::debug!(sandbox = %record.name, %from, %to, reason, "sandbox state changed");
        Ok(record)
    }

    /// The reconciler's write: `expected → error` only if the sandbox is still in `expected`
    /// and no live lease protects it, both judged under the sandbox's row lock, which every
    /// lease write takes too.
    pub(crate) async fn mark_lost(
        &self,
        id: SandboxId,
        expected: SandboxState,
        reason: String,
    ) -> Result<bool, StoreError> {
        const OP: &str = "marking a sandbox whose supervisor is gone";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(self.fail(OP))?;
        let locked = self.lock_sandbox(&tx, &id, OP).await?;
        let now = self.now(&tx, OP).await?;
        let supervised = lease_row(self, &*tx, &id, OP)
            .await?
            .is_some_and(|row| row.is_live(self.liveness.as_ref(), now));
        if locked.state != expected || supervised {
            return Ok(false);
        }
        match self
            .transition_in(&tx, &id, SandboxState::Error, Some(&reason))
            .await
        {
            Ok(_) => {}
            Err(StoreError::InvalidTransition { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        tx.commit().await.map_err(self.fail(OP))?;
        Ok(true)
    }

    /// The lifecycle log of one sandbox, oldest first.
    pub(crate) async fn transitions(
        &self,
        id: SandboxId,
    ) -> Result<Vec<TransitionRecord>, StoreError> {
        const OP: &str = "reading a sandbox's state history";
        let client = self.client(OP).await?;
        self.require(&**client, &id, OP).await?;
        let rows = client
            .query(
                "SELECT seq, from_state, to_state, at, reason FROM transitions \
                 WHERE sandbox_id = $1 ORDER BY seq",
                &[&id.as_str()],
            )
            .await
            .map_err(self.fail(OP))?;
        rows.iter()
            .map(|row| {
                let parsed = (|| -> Result<TransitionRecord, Cause> {
                    Ok(TransitionRecord {
                        seq: to_u64(row.try_get(0)?),
                        from: parse_state(row.try_get(1)?)?,
                        to: parse_state(row.try_get(2)?)?,
                        at: row.try_get(3)?,
                        reason: row.try_get(4)?,
                    })
                })();
                parsed.map_err(self.corrupt(OP))
            })
            .collect()
    }

    /// Runs `UPDATE sandboxes SET {set}, updated_at = <now> WHERE id = $1`; `set` numbers its
    /// own parameters from `$2` and may use `statement_timestamp()` for the same instant. One
    /// statement, so it needs no transaction; none of these touches `state`.
    pub(crate) async fn update(
        &self,
        id: SandboxId,
        operation: &'static str,
        set: &'static str,
        values: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> Result<(), StoreError> {
        let client = self.client(operation).await?;
        let sql =
            format!("UPDATE sandboxes SET {set}, updated_at = statement_timestamp() WHERE id = $1");
        let id_text = id.as_str();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id_text];
        params.extend(values.iter().map(|v| &**v as &(dyn ToSql + Sync)));
        let changed = client
            .execute(&sql, &params)
            .await
            .map_err(self.fail(operation))?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                sandbox: id.to_string(),
            });
        }
        Ok(())
    }
}

/// `now + ttl` truncated to the microseconds the database keeps (so a returned lease equals the
/// stored one), saturating at the latest time `time` can represent, so an absurd TTL means
/// "until released" rather than an error.
pub(crate) fn expiry(now: OffsetDateTime, ttl: std::time::Duration) -> OffsetDateTime {
    const LATEST: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59.999999 UTC);
    let at = time::Duration::try_from(ttl)
        .ok()
        .and_then(|ttl| now.checked_add(ttl))
        .filter(|at| *at <= LATEST)
        .unwrap_or(LATEST);
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}
