//! A sandbox's event stream, resumable from any `seq`. It reads the store, never a private
//! channel, so what it yields is exactly what was recorded, in order, with no gap and no
//! duplicate, whoever wrote it (this supervisor, another command, another process). An
//! in-process writer wakes it at once, and so does any writer where the store has an event
//! signal (PostgreSQL's NOTIFY: a write on another replica); otherwise it looks again after a
//! short poll.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use warren_domain::{ErrorInfo, EventRecord, SandboxId, UserFacing};
use warren_store::StateStore;

const POLL: Duration = Duration::from_millis(100);
/// The poll behind a store's event signal, for a signal missed while the store reconnects.
const SIGNALLED_POLL: Duration = Duration::from_secs(1);
const PAGE: usize = 500;

/// Says when the stream has nothing more to wait for (the operation that writes it is over).
#[derive(Clone, Default)]
pub struct StreamEnd {
    done: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl StreamEnd {
    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    pub(crate) fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

pub struct EventStream {
    store: Arc<dyn StateStore>,
    id: SandboxId,
    after: u64,
    buffer: VecDeque<EventRecord>,
    end: StreamEnd,
    signal: Option<Arc<Notify>>,
}

impl EventStream {
    /// Events of `id` with `seq > after`, until `end` says the writer is done and all is read;
    /// read through a store handle the caller shares (`Send + Sync`).
    pub fn new(store: Arc<dyn StateStore>, id: SandboxId, after: u64, end: StreamEnd) -> Self {
        let signal = store.event_signal(&id);
        Self {
            signal,
            store,
            id,
            after,
            buffer: VecDeque::new(),
            end,
        }
    }

    /// The next event, or `None` once the writer is done and every event has been yielded.
    pub async fn next(&mut self) -> Result<Option<EventRecord>, ErrorInfo> {
        loop {
            if let Some(record) = self.buffer.pop_front() {
                self.after = record.seq;
                return Ok(Some(record));
            }
            let wake = self.end.wake();
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Registered before the read, like `notified`, so an append between the read and
            // the wait still wakes it.
            let signal = self.signal.clone();
            let mut appended = std::pin::pin!(signal.as_deref().map(Notify::notified));
            if let Some(appended) = appended.as_mut().as_pin_mut() {
                appended.enable();
            }
            // Read after looking at `done`: an event written before the writer finished is
            // then always read by this pass or an earlier one.
            let done = self.end.is_done();
            self.read().await?;
            if !self.buffer.is_empty() {
                continue;
            }
            if done {
                return Ok(None);
            }
            let poll = if self.signal.is_some() {
                SIGNALLED_POLL
            } else {
                POLL
            };
            let appended = async {
                match appended.as_mut().as_pin_mut() {
                    Some(appended) => appended.await,
                    None => std::future::pending().await,
                }
            };
            let _ = tokio::time::timeout(poll, async {
                tokio::select! {
                    () = &mut notified => {}
                    () = appended => {}
                }
            })
            .await;
        }
    }

    /// One page from the store, on a blocking thread: the store is never used on async threads.
    async fn read(&mut self) -> Result<(), ErrorInfo> {
        let store = self.store.clone();
        let (id, after) = (self.id.clone(), self.after);
        let page = tokio::task::spawn_blocking(move || store.events(&id, after, Some(PAGE)))
            .await
            .map_err(join_error)?;
        self.buffer.extend(page.map_err(|e| e.to_error_info())?);
        Ok(())
    }
}

pub(crate) fn join_error(e: tokio::task::JoinError) -> ErrorInfo {
    ErrorInfo::new(
        warren_domain::ReasonCode::Internal,
        format!("a blocking task failed: {e}"),
    )
}
