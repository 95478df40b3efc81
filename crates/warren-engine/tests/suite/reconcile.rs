//! The reconciler's verdict on a supervisor that died, in each phase it can die in: the sandbox
//! is marked `error` (`supervisor_lost`) once, its workspace kept; looking again changes nothing.
//! A supervisor is "killed" by leaving its lease to a holder whose process is gone.

use std::time::Duration;

use time::OffsetDateTime;
use warren_domain::{AgentEvent, ReasonCode, SandboxState};
use warren_engine::{Assessment, assess};
use warren_store::StateStore;

use super::harness::{Fixture, dead_holder};

use SandboxState::{Completed, Error, New, Provisioning, Queued, Running, Saving, TearingDown};

/// A sandbox left in the last state of `path` by a supervisor that then died holding its lease.
fn supervisor_died(path: &[SandboxState], operation: &str) {
    let fx = Fixture::new();
    let name = "lost";
    let record = fx.sandbox_in(name, path);
    let store = fx.store();
    let id = record.id.clone();
    store
        .acquire_lease_as(
            &id,
            operation,
            Duration::from_secs(30),
            &dead_holder("killed"),
        )
        .unwrap();

    // The pure half: a dead holder's lease reads as none, and the verdict is "lost", with
    // nothing written by asking.
    let lease = store.lease(&id).unwrap();
    assert!(
        lease.is_none(),
        "a dead holder's lease reads as live: {lease:?}"
    );
    let verdict = assess(&record, lease.as_ref(), OffsetDateTime::now_utc());
    assert_eq!(verdict, Assessment::SupervisorLost);
    assert_eq!(
        verdict.requeue_after(std::time::Duration::from_secs(30)),
        None
    );
    assert_eq!(store.get(&id).unwrap(), record);
    let transitions_before = store.transitions(&id).unwrap();
    let events_before = store.events(&id, 0, None).unwrap();
    assert_eq!(fx.lifecycle().find(name).unwrap(), record);

    // The sweep acts.
    let report = fx.lifecycle().gc().unwrap();
    assert_eq!(report.marked_error, vec![name.to_owned()], "{report:?}");
    assert_eq!(report.expired_leases.len(), 1, "{report:?}");
    assert!(report.expired_leases[0].contains(id.as_str()), "{report:?}");
    assert!(report.torn_down.is_empty(), "{report:?}");
    assert!(report.orphan_dirs_removed.is_empty(), "{report:?}");
    let after = store.get(&id).unwrap();
    assert_eq!(after.state, Error);
    let error = after
        .error
        .clone()
        .expect("the lost sandbox carries its error");
    assert_eq!(error.reason_code, ReasonCode::SupervisorLost);
    assert!(error.message.contains(name), "{error:?}");
    assert!(error.hint.is_some(), "{error:?}");
    let transitions = store.transitions(&id).unwrap();
    assert_eq!(transitions.len(), transitions_before.len() + 1);
    let last = transitions.last().unwrap();
    assert_eq!((last.from, last.to), (*path.last().unwrap_or(&New), Error));
    let events = store.events(&id, 0, None).unwrap();
    assert_eq!(events.len(), events_before.len() + 1);
    assert!(matches!(
        events.last().unwrap().event,
        AgentEvent::StateChanged { state: Error, .. }
    ));
    // The work is kept.
    assert_eq!(
        std::fs::read_to_string(fx.workspace_of(&id).join("work.txt")).unwrap(),
        "the agent's work\n"
    );
    assert_eq!(
        assess(&after, None, OffsetDateTime::now_utc()),
        Assessment::Settled
    );

    // Level-triggered: the second sweep finds nothing to do.
    let again = fx.lifecycle().gc().unwrap();
    assert!(again.marked_error.is_empty(), "{again:?}");
    assert!(again.expired_leases.is_empty(), "{again:?}");
    assert!(again.orphan_dirs_removed.is_empty(), "{again:?}");
    assert_eq!(store.get(&id).unwrap(), after);
    assert_eq!(store.transitions(&id).unwrap(), transitions);
    assert_eq!(store.events(&id, 0, None).unwrap(), events);
    assert!(fx.workspace_of(&id).join("work.txt").exists());
}

#[test]
fn supervisor_killed_while_provisioning() {
    supervisor_died(&[Provisioning], "run");
}

