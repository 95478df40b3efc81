//! The append-only event stream of each sandbox. Sequence numbers are assigned inside the write
//! lock, so writers in different processes never collide and a reader resuming from `seq` sees
//! no gaps or repeats.

use rusqlite::params;
use warren_domain::{AgentEvent, EventRecord, SandboxId};

use crate::clock;
use crate::error::{Cause, StoreError};
use crate::record::{to_i64, to_u64};
use crate::store::SqliteStore;

impl SqliteStore {
    /// Appends `event` with the next sequence number (the first is 1).
    pub(crate) fn append_event(
        &self,
        id: &SandboxId,
        event: &AgentEvent,
    ) -> Result<EventRecord, StoreError> {
        const OP: &str = "appending a sandbox event";
        let body = serde_json::to_string(event).map_err(self.fail(OP))?;
        let conn = self.conn();
        let tx = self.immediate(&conn, OP)?;
        // Stamped under the write lock so time order and `seq` order agree.
        let (at, at_text) = self.now_text(OP)?;
        let sandbox = self.require(&tx, id, OP)?;
        let seq: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE sandbox_id = ?1",
                [id.as_str()],
                |row| row.get(0),
            )
            .map_err(self.fail(OP))?;
        tx.execute(
            "INSERT INTO events (sandbox_id, seq, at, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id.as_str(), seq, at_text, event.kind(), body],
        )
        .map_err(self.fail(OP))?;
        tx.commit().map_err(self.fail(OP))?;
        Ok(EventRecord {
            seq: to_u64(seq),
            at,
            sandbox,
            event: event.clone(),
        })
    }

    /// Events with `seq > since_seq`, oldest first, at most `limit` of them.
    pub(crate) fn events(
        &self,
        id: &SandboxId,
        since_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        const OP: &str = "reading sandbox events";
        let conn = self.conn();
        let sandbox = self.require(&conn, id, OP)?;
        // SQLite reads a negative LIMIT as "no limit".
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, at, body FROM events WHERE sandbox_id = ?1 AND seq > ?2 \
                 ORDER BY seq LIMIT ?3",
            )
            .map_err(self.fail(OP))?;
        let rows = stmt
            .query_map(params![id.as_str(), to_i64(since_seq), limit], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .map_err(self.fail(OP))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.fail(OP))?;
        rows.into_iter()
            .map(|(seq, at, body)| {
                let parsed = (|| -> Result<EventRecord, Cause> {
                    Ok(EventRecord {
                        seq: to_u64(seq),
                        at: clock::parse(&at)?,
                        sandbox: sandbox.clone(),
                        event: serde_json::from_str(&body)?,
                    })
                })();
                parsed.map_err(self.fail(OP))
            })
            .collect()
    }
}
