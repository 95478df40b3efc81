//! The audit trail with the real OpenCode: the agent's commit carries `Warren-*` trailers that
//! name its sandbox, session, model, tokens and cost; `warren audit REV` (and the API) shows every
//! model request behind it; a wrong REV and a commit warren did not make are clear user errors.

use serde_json::{Value, json};

use super::harness::{Fixture, git, json_lines, stderr, stdout};
use super::http::{Server, json_of, token};

fn scenario() -> String {
    json!({
        "models": ["scripted"],
        "turns": [
            { "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/audited.txt", "content": "x\n" } }],
              "usage": { "prompt_tokens": 2000, "completion_tokens": 100 } },
            { "text": "written", "usage": { "prompt_tokens": 3000, "completion_tokens": 50 } },
        ],
        "fallback": { "text": "Scripted title", "usage": { "prompt_tokens": 10, "completion_tokens": 2 } },
    })
    .to_string()
}

/// $1 per million input tokens, $2 per million output tokens.
const PRICES: &str = "\n[budget.prices.scripted]\ninput = 1.0\noutput = 2.0\n";

fn trailer(message: &str, key: &str) -> Vec<String> {
    message
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}: ")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_branch_commit_names_its_sandbox_and_warren_audit_shows_the_trail() {
    let fx = Fixture::new(&scenario()).await;
    fx.append_config(PRICES);
    let out = fx.run("audited", &["--json"], "write the file").await;
    assert!(out.status.success(), "{}", stdout(&out));
    let summary = json_lines(&out).last().unwrap()["summary"].clone();
    let id = summary["sandbox_id"].as_str().unwrap().to_owned();
    let session = summary["session_id"].as_str().unwrap().to_owned();

    let message = git(&fx.repo, &["log", "-1", "--format=%B", "warren/audited"]);
    assert_eq!(
        trailer(&message, "Warren-Sandbox"),
        vec![format!("{id} (audited)")],
        "{message}"
    );
    assert_eq!(
        trailer(&message, "Warren-Session"),
        vec![session.clone()],
        "{message}"
    );
    assert_eq!(
        trailer(&message, "Warren-Model"),
        vec!["scripted".to_owned()],
        "{message}"
    );
    // Two agent answers and the title requests, as metered; git reads them as trailers.
    let tokens = trailer(&message, "Warren-Tokens");
    assert_eq!(tokens.len(), 1, "{message}");
    let parsed = git(
        &fx.repo,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Warren-Cost,valueonly)",
            "warren/audited",
        ],
    );
    assert!(
        parsed.trim().ends_with("USD"),
        "git does not see the trailers: {parsed:?}"
    );

    let out = fx
        .warren(&[
            "audit",
            "warren/audited",
            "--repo",
            fx.repo.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let view: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(view["sandbox_id"], id.as_str());
    assert_eq!(view["name"], "audited");
    assert_eq!(view["session_id"], session.as_str());
    let head = git(&fx.repo, &["rev-parse", "warren/audited"]);
    assert_eq!(view["commit"]["id"], head.trim());
    let requests = view["requests"].as_array().unwrap();
    // Every request the model served is in the trail, with its tokens and cost.
    let served = fx.model.as_ref().unwrap().requests();
    assert_eq!(requests.len(), served.len(), "{view:#}");
    let answer = requests
        .iter()
        .find(|r| r["input_tokens"] == 2000)
        .unwrap_or_else(|| panic!("{view:#}"));
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["model"], "scripted");
    assert_eq!(answer["session_id"], session.as_str());
    assert_eq!(answer["attempt"], 1);
    assert!(
        (answer["cost_usd"].as_f64().unwrap() - 0.0022).abs() < 1e-9,
        "{answer}"
    );
    assert!(answer["latency_ms"].is_u64());
    let input: u64 = requests
        .iter()
        .map(|r| r["input_tokens"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(view["totals"]["input_tokens"], input);
    assert_eq!(
        tokens[0],
        format!("{input} in, {} out", view["totals"]["output_tokens"]),
        "the trailer and the trail disagree"
    );

    // The human form names the sandbox and lists each request.
    let out = fx
        .warren(&[
            "audit",
            "warren/audited",
            "--repo",
            fx.repo.to_str().unwrap(),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("sandbox:   audited ({id})")),
        "{text}"
    );
    assert!(text.contains("2000/100 tokens"), "{text}");

    // A REV that is not there, and a commit warren did not make: exit 2, a reason, a hint.
    for (rev, reason) in [
        ("no-such-branch", "invalid_argument"),
        ("main", "not_a_warren_commit"),
    ] {
        let out = fx
            .warren(&["audit", rev, "--repo", fx.repo.to_str().unwrap(), "--json"])
            .await;
        assert_eq!(out.status.code(), Some(2), "{rev}: {}", stdout(&out));
        let error = &json_lines(&out)[0]["error"];
        assert_eq!(error["reason_code"], reason, "{rev}: {error}");
        assert!(error["hint"].is_string(), "{rev}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_serves_a_sandboxes_audit_trail_by_name_and_by_id() {
    let fx = Fixture::new(&scenario()).await;
    fx.append_config(PRICES);
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let bob = token(&fx, "bob").await;
    let http = &server.http;
    let text = http
        .post(server.url("/v1/runs"))
        .bearer_auth(&alice)
        .json(&json!({ "repository": fx.repo, "name": "remote-audit", "prompt": "write it", "budget": { "cost": 10.0 } }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let summary =
        serde_json::from_str::<Value>(text.lines().last().unwrap()).unwrap()["summary"].clone();
    assert_eq!(summary["success"], true, "{text}");
    let id = summary["sandbox_id"].as_str().unwrap();

    // The one-shot sandbox is gone; its id (as the trailer gives it) still finds the trail.
    let (status, view) = json_of(
        http.get(server.url(&format!("/v1/sandboxes/{id}/audit")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["name"], "remote-audit");
    assert!(view["commit"].is_null());
    assert!(
        view["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["input_tokens"] == 2000)
    );
    assert!(view["totals"]["cost_usd"].as_f64().unwrap() > 0.0, "{view}");
    // Another owner sees nothing.
    let (status, body) = json_of(
        http.get(server.url(&format!("/v1/sandboxes/{id}/audit")))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // A budget that sets nothing is refused before anything is created.
    let (status, body) = json_of(
        http.post(server.url("/v1/runs"))
            .bearer_auth(&alice)
            .json(
                &json!({ "repository": fx.repo, "name": "nobudget", "prompt": "x", "budget": {} }),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["reason_code"], "invalid_argument");
    server.stop().await;
}
