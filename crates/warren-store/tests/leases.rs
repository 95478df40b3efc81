//! Operation leases on a real database file: a live holder excludes others, an expired or dead
//! holder is taken over, only the holder renews or releases, and the exclusion holds between
//! separate processes racing for the same sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{dead_pid, new_sandbox};
use warren_domain::{ReasonCode, SandboxId, UserFacing};
use warren_store::{LeaseHolder, Store, StoreError, lease_holder_for_this_process};

const MINUTE: Duration = Duration::from_secs(60);

/// A live holder that is not this test's own identity: same (running) process, other name.
fn other(name: &str) -> LeaseHolder {
    LeaseHolder {
        name: name.into(),
        ..LeaseHolder::this_process()
    }
}

fn sandbox(store: &Store, name: &str) -> SandboxId {
    store.create_sandbox(new_sandbox(name)).unwrap().id
}

#[test]
fn a_live_holder_excludes_others_until_it_releases() {
    let (_dir, store) = common::file_store();
    let id = sandbox(&store, "fix-login");
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

#[test]
fn the_same_holder_reacquires_with_the_new_operation() {
    let (_dir, store) = common::file_store();
    let id = sandbox(&store, "reentrant");
    store.acquire_lease(&id, "run", MINUTE).unwrap();
    let again = store.acquire_lease(&id, "export", 2 * MINUTE).unwrap();
    assert_eq!(store.lease(&id).unwrap(), Some(again.clone()));
    assert_eq!(again.operation, "export");
}

#[test]
fn an_expired_lease_is_taken_over() {
    let (_dir, store) = common::file_store();
    let id = sandbox(&store, "expiring");
    store
        .acquire_lease_as(&id, "run", Duration::ZERO, &other("a"))
        .unwrap();
    assert_eq!(store.lease(&id).unwrap(), None);
    store
        .acquire_lease_as(&id, "exec", MINUTE, &other("b"))
        .unwrap();

    let short = Duration::from_millis(300);
    let id = sandbox(&store, "short-ttl");
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

#[test]
fn a_dead_holder_is_taken_over_before_its_lease_expires() {
    let (_dir, store) = common::file_store();
    let id = sandbox(&store, "orphan");
    let dead = LeaseHolder {
        name: "crashed".into(),
        pid: dead_pid(),
        start_time: 1,
    };
    store.acquire_lease_as(&id, "run", MINUTE, &dead).unwrap();
    assert_eq!(store.lease(&id).unwrap(), None);
    let taken = store.acquire_lease(&id, "gc", MINUTE).unwrap();
    assert_eq!(taken.holder, lease_holder_for_this_process());

    // A running process under the recorded pid is not the holder if it started at another time.
    let id = sandbox(&store, "reused-pid");
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

#[test]
fn only_the_holder_renews() {
    let (_dir, store) = common::file_store();
    let id = sandbox(&store, "renewing");
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

#[test]
fn expire_dead_leases_removes_only_expired_and_dead_ones() {
    let (_dir, store) = common::file_store();
    let live = sandbox(&store, "live");
    let expired = sandbox(&store, "expired");
    let orphaned = sandbox(&store, "orphaned");
    let dead = LeaseHolder {
        name: "crashed".into(),
        pid: dead_pid(),
        start_time: 1,
    };
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

const RACE_DB: &str = "WARREN_LEASE_RACE_DB";
const RACE_SANDBOX: &str = "WARREN_LEASE_RACE_SANDBOX";
const RACE_HOLDER: &str = "WARREN_LEASE_RACE_HOLDER";
const RACE_LOG: &str = "WARREN_LEASE_RACE_LOG";
const RACERS: usize = 4;
const ROUNDS: usize = 50;
const HOLD: Duration = Duration::from_millis(3);

#[test]
fn the_lease_is_exclusive_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warren.db");
    let log = dir.path().join("race.log");
    let id = sandbox(&Store::open(&db).unwrap(), "contended");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..RACERS)
        .map(|n| {
            Command::new(&exe)
                .args(["--exact", "lease_race_child", "--nocapture", "--ignored"])
                .env(RACE_DB, &db)
                .env(RACE_SANDBOX, id.as_str())
                .env(RACE_HOLDER, format!("racer-{n}"))
                .env(RACE_LOG, &log)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        // A racer prints a few lines at most, far below a pipe's capacity, so waiting in turn
        // cannot deadlock.
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a racer failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let text = std::fs::read_to_string(&log).unwrap();
    let mut holding: Option<&str> = None;
    let mut acquired = std::collections::BTreeMap::<&str, usize>::new();
    let mut busy = 0;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["acquire", name, _t] => {
                assert_eq!(
                    holding, None,
                    "{name} acquired while {holding:?} held: {line}"
                );
                holding = Some(name);
                *acquired.entry(name).or_default() += 1;
            }
            ["release", name, _t] => {
                assert_eq!(holding, Some(*name), "release without holding: {line}");
                holding = None;
            }
            ["done", _name, count] => busy += count.parse::<usize>().unwrap(),
            _ => panic!("unexpected log line {line:?}"),
        }
    }
    assert_eq!(holding, None);
    assert_eq!(acquired.len(), RACERS, "{acquired:?}");
    assert!(acquired.values().all(|n| *n == ROUNDS), "{acquired:?}");
    // Without contention the check above would prove nothing.
    assert!(
        busy > 0,
        "no racer was ever refused; the processes did not overlap"
    );
    assert_eq!(Store::open(&db).unwrap().lease(&id).unwrap(), None);
}

/// One racer of `the_lease_is_exclusive_across_processes`, run as its own process.
#[test]
#[ignore = "a child process of the_lease_is_exclusive_across_processes"]
fn lease_race_child() {
    let Ok(db) = std::env::var(RACE_DB) else {
        return;
    };
    let id = SandboxId::from_stored(std::env::var(RACE_SANDBOX).unwrap());
    let name = std::env::var(RACE_HOLDER).unwrap();
    let log_path = std::env::var(RACE_LOG).unwrap();
    let store = Store::open(Path::new(&db)).unwrap();
    let me = LeaseHolder {
        name: name.clone(),
        ..LeaseHolder::this_process()
    };
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log_path)
        .unwrap();
    // One write(2) per line on an O_APPEND file, so racers' lines never interleave.
    let mut record = |what: &str| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros();
        let line = format!("{what} {name} {t}\n");
        assert_eq!(log.write(line.as_bytes()).unwrap(), line.len());
    };
    let mut busy = 0_usize;
    for _ in 0..ROUNDS {
        loop {
            match store.acquire_lease_as(&id, "race", MINUTE, &me) {
                Ok(_) => break,
                Err(StoreError::Busy { .. }) => {
                    busy += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(other) => {
                    panic!("{name}: acquiring failed with something other than Busy: {other}")
                }
            }
        }
        record("acquire");
        std::thread::sleep(HOLD);
        record("release");
        store.release_lease_as(&id, &me).unwrap();
    }
    let line = format!("done {name} {busy}\n");
    assert_eq!(log.write(line.as_bytes()).unwrap(), line.len());
}
