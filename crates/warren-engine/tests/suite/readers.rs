//! Looking at a sandbox while its agent works: every read the CLI uses, and the reconciler's
//! sweep, leave the run and its record exactly as they were; operations that need the sandbox
//! are refused as busy; a second run with the same name is refused and creates nothing.

use warren_domain::UserFacing;
use warren_domain::{ReasonCode, SandboxState};
use warren_engine::{Assessment, EventStream, StreamEnd, assess};
use warren_store::StateStore;

use super::fake::Script;
use super::harness::{Fixture, PATIENCE, assert_gapless, drain, kinds};
use warren_engine::NullObserver;

/// An agent that writes `<name>.txt`, signals `<name>-mid`, and waits for gate `<name>-go`.
fn gated(name: &str) -> Script {
    Script::new()
        .step_start()
        .write(&format!("{name}.txt"), "the agent's work\n")
        .signal(&format!("{name}-mid"))
        .gate(&format!("{name}-go"))
        .text("done")
        .finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_during_a_run_change_nothing() {
    let fx = Fixture::new();

    // The baseline: the same agent, nobody looking.
    fx.provider.script("quiet", gated("quiet"));
    fx.provider.open_gate("quiet-go");
    let handle = fx
        .engine
        .start_run(fx.request("quiet", "work"))
        .await
        .unwrap();
    let quiet_events = tokio::spawn(drain(handle.events(0)));
    let quiet = handle.finish().await.unwrap();
    let quiet_events = quiet_events.await.unwrap();

    // The watched run, held mid-agent while everything looks at it.
    fx.provider.script("watched", gated("watched"));
    let handle = fx
        .engine
        .start_run(fx.request("watched", "work"))
        .await
        .unwrap();
    let live = tokio::spawn(drain(handle.events(0)));
    fx.provider.wait_signal("watched-mid", PATIENCE).await;

    let store = fx.store();
    let id = handle.id.clone();
    let record_before = store.get(&id).unwrap();
    let transitions_before = store.transitions(&id).unwrap();
    let events_before = store.events(&id, 0, None).unwrap();
    assert_eq!(record_before.state, SandboxState::Running);

    {
        let lc = fx.lifecycle();
        assert_eq!(lc.find("watched").unwrap().id, id);
        assert!(lc.list(false).unwrap().iter().any(|r| r.id == id));
        assert!(lc.list(true).unwrap().iter().any(|r| r.id == id));
        let lease = store
            .lease(&id)
            .unwrap()
            .expect("a running sandbox has a lease");
        assert_eq!(lease.operation, "run");
        assert_eq!(lease.pid, Some(std::process::id()));
        assert_eq!(
            assess(
                &record_before,
                Some(&lease),
                time::OffsetDateTime::now_utc()
            ),
            Assessment::Supervised
        );
        assert_eq!(store.events(&id, 0, None).unwrap(), events_before);
        // A stream from seq 0, read up to what exists now.
        let mut stream = EventStream::new(fx.store_handle(), id.clone(), 0, StreamEnd::default());
        let mut read = Vec::new();
        while read.len() < events_before.len() {
            read.push(stream.next().await.unwrap().unwrap());
        }
        assert_eq!(read, events_before);

        let report = lc.gc().unwrap();
        assert!(report.marked_error.is_empty(), "{report:?}");
        assert!(report.torn_down.is_empty(), "{report:?}");
        assert!(report.expired_leases.is_empty(), "{report:?}");
        assert!(report.orphan_dirs_removed.is_empty(), "{report:?}");
        assert!(fx.workspace_of(&id).join("watched.txt").exists());

        for (op, result) in [
            (
                "export",
                lc.export("watched", None, &mut NullObserver).err(),
            ),
            ("sync", lc.sync("watched", &mut NullObserver).err()),
            (
                "teardown",
                lc.teardown("watched", false, false, &mut NullObserver)
                    .err(),
            ),
        ] {
            let error = result.unwrap_or_else(|| panic!("{op} during a run was not refused"));
            assert_eq!(
                error.reason_code(),
                ReasonCode::SandboxBusy,
                "{op}: {error:?}"
            );
        }
    }

    // Nobody who looked changed anything.
    assert_eq!(store.get(&id).unwrap(), record_before);
    assert_eq!(store.transitions(&id).unwrap(), transitions_before);
    assert_eq!(store.events(&id, 0, None).unwrap(), events_before);

    fx.provider.open_gate("watched-go");
    let watched = tokio::time::timeout(PATIENCE, handle.finish())
        .await
        .expect("the watched run did not end")
        .unwrap();
    let watched_events = live.await.unwrap();

    // It ended as the run nobody looked at did.
    assert!(quiet.success, "{:?}", quiet.error);
    assert_eq!(watched.success, quiet.success);
    assert_eq!(watched.error, quiet.error);
    assert_eq!(watched.files_changed, quiet.files_changed);
    assert_eq!(watched.branch.as_deref(), Some("warren/watched"));
    assert_eq!(quiet.branch.as_deref(), Some("warren/quiet"));
    assert_eq!(fx.branch_changes("warren/watched"), vec!["watched.txt"]);
    assert_eq!(fx.branch_changes("warren/quiet"), vec!["quiet.txt"]);
    assert_gapless(&watched_events);
    assert_gapless(&quiet_events);
    assert_eq!(kinds(&watched_events), kinds(&quiet_events));
    assert_eq!(watched_events, fx.stored_events(&id).await);
    assert_eq!(fx.record("watched").state, SandboxState::Destroyed);
    let states = |name: &str| -> Vec<SandboxState> {
        let record = fx.record(name);
        store
            .transitions(&record.id)
            .unwrap()
            .iter()
            .map(|t| t.to)
            .collect()
    };
    assert_eq!(states("watched"), states("quiet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_with_the_same_name_is_refused_and_creates_nothing() {
    let fx = Fixture::new();
    fx.provider.script("twice", gated("twice"));
    let handle = fx
        .engine
        .start_run(fx.request("twice", "work"))
        .await
        .unwrap();
    fx.provider.wait_signal("twice-mid", PATIENCE).await;

    let sandboxes = || {
        std::fs::read_dir(fx.data.join("sandboxes"))
            .unwrap()
            .count()
    };
    let (calls, dirs) = (fx.provider.calls(), sandboxes());
    let Err(error) = fx.engine.start_run(fx.request("twice", "again")).await else {
        panic!("a second run named twice was started")
    };
    assert_eq!(
        error.reason_code(),
        ReasonCode::InvalidArgument,
        "{error:?}"
    );
    assert!(error.to_string().contains("already exists"), "{error:?}");
    assert_eq!(fx.lifecycle().list(true).unwrap().len(), 1);
    assert_eq!(
        fx.provider.calls(),
        calls,
        "the provider was asked for something"
    );
    assert_eq!(sandboxes(), dirs);
    assert_eq!(fx.record("twice").id, handle.id);

    // The first run is unharmed.
    fx.provider.open_gate("twice-go");
    let summary = handle.finish().await.unwrap();
    assert!(summary.success, "{:?}", summary.error);
    assert_eq!(fx.show("warren/twice", "twice.txt"), "the agent's work\n");
}

/// The sweep runs at any time, from any process, while runs start. A run's directories appear
/// after its record does; the sweep must never take them for an orphan's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_never_removes_a_starting_runs_directories() {
    let fx = Fixture::new();
    // Enough settled records that one sweep takes a while between listing records and reading
    // the directories.
    {
        let store = fx.store();
        for i in 0..300 {
            let record = fx.sandbox_in(&format!("old-{i}"), &[SandboxState::TearingDown]);
            store
                .transition(&record.id, SandboxState::Destroyed, None)
                .unwrap();
        }
        fx.lifecycle().gc().unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (stop, provider, config, data, store) = (
            stop.clone(),
            fx.provider.clone(),
            fx.config.clone(),
            fx.data.clone(),
            fx.store_handle(),
        );
        std::thread::spawn(move || {
            // A handle of its own, as a sweep in another process has.
            let lc = warren_engine::Lifecycle::new(&provider, &config, &data, store);
            let mut removed = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                removed.extend(lc.gc().unwrap().orphan_dirs_removed);
            }
            removed
        })
    };
    let mut failures = Vec::new();
    for i in 0..8 {
        let name = format!("busy-{i}");
        let handle = fx
            .engine
            .start_run(fx.request(&name, "work"))
            .await
            .unwrap();
        let summary = tokio::time::timeout(PATIENCE, handle.finish())
            .await
            .expect("the run did not end")
            .unwrap();
        if !summary.success {
            failures.push((name, summary.error));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let removed = sweeper.join().unwrap();
    assert!(
        failures.is_empty() && removed.is_empty(),
        "runs failed while a sweep ran: {failures:#?}; the sweep removed {removed:#?}"
    );
}

/// A client that reconnects resumes where it left off: from any `seq`, mid-run or after, the
/// stream yields exactly the events after it, in order, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_after_any_seq() {
    let fx = Fixture::new();
    fx.provider.script("resume", gated("resume"));
    let handle = fx
        .engine
        .start_run(fx.request("resume", "work"))
        .await
        .unwrap();
    fx.provider.wait_signal("resume-mid", PATIENCE).await;
    let so_far = fx.store().events(&handle.id, 0, None).unwrap().len() as u64;
    assert!(so_far >= 4, "only {so_far} events before the agent's pause");
    let resumed = tokio::spawn(drain(handle.events(so_far / 2)));
    fx.provider.open_gate("resume-go");
    let id = handle.id.clone();
    handle.finish().await.unwrap();

    let all = fx.stored_events(&id).await;
    assert_gapless(&all);
    let resumed = resumed.await.unwrap();
    assert_eq!(resumed, all[usize::try_from(so_far / 2).unwrap()..]);
    for after in 0..=all.len() {
        let end = StreamEnd::default();
        end.finish();
        let stream = EventStream::new(fx.store_handle(), id.clone(), after as u64, end);
        assert_eq!(
            drain(stream).await,
            all[after..],
            "resumed after seq {after}"
        );
    }
}
