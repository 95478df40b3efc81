//! Several `warren serve` replicas on one PostgreSQL (the per-binary test server of
//! `warren_store_postgres::testing`), sharing one data dir as replicas sharing a filesystem
//! would: any replica answers any read, streams any sandbox's events and exports and tears down
//! any sandbox; a replica killed mid-run leaves its sandbox to the others, which mark it lost
//! once its lease lapses and still export its work; a replica stopped with SIGTERM settles its
//! sandbox and releases the lease. Real OpenCode, real bubblewrap, the scripted model.

use std::time::Duration;

use serde_json::{Value, json};
use warren_domain::{SandboxId, SandboxName};
use warren_store::StateStore;
use warren_store_postgres::{PostgresStore, testing};

use super::harness::{Fixture, bash_turn, git, scenario, text_turn, when_turn};
use super::http::{Server, json_of, sse, token_in};

/// A lease lapses this fast here, so a lost replica is noticed in seconds (the default is 30).
const LEASE_TTL_SECS: &str = "3";
/// The states only a live supervisor may leave a sandbox in.
const SUPERVISED: [&str; 6] = [
    "new",
    "queued",
    "provisioning",
    "running",
    "saving",
    "tearing_down",
];

/// A fresh database on the shared test server, or `None` (after saying why) when the machine has
/// no PostgreSQL server binaries.
fn database() -> Option<String> {
    testing::shared().map(testing::TestServer::fresh_database)
}