#[test]
fn supervisor_killed_while_the_agent_runs() {
    supervisor_died(&[Provisioning, Running], "run");
}

#[test]
fn supervisor_killed_while_exporting() {
    supervisor_died(&[Provisioning, Running, Completed, Saving], "export");
}

#[test]
fn supervisor_killed_while_tearing_down() {
    supervisor_died(&[Provisioning, Running, Completed, TearingDown], "teardown");
}

#[test]
fn supervisor_killed_while_queued_for_a_pool() {
    supervisor_died(&[Queued], "run");
}

#[test]
fn a_new_sandbox_within_its_grace_is_starting_and_left_alone() {
    let fx = Fixture::new();
    let record = fx.sandbox_in("fresh", &[]);
    let store = fx.store();
    assert_eq!(record.state, New);
    let verdict = assess(&record, None, OffsetDateTime::now_utc());
    let Assessment::Starting { grace_left_ms } = verdict else {
        panic!("a fresh sandbox is {verdict:?}")
    };
    assert!(grace_left_ms > 0);
    let transitions = store.transitions(&record.id).unwrap();

    let report = fx.lifecycle().gc().unwrap();
    assert!(report.marked_error.is_empty(), "{report:?}");
    assert!(report.orphan_dirs_removed.is_empty(), "{report:?}");
    assert!(report.requeue_after_secs.is_some(), "{report:?}");
    assert_eq!(store.get(&record.id).unwrap(), record);
    assert_eq!(store.transitions(&record.id).unwrap(), transitions);

    // Past its grace, nobody having taken it up, it is lost.
    let later = record.created_at + time::Duration::seconds(61);
    assert_eq!(assess(&record, None, later), Assessment::SupervisorLost);
}

#[test]
fn settled_sandboxes_are_not_touched() {
    let fx = Fixture::new();
    let done = fx.sandbox_in("done", &[Provisioning, Running, Completed]);
    let store = fx.store();
    // Even with a dead holder's lease left on it: `completed` needs no supervisor.
    store
        .acquire_lease_as(
            &done.id,
            "exec",
            Duration::from_secs(30),
            &dead_holder("gone"),
        )
        .unwrap();
    assert_eq!(
        assess(&done, None, OffsetDateTime::now_utc()),
        Assessment::Settled
    );
    // Its retention is not over (auto teardown is on by default): nothing to tear down.
    let report = fx.lifecycle().gc().unwrap();
    assert!(report.marked_error.is_empty(), "{report:?}");
    assert!(report.torn_down.is_empty(), "{report:?}");
    let now = store.get(&done.id).unwrap();
    assert_eq!(now.state, Completed);
    assert_eq!(now.state_changed_at, done.state_changed_at);
    assert!(fx.workspace_of(&done.id).join("work.txt").exists());
}

/// The server's repository sources (`<data>/sources/<id>`) are collected by the sweep once no
/// sandbox needs them: one a live sandbox works on stays, one a sandbox was torn down from
/// recently stays (its branch can still be fetched), a fresh one waits for its launch, and an
/// old one nobody uses goes.
#[test]
fn the_sweep_collects_sources_no_sandbox_needs() {
    let fx = Fixture::new();
    let sources = fx.data.join("sources");
    let dir = |name: &str| {
        let d = sources.join(name);
        std::fs::create_dir_all(d.join(".git")).unwrap();
        d
    };
    let (used, torn, fresh, stale) = (dir("used"), dir("torn"), dir("fresh"), dir("stale"));
    for old in [&used, &torn, &stale] {
        let status = std::process::Command::new("touch")
            .args(["-d", "3 hours ago"])
            .arg(old)
            .status()
            .unwrap();
        assert!(status.success());
    }
    fx.sandbox_of(
        "working",
        &used,
        &[Queued, Provisioning, Running, Completed],
    );
    fx.sandbox_of(
        "gone",
        &torn,
        &[
            Queued,
            Provisioning,
            Running,
            Completed,
            TearingDown,
            SandboxState::Destroyed,
        ],
    );
    let report = fx.lifecycle().gc().unwrap();
    assert!(!stale.exists(), "{report:?}");
    assert!(
        report
            .orphan_dirs_removed
            .contains(&stale.display().to_string()),
        "{report:?}"
    );
    for kept in [&used, &torn, &fresh] {
        assert!(kept.exists(), "{} was kept: {report:?}", kept.display());
    }
}
