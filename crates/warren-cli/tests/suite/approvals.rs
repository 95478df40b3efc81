//! Approvals, end to end with real OpenCode: a bash command an approval rule covers makes the run
//! wait in `running` with the request shown by `status` and `logs`; `approve` from a second
//! process lets the command run, `deny --reason` makes the model receive the refusal and the run
//! still ends cleanly, the timeout denies, and an answer with nothing pending is a clear error.
//! Both the one-shot `run` (on a server of its own) and a launched sandbox's `exec`, on
//! bubblewrap, Docker and Kubernetes (a pod's server reached over the relay); and the same over
//! `warren serve`'s API.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::every_backend;

use super::harness::{
    Backend, Fixture, bash_turn, git, json_lines, scenario, status, stderr, stdout, text_turn,
};
use super::http::{Server, json_of, token};

const RULE: &str = "\n[policy.approvals]\nbash = [\"rm -rf *\"]\ntimeout_secs = 90\n";

/// A repo with a `build/` directory the agent wants to remove, and a model that asks to.
async fn fixture(backend: Backend) -> Fixture {
    let fx = Fixture::with_backend(
        &scenario(vec![bash_turn("rm -rf build"), text_turn("done")]),
        backend,
    )
    .await;
    std::fs::create_dir_all(fx.repo.join("build")).unwrap();
    std::fs::write(fx.repo.join("build/out.txt"), "artifact\n").unwrap();
    git(&fx.repo, &["add", "-A"]);
    git(&fx.repo, &["commit", "-qm", "build output"]);
    fx
}

