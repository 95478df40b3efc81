//! Concurrency pools between real processes: runs queued by separate warren processes on one
//! store start strictly in the order they queued, and with one slot they never overlap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::new_sandbox;
use warren_domain::SandboxId;
use warren_store::{PoolTry, StateStore, Store};

const GPU: &str = "gpu";

fn sandbox(store: &Store, name: &str) -> SandboxId {
    store.create_sandbox(new_sandbox(name)).unwrap().id
}

const FIFO_DB: &str = "WARREN_POOL_FIFO_DB";
const FIFO_SANDBOX: &str = "WARREN_POOL_FIFO_SANDBOX";
const FIFO_N: &str = "WARREN_POOL_FIFO_N";
const FIFO_LOG: &str = "WARREN_POOL_FIFO_LOG";
const CHILDREN: usize = 3;
const HOLD: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(20);
/// Far beyond what the test needs, so a broken queue fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn runs_start_in_the_order_they_queued_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warren.db");
    let log = dir.path().join("fifo.log");
    let store = Store::open(&db).unwrap();
    // The test holds the only slot while the children queue, so all of them really wait.
    let blocker = sandbox(&store, "blocker");
    assert_eq!(
        store.pool_try_acquire(GPU, &blocker, 1).unwrap(),
        PoolTry::Granted
    );
    let exe = std::env::current_exe().unwrap();

    let mut children: Vec<Child> = Vec::new();
    for n in 1..=CHILDREN {
        let id = sandbox(&store, &format!("run-{n}"));
        children.push(
            Command::new(&exe)
                .args(["--exact", "pool_fifo_child", "--nocapture", "--ignored"])
                .env(FIFO_DB, &db)
                .env(FIFO_SANDBOX, id.as_str())
                .env(FIFO_N, n.to_string())
                .env(FIFO_LOG, &log)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // The next child starts only once this one holds its ticket, so the queue order is known.
        let deadline = Instant::now() + PATIENCE;
        while !store.pool_usage(GPU).unwrap().1.contains(&id) {
            assert!(Instant::now() < deadline, "child {n} never queued");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    store.pool_release(GPU, &blocker).unwrap();

    for child in children {
        // A child prints a few lines at most, far below a pipe's capacity, so waiting in turn
        // cannot deadlock.
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a child failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let text = std::fs::read_to_string(&log).unwrap();
    let mut starts = Vec::new();
    let mut running: Option<(usize, u128)> = None;
    let mut last_end = 0_u128;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [what, n, t] = fields.as_slice() else {
            panic!("unexpected log line {line:?}");
        };
        let (n, t): (usize, u128) = (n.parse().unwrap(), t.parse().unwrap());
        match *what {
            "start" => {
                assert_eq!(running, None, "{n} started while {running:?} ran:\n{text}");
                assert!(
                    t >= last_end,
                    "{n} started before the previous run ended:\n{text}"
                );
                running = Some((n, t));
                starts.push(n);
            }
            "end" => {
                assert_eq!(
                    running.map(|(r, _)| r),
                    Some(n),
                    "end without start:\n{text}"
                );
                last_end = t;
                running = None;
            }
            _ => panic!("unexpected log line {line:?}"),
        }
    }
    assert_eq!(running, None, "{text}");
    assert_eq!(starts, (1..=CHILDREN).collect::<Vec<_>>(), "{text}");
    assert_eq!(store.pool_usage(GPU).unwrap(), (vec![], vec![]));
}

/// One queued run of `runs_start_in_the_order_they_queued_across_processes`, as its own process.
#[test]
#[ignore = "a child process of runs_start_in_the_order_they_queued_across_processes"]
fn pool_fifo_child() {
    let Ok(db) = std::env::var(FIFO_DB) else {
        return;
    };
    let id = SandboxId::from_stored(std::env::var(FIFO_SANDBOX).unwrap());
    let n: usize = std::env::var(FIFO_N).unwrap().parse().unwrap();
    let store = Store::open(Path::new(&db)).unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(std::env::var(FIFO_LOG).unwrap())
        .unwrap();
    // One write(2) per line on an O_APPEND file, so children's lines never interleave.
    let mut record = |what: &str| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros();
        let line = format!("{what} {n} {t}\n");
        assert_eq!(log.write(line.as_bytes()).unwrap(), line.len());
    };

    let deadline = Instant::now() + PATIENCE;
    let mut first = true;
    loop {
        match store.pool_try_acquire(GPU, &id, 1).unwrap() {
            PoolTry::Granted => break,
            PoolTry::Waiting { position, holders } => {
                if first {
                    // Everyone queued earlier is still waiting behind the test's blocker.
                    assert_eq!((position, holders), (n, vec!["blocker".to_owned()]));
                    first = false;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "child {n} was never granted a slot"
        );
        // Later children ask more often, so a queue that ignored tickets would let them jump it.
        std::thread::sleep(POLL / u32::try_from(n).unwrap());
    }
    assert!(
        !first,
        "child {n} was granted without waiting behind the blocker"
    );
    record("start");
    std::thread::sleep(HOLD);
    record("end");
    store.pool_release(GPU, &id).unwrap();
}
