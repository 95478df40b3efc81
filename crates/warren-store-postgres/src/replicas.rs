//! What lets several server replicas share one database beyond the tables: the reconciler's lead
//! (one replica at a time runs the loop) and the event signal (a replica streaming a sandbox's
//! events hears of an append made on another at once).
//!
//! - **Lead.** A session advisory lock held on a connection of its own, outside the pool: the
//!   lock lives exactly as long as that session, so a replica that dies (even by SIGKILL) frees
//!   it as soon as the server sees its connection close, with no TTL to wait out.
//! - **Signal.** The `events_announce` trigger (migration 2) NOTIFYs `warren_events` with the
//!   sandbox's id on every append; one LISTEN connection per store wakes the readers of that
//!   sandbox. It reconnects after a failure and then wakes every reader, in case it missed one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};
use warren_store::StoreError;

use crate::error::{classify, database};
use crate::schema::LOCK_CLASS;
use crate::store::Ctx;

/// Second key of the reconciler's lead in [`LOCK_CLASS`] (0 is the migration lock).
const LEAD_LOCK: i32 = 1;
/// The channel the `events_announce` trigger notifies.
const CHANNEL: &str = "warren_events";
/// How long the listener waits before it reconnects.
const RECONNECT: Duration = Duration::from_secs(1);

/// The session that asks for the lead, kept between asks (a follower asks every few seconds),
/// and whether it holds it.
#[derive(Default)]
pub(crate) struct Lead {
    session: Option<Client>,
    held: bool,
}

/// The readers waiting on each sandbox's events, and whether the listener runs.
#[derive(Default)]
pub(crate) struct Signals {
    waiting: Mutex<HashMap<String, Weak<Notify>>>,
    listening: std::sync::atomic::AtomicBool,
}

impl Signals {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Notify>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The signal of sandbox `id`, shared by its readers; entries no reader holds are dropped.
    pub(crate) fn signal(&self, id: &str) -> Arc<Notify> {
        let mut waiting = self.waiting();
        if let Some(live) = waiting.get(id).and_then(Weak::upgrade) {
            return live;
        }
        waiting.retain(|_, w| w.strong_count() > 0);
        let signal = Arc::new(Notify::new());
        waiting.insert(id.to_owned(), Arc::downgrade(&signal));
        signal
    }

    /// True the first time only: the caller starts the listener.
    pub(crate) fn start(&self) -> bool {
        !self
            .listening
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    fn wake(&self, id: &str) {
        let signal = self.waiting().get(id).and_then(Weak::upgrade);
        if let Some(signal) = signal {
            signal.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let signals: Vec<_> = self.waiting().values().filter_map(Weak::upgrade).collect();
        for signal in signals {
            signal.notify_waiters();
        }
    }
}

/// Listens on [`CHANNEL`] for as long as the store's worker runs, reconnecting after failures.
pub(crate) async fn listen(config: Config, signals: Arc<Signals>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                // The connection delivers notifications only while it is polled for messages.
                let driver = tokio::spawn(async move {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_owned()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(err) => {
                                tracing::warn!(error = %err, "the event listener's connection failed");
                                return;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        // Whatever was appended while nobody listened.
                        signals.wake_all();
                        while let Some(id) = rx.recv().await {
                            signals.wake(&id);
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "LISTEN {CHANNEL} failed"),
                }
                driver.abort();
            }
            Err(err) => tracing::warn!(error = %err, "the event listener cannot connect"),
        }
        signals.wake_all();
        tokio::time::sleep(RECONNECT).await;
    }
}

impl Ctx {
    /// Takes the lead if no other session holds it, or confirms this store still does.
    pub(crate) async fn try_lead(&self) -> Result<bool, StoreError> {
        const OP: &str = "taking the reconciler's lead";
        let fail =
            |err: tokio_postgres::Error| database(&self.location, OP, classify(&err, false), err);
        let mut lead = self.lead.lock().await;
        if let Some(session) = &lead.session {
            // A session that is gone took the lock with it: ask again on a new one.
            if session.is_closed() || session.simple_query("SELECT 1").await.is_err() {
                *lead = Lead::default();
            }
        }
        if lead.held {
            return Ok(true);
        }
        if lead.session.is_none() {
            let (client, connection) = self
                .config
                .connect(NoTls)
                .await
                .map_err(|err| database(&self.location, OP, classify(&err, true), err))?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "the reconciler lead's session ended");
                }
            });
            lead.session = Some(client);
        }
        let Some(session) = &lead.session else {
            return Ok(false);
        };
        // Asked only while not held: each success stacks one more hold on the session.
        let row = session
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LOCK_CLASS, &LEAD_LOCK],
            )
            .await
            .map_err(fail)?;
        lead.held = row.try_get(0).map_err(fail)?;
        Ok(lead.held)
    }

    /// Ends the lead's session, which frees the lock.
    pub(crate) async fn resign(&self) -> Result<(), StoreError> {
        *self.lead.lock().await = Lead::default();
        Ok(())
    }
}
