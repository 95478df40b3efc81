//! A second actor acting at the worst moment: two handles on the same store (two processes, two
//! server replicas) released together by a barrier. Each race runs many rounds, so an
//! implementation whose check and write are not one atomic step loses at least one of them.

use std::sync::{Arc, Barrier};

use warren_domain::{AgentEvent, SandboxState, Usage};

use super::leases::MINUTE;
use super::{Factory, Opened, open, other, sandbox};
use crate::{StateStore, StoreError};

const ROUNDS: usize = 20;

/// Runs `a` and `b` on two threads, each with its own handle, released at the same instant.
fn race<A, B, RA, RB>(store: &Opened, a: A, b: B) -> (RA, RB)
where
    A: FnOnce(&dyn StateStore) -> RA + Send,
    B: FnOnce(&dyn StateStore) -> RB + Send,
    RA: Send,
    RB: Send,
{
    let (first, second) = (store.second(), store.second());
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        let ta = scope.spawn(|| {
            start.wait();
            a(&*first)
        });
        let tb = scope.spawn(|| {
            start.wait();
            b(&*second)
        });
        (
            ta.join().expect("racer a panicked"),
            tb.join().expect("racer b panicked"),
        )
    })
}

pub fn two_handles_racing_for_one_lease_exactly_one_wins(f: &dyn Factory) {
    let store = open(f);
    let mut wins = [0usize; 2];
    for round in 0..ROUNDS {
        let id = sandbox(&*store, &format!("contended-{round}"));
        let (a, b) = race(
            &store,
            |s| s.acquire_lease_as(&id, "race", MINUTE, &other("racer-a")),
            |s| s.acquire_lease_as(&id, "race", MINUTE, &other("racer-b")),
        );
        let (winner, loser, won) = match (a, b) {
            (Ok(lease), Err(err)) => (lease, err, 0),
            (Err(err), Ok(lease)) => (lease, err, 1),
            (a, b) => panic!("round {round}: exactly one must win, got {a:?} and {b:?}"),
        };
        wins[won] += 1;
        assert!(
            matches!(&loser, StoreError::Busy { holder, .. } if *holder == winner.holder),
            "round {round}: the loser must be told who won: {loser:?}"
        );
        assert_eq!(store.lease(&id).unwrap(), Some(winner), "round {round}");
    }
    assert_eq!(wins.iter().sum::<usize>(), ROUNDS);
}

pub fn two_transitions_racing_out_of_one_state_exactly_one_wins(f: &dyn Factory) {
    use SandboxState::{Destroyed, Error, TearingDown};
    let store = open(f);
    for round in 0..ROUNDS {
        let id = sandbox(&*store, &format!("contested-{round}"));
        store.transition(&id, TearingDown, None).unwrap();
        // From tearing_down both are allowed; from either result the other is not.
        let (a, b) = race(
            &store,
            |s| s.transition(&id, Destroyed, Some("a")),
            |s| s.transition(&id, Error, Some("b")),
        );
        let (won, lost, err) = match (a, b) {
            (Ok(rec), Err(err)) => (rec, Error, err),
            (Err(err), Ok(rec)) => (rec, Destroyed, err),
            (a, b) => panic!("round {round}: exactly one must win, got {a:?} and {b:?}"),
        };
        assert!(
            matches!(err, StoreError::InvalidTransition { from, to } if from == won.state && to == lost),
            "round {round}: the loser must see the winner's state: {err:?}"
        );
        let now = store.get(&id).unwrap();
        assert_eq!(now.state, won.state, "round {round}");
        assert_eq!(now, won, "round {round}: the loser changed nothing");
        let log = store.transitions(&id).unwrap();
        let edges: Vec<_> = log.iter().map(|t| (t.seq, t.from, t.to)).collect();
        assert_eq!(
            edges,
            vec![
                (1, SandboxState::New, TearingDown),
                (2, TearingDown, won.state)
            ],
            "round {round}"
        );
    }
}

pub fn concurrent_appenders_get_gapless_distinct_seqs(f: &dyn Factory) {
    const WRITERS: usize = 4;
    const EACH: usize = 50;
    let store = open(f);
    let id = sandbox(&*store, "busy");
    let start = Barrier::new(WRITERS);
    let mut seqs: Vec<u64> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let handle = store.second();
                let (id, start) = (&id, &start);
                scope.spawn(move || {
                    start.wait();
                    (0..EACH)
                        .map(|i| {
                            let ev = AgentEvent::Text {
                                text: format!("{writer}:{i}"),
                            };
                            handle.append_event(id, &ev).unwrap().seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a writer panicked"))
            .collect()
    });
    let total = (WRITERS * EACH) as u64;
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "distinct and gapless"
    );

    let all = store.events(&id, 0, None).unwrap();
    assert_eq!(all.len() as u64, total);
    assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    assert!(
        all.windows(2).all(|w| w[0].at <= w[1].at),
        "time order follows seq order"
    );
    // Each writer's own events appear in the order it wrote them.
    for writer in 0..WRITERS {
        let mine: Vec<String> = all
            .iter()
            .filter_map(|r| match &r.event {
                AgentEvent::Text { text } if text.starts_with(&format!("{writer}:")) => {
                    Some(text.clone())
                }
                _ => None,
            })
            .collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{writer}:{i}")).collect();
        assert_eq!(mine, expected);
    }

    let tail = store.events(&id, total - 10, None).unwrap();
    assert_eq!(
        tail.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (total - 9..=total).collect::<Vec<_>>()
    );
    let page = store.events(&id, 100, Some(3)).unwrap();
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![101, 102, 103]
    );
    assert!(store.events(&id, total, None).unwrap().is_empty());
}

pub fn concurrent_usage_adds_are_not_lost(f: &dyn Factory) {
    const WRITERS: usize = 4;
    const EACH: u64 = 25;
    let store = open(f);
    let id = sandbox(&*store, "metered");
    let step = Usage {
        input: 1,
        output: 2,
        reasoning: 0,
        cache_read: 3,
        cache_write: 0,
        cost: 0.5,
    };
    let start = Arc::new(Barrier::new(WRITERS));
    std::thread::scope(|scope| {
        for _ in 0..WRITERS {
            let handle = store.second();
            let (id, start, step) = (&id, &start, &step);
            scope.spawn(move || {
                start.wait();
                for _ in 0..EACH {
                    handle.add_usage(id, step).unwrap();
                }
            });
        }
    });
    let n = WRITERS as u64 * EACH;
    let usage = store.get(&id).unwrap().usage;
    assert_eq!(
        (usage.input, usage.output, usage.cache_read),
        (n, 2 * n, 3 * n)
    );
    assert!((usage.cost - 0.5 * n as f64).abs() < 1e-9, "{}", usage.cost);
}
