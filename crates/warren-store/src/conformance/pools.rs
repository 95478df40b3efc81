//! Concurrency pools: slots up to the limit, a first-come queue beyond it, dead holders that
//! free what they held, and idempotent re-asking.

use warren_domain::SandboxId;

use super::{Factory, dead, open, other, sandbox};
use crate::{LeaseHolder, PoolTry, StoreError};

pub(crate) const GPU: &str = "gpu";

pub(crate) fn waiting(position: usize, holders: &[&str]) -> PoolTry {
    PoolTry::Waiting {
        position,
        holders: holders.iter().map(|h| (*h).to_owned()).collect(),
    }
}

pub fn one_slot_serves_waiters_in_the_order_they_asked(f: &dyn Factory) {
    let store = open(f);
    let [a, b, c] = ["alpha", "beta", "gamma"].map(|name| sandbox(&*store, name));

    assert_eq!(
        store.pool_try_acquire(GPU, &a, 1).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &b, 1).unwrap(),
        waiting(1, &["alpha"])
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &c, 1).unwrap(),
        waiting(2, &["alpha"])
    );
    assert_eq!(
        store.pool_usage(GPU).unwrap(),
        (vec![a.clone()], vec![b.clone(), c.clone()])
    );

    store.pool_release(GPU, &a).unwrap();
    // The slot is free, but beta asked first: gamma asking before beta does not jump the queue.
    assert_eq!(store.pool_try_acquire(GPU, &c, 1).unwrap(), waiting(2, &[]));
    assert_eq!(
        store.pool_try_acquire(GPU, &b, 1).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &c, 1).unwrap(),
        waiting(1, &["beta"])
    );

    store.pool_release(GPU, &b).unwrap();
    assert_eq!(
        store.pool_try_acquire(GPU, &c, 1).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(store.pool_usage(GPU).unwrap(), (vec![c.clone()], vec![]));
    store.pool_release(GPU, &c).unwrap();
    assert_eq!(store.pool_usage(GPU).unwrap(), (vec![], vec![]));
}

pub fn two_slots_admit_two_and_queue_the_third(f: &dyn Factory) {
    let store = open(f);
    let [a, b, c] = ["alpha", "beta", "gamma"].map(|name| sandbox(&*store, name));
    assert_eq!(
        store.pool_try_acquire(GPU, &a, 2).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &b, 2).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &c, 2).unwrap(),
        waiting(1, &["alpha", "beta"])
    );
    store.pool_release(GPU, &b).unwrap();
    assert_eq!(
        store.pool_try_acquire(GPU, &c, 2).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(store.pool_usage(GPU).unwrap(), (vec![a, c], vec![]));
}

pub fn with_several_slots_free_the_first_waiters_may_take_them_in_any_order(f: &dyn Factory) {
    let store = open(f);
    let [a, b, c, d] = ["alpha", "beta", "gamma", "delta"].map(|name| sandbox(&*store, name));
    for id in [&a, &b] {
        assert_eq!(
            store.pool_try_acquire(GPU, id, 2).unwrap(),
            PoolTry::Granted
        );
    }
    assert_eq!(
        store.pool_try_acquire(GPU, &c, 2).unwrap(),
        waiting(1, &["alpha", "beta"])
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &d, 2).unwrap(),
        waiting(2, &["alpha", "beta"])
    );
    store.pool_release(GPU, &a).unwrap();
    store.pool_release(GPU, &b).unwrap();
    // Two slots for the first two waiters: the second need not wait for the first to ask.
    assert_eq!(
        store.pool_try_acquire(GPU, &d, 2).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &c, 2).unwrap(),
        PoolTry::Granted
    );
}

pub fn a_dead_holder_frees_its_slot(f: &dyn Factory) {
    let store = open(f);
    let [a, b] = ["crashed", "next"].map(|name| sandbox(&*store, name));
    assert_eq!(
        store
            .pool_try_acquire_as(GPU, &a, 1, &dead("crashed"))
            .unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &b, 1).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(store.pool_usage(GPU).unwrap(), (vec![b.clone()], vec![]));

    // A running process under the recorded pid is not the holder if it started at another time.
    let c = sandbox(&*store, "after-reuse");
    store.pool_release(GPU, &b).unwrap();
    let me = LeaseHolder::this_process();
    let reused = LeaseHolder {
        name: "earlier-owner-of-this-pid".into(),
        start_time: me.start_time + 1,
        ..me
    };
    assert_eq!(
        store.pool_try_acquire_as(GPU, &a, 1, &reused).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &c, 1).unwrap(),
        PoolTry::Granted
    );
}