/// Waits until `status` shows the agent waiting for an approval, and returns the status.
async fn awaiting(fx: &Fixture, name: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let out = fx.warren(&["status", name, "--json"]).await;
        if out.status.success() {
            let s: Value = serde_json::from_str(&stdout(&out)).unwrap();
            if !s["awaiting_approval"].is_null() {
                return s;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sandbox {name} never waited for an approval"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_waits_on_rm(s: &Value) {
    assert_eq!(s["sandbox"]["state"], "running", "{s}");
    let request = &s["awaiting_approval"];
    assert_eq!(request["permission"], "bash", "{s}");
    assert_eq!(request["title"], "rm -rf build", "{s}");
    assert!(
        request["request_id"].as_str().unwrap().starts_with("per"),
        "{s}"
    );
}

/// The tool result the model received for the agent's bash call (the next request carries it).
fn tool_result_seen_by_model(fx: &Fixture) -> String {
    let requests = fx.model.as_ref().unwrap().requests();
    let after_call = requests
        .iter()
        .filter(|r| r.has_tools)
        .nth(1)
        .expect("the model was asked again after the tool call");
    after_call.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn finish(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the run ended after its approval was answered")
        .unwrap()
}

fn decided(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["type"] == "approval_decided")
        .collect()
}

async fn a_one_shot_run_waits_and_approve_from_another_process_lets_it_go_on(backend: Backend) {
    let fx = fixture(backend).await;
    fx.append_config(RULE);
    let run = fx.spawn_run("tidy", "tidy up the build output");
    let s = awaiting(&fx, "tidy").await;
    assert_waits_on_rm(&s);
    // The human-readable status says what is asked and how to answer.
    let text = stdout(&fx.warren(&["status", "tidy"]).await);
    assert!(
        text.contains("awaiting:  approval of bash `rm -rf build`"),
        "{text}"
    );

    let approved = fx.warren(&["approve", "tidy", "--json"]).await;
    assert!(approved.status.success(), "{}", stderr(&approved));
    let approved: Value = serde_json::from_str(&stdout(&approved)).unwrap();
    assert_eq!(approved["approval"]["decision"], "approve", "{approved}");
    assert_eq!(approved["approval"]["decided_by"], "user", "{approved}");

    let out = finish(run).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<Value> = json_lines(&out);
    let requested: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "approval_requested")
        .collect();
    assert_eq!(requested.len(), 1, "{events:?}");
    assert_eq!(decided(&events)[0]["decision"], "approve");
    // The command ran: the exported branch no longer has the build output.
    let tree = git(&fx.repo, &["ls-tree", "-r", "--name-only", "warren/tidy"]);
    assert!(!tree.contains("build/out.txt"), "{tree}");
    assert!(tree.contains("README.md"), "{tree}");
    assert!(
        !tool_result_seen_by_model(&fx).contains("Denied"),
        "an approved command is not refused"
    );

    // Nothing waits any more: answering again is a clear user error that changes nothing.
    let again = fx.warren(&["approve", "tidy", "--json"]).await;
    assert_eq!(again.status.code(), Some(2), "{}", stdout(&again));
    let error: Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(error["error"]["reason_code"], "no_pending_approval");
    assert!(error["error"]["hint"].as_str().unwrap().contains("status"));
}

every_backend!(a_one_shot_run_waits_and_approve_from_another_process_lets_it_go_on);

#[tokio::test(flavor = "multi_thread")]
async fn deny_with_a_reason_reaches_the_model_and_the_run_still_ends_cleanly() {
    let fx = fixture(Backend::Local).await;
    fx.append_config(RULE);
    let run = fx.spawn_run("keep", "tidy up the build output");
    assert_waits_on_rm(&awaiting(&fx, "keep").await);
    let denied = fx
        .warren(&["deny", "keep", "--reason", "the build dir is still needed"])
        .await;
    assert!(denied.status.success(), "{}", stderr(&denied));
    assert!(
        stdout(&denied).contains("denied bash `rm -rf build`"),
        "{}",
        stdout(&denied)
    );

    let out = finish(run).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = tool_result_seen_by_model(&fx);
    assert!(seen.contains("the build dir is still needed"), "{seen}");
    assert!(seen.contains("Denied by the operator"), "{seen}");
    let events: Vec<Value> = json_lines(&out);
    let d = decided(&events);
    assert_eq!(d[0]["decision"], "deny", "{events:?}");
    assert_eq!(d[0]["by"], "user");
    assert_eq!(d[0]["reason"], "the build dir is still needed");
    // The command never ran: nothing changed, so nothing was exported.
    let branches = git(&fx.repo, &["branch", "--list", "warren/keep"]);
    let kept = branches.is_empty()
        || git(&fx.repo, &["ls-tree", "-r", "--name-only", "warren/keep"])
            .contains("build/out.txt");
    assert!(kept, "the build output survived");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_request_is_denied_after_the_timeout_and_nothing_hangs() {
    let fx = fixture(Backend::Local).await;
    // Flags set the rules for this run alone (the config has none).
    let repo = fx.repo.to_str().unwrap().to_owned();
    let args = [
        "run",
        "--repo",
        &repo,
        "--name",
        "late",
        "--ask-bash",
        "rm -rf *",
        "--approval-timeout",
        "10",
        "--json",
        "tidy up the build output",
    ];
    // An inactivity limit shorter than the wait: a run waiting for a person is not idle, so the
    // request is denied by its timeout, not cut short by the inactivity limit.
    let out = fx
        .warren_with(&args, |cmd| {
            cmd.env("WARREN_TIMEOUT_INACTIVITY_SECS", "5");
        })
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<Value> = json_lines(&out);
    let d = decided(&events);
    assert_eq!(d.len(), 1, "{events:?}");
    assert_eq!(d[0]["decision"], "deny");
    assert_eq!(d[0]["by"], "timeout", "{events:?}");
    let seen = tool_result_seen_by_model(&fx);
    assert!(seen.contains("nobody approved"), "{seen}");
}

async fn a_launched_sandbox_waits_on_exec_and_logs_show_the_request(backend: Backend) {
    let fx = fixture(backend).await;
    fx.append_config(RULE);
    let repo = fx.repo.to_str().unwrap();
    let launched = fx.warren(&["launch", "box", "--repo", repo]).await;
    assert!(launched.status.success(), "{}", stderr(&launched));

    // Nothing pending on an idle sandbox: exit 2 with the reason code, and nothing recorded.
    let early = fx.warren(&["deny", "box", "--json"]).await;
    assert_eq!(
        early.status.code(),
        Some(2),
        "{}{}",
        stdout(&early),
        stderr(&early)
    );
    let error: Value = serde_json::from_str(&stdout(&early)).unwrap();
    assert_eq!(error["error"]["reason_code"], "no_pending_approval");

    let exec = fx
        .command(&["exec", "box", "tidy up the build output"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let s = awaiting(&fx, "box").await;
    assert_waits_on_rm(&s);
    // Events go to stderr in text mode, like a run's progress.
    let logs = stderr(&fx.warren(&["logs", "box"]).await);
    assert!(
        logs.contains("? awaiting approval: bash `rm -rf build`"),
        "{logs}"
    );
    // Answering a request id that is not the pending one changes nothing.
    let wrong = fx
        .warren(&["approve", "box", "--request", "per_not_this_one"])
        .await;
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
    let id = s["awaiting_approval"]["request_id"].as_str().unwrap();
    let approved = fx.warren(&["approve", "box", "--request", id]).await;
    assert!(approved.status.success(), "{}", stderr(&approved));

    let out = finish(exec).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("✔ approved"),
        "the exec's own output shows the answer: {}",
        stderr(&out)
    );
    let s = status(&fx, "box").await;
    assert!(s["awaiting_approval"].is_null(), "{s}");
    let changed = s["changed_files"].to_string();
    assert!(changed.contains("build/out.txt"), "{changed}");
    assert!(changed.contains("deleted"), "{changed}");
}

every_backend!(a_launched_sandbox_waits_on_exec_and_logs_show_the_request);

/// Rules a sandbox was launched with stay for its follow-ups: an `exec` without flags (and a
/// config without rules) still asks, and denying it keeps the build output.
#[tokio::test(flavor = "multi_thread")]
async fn a_launchs_approval_rules_hold_for_an_exec_that_names_none() {
    let fx = fixture(Backend::Local).await;
    let repo = fx.repo.to_str().unwrap();
    let launched = fx
        .warren(&["launch", "kept", "--repo", repo, "--ask-bash", "rm -rf *"])
        .await;
    assert!(launched.status.success(), "{}", stderr(&launched));
    let exec = fx
        .command(&["exec", "kept", "tidy up the build output"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let s = awaiting(&fx, "kept").await;
    assert_waits_on_rm(&s);
    let denied = fx
        .warren(&["deny", "kept", "--reason", "keep the build"])
        .await;
    assert!(denied.status.success(), "{}", stderr(&denied));
    let out = finish(exec).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let s = status(&fx, "kept").await;
    assert!(
        !s["changed_files"].to_string().contains("build/out.txt"),
        "the denied command never ran: {s}"
    );
}

/// `GET` a JSON document from the server with `token`.
async fn api_get(server: &Server, token: &str, path: &str) -> Value {
    let resp = server
        .http
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    json_of(resp).await.1
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_api_a_launch_asks_status_and_events_show_it_and_a_deny_answers_it() {
    let fx = fixture(Backend::Local).await;
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let http = &server.http;
    // The rules come with the request: the server's config has none.
    let body = json!({
        "repository": fx.repo, "name": "api", "prompt": "tidy up the build output",
        "approvals": { "bash": ["rm -rf *"], "timeout_secs": 90 },
    });
    let (code, launched) = json_of(
        http.post(server.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 201, "{launched}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let s = loop {
        let s = api_get(&server, &alice, "/v1/sandboxes/api/status").await;
        if !s["awaiting_approval"].is_null() {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "never waited: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_waits_on_rm(&s);
    let id = s["awaiting_approval"]["request_id"].as_str().unwrap();
    // The event stream carries the request (it stays open while the agent waits).
    let resp = http
        .get(server.url("/v1/sandboxes/api/events"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream().eventsource();
    let requested = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(event)) = stream.next().await {
            let data: Value = serde_json::from_str(&event.data).unwrap();
            if data["type"] == "approval_requested" {
                return data;
            }
        }
        panic!("the event stream ended without the request");
    })
    .await
    .expect("the request is in the event stream");
    assert_eq!(
        requested["request_id"],
        s["awaiting_approval"]["request_id"]
    );
    drop(stream);

    let answer = format!("/v1/sandboxes/api/approvals/{id}");
    let (code, answered) = json_of(
        http.post(server.url(&answer))
            .bearer_auth(&alice)
            .json(&json!({ "decision": "deny", "reason": "not on the server" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200, "{answered}");
    assert_eq!(answered["approval"]["decision"], "deny", "{answered}");
    assert_eq!(answered["approval"]["decided_by"], "user", "{answered}");

    // The run goes on to its end; then nothing waits and a second answer is a 409.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let s = api_get(&server, &alice, "/v1/sandboxes/api/status").await;
        if s["sandbox"]["state"] == "completed" && !s["busy"].as_bool().unwrap() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never finished: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(tool_result_seen_by_model(&fx).contains("not on the server"));
    let (code, error) = json_of(
        http.post(server.url("/v1/sandboxes/api/approvals/current"))
            .bearer_auth(&alice)
            .json(&json!({ "decision": "approve" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 409, "{error}");
    assert_eq!(error["error"]["reason_code"], "no_pending_approval");
    // Remote mode says the same, with the CLI's user-error exit code.
    let remote = fx
        .warren_with(&["approve", "api"], |cmd| {
            cmd.env("WARREN_SERVER", &server.base)
                .env("WARREN_TOKEN", &alice);
        })
        .await;
    assert_eq!(remote.status.code(), Some(2), "{}", stderr(&remote));
    assert!(
        stderr(&remote).contains("no_pending_approval"),
        "{}",
        stderr(&remote)
    );
    let _ = http
        .delete(server.url("/v1/sandboxes/api?force=true"))
        .bearer_auth(&alice)
        .send()
        .await;
    server.stop().await;
}
