//! Operation leases: a live holder excludes others, an expired or dead holder is taken over,
//! only the holder renews or releases. Racing handles are in `races`; racing processes in the
//! SQLite store's own tests.

use std::time::Duration;

use warren_domain::{ReasonCode, UserFacing};

use super::{Factory, dead, open, other, sandbox};
use crate::{LeaseHolder, StoreError, lease_holder_for_this_process};

pub(crate) const MINUTE: Duration = Duration::from_secs(60);

pub fn a_live_holder_excludes_others_until_it_releases(f: &dyn Factory) {
    let store = open(f);
    let id = sandbox(&*store, "fix-login");
    let lease = store.acquire_lease(&id, "export", MINUTE).unwrap();
    assert_eq!(lease.holder, lease_holder_for_this_process());
    assert_eq!(lease.pid, Some(std::process::id()));
    assert!(lease.expires_at > lease.acquired_at);

    let err = store
        .acquire_lease_as(&id, "exec", MINUTE, &other("someone-else"))
        .unwrap_err();
    let StoreError::Busy {
        sandbox,
        holder,
        operation,
        ..
    } = &err
    else {
        panic!("expected Busy, got {err:?}");
    };
    assert_eq!(
        (sandbox.as_str(), holder.as_str(), operation.as_str()),
        ("fix-login", lease.holder.as_str(), "export")
    );
    assert_eq!(err.reason_code(), ReasonCode::SandboxBusy);
    assert!(err.retryable());
    let message = err.to_string();
    assert!(message.starts_with("sandbox fix-login is busy: export held by pid:"));
    assert!(message.contains(&lease.holder), "{message}");
    assert!(err.hint().unwrap().contains("warren gc"));

    let shown = store.lease(&id).unwrap().unwrap();
    assert_eq!(
        (shown.holder, shown.operation),
        (lease.holder, "export".into())
    );

    // Releasing someone else's lease is a no-op, not a theft.
    store.release_lease_as(&id, &other("someone-else")).unwrap();
    assert!(store.lease(&id).unwrap().is_some());

    store.release_lease(&id).unwrap();
    assert_eq!(store.lease(&id).unwrap(), None);
    let taken = store
        .acquire_lease_as(&id, "exec", MINUTE, &other("someone-else"))
        .unwrap();
    assert_eq!(taken.holder, "someone-else");
    // Nothing to release any more for this process: still fine.
    store.release_lease(&id).unwrap();
}

pub fn the_same_holder_reacquires_with_the_new_operation(f: &dyn Factory) {
    let store = open(f);
    let id = sandbox(&*store, "reentrant");
    store.acquire_lease(&id, "run", MINUTE).unwrap();
    let again = store.acquire_lease(&id, "export", 2 * MINUTE).unwrap();
    assert_eq!(store.lease(&id).unwrap(), Some(again.clone()));
    assert_eq!(again.operation, "export");
}

pub fn an_expired_lease_is_taken_over(f: &dyn Factory) {
    let store = open(f);
    let id = sandbox(&*store, "expiring");
    store
        .acquire_lease_as(&id, "run", Duration::ZERO, &other("a"))
        .unwrap();
    assert_eq!(store.lease(&id).unwrap(), None);
    store
        .acquire_lease_as(&id, "exec", MINUTE, &other("b"))
        .unwrap();

    let short = Duration::from_millis(300);
    let id = sandbox(&*store, "short-ttl");
    store
        .acquire_lease_as(&id, "run", short, &other("a"))
        .unwrap();
    assert!(matches!(
        store.acquire_lease_as(&id, "exec", MINUTE, &other("b")),
        Err(StoreError::Busy { .. })
    ));
    std::thread::sleep(short + Duration::from_millis(50));
    let taken = store
        .acquire_lease_as(&id, "exec", MINUTE, &other("b"))
        .unwrap();
    assert_eq!(store.lease(&id).unwrap(), Some(taken));
}

pub fn a_dead_holder_is_taken_over_before_its_lease_expires(f: &dyn Factory) {
    let store = open(f);
    let id = sandbox(&*store, "orphan");
    let dead = dead("crashed");
    store.acquire_lease_as(&id, "run", MINUTE, &dead).unwrap();
    assert_eq!(store.lease(&id).unwrap(), None);
    let taken = store.acquire_lease(&id, "gc", MINUTE).unwrap();
    assert_eq!(taken.holder, lease_holder_for_this_process());

    // A running process under the recorded pid is not the holder if it started at another time.
    let id = sandbox(&*store, "reused-pid");
    let me = LeaseHolder::this_process();
    let reused = LeaseHolder {
        name: "earlier-owner-of-this-pid".into(),
        start_time: me.start_time + 1,
        ..me
    };
    store.acquire_lease_as(&id, "run", MINUTE, &reused).unwrap();
    assert_eq!(store.lease(&id).unwrap(), None);
    store
        .acquire_lease_as(&id, "exec", MINUTE, &other("next"))
        .unwrap();
}

pub fn only_the_holder_renews(f: &dyn Factory) {
    let store = open(f);
    let id = sandbox(&*store, "renewing");
    let first = store
        .acquire_lease(&id, "run", Duration::from_secs(5))
        .unwrap();

    let err = store
        .renew_lease_as(&id, MINUTE, &other("intruder"))
        .unwrap_err();
    assert!(matches!(&err, StoreError::LeaseLost { sandbox } if sandbox == "renewing"));
    assert_eq!(err.reason_code(), ReasonCode::SandboxBusy);
    assert!(
        err.to_string()
            .contains("expired or was taken by another process")
    );

    let renewed = store.renew_lease(&id, MINUTE).unwrap();
    assert!(renewed.expires_at > first.expires_at);
    assert_eq!(renewed.acquired_at, first.acquired_at);
    assert_eq!(store.lease(&id).unwrap(), Some(renewed));

    store.release_lease(&id).unwrap();
    assert!(matches!(
        store.renew_lease(&id, MINUTE),
        Err(StoreError::LeaseLost { .. })
    ));
}

pub fn expire_dead_leases_removes_only_expired_and_dead_ones(f: &dyn Factory) {
    let store = open(f);
    let live = sandbox(&*store, "live");
    let expired = sandbox(&*store, "expired");
    let orphaned = sandbox(&*store, "orphaned");
    let dead = dead("crashed");
    store.acquire_lease(&live, "run", MINUTE).unwrap();
    store
        .acquire_lease_as(&expired, "run", Duration::ZERO, &other("slow"))
        .unwrap();
    store
        .acquire_lease_as(&orphaned, "run", MINUTE, &dead)
        .unwrap();

    let mut freed: Vec<_> = store
        .expire_dead_leases()
        .unwrap()
        .into_iter()
        .map(|lease| (lease.sandbox_id, lease.holder))
        .collect();
    freed.sort();
    let mut want = vec![
        (expired, "slow".to_owned()),
        (orphaned.clone(), "crashed".into()),
    ];
    want.sort();
    assert_eq!(freed, want);
    assert!(store.lease(&live).unwrap().is_some());
    assert!(store.expire_dead_leases().unwrap().is_empty());
    // The freed sandbox's row is really gone, not just reported dead.
    store
        .acquire_lease_as(&orphaned, "exec", MINUTE, &other("next"))
        .unwrap();
}
