//! What only the SQLite store has: opening a file (directories, WAL, errors), concurrent first
//! opens of a fresh file, one handle shared between threads, and lease exclusion between real
//! processes. The behaviour every implementation shares is the conformance suite
//! (`tests/conformance.rs`); pools between processes are in `pools_across_processes.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{file_store, new_sandbox};
use warren_domain::{ReasonCode, SandboxId, SandboxState, UserFacing};
use warren_store::{LeaseHolder, StateStore, Store, StoreError, default_db_path};

const MINUTE: Duration = Duration::from_secs(60);

fn sandbox(store: &Store, name: &str) -> SandboxId {
    store.create_sandbox(new_sandbox(name)).unwrap().id
}

#[test]
fn the_store_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();

    // One handle used from several threads at once: each call takes the connection in turn.
    let (_dir, store) = file_store();
    let store = std::sync::Arc::new(store);
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                let rec = store
                    .create_sandbox(new_sandbox(&format!("shared-{n}")))
                    .unwrap();
                store
                    .transition(&rec.id, SandboxState::Provisioning, None)
                    .unwrap();
                store.get(&rec.id).unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().state, SandboxState::Provisioning);
    }
    assert_eq!(store.list(false).unwrap().len(), 4);
}

#[test]
fn open_creates_parent_dirs_and_turns_on_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = default_db_path(&dir.path().join("a").join("b"));
    assert!(path.ends_with("a/b/warren.db"));
    let store = Store::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(store.path(), path);

    // A second connection sees WAL too: the mode is persistent in the file.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    // Reopening an existing store runs no migration and keeps the data.
    let rec = store.create_sandbox(new_sandbox("again")).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get(&rec.id).unwrap(), rec);
}

#[test]
fn open_reports_an_unusable_path_as_store_failed() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let err = Store::open(&blocker.join("warren.db")).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::StoreFailed);
    let info = err.to_error_info();
    assert!(info.message.contains("warren.db"), "{}", info.message);
    assert!(info.hint.unwrap().contains("WARREN_DATA_DIR"));
}

#[test]
fn concurrent_first_opens_of_a_fresh_file_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh").join("warren.db");
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                let rec = store
                    .create_sandbox(new_sandbox(&format!("open-{i}")))
                    .unwrap();
                store
                    .transition(&rec.id, SandboxState::Provisioning, None)
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(Store::open(&path).unwrap().list(false).unwrap().len(), 8);
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
