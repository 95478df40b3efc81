//! What a server adds to the store: API tokens (only a hash of each secret is kept) and the owner
//! of each sandbox. A trait of its own beside [`crate::StateStore`], so an implementation of that
//! contract is unaffected; a store that serves `warren serve` implements both.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;
use warren_domain::{SandboxId, SandboxState};

use crate::clock;
use crate::error::StoreError;
use crate::record::{RawSandbox, SANDBOX_COLUMNS, SandboxRecord};
use crate::store::SqliteStore;

/// Which sandboxes a page of a server's list holds: the filters run in the store, so a page
/// costs its own size, not the number of sandboxes recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// Only this owner's sandboxes; `None`: every sandbox, owned or not (an admin's list).
    pub owner: Option<String>,
    /// Only sandboxes in this state.
    pub state: Option<SandboxState>,
    /// Destroyed sandboxes too.
    pub include_destroyed: bool,
    /// The sandboxes after this one (the last of the previous page) in the list's order, whether
    /// or not it passes the filters; `NotFound` if no sandbox has the id.
    pub after: Option<SandboxId>,
    /// The most records returned (at least 1).
    pub limit: usize,
}

/// One page, newest first (the order of [`crate::StateStore::list`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxPage {
    pub records: Vec<SandboxRecord>,
    /// Whether more sandboxes pass the filters after the last one.
    pub more: bool,
}

/// An API token as recorded, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub owner: String,
    pub admin: bool,
    /// The SHA-256 of the token's secret, lowercase hex.
    pub hash: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

pub trait TenancyStore: Send + Sync {
    /// Records a token; `hash` is the SHA-256 of its secret. Ids are unique.
    fn create_token(
        &self,
        id: &str,
        owner: &str,
        admin: bool,
        hash: &str,
    ) -> Result<TokenRecord, StoreError>;

    /// The token with this id, revoked or not.
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Every token, oldest first.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revokes a token; false when no live token has that id.
    fn revoke_token(&self, id: &str) -> Result<bool, StoreError>;

    /// Records who owns a sandbox; a sandbox that already has an owner keeps it.
    fn set_owner(&self, sandbox: &SandboxId, owner: &str) -> Result<(), StoreError>;

    /// The sandbox's owner, if it has one.
    fn owner(&self, sandbox: &SandboxId) -> Result<Option<String>, StoreError>;

    /// Every owned sandbox's owner, by sandbox id.
    fn owners(&self) -> Result<HashMap<String, String>, StoreError>;

    /// One page of the sandboxes `query` lets through, newest first.
    fn sandbox_page(&self, query: &PageQuery) -> Result<SandboxPage, StoreError>;
}

type RawToken = (String, String, bool, String, String, Option<String>);

fn token_from(raw: RawToken) -> Result<TokenRecord, StoreError> {
    let (id, owner, admin, hash, created, revoked) = raw;
    let bad = |e: time::error::Parse| StoreError::Failed {
        path: Default::default(),
        operation: "reading a token".to_owned(),
        source: Box::new(e),
    };
    Ok(TokenRecord {
        id,
        owner,
        admin,
        hash,
        created_at: clock::parse(&created).map_err(bad)?,
        revoked_at: revoked
            .as_deref()
            .map(clock::parse)
            .transpose()
            .map_err(bad)?,
    })
}

const TOKEN_COLUMNS: &str = "id, owner, admin, hash, created_at, revoked_at";

