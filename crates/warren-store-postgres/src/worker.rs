//! The thread the store's database I/O runs on. `StateStore`'s methods are synchronous, and
//! callers may be anywhere: a plain thread, a `spawn_blocking` closure, or a future driven by
//! `Handle::block_on` (the engine's supervisors). A client that runs a runtime of its own on the
//! caller's thread (the `postgres` crate's) panics in the last case, so no caller ever enters a
//! runtime here: each store owns one thread running a current-thread tokio runtime, and a call
//! hands its future over a channel and waits for the answer on a std channel.
//!
//! Each job is spawned as its own task, so calls from several threads overlap on the store's
//! pooled connections. Dropping the store closes the channel; the thread then finishes, dropping
//! its runtime (and the connections' tasks) on its own thread, and the drop waits for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub(crate) struct Worker {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread and its runtime.
    pub(crate) fn start() -> std::io::Result<Worker> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let (started, start_result) = std_mpsc::sync_channel::<std::io::Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name("warren-store-pg".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = started.send(Err(err));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                runtime.block_on(async move {
                    while let Some(job) = queue.recv().await {
                        tokio::spawn(job);
                    }
                });
            })?;
        match start_result.recv() {
            Ok(Ok(())) => Ok(Worker {
                jobs: Some(jobs),
                thread: Some(thread),
            }),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(std::io::Error::other(
                "the store's worker thread ended while starting",
            )),
        }
    }

    /// Runs `job` on the worker's runtime and blocks the calling thread until it finishes.
    /// Safe from any thread, inside a runtime's context or not: the caller only sends on one
    /// channel and waits on another. `None` if the job could not finish (it panicked, or the
    /// worker is gone), which is a bug, not a database state.
    pub(crate) fn run<T, F>(&self, job: F) -> Option<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (reply, answer) = std_mpsc::sync_channel(1);
        let job: Job = Box::pin(async move {
            let _ = reply.send(job.await);
        });
        self.jobs.as_ref()?.send(job).ok()?;
        answer.recv().ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; no job is in flight, since every call
        // waits for its answer while borrowing the store.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the PostgreSQL store's worker thread panicked");
        }
    }
}