pub fn a_dead_waiter_does_not_block_the_queue(f: &dyn Factory) {
    let store = open(f);
    let [a, ghost, b] = ["alpha", "ghost", "beta"].map(|name| sandbox(&*store, name));
    assert_eq!(
        store.pool_try_acquire(GPU, &a, 1).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store
            .pool_try_acquire_as(GPU, &ghost, 1, &dead("ghost"))
            .unwrap(),
        waiting(1, &["alpha"])
    );
    // The ghost's process is gone, so beta is next, not second.
    assert_eq!(
        store.pool_try_acquire(GPU, &b, 1).unwrap(),
        waiting(1, &["alpha"])
    );
    assert_eq!(
        store.pool_usage(GPU).unwrap(),
        (vec![a.clone()], vec![b.clone()])
    );
    store.pool_release(GPU, &a).unwrap();
    assert_eq!(
        store.pool_try_acquire(GPU, &b, 1).unwrap(),
        PoolTry::Granted
    );
}

pub fn asking_again_keeps_the_place_and_the_slot(f: &dyn Factory) {
    let store = open(f);
    let [a, b, c] = ["alpha", "beta", "gamma"].map(|name| sandbox(&*store, name));
    assert_eq!(
        store.pool_try_acquire(GPU, &a, 1).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &b, 1).unwrap(),
        waiting(1, &["alpha"])
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &c, 1).unwrap(),
        waiting(2, &["alpha"])
    );
    for _ in 0..3 {
        assert_eq!(
            store.pool_try_acquire(GPU, &a, 1).unwrap(),
            PoolTry::Granted
        );
        assert_eq!(
            store.pool_try_acquire(GPU, &c, 1).unwrap(),
            waiting(2, &["alpha"])
        );
        assert_eq!(
            store.pool_try_acquire(GPU, &b, 1).unwrap(),
            waiting(1, &["alpha"])
        );
    }
    // Another process asking for the same sandbox takes its place over rather than requeueing.
    assert_eq!(
        store
            .pool_try_acquire_as(GPU, &c, 1, &other("monitor"))
            .unwrap(),
        waiting(2, &["alpha"])
    );
    assert_eq!(
        store
            .pool_try_acquire_as(GPU, &a, 1, &other("monitor"))
            .unwrap(),
        PoolTry::Granted
    );
    assert_eq!(store.pool_usage(GPU).unwrap(), (vec![a], vec![b, c]));
}

pub fn pools_are_independent_and_zero_means_one(f: &dyn Factory) {
    let store = open(f);
    let [a, b, c] = ["alpha", "beta", "gamma"].map(|name| sandbox(&*store, name));
    assert_eq!(
        store.pool_try_acquire(GPU, &a, 0).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_try_acquire(GPU, &b, 0).unwrap(),
        waiting(1, &["alpha"])
    );
    assert_eq!(
        store.pool_try_acquire("cloud", &c, 1).unwrap(),
        PoolTry::Granted
    );
    // One sandbox may hold slots in several pools at once.
    assert_eq!(
        store.pool_try_acquire("cloud", &a, 2).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_usage("cloud").unwrap(),
        (vec![c, a.clone()], vec![])
    );
    assert_eq!(store.pool_usage("idle").unwrap(), (vec![], vec![]));

    // Releasing a waiter leaves the queue; releasing what is not held is a no-op.
    store.pool_release(GPU, &b).unwrap();
    store.pool_release(GPU, &b).unwrap();
    store.pool_release("idle", &b).unwrap();
    assert_eq!(store.pool_usage(GPU).unwrap(), (vec![a], vec![]));
}

pub fn a_pool_with_an_unknown_sandbox_is_not_found(f: &dyn Factory) {
    let store = open(f);
    let err = store
        .pool_try_acquire(GPU, &SandboxId::new(), 1)
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}
