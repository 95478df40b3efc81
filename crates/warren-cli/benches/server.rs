#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `cargo bench -p warren-cli --bench server` (part of `make bench`): the server's figures for
//! issue 10, each next to a baseline measured in the same run.
//!
//! - reads with 1,000 sandbox records in the store: `GET /v1/sandboxes/{name}` and the first page
//!   of `GET /v1/sandboxes` (100 records), p50/p99, on SQLite and on PostgreSQL, as an owner's
//!   token (so the owner filter runs), against `GET /healthz` (no store, no auth) in the same run.
//! - an event's latency from a store write to an SSE client of a replica that did not write it:
//!   this process appends through its own store handle (another replica's supervisor), the
//!   `warren serve` replica streams with `?follow=true`; on PostgreSQL (NOTIFY) against SQLite
//!   (the same client of a second process, which polls).
//!
//! The records are inserted through the store API (no agent). Each server is the real `warren`
//! binary on a free loopback port, stopped by its pid. PostgreSQL is the throwaway server of
//! `warren_store_postgres::testing`. Environment: `WARREN_BENCH_READS` (requests per figure,
//! default 500), `WARREN_BENCH_EVENTS` (events per store, default 200).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use warren_domain::{AgentEvent, SandboxId, SandboxName, SandboxState};
use warren_store::{NewSandbox, StateStore, TenancyStore};
use warren_store_postgres::{PostgresStore, testing};

const RECORDS: usize = 1000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (p50, p99) in milliseconds.
fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.50), at(0.99))
}

struct Served {
    child: Child,
    base: String,
}