async fn get(server: &Server, token: &str, name: &str) -> Value {
    let (status, body) = json_of(
        server
            .http
            .get(server.url(&format!("/v1/sandboxes/{name}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["sandbox"].clone()
}

async fn post(server: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    json_of(
        server
            .http
            .post(server.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The number of agent (tool-carrying) requests the scripted model has received.
fn agent_calls(fx: &Fixture) -> usize {
    fx.model
        .as_ref()
        .unwrap()
        .requests()
        .iter()
        .filter(|r| r.has_tools)
        .count()
}

async fn wait_for_agent_calls(fx: &Fixture, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while agent_calls(fx) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent made {} of {n} model calls",
            agent_calls(fx)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sandbox's live lease, read straight from the shared store.
fn lease_of(url: &str, name: &str) -> Option<warren_store::Lease> {
    let store = PostgresStore::open(url).unwrap();
    let record = store
        .get_by_name(&SandboxName::parse(name).unwrap())
        .unwrap();
    let id: SandboxId = record.id;
    store.lease(&id).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_launched_on_one_replica_is_streamed_exported_and_torn_down_on_another() {
    let Some(url) = database() else { return };
    let fx = Fixture::new(&scenario(vec![
        when_turn(
            "shared task",
            bash_turn("sleep 1; echo shared > shared.txt"),
        ),
        when_turn("shared task", text_turn("shared done")),
    ]))
    .await;
    // One token, made once in the shared store, works on both replicas.
    let alice = token_in(&fx, "alice", Some(&url)).await;
    let a = Server::start_with(&fx, Some(&url), &[]).await;
    let b = Server::start_with(&fx, Some(&url), &[]).await;

    let (status, launched) = post(
        &a,
        &alice,
        "/v1/sandboxes",
        json!({ "repository": fx.repo, "name": "shared", "prompt": "the shared task" }),
    )
    .await;
    assert_eq!(status, 201, "{launched}");

    // B streams A's run as it is written, to its end, with no gap and no duplicate.
    let events = sse(
        b.http
            .get(b.url("/v1/sandboxes/shared/events"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
        usize::MAX,
    )
    .await;
    let seqs: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        events
            .iter()
            .any(|(_, e)| e["type"] == "tool_use" && e["tool"] == "bash"),
        "{events:?}"
    );
    assert_eq!(get(&b, &alice, "shared").await["state"], "completed");
    let (_, listed) = json_of(
        a.http
            .get(a.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["sandboxes"][0]["name"], "shared", "{listed}");

    let (status, exported) = post(&b, &alice, "/v1/sandboxes/shared/export", json!({})).await;
    assert_eq!(status, 200, "{exported}");
    assert_eq!(
        git(&fx.repo, &["show", "warren/shared:shared.txt"]),
        "shared\n"
    );
    let (status, down) = json_of(
        b.http
            .delete(b.url("/v1/sandboxes/shared"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{down}");
    assert_eq!(get(&a, &alice, "shared").await["state"], "destroyed");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_run_leaves_its_sandbox_lost_on_the_other_with_its_work_exportable() {
    let Some(url) = database() else { return };
    let fx = Fixture::new(&scenario(vec![
        bash_turn("echo kept > kept.txt"),
        json!({ "fault": { "kind": "hang" } }),
    ]))
    .await;
    let ttl = [("WARREN_LEASE_TTL_SECS", LEASE_TTL_SECS)];
    let alice = token_in(&fx, "alice", Some(&url)).await;
    // B first, so B leads the reconciler and sweeps while A runs the sandbox.
    let b = Server::start_with(&fx, Some(&url), &ttl).await;
    let a = Server::start_with(&fx, Some(&url), &ttl).await;

    let (status, launched) = post(
        &a,
        &alice,
        "/v1/sandboxes",
        json!({ "repository": fx.repo, "name": "crash", "prompt": "write and wait" }),
    )
    .await;
    assert_eq!(status, 201, "{launched}");
    // The file is written and the agent waits on the model: A is mid-run.
    wait_for_agent_calls(&fx, 2).await;
    // Over more than two lease lifetimes B's reconciler sees A's renewed lease as alive.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(lease_of(&url, "crash").is_some(), "A supervises it");
    assert_eq!(get(&b, &alice, "crash").await["state"], "running");

    a.kill().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let lost = loop {
        let sandbox = get(&b, &alice, "crash").await;
        if sandbox["state"] != "running" {
            break sandbox;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never marked the sandbox lost"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(lost["state"], "error", "{lost}");
    assert_eq!(lost["error"]["reason_code"], "supervisor_lost", "{lost}");

    let (status, exported) = post(&b, &alice, "/v1/sandboxes/crash/export", json!({})).await;
    assert_eq!(status, 200, "{exported}");
    assert_eq!(git(&fx.repo, &["show", "warren/crash:kept.txt"]), "kept\n");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_stopped_with_sigterm_settles_its_sandbox_and_releases_the_lease() {
    let Some(url) = database() else { return };
    let fx = Fixture::new(&scenario(vec![
        bash_turn("echo drained > drained.txt"),
        json!({ "fault": { "kind": "hang" } }),
    ]))
    .await;
    let ttl = [("WARREN_LEASE_TTL_SECS", LEASE_TTL_SECS)];
    let alice = token_in(&fx, "alice", Some(&url)).await;
    let a = Server::start_with(&fx, Some(&url), &ttl).await;
    let b = Server::start_with(&fx, Some(&url), &ttl).await;

    let (status, launched) = post(
        &a,
        &alice,
        "/v1/sandboxes",
        json!({ "repository": fx.repo, "name": "drain", "prompt": "write and wait" }),
    )
    .await;
    assert_eq!(status, 201, "{launched}");
    wait_for_agent_calls(&fx, 2).await;

    a.stop().await;
    // Settled by A itself before it exited: not running, not lost, and no lease left behind.
    let settled = get(&b, &alice, "drain").await;
    let state = settled["state"].as_str().unwrap();
    assert!(
        !SUPERVISED.contains(&state),
        "{state} still needs a supervisor: {settled}"
    );
    assert_ne!(
        settled["error"]["reason_code"], "supervisor_lost",
        "{settled}"
    );
    assert!(lease_of(&url, "drain").is_none(), "the lease was released");
    let (status, exported) = post(&b, &alice, "/v1/sandboxes/drain/export", json!({})).await;
    assert_eq!(status, 200, "{exported}");
    assert_eq!(
        git(&fx.repo, &["show", "warren/drain:drained.txt"]),
        "drained\n"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_or_unreachable_store_is_a_clear_error_and_creates_nothing() {
    let fx = Fixture::new(&scenario(vec![text_turn("unused")])).await;
    // Port 1 on loopback: nothing listens there.
    for (store, reason, code, hint) in [
        (
            "mysql://warren@db/warren",
            "invalid_argument",
            2,
            "postgres://",
        ),
        (
            "postgres://warren@127.0.0.1:notaport/db",
            "invalid_argument",
            2,
            "store URL",
        ),
        (
            "postgres://warren@127.0.0.1:1/warren",
            "store_failed",
            4,
            "127.0.0.1:1",
        ),
    ] {
        for args in [
            vec!["token", "create", "--owner", "alice", "--json"],
            vec!["serve", "--listen", "127.0.0.1:0", "--json"],
        ] {
            let out = fx
                .warren_with(&args, |cmd| {
                    cmd.env("WARREN_STORE", store);
                })
                .await;
            let text = super::harness::stdout(&out);
            let error: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{store} {args:?}: not JSON ({e}): {text}"));
            assert_eq!(out.status.code(), Some(code), "{store} {args:?}: {error}");
            assert_eq!(error["error"]["reason_code"], reason, "{store}: {error}");
            assert!(
                error["error"]["hint"].as_str().unwrap().contains(hint),
                "{store}: {error}"
            );
            if reason == "store_failed" {
                assert_eq!(error["error"]["retryable"], true, "{error}");
            }
        }
    }
    assert!(
        !fx.data.join("warren.db").exists(),
        "nothing fell back to SQLite"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_pages_through_an_owners_sandboxes_in_the_store() {
    let Some(url) = database() else { return };
    let fx = Fixture::new(&scenario(vec![text_turn("unused")])).await;
    let store = PostgresStore::open(&url).unwrap();
    let mut alices = Vec::new();
    let mut bobs = Vec::new();
    for i in 0..7 {
        let record = store
            .create_sandbox(warren_store::NewSandbox {
                id: SandboxId::new(),
                name: SandboxName::parse(&format!("listed-{i}")).unwrap(),
                repo: fx.repo.clone(),
                provider: "local".into(),
                model: None,
                prompt: None,
                role: None,
            })
            .unwrap();
        store
            .transition(&record.id, warren_domain::SandboxState::Error, None)
            .unwrap();
        let owner = if i % 3 == 0 { "bob" } else { "alice" };
        warren_store::TenancyStore::set_owner(&store, &record.id, owner).unwrap();
        let name = record.name.to_string();
        if owner == "alice" {
            alices.insert(0, name);
        } else {
            bobs.push(record.id.to_string());
        }
    }
    let alice = token_in(&fx, "alice", Some(&url)).await;
    let server = Server::start_with(&fx, Some(&url), &[]).await;
    let list = |query: String| {
        let (server, alice) = (&server, &alice);
        async move {
            json_of(
                server
                    .http
                    .get(server.url(&format!("/v1/sandboxes?{query}")))
                    .bearer_auth(alice)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".to_owned(),
        };
        let (status, page) = list(query).await;
        assert_eq!(status, 200, "{page}");
        for sandbox in page["sandboxes"].as_array().unwrap() {
            seen.push(sandbox["name"].as_str().unwrap().to_owned());
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, alices, "alice's only, newest first, no gap or repeat");
    // Another owner's sandbox is no cursor for alice.
    let (status, refused) = list(format!("cursor={}", bobs[0])).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["reason_code"], "invalid_argument");
    let (_, none) = list("owner=bob".to_owned()).await;
    assert_eq!(none["sandboxes"], json!([]));
    server.stop().await;
}
