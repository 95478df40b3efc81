//! The reconciler's write: a sandbox is marked lost only while its state is the one the
//! reconciler saw and no live holder has its lease, judged atomically with the write. A
//! supervisor that takes the sandbox up at the worst moment always wins.

use warren_domain::SandboxState;

use super::leases::MINUTE;
use super::{Factory, dead, open, other, sandbox};

const ROUNDS: usize = 20;

pub fn mark_lost_moves_an_unsupervised_sandbox_to_error_once(f: &dyn Factory) {
    let store = open(f);
    let id = sandbox(&*store, "orphan");
    store
        .transition(&id, SandboxState::Provisioning, None)
        .unwrap();
    // A dead holder's lease does not supervise.
    store
        .acquire_lease_as(&id, "launch", MINUTE, &dead("gone"))
        .unwrap();
    assert!(
        store
            .mark_lost(&id, SandboxState::Provisioning, "its supervisor died")
            .unwrap()
    );
    let record = store.get(&id).unwrap();
    assert_eq!(record.state, SandboxState::Error);
    let log = store.transitions(&id).unwrap();
    assert_eq!(
        log.last().unwrap().reason.as_deref(),
        Some("its supervisor died")
    );
    // Level-triggered: running it again finds nothing to do.
    assert!(
        !store
            .mark_lost(&id, SandboxState::Provisioning, "again")
            .unwrap()
    );
    assert_eq!(store.transitions(&id).unwrap().len(), log.len());
}

pub fn mark_lost_leaves_a_supervised_or_moved_sandbox_alone(f: &dyn Factory) {
    let store = open(f);
    let id = sandbox(&*store, "held");
    store
        .transition(&id, SandboxState::Provisioning, None)
        .unwrap();
    store
        .acquire_lease_as(&id, "launch", MINUTE, &other("supervisor"))
        .unwrap();
    assert!(
        !store
            .mark_lost(&id, SandboxState::Provisioning, "wrong")
            .unwrap(),
        "a live lease protects the sandbox"
    );
    store.release_lease_as(&id, &other("supervisor")).unwrap();
    store.transition(&id, SandboxState::Running, None).unwrap();
    assert!(
        !store
            .mark_lost(&id, SandboxState::Provisioning, "stale")
            .unwrap(),
        "a sandbox that moved on since it was seen is not marked"
    );
    assert_eq!(store.get(&id).unwrap().state, SandboxState::Running);
}

pub fn a_supervisor_taking_up_a_sandbox_races_the_reconciler_and_one_wins(f: &dyn Factory) {
    let store = open(f);
    for round in 0..ROUNDS {
        let id = sandbox(&*store, &format!("pickup-{round}"));
        let (first, second) = (store.second(), store.second());
        let start = std::sync::Barrier::new(2);
        let (marked, supervised) = std::thread::scope(|scope| {
            let reconciler = scope.spawn(|| {
                start.wait();
                first
                    .mark_lost(&id, SandboxState::New, "its supervisor never came")
                    .unwrap()
            });
            let supervisor = scope.spawn(|| {
                start.wait();
                let holder = other("supervisor");
                second
                    .acquire_lease_as(&id, "launch", MINUTE, &holder)
                    .is_ok()
                    && second
                        .transition(&id, SandboxState::Provisioning, None)
                        .is_ok()
            });
            (
                reconciler.join().expect("reconciler panicked"),
                supervisor.join().expect("supervisor panicked"),
            )
        });
        let state = store.get(&id).unwrap().state;
        match (marked, supervised) {
            (true, false) => assert_eq!(state, SandboxState::Error, "round {round}"),
            (false, true) => assert_eq!(state, SandboxState::Provisioning, "round {round}"),
            other => panic!("round {round}: exactly one may win, got {other:?} ({state})"),
        }
    }
}
