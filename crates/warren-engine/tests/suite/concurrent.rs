//! The engine as a server hosts it: one handle, shared across tasks on a multi-threaded runtime,
//! running several sandboxes at once.

use warren_domain::SandboxState;
use warren_engine::{Engine, RunHandle};
use warren_store::StateStore;

use super::fake::{Call, FakeProvider, Script};
use super::harness::{Fixture, PATIENCE, assert_gapless, both_mounts, drain};

/// A server keeps the engine in shared state and moves run handles between tasks.
const _: () = {
    const fn shareable<T: Send + Sync + Clone + 'static>() {}
    const fn movable<T: Send + 'static>() {}
    shareable::<Engine<FakeProvider>>();
    movable::<RunHandle>();
};

async fn two_runs_at_once_each_export_exactly_their_own_work(fx: Fixture) {
    // Each agent writes its file, says it is there, and waits until both are: the two runs
    // are provably in their agents at the same time.
    for (name, other) in [("alpha", "beta"), ("beta", "alpha")] {
        fx.provider.script(
            name,
            Script::new()
                .step_start()
                .write(&format!("{name}.txt"), &format!("from {name}\n"))
                .signal(&format!("{name}-working"))
                .gate(&format!("{other}-working"))
                .text("done")
                .finish(),
        );
    }
    let tasks: Vec<_> = ["alpha", "beta"]
        .into_iter()
        .map(|name| {
            let engine = fx.engine.clone();
            let req = fx.request(name, &format!("write {name}.txt"));
            tokio::spawn(async move {
                let handle = engine.start_run(req).await.unwrap();
                let events = tokio::spawn(drain(handle.events(0)));
                let id = handle.id.clone();
                let summary = tokio::time::timeout(PATIENCE, handle.finish())
                    .await
                    .expect("the run did not end")
                    .unwrap();
                (id, summary, events.await.unwrap())
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }

    let store = fx.store();
    for ((id, summary, events), name) in results.into_iter().zip(["alpha", "beta"]) {
        assert!(summary.success, "{name} failed: {:?}", summary.error);
        let branch = format!("warren/{name}");
        assert_eq!(summary.branch.as_deref(), Some(branch.as_str()));
        assert_eq!(summary.files_changed, 1);
        assert_eq!(fx.branch_changes(&branch), vec![format!("{name}.txt")]);
        assert_eq!(
            fx.show(&branch, &format!("{name}.txt")),
            format!("from {name}\n")
        );
        assert_gapless(&events);
        assert!(
            events.iter().all(|e| e.sandbox == name),
            "{name} got another run's events"
        );
        assert_eq!(events, store.events(&id, 0, None).unwrap());
        let record = store.get(&id).unwrap();
        assert_eq!(record.state, SandboxState::Destroyed);
        assert_eq!(record.branch.as_deref(), Some(branch.as_str()));
        assert!(
            store.lease(&id).unwrap().is_none(),
            "{name}'s lease outlived its run"
        );
        let calls = fx.provider.calls_for(name);
        assert!(
            matches!(calls.first(), Some(Call::Create { .. })),
            "{calls:?}"
        );
        assert!(
            matches!(
                calls.last(),
                Some(Call::Destroy {
                    was_running: false,
                    ..
                })
            ),
            "{calls:?}"
        );
        assert_eq!(
            calls
                .iter()
                .filter(|c| matches!(c, Call::Exec { .. }))
                .count(),
            1
        );
        assert!(
            !fx.workspace_of(&id).exists(),
            "{name}'s workspace was left behind"
        );
    }
}

/// What the engine asks the provider to start: OpenCode under warren's init, with the prompt,
/// with only the environment it means to give it, and never the credential.
async fn the_agent_is_started_as_opencode_run_under_the_init(fx: Fixture) {
    let mut req = fx.request("argv", "write agent.txt");
    let endpoint = req.config.model_providers.get_mut("scripted").unwrap();
    endpoint.api_key = Some("sk-test-secret".into());
    let handle = fx.engine.start_run(req).await.unwrap();
    let summary = handle.finish().await.unwrap();
    assert!(summary.success, "{:?}", summary.error);
    let calls = fx.provider.calls_for("argv");
    let Some(Call::Exec { argv, env, .. }) = calls.iter().find(|c| matches!(c, Call::Exec { .. }))
    else {
        panic!("no exec: {calls:?}")
    };
    assert!(argv[0].ends_with("/warren-sandbox-init"), "{argv:?}");
    let dashes = argv.iter().position(|a| a == "--").unwrap();
    assert!(argv[dashes + 1].ends_with("/opencode"), "{argv:?}");
    assert_eq!(argv[dashes + 2], "run");
    assert!(argv.iter().any(|a| a == "write agent.txt"), "{argv:?}");
    assert!(
        env.iter().all(|(k, _)| k != "WARREN_SANDBOX_INIT"),
        "the host environment leaked into the sandbox: {env:?}"
    );
    assert!(
        env.contains(&("HOME".into(), "/home/agent".into())),
        "{env:?}"
    );
    // Only the gateway ever sees the credential.
    assert!(
        !argv
            .iter()
            .chain(env.iter().map(|(_, v)| v))
            .any(|a| a.contains("sk-test-secret")),
        "the credential reached the sandbox"
    );
    assert_eq!(summary.session_id.as_deref(), Some("ses_fake"));
    assert_eq!(summary.usage.input, 100);
}

/// Runs against an endpoint with a pool of one take turns: the second waits `queued`, visibly,
/// and its agent starts only once the first one's has ended; both finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_runs_agents_one_at_a_time() {
    let fx = Fixture::new();
    let mut config = fx.config.clone();
    config.pools.insert(
        "one".into(),
        warren_config::PoolConfig { max_concurrent: 1 },
    );
    config.model_providers.get_mut("scripted").unwrap().pool = Some("one".into());
    fx.provider.script(
        "first",
        Script::new()
            .step_start()
            .write("first.txt", "first\n")
            .signal("first-mid")
            .gate("first-go")
            .finish(),
    );
    let mut req = fx.request("first", "work");
    req.config = config.clone();
    let first = fx.engine.start_run(req).await.unwrap();
    fx.provider.wait_signal("first-mid", PATIENCE).await;

    let mut req = fx.request("second", "work");
    req.config = config;
    let second = fx.engine.start_run(req).await.unwrap();
    let store = fx.store();
    let start = std::time::Instant::now();
    while store.get(&second.id).unwrap().state != SandboxState::Queued {
        assert!(start.elapsed() < PATIENCE, "the second run never queued");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Give it every chance to jump the queue.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !fx.provider
            .calls_for("second")
            .iter()
            .any(|c| matches!(c, Call::Exec { .. })),
        "the second agent started while the pool's one slot was taken"
    );
    let queued = store.events(&second.id, 0, None).unwrap();
    assert!(
        queued.iter().any(|e| matches!(
            &e.event,
            warren_domain::AgentEvent::Queued { pool, position: 1 } if pool == "one"
        )),
        "{queued:#?}"
    );

    fx.provider.open_gate("first-go");
    let first = tokio::time::timeout(PATIENCE, first.finish())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(PATIENCE, second.finish())
        .await
        .unwrap()
        .unwrap();
    assert!(first.success, "{:?}", first.error);
    assert!(second.success, "{:?}", second.error);
    assert_eq!(fx.branch_changes("warren/second"), vec!["agent.txt"]);
    // The first agent ended before the second was started.
    let calls = fx.provider.calls();
    let first_done = calls
        .iter()
        .position(|c| matches!(c, Call::Destroy { sandbox, .. } if sandbox == "first"))
        .unwrap();
    let second_exec = calls
        .iter()
        .position(|c| matches!(c, Call::Exec { sandbox, .. } if sandbox == "second"))
        .unwrap();
    assert!(first_done < second_exec, "{calls:#?}");
    assert!(store.pool_usage("one").unwrap().0.is_empty());
}

both_mounts!(
    two_runs_at_once_each_export_exactly_their_own_work,
    the_agent_is_started_as_opencode_run_under_the_init
);
