//! What a server adds to the store, in PostgreSQL: API tokens (only a hash of each secret is
//! kept) and the owner of each sandbox, with the SQLite store's semantics, so every replica
//! accepts a token made once and sees the same owners.

use std::collections::HashMap;

use tokio_postgres::Row;
use warren_domain::SandboxId;
use warren_domain::SandboxState;
use warren_store::{Cause, PageQuery, SandboxPage, StoreError, TenancyStore, TokenRecord};

use crate::sandboxes::{COLUMNS, record};
use crate::store::{Ctx, PostgresStore};

const TOKEN_COLUMNS: &str = "id, owner, admin, hash, created_at, revoked_at";

fn token(row: &Row) -> Result<TokenRecord, Cause> {
    Ok(TokenRecord {
        id: row.try_get(0)?,
        owner: row.try_get(1)?,
        admin: row.try_get(2)?,
        hash: row.try_get(3)?,
        created_at: row.try_get(4)?,
        revoked_at: row.try_get(5)?,
    })
}

impl Ctx {
    async fn create_token(
        &self,
        id: String,
        owner: String,
        admin: bool,
        hash: String,
    ) -> Result<TokenRecord, StoreError> {
        const OP: &str = "recording an API token";
        let client = self.client(OP).await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO api_tokens (id, owner, admin, hash, created_at) \
                     VALUES ($1, $2, $3, $4, clock_timestamp()) RETURNING {TOKEN_COLUMNS}"
                ),
                &[&id, &owner, &admin, &hash],
            )
            .await
            .map_err(self.fail(OP))?;
        token(&row).map_err(self.corrupt(OP))
    }

    async fn token(&self, id: String) -> Result<Option<TokenRecord>, StoreError> {
        const OP: &str = "reading an API token";
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(self.fail(OP))?;
        row.as_ref()
            .map(token)
            .transpose()
            .map_err(self.corrupt(OP))
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        const OP: &str = "listing API tokens";
        let client = self.client(OP).await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, created_order"
                ),
                &[],
            )
            .await
            .map_err(self.fail(OP))?;
        rows.iter()
            .map(|row| token(row).map_err(self.corrupt(OP)))
            .collect()
    }

    async fn revoke_token(&self, id: String) -> Result<bool, StoreError> {
        const OP: &str = "revoking an API token";
        let client = self.client(OP).await?;
        let changed = client
            .execute(
                "UPDATE api_tokens SET revoked_at = clock_timestamp() \
                 WHERE id = $1 AND revoked_at IS NULL",
                &[&id],
            )
            .await
            .map_err(self.fail(OP))?;
        Ok(changed == 1)
    }

    /// Sets the owner only where there is none, in one statement: of two racing writers the
    /// first keeps it.
    async fn set_owner(&self, id: SandboxId, owner: String) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's owner";
        let client = self.client(OP).await?;
        let changed = client
            .execute(
                "UPDATE sandboxes SET owner = $2 WHERE id = $1 AND owner IS NULL",
                &[&id.as_str(), &owner],
            )
            .await
            .map_err(self.fail(OP))?;
        if changed == 0 {
            // Already owned, or no such sandbox.
            self.require(&**client, &id, OP).await?;
        }
        Ok(())
    }

    async fn owner(&self, id: SandboxId) -> Result<Option<String>, StoreError> {
        const OP: &str = "reading a sandbox's owner";
        let client = self.client(OP).await?;
        let row = client
            .query_opt("SELECT owner FROM sandboxes WHERE id = $1", &[&id.as_str()])
            .await
            .map_err(self.fail(OP))?
            .ok_or_else(|| StoreError::NotFound {
                sandbox: id.to_string(),
            })?;
        row.try_get(0).map_err(self.fail(OP))
    }

    /// One statement: the filters, the cursor (by its creation order) and the limit run in the
    /// database, on the `sandboxes_created` index.
    async fn sandbox_page(&self, query: PageQuery) -> Result<SandboxPage, StoreError> {
        const OP: &str = "listing a page of sandboxes";
        let client = self.client(OP).await?;
        let after = query.after.as_ref().map(|id| id.as_str().to_owned());
        if let Some(after) = &query.after {
            // `NotFound` for a cursor naming no sandbox.
            self.require(&**client, after, OP).await?;
        }
        let limit = query.limit.max(1);
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM sandboxes \
                     WHERE ($1 OR state <> 'destroyed') AND ($2::text IS NULL OR owner = $2) \
                     AND ($3::text IS NULL OR state = $3) \
                     AND ($4::text IS NULL OR (created_at, created_order) < \
                          (SELECT created_at, created_order FROM sandboxes WHERE id = $4)) \
                     ORDER BY created_at DESC, created_order DESC LIMIT $5"
                ),
                &[
                    &query.include_destroyed,
                    &query.owner,
                    &query.state.map(SandboxState::as_str),
                    &after,
                    &i64::try_from(limit + 1).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(self.fail(OP))?;
        let mut records = rows
            .iter()
            .map(|row| record(row).map_err(self.corrupt(OP)))
            .collect::<Result<Vec<_>, _>>()?;
        let more = records.len() > limit;
        records.truncate(limit);
        Ok(SandboxPage { records, more })
    }

    async fn owners(&self) -> Result<HashMap<String, String>, StoreError> {
        const OP: &str = "reading sandbox owners";
        let client = self.client(OP).await?;
        let rows = client
            .query(
                "SELECT id, owner FROM sandboxes WHERE owner IS NOT NULL",
                &[],
            )
            .await
            .map_err(self.fail(OP))?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(self.fail(OP))
    }
}

impl TenancyStore for PostgresStore {
    fn create_token(
        &self,
        id: &str,
        owner: &str,
        admin: bool,
        hash: &str,
    ) -> Result<TokenRecord, StoreError> {
        let (id, owner, hash) = (id.to_owned(), owner.to_owned(), hash.to_owned());
        self.call("recording an API token", move |ctx| async move {
            ctx.create_token(id, owner, admin, hash).await
        })
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let id = id.to_owned();
        self.call(
            "reading an API token",
            |ctx| async move { ctx.token(id).await },
        )
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.call(
            "listing API tokens",
            |ctx| async move { ctx.tokens().await },
        )
    }

    fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call("revoking an API token", |ctx| async move {
            ctx.revoke_token(id).await
        })
    }

    fn set_owner(&self, sandbox: &SandboxId, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (sandbox.clone(), owner.to_owned());
        self.call("recording a sandbox's owner", |ctx| async move {
            ctx.set_owner(id, owner).await
        })
    }

    fn owner(&self, sandbox: &SandboxId) -> Result<Option<String>, StoreError> {
        let id = sandbox.clone();
        self.call("reading a sandbox's owner", |ctx| async move {
            ctx.owner(id).await
        })
    }

    fn sandbox_page(&self, query: &PageQuery) -> Result<SandboxPage, StoreError> {
        let query = query.clone();
        self.call("listing a page of sandboxes", |ctx| async move {
            ctx.sandbox_page(query).await
        })
    }

    fn owners(&self) -> Result<HashMap<String, String>, StoreError> {
        self.call(
            "reading sandbox owners",
            |ctx| async move { ctx.owners().await },
        )
    }
}