fn raw_token(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawToken> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

impl TenancyStore for SqliteStore {
    fn create_token(
        &self,
        id: &str,
        owner: &str,
        admin: bool,
        hash: &str,
    ) -> Result<TokenRecord, StoreError> {
        const OP: &str = "recording an API token";
        let (_, now) = self.now_text(OP)?;
        self.conn()
            .execute(
                "INSERT INTO api_tokens (id, owner, admin, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, owner, admin, hash, now],
            )
            .map_err(self.fail(OP))?;
        self.token(id)?.ok_or_else(|| StoreError::Failed {
            path: self.path.clone(),
            operation: OP.to_owned(),
            source: "the token vanished after it was written".into(),
        })
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        const OP: &str = "reading an API token";
        let raw = self
            .conn()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                [id],
                raw_token,
            )
            .optional()
            .map_err(self.fail(OP))?;
        raw.map(token_from).transpose()
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        const OP: &str = "listing API tokens";
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
            ))
            .map_err(self.fail(OP))?;
        let raws = stmt
            .query_map([], raw_token)
            .map_err(self.fail(OP))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.fail(OP))?;
        raws.into_iter().map(token_from).collect()
    }

    fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        const OP: &str = "revoking an API token";
        let (_, now) = self.now_text(OP)?;
        let changed = self
            .conn()
            .execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )
            .map_err(self.fail(OP))?;
        Ok(changed == 1)
    }

    fn set_owner(&self, sandbox: &SandboxId, owner: &str) -> Result<(), StoreError> {
        const OP: &str = "recording a sandbox's owner";
        let changed = self
            .conn()
            .execute(
                "UPDATE sandboxes SET owner = ?2 WHERE id = ?1 AND owner IS NULL",
                params![sandbox.as_str(), owner],
            )
            .map_err(self.fail(OP))?;
        if changed == 0 && self.owner(sandbox)?.is_none() {
            return Err(StoreError::NotFound {
                sandbox: sandbox.to_string(),
            });
        }
        Ok(())
    }

    fn owner(&self, sandbox: &SandboxId) -> Result<Option<String>, StoreError> {
        const OP: &str = "reading a sandbox's owner";
        let owner: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT owner FROM sandboxes WHERE id = ?1",
                [sandbox.as_str()],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.fail(OP))?;
        match owner {
            Some(owner) => Ok(owner),
            None => Err(StoreError::NotFound {
                sandbox: sandbox.to_string(),
            }),
        }
    }

    fn sandbox_page(&self, query: &PageQuery) -> Result<SandboxPage, StoreError> {
        const OP: &str = "listing a page of sandboxes";
        if let Some(after) = &query.after {
            // `NotFound` for a cursor naming no sandbox.
            self.owner(after)?;
        }
        let after = query.after.as_ref().map(SandboxId::as_str);
        let limit = query.limit.max(1);
        let sql = format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes \
             WHERE (?1 OR state != 'destroyed') AND (?2 IS NULL OR owner = ?2) \
             AND (?3 IS NULL OR state = ?3) \
             AND (?4 IS NULL OR (created_at, rowid) < \
                  (SELECT created_at, rowid FROM sandboxes WHERE id = ?4)) \
             ORDER BY created_at DESC, rowid DESC LIMIT ?5"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql).map_err(self.fail(OP))?;
        let raws = stmt
            .query_map(
                params![
                    query.include_destroyed,
                    query.owner,
                    query.state.map(SandboxState::as_str),
                    after,
                    i64::try_from(limit + 1).unwrap_or(i64::MAX),
                ],
                RawSandbox::from_row,
            )
            .map_err(self.fail(OP))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.fail(OP))?;
        let mut records = raws
            .into_iter()
            .map(|raw| raw.into_record().map_err(self.fail(OP)))
            .collect::<Result<Vec<_>, _>>()?;
        let more = records.len() > limit;
        records.truncate(limit);
        Ok(SandboxPage { records, more })
    }

    fn owners(&self) -> Result<HashMap<String, String>, StoreError> {
        const OP: &str = "reading sandbox owners";
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, owner FROM sandboxes WHERE owner IS NOT NULL")
            .map_err(self.fail(OP))?;
        let pairs = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(self.fail(OP))?
            .collect::<Result<HashMap<String, String>, _>>()
            .map_err(self.fail(OP))?;
        Ok(pairs)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test")]
mod tests {
    use std::path::PathBuf;

    use warren_domain::SandboxName;

    use super::*;
    use crate::NewSandbox;

    #[test]
    fn tokens_and_owners_round_trip() {
        let store = SqliteStore::open_in_memory().unwrap();
        let t = store.create_token("abc", "alice", false, "ff00").unwrap();
        assert_eq!(
            (t.owner.as_str(), t.admin, t.revoked_at),
            ("alice", false, None)
        );
        store.create_token("def", "root", true, "00ff").unwrap();
        assert_eq!(store.tokens().unwrap().len(), 2);
        assert!(store.revoke_token("abc").unwrap());
        assert!(!store.revoke_token("abc").unwrap(), "revoked once");
        assert!(store.token("abc").unwrap().unwrap().revoked_at.is_some());
        assert!(store.token("nope").unwrap().is_none());

        let record = store
            .create_sandbox(NewSandbox {
                id: SandboxId::new(),
                name: SandboxName::parse("owned").unwrap(),
                repo: PathBuf::from("/r"),
                provider: "local".into(),
                model: None,
                prompt: None,
                role: None,
            })
            .unwrap();
        assert_eq!(store.owner(&record.id).unwrap(), None);
        store.set_owner(&record.id, "alice").unwrap();
        store.set_owner(&record.id, "bob").unwrap();
        assert_eq!(
            store.owner(&record.id).unwrap().as_deref(),
            Some("alice"),
            "kept"
        );
        assert_eq!(
            store
                .owners()
                .unwrap()
                .get(record.id.as_str())
                .map(String::as_str),
            Some("alice")
        );
        assert!(store.set_owner(&SandboxId::new(), "x").is_err());
    }
}