impl Served {
    fn start(data: &Path, store: Option<&str>) -> Served {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("WARREN_DATA_DIR", data)
            .env("HOME", data)
            .env("WARREN_CONFIG", data.join("config.toml"))
            .env_remove("WARREN_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(store) = store {
            cmd.args(["--store", store]);
        }
        let child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "warren serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Served { child, base }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// 1,000 settled sandboxes owned by alice, and her token.
fn fill(store: &dyn StateStore, tenancy: &dyn TenancyStore) -> String {
    for i in 0..RECORDS {
        let record = store
            .create_sandbox(NewSandbox {
                id: SandboxId::new(),
                name: SandboxName::parse(&format!("sandbox-{i:04}")).unwrap(),
                repo: PathBuf::from("/srv/repo"),
                provider: "local".into(),
                model: Some("scripted/scripted".into()),
                prompt: Some("fix the login test".into()),
                role: None,
            })
            .unwrap();
        store
            .transition(&record.id, SandboxState::Error, Some("bench"))
            .unwrap();
        tenancy.set_owner(&record.id, "alice").unwrap();
    }
    warren_server::create_token(tenancy, "alice", false)
        .unwrap()
        .0
}

async fn time_gets(http: &reqwest::Client, url: &str, token: &str, n: usize) -> (f64, f64) {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = http.get(url).bearer_auth(token).send().await.unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        let _ = resp.bytes().await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    percentiles(ms)
}

struct Reads {
    health: (f64, f64),
    one: (f64, f64),
    page: (f64, f64),
}

async fn reads(served: &Served, token: &str, n: usize) -> Reads {
    let http = reqwest::Client::new();
    let base = &served.base;
    // Warm the connection and the server's caches.
    time_gets(&http, &format!("{base}/v1/sandboxes?limit=100"), token, 20).await;
    Reads {
        health: time_gets(&http, &format!("{base}/healthz"), token, n).await,
        one: time_gets(
            &http,
            &format!("{base}/v1/sandboxes/sandbox-0500"),
            token,
            n,
        )
        .await,
        page: time_gets(&http, &format!("{base}/v1/sandboxes?limit=100"), token, n).await,
    }
}

/// Appends `n` events through `store` (this process: another replica's writer) and times each
/// until the served replica's SSE client has it.
async fn event_latency(
    served: &Served,
    token: &str,
    store: Arc<dyn StateStore>,
    id: &SandboxId,
    name: &str,
    n: usize,
) -> (f64, f64) {
    let http = reqwest::Client::new();
    let resp = http
        .get(format!(
            "{}/v1/sandboxes/{name}/events?follow=true",
            served.base
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events = resp.bytes_stream().eventsource();
    // Let the stream settle (its first read, the store's listener) before timing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        let (store, id2) = (store.clone(), id.clone());
        let t = Instant::now();
        let written = tokio::task::spawn_blocking(move || {
            store
                .append_event(
                    &id2,
                    &AgentEvent::Text {
                        text: format!("event {i}"),
                    },
                )
                .unwrap()
                .seq
        })
        .await
        .unwrap();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .expect("the event never arrived")
                .unwrap()
                .unwrap();
            if event.id.parse::<u64>().unwrap() >= written {
                break;
            }
        }
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        // Spread the writes over the replica's poll period so polling is not measured in phase.
        tokio::time::sleep(Duration::from_millis(7 + (i as u64 * 13) % 40)).await;
    }
    percentiles(ms)
}

fn row(label: &str, r: &Reads) {
    let (h50, h99) = r.health;
    println!(
        "  {label:<10} GET one: p50 {:.2} ms, p99 {:.2} ms | first page (100): p50 {:.2} ms, p99 {:.2} ms | baseline /healthz: p50 {h50:.2} ms, p99 {h99:.2} ms",
        r.one.0, r.one.1, r.page.0, r.page.1
    );
}

fn watched(store: &dyn StateStore, tenancy: &dyn TenancyStore) -> (SandboxId, String) {
    let record = store
        .create_sandbox(NewSandbox {
            id: SandboxId::new(),
            name: SandboxName::parse("watched").unwrap(),
            repo: PathBuf::from("/srv/repo"),
            provider: "local".into(),
            model: None,
            prompt: None,
            role: None,
        })
        .unwrap();
    store
        .transition(&record.id, SandboxState::Error, Some("bench"))
        .unwrap();
    tenancy.set_owner(&record.id, "alice").unwrap();
    (record.id, "watched".into())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n = env_usize("WARREN_BENCH_READS", 500);
    let events = env_usize("WARREN_BENCH_EVENTS", 200);
    println!("warren serve with {RECORDS} sandbox records ({n} requests per figure)");

    // SQLite in the data dir.
    let sqlite_dir = tempfile::tempdir().unwrap();
    std::fs::write(sqlite_dir.path().join("config.toml"), "").unwrap();
    let sqlite = Arc::new(
        warren_store::Store::open(&warren_store::default_db_path(sqlite_dir.path())).unwrap(),
    );
    let token = fill(&*sqlite, &*sqlite);
    let (id, name) = watched(&*sqlite, &*sqlite);
    let served = Served::start(sqlite_dir.path(), None);
    let sqlite_reads = reads(&served, &token, n).await;
    row("SQLite", &sqlite_reads);
    let sqlite_events = event_latency(&served, &token, sqlite.clone(), &id, &name, events).await;
    drop(served);

    // PostgreSQL: this process's handle is one replica, the served one another.
    let Some(pg) = testing::shared() else {
        println!("  PostgreSQL: skipped (no server binaries)");
        return;
    };
    let url = pg.fresh_database();
    let pg_dir = tempfile::tempdir().unwrap();
    std::fs::write(pg_dir.path().join("config.toml"), "").unwrap();
    let store = Arc::new(PostgresStore::open(&url).unwrap());
    let token = fill(&*store, &*store);
    let (id, name) = watched(&*store, &*store);
    let served = Served::start(pg_dir.path(), Some(&url));
    let pg_reads = reads(&served, &token, n).await;
    row("PostgreSQL", &pg_reads);
    let pg_events = event_latency(&served, &token, store.clone(), &id, &name, events).await;
    drop(served);

    println!(
        "event latency, store write -> SSE client of another process ({events} events): \
         PostgreSQL (NOTIFY) p50 {:.2} ms, p99 {:.2} ms | baseline SQLite (poll): p50 {:.2} ms, p99 {:.2} ms",
        pg_events.0, pg_events.1, sqlite_events.0, sqlite_events.1
    );
}
