//! Cancelling a run through its handle: the agent is killed (its whole process tree), the run
//! ends `stopped`, and nothing the agent wrote before the cancel is lost; nor when the agent
//! fails on its own.

use warren_domain::{AgentEvent, ReasonCode, SandboxState};
use warren_engine::Cancel;
use warren_store::StateStore;

use super::fake::{Call, Script, group_alive};
use super::harness::{Fixture, PATIENCE, assert_gapless, both_mounts, drain};

async fn cancel_mid_agent_stops_it_and_keeps_its_work(fx: Fixture) {
    fx.provider.script(
        "stopme",
        Script::new()
            .step_start()
            .write("before-cancel.txt", "written before the cancel\n")
            .signal("stopme-mid")
            .hang(),
    );
    let handle = fx
        .engine
        .start_run(fx.request("stopme", "work forever"))
        .await
        .unwrap();
    let events = tokio::spawn(drain(handle.events(0)));
    fx.provider.wait_signal("stopme-mid", PATIENCE).await;
    assert_eq!(fx.record("stopme").state, SandboxState::Running);

    handle.cancel.cancel(Cancel::stopped("a test"));
    let id = handle.id.clone();
    let summary = tokio::time::timeout(PATIENCE, handle.finish())
        .await
        .expect("a cancelled run did not end")
        .unwrap();

    let error = summary
        .error
        .clone()
        .expect("a cancelled run is not a success");
    assert!(!summary.success);
    assert_eq!(error.reason_code, ReasonCode::Stopped, "{error:?}");
    assert!(error.message.contains("a test"), "{error:?}");
    // Nothing lost: the work so far is on the branch.
    assert_eq!(summary.branch.as_deref(), Some("warren/stopme"));
    assert_eq!(
        fx.show("warren/stopme", "before-cancel.txt"),
        "written before the cancel\n"
    );
    assert_eq!(
        fx.branch_changes("warren/stopme"),
        vec!["before-cancel.txt"]
    );
    // The agent was killed, all of it, and the sandbox destroyed after.
    let calls = fx.provider.calls_for("stopme");
    let kill = calls.iter().position(|c| matches!(c, Call::Kill { .. }));
    let destroy = calls.iter().position(|c| matches!(c, Call::Destroy { .. }));
    assert!(
        matches!((kill, destroy), (Some(k), Some(d)) if k < d),
        "{calls:?}"
    );
    let groups = fx.provider.groups_of("stopme");
    assert_eq!(groups.len(), 1);
    assert!(
        groups.iter().all(|g| !group_alive(*g)),
        "the agent survived"
    );

    let record = fx.store().get(&id).unwrap();
    assert_eq!(record.state, SandboxState::Destroyed);
    assert!(fx.store().lease(&id).unwrap().is_none());
    assert_eq!(
        record.error.map(|e| e.reason_code),
        Some(ReasonCode::Stopped)
    );
    let events = events.await.unwrap();
    assert_gapless(&events);
    assert!(
        matches!(
            events.last().map(|e| &e.event),
            Some(AgentEvent::Finished { success: false, error: Some(e) }) if e.reason_code == ReasonCode::Stopped
        ),
        "{:?}",
        events.last()
    );
}

/// The same promise when the agent fails on its own: the run fails, the work is exported.
async fn a_failed_agent_still_has_its_work_exported(fx: Fixture) {
    fx.provider.script(
        "crash",
        Script::new()
            .step_start()
            .write("partial.txt", "half done\n")
            .sleep(std::time::Duration::from_millis(50))
            .exit(3),
    );
    let handle = fx
        .engine
        .start_run(fx.request("crash", "work"))
        .await
        .unwrap();
    let summary = tokio::time::timeout(PATIENCE, handle.finish())
        .await
        .expect("the run did not end")
        .unwrap();
    assert!(!summary.success);
    let error = summary.error.expect("a crashed agent is an error");
    assert_ne!(error.reason_code, ReasonCode::Stopped, "{error:?}");
    assert_eq!(summary.branch.as_deref(), Some("warren/crash"));
    assert_eq!(fx.show("warren/crash", "partial.txt"), "half done\n");
    let calls = fx.provider.calls_for("crash");
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Kill { .. })),
        "an agent that exited was killed: {calls:?}"
    );
    assert!(
        matches!(calls.last(), Some(Call::Destroy { .. })),
        "{calls:?}"
    );
}

both_mounts!(
    cancel_mid_agent_stops_it_and_keeps_its_work,
    a_failed_agent_still_has_its_work_exported
);
