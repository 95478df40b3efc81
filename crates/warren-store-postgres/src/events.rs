//! The append-only event stream of each sandbox. An append locks the sandbox's row, so `MAX(seq)
//! + 1` is taken by one writer at a time (gapless and distinct across replicas), and its time is
//! read under that lock, so time order follows `seq` order.

use warren_domain::{AgentEvent, EventRecord, SandboxId};
use warren_store::{Cause, StoreError};

use crate::store::{Ctx, to_i64, to_u64};

impl Ctx {
    pub(crate) async fn append_event(
        &self,
        id: SandboxId,
        event: AgentEvent,
    ) -> Result<EventRecord, StoreError> {
        const OP: &str = "appending a sandbox event";
        let body = serde_json::to_string(&event).map_err(self.corrupt(OP))?;
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(self.fail(OP))?;
        let sandbox = self.lock_sandbox(&tx, &id, OP).await?.name;
        let row = tx
            .query_one(
                "INSERT INTO events (sandbox_id, seq, at, kind, body) \
                 SELECT $1, COALESCE(MAX(seq), 0) + 1, clock_timestamp(), $2, $3 FROM events \
                 WHERE sandbox_id = $1 RETURNING seq, at",
                &[&id.as_str(), &event.kind(), &body],
            )
            .await
            .map_err(self.fail(OP))?;
        let seq: i64 = row.try_get(0).map_err(self.fail(OP))?;
        let at = row.try_get(1).map_err(self.fail(OP))?;
        tx.commit().await.map_err(self.fail(OP))?;
        Ok(EventRecord {
            seq: to_u64(seq),
            at,
            sandbox,
            event,
        })
    }

    pub(crate) async fn events(
        &self,
        id: SandboxId,
        since_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        const OP: &str = "reading sandbox events";
        let client = self.client(OP).await?;
        let sandbox = self.require(&**client, &id, OP).await?;
        // LIMIT NULL is no limit.
        let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = client
            .query(
                "SELECT seq, at, body FROM events WHERE sandbox_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
                &[&id.as_str(), &to_i64(since_seq), &limit],
            )
            .await
            .map_err(self.fail(OP))?;
        rows.iter()
            .map(|row| {
                let parsed = (|| -> Result<EventRecord, Cause> {
                    let body: String = row.try_get(2)?;
                    Ok(EventRecord {
                        seq: to_u64(row.try_get(0)?),
                        at: row.try_get(1)?,
                        sandbox: sandbox.clone(),
                        event: serde_json::from_str(&body)?,
                    })
                })();
                parsed.map_err(self.corrupt(OP))
            })
            .collect()
    }
}
