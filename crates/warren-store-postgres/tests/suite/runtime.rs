//! The store's synchronous methods are safe wherever warren calls them: inside a runtime's
//! `block_on` (the engine's supervisors run under `Handle::block_on`), from `spawn_blocking`
//! (a server), and from plain threads; opening and dropping a store inside a runtime too.

use std::sync::Arc;

use warren_domain::{AgentEvent, SandboxId, SandboxName, SandboxState};
use warren_store::{NewSandbox, StateStore};

fn new_sandbox(name: &str) -> NewSandbox {
    NewSandbox {
        id: SandboxId::new(),
        name: SandboxName::parse(name).unwrap(),
        repo: "/home/user/project".into(),
        provider: "local".into(),
        model: None,
        prompt: None,
        role: None,
    }
}

#[test]
fn calls_from_block_on_spawn_blocking_and_plain_threads_work() {
    let Some(url) = super::database() else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Opened and used inside the runtime's context, as an async caller that forgot
    // `spawn_blocking` would: it blocks the thread, but must not panic.
    let store = runtime.block_on(async {
        let store = Arc::new(super::replica(&url));
        let rec = store.create_sandbox(new_sandbox("in-block-on")).unwrap();
        store
            .transition(&rec.id, SandboxState::Queued, Some("from block_on"))
            .unwrap();
        store
    });

    // A server's way: each call on a blocking thread.
    let ids = runtime.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::task::spawn_blocking(move || {
                    let rec = store
                        .create_sandbox(new_sandbox(&format!("blocking-{i}")))
                        .unwrap();
                    store
                        .append_event(&rec.id, &AgentEvent::Text { text: "hi".into() })
                        .unwrap();
                    rec.id
                })
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(task.await.unwrap());
        }
        ids
    });
    assert_eq!(ids.len(), 4);

    // The engine's way: a blocking thread drives a future with `Handle::block_on`, and the
    // future calls the store.
    let handle = runtime.handle().clone();
    let from_handle = {
        let store = Arc::clone(&store);
        runtime.block_on(async move {
            tokio::task::spawn_blocking(move || {
                handle.block_on(async {
                    tokio::task::yield_now().await;
                    store.list(false).unwrap().len()
                })
            })
            .await
            .unwrap()
        })
    };
    assert_eq!(from_handle, 5);

    // Plain threads.
    std::thread::scope(|scope| {
        for id in &ids {
            let store = Arc::clone(&store);
            scope.spawn(move || {
                assert_eq!(store.events(id, 0, None).unwrap().len(), 1);
            });
        }
    });

    // Dropped inside the runtime's context: the worker thread ends without a panic.
    runtime.block_on(async move { drop(store) });
    // And a store opened and dropped from inside a task on a worker thread.
    runtime.block_on(async {
        tokio::spawn(async move {
            let store = super::replica(&url);
            assert_eq!(store.list(true).unwrap().len(), 5);
        })
        .await
        .unwrap();
    });
}
