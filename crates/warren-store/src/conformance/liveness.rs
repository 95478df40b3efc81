//! The store judges holders by the [`Liveness`] policy it was opened with, and the two shipped
//! policies behave as documented. Process liveness is what the lease and pool cases assume.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::leases::MINUTE;
use super::pools::{GPU, waiting};
use super::{Factory, dead, open_with, other, sandbox};
use crate::{Liveness, PoolTry, RecordedHolder, RecordedLease, StoreError, TtlLiveness};

/// A policy that finds every holder dead, to prove the store asks its policy rather than
/// deciding on its own.
#[derive(Debug)]
struct NobodyAlive;

impl Liveness for NobodyAlive {
    fn lease_is_live(&self, _lease: &RecordedLease<'_>, _now: OffsetDateTime) -> bool {
        false
    }

    fn pool_entry_is_live(
        &self,
        _entry: &RecordedHolder<'_>,
        _lease: Option<&RecordedLease<'_>>,
        _now: OffsetDateTime,
    ) -> bool {
        false
    }
}

pub fn the_store_asks_its_liveness_policy(f: &dyn Factory) {
    let store = open_with(f, Arc::new(NobodyAlive));
    let id = sandbox(&*store, "judged");
    store
        .acquire_lease_as(&id, "run", MINUTE, &other("a"))
        .unwrap();
    // A live process with an unexpired lease, but the policy says it is gone.
    assert_eq!(store.lease(&id).unwrap(), None);
    let taken = store
        .acquire_lease_as(&id, "exec", MINUTE, &other("b"))
        .unwrap();
    let freed = store.expire_dead_leases().unwrap();
    assert_eq!(freed, vec![taken]);

    let [a, b] = ["alpha", "beta"].map(|name| sandbox(&*store, name));
    assert_eq!(
        store.pool_try_acquire_as(GPU, &a, 1, &other("a")).unwrap(),
        PoolTry::Granted
    );
    assert_eq!(
        store.pool_try_acquire_as(GPU, &b, 1, &other("b")).unwrap(),
        PoolTry::Granted,
        "alpha's slot was pruned as dead"
    );
    assert_eq!(store.pool_usage(GPU).unwrap(), (vec![], vec![]));
}

pub fn ttl_a_lease_whose_pid_died_is_held_until_it_expires(f: &dyn Factory) {
    let store = open_with(f, Arc::new(TtlLiveness));
    let id = sandbox(&*store, "elsewhere");
    // A pid that is dead here: under TTL liveness it says nothing (it may be another host's).
    let lease = store
        .acquire_lease_as(&id, "run", MINUTE, &dead("crashed"))
        .unwrap();
    assert_eq!(store.lease(&id).unwrap(), Some(lease.clone()));
    let err = store
        .acquire_lease_as(&id, "exec", MINUTE, &other("next"))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Busy { holder, .. } if holder == "crashed"),
        "{err:?}"
    );
    assert!(store.expire_dead_leases().unwrap().is_empty());
    assert_eq!(store.lease(&id).unwrap(), Some(lease));
}

pub fn ttl_an_expired_lease_is_not_held_even_if_its_process_runs(f: &dyn Factory) {
    let store = open_with(f, Arc::new(TtlLiveness));
    let id = sandbox(&*store, "lapsed");
    store
        .acquire_lease_as(&id, "run", Duration::ZERO, &other("alive-but-silent"))
        .unwrap();
    assert_eq!(store.lease(&id).unwrap(), None);
    let freed = store.expire_dead_leases().unwrap();
    assert_eq!(
        freed.iter().map(|l| l.holder.as_str()).collect::<Vec<_>>(),
        vec!["alive-but-silent"]
    );
    store
        .acquire_lease_as(&id, "exec", MINUTE, &other("next"))
        .unwrap();

    // A dead pid whose lease runs out is replaced once it has, not before.
    let short = Duration::from_millis(300);
    let id = sandbox(&*store, "crashed-then-lapsed");
    store
        .acquire_lease_as(&id, "run", short, &dead("crashed"))
        .unwrap();
    assert!(matches!(
        store.acquire_lease_as(&id, "exec", MINUTE, &other("next")),
        Err(StoreError::Busy { .. })
    ));
    std::thread::sleep(short + Duration::from_millis(50));
    assert_eq!(store.lease(&id).unwrap(), None);
    let taken = store
        .acquire_lease_as(&id, "exec", MINUTE, &other("next"))
        .unwrap();
    assert_eq!(store.lease(&id).unwrap(), Some(taken));
}

pub fn ttl_a_pool_entry_lives_as_long_as_its_holders_lease(f: &dyn Factory) {
    let store = open_with(f, Arc::new(TtlLiveness));
    let [a, b, c] = ["alpha", "beta", "gamma"].map(|name| sandbox(&*store, name));
    let short = Duration::from_millis(400);
    let far = dead("far-away");
    store.acquire_lease_as(&a, "run", short, &far).unwrap();
    assert_eq!(
        store.pool_try_acquire_as(GPU, &a, 1, &far).unwrap(),
        PoolTry::Granted
    );
    let near = other("near");
    store.acquire_lease_as(&b, "run", MINUTE, &near).unwrap();
    // alpha's pid is dead here, but its lease is live: its slot still counts.
    assert_eq!(
        store.pool_try_acquire_as(GPU, &b, 1, &near).unwrap(),
        waiting(1, &["alpha"])
    );
    // gamma's holder holds no lease on gamma, so its queue place does not count.
    store
        .pool_try_acquire_as(GPU, &c, 1, &other("leaseless"))
        .unwrap();
    assert_eq!(
        store.pool_usage(GPU).unwrap(),
        (vec![a.clone()], vec![b.clone()])
    );

    std::thread::sleep(short + Duration::from_millis(50));
    assert_eq!(
        store.pool_try_acquire_as(GPU, &b, 1, &near).unwrap(),
        PoolTry::Granted,
        "alpha's lease expired, and its slot with it"
    );
    assert_eq!(store.pool_usage(GPU).unwrap(), (vec![b.clone()], vec![]));

    // Releasing the lease ends the slot too.
    store.release_lease_as(&b, &near).unwrap();
    assert_eq!(store.pool_usage(GPU).unwrap(), (vec![], vec![]));
}
