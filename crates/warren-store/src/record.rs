//! The typed shapes of the store's rows: what a caller passes in to create a sandbox and what
//! comes back (and is printed by `--json`). Conversion from raw columns lives here so a corrupt
//! row is reported in one place.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use warren_domain::{ErrorInfo, SandboxId, SandboxName, SandboxState, Usage};

use crate::clock;
use crate::error::Cause;

/// What a caller knows about a sandbox before anything is created for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSandbox {
    pub id: SandboxId,
    pub name: SandboxName,
    /// The user's repository, absolute.
    pub repo: PathBuf,
    pub provider: String,
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub role: Option<String>,
}

/// One sandbox as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: SandboxId,
    pub name: SandboxName,
    pub repo: PathBuf,
    pub provider: String,
    pub state: SandboxState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub state_changed_at: OffsetDateTime,
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub role: Option<String>,
    pub session_id: Option<String>,
    /// The host directory holding the sandbox's copy of the repository.
    pub workspace: Option<PathBuf>,
    /// The engine's sync-in report, kept opaque here.
    pub sync: Option<serde_json::Value>,
    /// The engine's outcome summary, kept opaque here.
    pub outcome: Option<serde_json::Value>,
    pub error: Option<ErrorInfo>,
    pub branch: Option<String>,
    pub usage: Usage,
    pub changed_files: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub exported_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub destroyed_at: Option<OffsetDateTime>,
}

/// One row of the lifecycle audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionRecord {
    pub seq: u64,
    pub from: SandboxState,
    pub to: SandboxState,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub reason: Option<String>,
}

/// The column list every sandbox query selects, in [`RawSandbox::from_row`]'s order.
pub(crate) const SANDBOX_COLUMNS: &str = "id, name, repo, provider, state, created_at, \
    updated_at, state_changed_at, model, prompt, role, session_id, workspace, sync_json, \
    outcome_json, error_json, branch, tokens_input, tokens_output, tokens_reasoning, \
    tokens_cache_read, tokens_cache_write, cost, changed_files, exported_at, destroyed_at";

/// A sandbox row as SQLite hands it over, before any parsing that could find it corrupt.
pub(crate) struct RawSandbox {
    id: String,
    name: String,
    repo: String,
    provider: String,
    state: String,
    created_at: String,
    updated_at: String,
    state_changed_at: String,
    model: Option<String>,
    prompt: Option<String>,
    role: Option<String>,
    session_id: Option<String>,
    workspace: Option<String>,
    sync_json: Option<String>,
    outcome_json: Option<String>,
    error_json: Option<String>,
    branch: Option<String>,
    tokens: [i64; 5],
    cost: f64,
    changed_files: Option<i64>,
    exported_at: Option<String>,
    destroyed_at: Option<String>,
}

impl RawSandbox {
    pub(crate) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            repo: row.get(2)?,
            provider: row.get(3)?,
            state: row.get(4)?,
            created_at: row.get(5)?,
            updated_at: row.get(6)?,
            state_changed_at: row.get(7)?,
            model: row.get(8)?,
            prompt: row.get(9)?,
            role: row.get(10)?,
            session_id: row.get(11)?,
            workspace: row.get(12)?,
            sync_json: row.get(13)?,
            outcome_json: row.get(14)?,
            error_json: row.get(15)?,
            branch: row.get(16)?,
            tokens: [
                row.get(17)?,
                row.get(18)?,
                row.get(19)?,
                row.get(20)?,
                row.get(21)?,
            ],
            cost: row.get(22)?,
            changed_files: row.get(23)?,
            exported_at: row.get(24)?,
            destroyed_at: row.get(25)?,
        })
    }

    pub(crate) fn into_record(self) -> Result<SandboxRecord, Cause> {
        let id = self.id;
        let corrupt = |what: &str, detail: String| -> Cause {
            format!("sandbox {id}: stored {what} is invalid: {detail}").into()
        };
        let name = SandboxName::parse(&self.name).map_err(|e| corrupt("name", e.to_string()))?;
        let state = parse_state(&self.state).map_err(|e| corrupt("state", e.to_string()))?;
        let time = |what: &str, raw: &str| {
            clock::parse(raw).map_err(|e| corrupt(what, format!("{raw:?}: {e}")))
        };
        let opt_time = |what: &str, raw: Option<String>| raw.map(|r| time(what, &r)).transpose();
        let json = |what: &str, raw: Option<String>| {
            raw.map(|r| serde_json::from_str::<serde_json::Value>(&r))
                .transpose()
                .map_err(|e| corrupt(what, e.to_string()))
        };
        let error = self
            .error_json
            .map(|r| serde_json::from_str::<ErrorInfo>(&r))
            .transpose()
            .map_err(|e| corrupt("error", e.to_string()))?;
        let [input, output, reasoning, cache_read, cache_write] = self.tokens.map(to_u64);
        Ok(SandboxRecord {
            created_at: time("created_at", &self.created_at)?,
            updated_at: time("updated_at", &self.updated_at)?,
            state_changed_at: time("state_changed_at", &self.state_changed_at)?,
            exported_at: opt_time("exported_at", self.exported_at)?,
            destroyed_at: opt_time("destroyed_at", self.destroyed_at)?,
            sync: json("sync_json", self.sync_json)?,
            outcome: json("outcome_json", self.outcome_json)?,
            error,
            name,
            state,
            repo: PathBuf::from(self.repo),
            provider: self.provider,
            model: self.model,
            prompt: self.prompt,
            role: self.role,
            session_id: self.session_id,
            workspace: self.workspace.map(PathBuf::from),
            branch: self.branch,
            usage: Usage {
                input,
                output,
                reasoning,
                cache_read,
                cache_write,
                cost: self.cost,
            },
            changed_files: self.changed_files.map(to_u64),
            id: SandboxId::from_stored(id.clone()),
        })
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

/// SQLite integers are signed; counters past `i64::MAX` cannot occur, so saturate rather than fail.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
