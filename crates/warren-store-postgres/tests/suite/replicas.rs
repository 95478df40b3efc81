//! Two replicas of a server: two stores opened on the same database, each with its own pool and
//! worker thread, as two processes on two hosts would (TTL liveness, the multi-host policy).

use std::sync::{Arc, Barrier};
use std::time::Duration;

use warren_domain::{SandboxId, SandboxName, SandboxState};
use warren_store::{LeaseHolder, NewSandbox, StateStore, StoreError};
use warren_store_postgres::PostgresStore;

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

#[test]
fn only_one_replica_leads_the_reconciler_and_the_lead_passes_on() {
    let Some(url) = super::database() else { return };
    let replicas: Vec<_> = (0..3).map(|_| super::replica(&url)).collect();
    let leads = |replicas: &[PostgresStore]| -> Vec<bool> {
        std::thread::scope(|scope| {
            let asking: Vec<_> = replicas
                .iter()
                .map(|r| scope.spawn(|| r.try_lead_reconciler().unwrap()))
                .collect();
            asking.into_iter().map(|t| t.join().unwrap()).collect()
        })
    };
    let first = leads(&replicas);
    assert_eq!(first.iter().filter(|l| **l).count(), 1, "{first:?}");
    let leader = first.iter().position(|l| *l).unwrap();
    for _ in 0..3 {
        assert_eq!(
            leads(&replicas),
            first,
            "the leader keeps it; nobody else takes it"
        );
    }
    // A resigned leader frees it for one of the others.
    replicas[leader].resign_reconciler().unwrap();
    let others: Vec<_> = replicas
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| (i != leader).then_some(r))
        .collect();
    let second = leads(&others);
    assert_eq!(second.iter().filter(|l| **l).count(), 1, "{second:?}");
    // A leader that goes away (its session closes, as when its process dies) frees it too.
    let mut others = others;
    let leading = others.remove(second.iter().position(|l| *l).unwrap());
    let survivor = others.pop().unwrap();
    assert!(!survivor.try_lead_reconciler().unwrap());
    drop(leading);
    let mut took = false;
    for _ in 0..50 {
        if survivor.try_lead_reconciler().unwrap() {
            took = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(took, "the lead of a closed session passes on");
}

#[test]
fn an_append_on_one_replica_signals_the_others_readers() {
    let Some(url) = super::database() else { return };
    let (one, two) = (super::replica(&url), super::replica(&url));
    let id = create(&one, "signalled");
    let quiet = create(&one, "quiet");
    let signal = two.event_signal(&id).unwrap();
    let other = two.event_signal(&quiet).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The listener starts on first use; give it its LISTEN before the first append.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for round in 0..5 {
            let woken = signal.notified();
            let not_woken = other.notified();
            tokio::pin!(woken, not_woken);
            woken.as_mut().enable();
            not_woken.as_mut().enable();
            one.append_event(
                &id,
                &warren_domain::AgentEvent::Text {
                    text: format!("round {round}"),
                },
            )
            .unwrap();
            tokio::time::timeout(Duration::from_secs(5), woken)
                .await
                .unwrap_or_else(|_| panic!("round {round}: the other replica was not signalled"));
            assert!(
                tokio::time::timeout(Duration::from_millis(50), not_woken)
                    .await
                    .is_err(),
                "round {round}: another sandbox's readers were woken"
            );
        }
    });
}
