//! Two replicas of a server: two stores opened on the same database, each with its own pool and
//! worker thread, as two processes on two hosts would (TTL liveness, the multi-host policy).

use std::sync::{Arc, Barrier};
use std::time::Duration;

use warren_domain::{SandboxId, SandboxName, SandboxState};
use warren_store::{LeaseHolder, NewSandbox, StateStore, StoreError};

const ROUNDS: usize = 25;
const MINUTE: Duration = Duration::from_secs(60);

fn create(store: &dyn StateStore, name: &str) -> SandboxId {
    store
        .create_sandbox(NewSandbox {
            id: SandboxId::new(),
            name: SandboxName::parse(name).unwrap(),
            repo: "/srv/repo".into(),
            provider: "docker".into(),
            model: None,
            prompt: None,
            role: None,
        })
        .unwrap()
        .id
}

fn holder(name: &str) -> LeaseHolder {
    LeaseHolder {
        name: name.into(),
        ..LeaseHolder::this_process()
    }
}

/// Runs `a` on replica one and `b` on replica two, released together.
fn race<RA: Send, RB: Send>(
    one: &dyn StateStore,
    two: &dyn StateStore,
    a: impl FnOnce(&dyn StateStore) -> RA + Send,
    b: impl FnOnce(&dyn StateStore) -> RB + Send,
) -> (RA, RB) {
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        let ta = scope.spawn(|| {
            start.wait();
            a(one)
        });
        let tb = scope.spawn(|| {
            start.wait();
            b(two)
        });
        (ta.join().unwrap(), tb.join().unwrap())
    })
}

#[test]
fn replicas_opening_together_migrate_once() {
    let Some(url) = super::database() else { return };
    let stores: Vec<_> = std::thread::scope(|scope| {
        let opening: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| super::replica(&url)))
            .collect();
        opening.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let id = create(&stores[0], "seen-by-all");
    for store in &stores {
        assert_eq!(store.get(&id).unwrap().name.as_str(), "seen-by-all");
    }
}

#[test]
fn two_replicas_race_for_one_lease_and_exactly_one_wins() {
    let Some(url) = super::database() else { return };
    let (one, two) = (super::replica(&url), super::replica(&url));
    let mut wins = [0; 2];
    for round in 0..ROUNDS {
        let id = create(&one, &format!("lease-{round}"));
        let (a, b) = race(
            &one,
            &two,
            |s| s.acquire_lease_as(&id, "run", MINUTE, &holder("replica-one")),
            |s| s.acquire_lease_as(&id, "run", MINUTE, &holder("replica-two")),
        );
        let (winner, loser) = match (a, b) {
            (Ok(lease), Err(err)) => {
                wins[0] += 1;
                (lease, err)
            }
            (Err(err), Ok(lease)) => {
                wins[1] += 1;
                (lease, err)
            }
            other => panic!("round {round}: exactly one must win: {other:?}"),
        };
        assert!(
            matches!(&loser, StoreError::Busy { holder, .. } if *holder == winner.holder),
            "round {round}: {loser:?}"
        );
        // Both replicas see the same lease.
        assert_eq!(one.lease(&id).unwrap(), Some(winner.clone()));
        assert_eq!(two.lease(&id).unwrap(), Some(winner));
    }
    assert_eq!(wins[0] + wins[1], ROUNDS);
}

#[test]
fn a_replicas_reconciler_races_anothers_supervisor_and_one_wins() {
    let Some(url) = super::database() else { return };
    let (one, two) = (super::replica(&url), super::replica(&url));
    let mut outcomes = [0; 2];
    for round in 0..ROUNDS {
        let id = create(&one, &format!("pickup-{round}"));
        two.transition(&id, SandboxState::Queued, None).unwrap();
        let (marked, supervised) = race(
            &one,
            &two,
            |s| {
                s.mark_lost(&id, SandboxState::Queued, "its supervisor is gone")
                    .unwrap()
            },
            |s| {
                s.acquire_lease_as(&id, "launch", MINUTE, &holder("supervisor"))
                    .is_ok()
                    && s.transition(&id, SandboxState::Provisioning, None).is_ok()
            },
        );
        let state = two.get(&id).unwrap().state;
        match (marked, supervised) {
            (true, false) => {
                outcomes[0] += 1;
                assert_eq!(state, SandboxState::Error, "round {round}");
            }
            (false, true) => {
                outcomes[1] += 1;
                assert_eq!(state, SandboxState::Provisioning, "round {round}");
            }
            other => panic!("round {round}: exactly one may win, got {other:?} ({state})"),
        }
        // The reconciler's write is logged once, or not at all.
        let errors = one
            .transitions(&id)
            .unwrap()
            .iter()
            .filter(|t| t.to == SandboxState::Error)
            .count();
        assert_eq!(errors, usize::from(marked), "round {round}");
    }
    assert_eq!(outcomes[0] + outcomes[1], ROUNDS);
}

#[test]
fn a_lease_taken_on_one_replica_expires_for_the_other() {
    let Some(url) = super::database() else { return };
    let (one, two) = (Arc::new(super::replica(&url)), super::replica(&url));
    let id = create(&*one, "handover");
    let short = Duration::from_millis(300);
    one.acquire_lease_as(&id, "run", short, &holder("replica-one"))
        .unwrap();
    assert!(matches!(
        two.acquire_lease_as(&id, "run", MINUTE, &holder("replica-two")),
        Err(StoreError::Busy { .. })
    ));
    std::thread::sleep(short + Duration::from_millis(100));
    let taken = two
        .acquire_lease_as(&id, "run", MINUTE, &holder("replica-two"))
        .unwrap();
    assert_eq!(one.lease(&id).unwrap(), Some(taken));
    assert!(matches!(
        one.renew_lease_as(&id, MINUTE, &holder("replica-one")),
        Err(StoreError::LeaseLost { .. })
    ));
}
