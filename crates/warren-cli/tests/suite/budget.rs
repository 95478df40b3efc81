//! Budgets with the real OpenCode: a token budget and a money budget each stop a run at the
//! request that spends them (the next call is refused at the gateway, never reaching the model),
//! the work so far is exported, the reason is `budget_exceeded`; a raised `exec --budget`
//! continues the same session; 80% of a budget is a warning event.

use serde_json::{Value, json};
use warren_model_script::Outcome;

use super::harness::{Fixture, json_lines, status, stderr, stdout};

/// Each agent answer reports 1000 input and 100 output tokens; side requests (titles) none.
fn write_turn(file: &str) -> Value {
    json!({
        "tool_calls": [{ "name": "write", "arguments": { "filePath": format!("/workspace/{file}"), "content": format!("{file}\n") } }],
        "usage": { "prompt_tokens": 1000, "completion_tokens": 100 },
    })
}

fn scenario() -> String {
    json!({
        "models": ["scripted"],
        "turns": [
            write_turn("a.txt"), write_turn("b.txt"), write_turn("c.txt"), write_turn("d.txt"),
            { "text": "all four written", "usage": { "prompt_tokens": 1000, "completion_tokens": 100 } },
        ],
        "fallback": { "text": "Scripted title", "usage": { "prompt_tokens": 0, "completion_tokens": 0 } },
    })
    .to_string()
}

/// The scripted turns the model served, in order (side requests left out).
fn turns_served(fx: &Fixture) -> Vec<usize> {
    fx.model
        .as_ref()
        .unwrap()
        .requests()
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Turn { turn, .. } => Some(turn),
            _ => None,
        })
        .collect()
}

async fn events(fx: &Fixture, name: &str) -> Vec<Value> {
    json_lines(&fx.warren(&["logs", name, "--json"]).await)
}

async fn events_after_exec(fx: &Fixture) -> Vec<Value> {
    events(fx, "money").await
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn branch_files(fx: &Fixture, branch: &str) -> Vec<String> {
    let out = super::harness::git(&fx.repo, &["ls-tree", "--name-only", branch]);
    out.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_budget_stops_the_run_at_the_request_that_spends_it_and_the_work_is_exported() {
    let fx = Fixture::new(&scenario()).await;
    // 2500 tokens: the first two answers (2200) stay under, the third (3300) spends it, so the
    // fourth agent call is refused at the gateway.
    let out = fx
        .run(
            "tokens",
            &["--json", "--budget", "tokens=2500"],
            "write the files",
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let summary = json_lines(&out).last().unwrap()["summary"].clone();
    assert_eq!(
        summary["error"]["reason_code"], "budget_exceeded",
        "{summary}"
    );
    let message = summary["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("sandbox budget for tokens")
            && message.contains("3300 tokens used of 2500 tokens"),
        "{message}"
    );
    assert!(
        summary["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("--budget tokens=")
    );
    assert_eq!(
        turns_served(&fx),
        vec![0, 1, 2],
        "the model served other turns than the first three"
    );

    // The work of the three answers is on the branch; nothing after.
    assert_eq!(summary["branch"], "warren/tokens");
    let files = branch_files(&fx, "warren/tokens");
    for f in ["a.txt", "b.txt", "c.txt"] {
        assert!(files.contains(&f.to_owned()), "{f} missing: {files:?}");
    }
    assert!(!files.contains(&"d.txt".to_owned()), "{files:?}");

    let events = events(&fx, "tokens").await;
    let exceeded = of_type(&events, "budget_exceeded");
    assert_eq!(exceeded.len(), 1, "{events:#?}");
    assert_eq!(exceeded[0]["budget"], "tokens");
    assert_eq!(exceeded[0]["scope"], "sandbox");
    assert_eq!(exceeded[0]["spent"], 3300.0);
    assert_eq!(exceeded[0]["limit"], 2500.0);
    // 80% of 2500 is 2000: the second answer (2200) warned, once.
    let warnings = of_type(&events, "budget_warning");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["spent"], 2200.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_money_budget_stops_the_run_and_a_raised_exec_budget_continues_the_same_session() {
    let fx = Fixture::new(&scenario()).await;
    // $1000 per million in and $10000 per million out: every answer costs $2.
    fx.append_config("\n[budget.prices.scripted]\ninput = 1000.0\noutput = 10000.0\n");
    let repo = fx.repo.to_str().unwrap();
    let out = fx
        .warren(&[
            "launch",
            "money",
            "--repo",
            repo,
            "--prompt",
            "write the files",
            "--budget",
            "cost=5",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    fx.warren(&["logs", "money", "-f"]).await;
    let s = status(&fx, "money").await;
    let sandbox = &s["sandbox"];
    assert_eq!(sandbox["error"]["reason_code"], "budget_exceeded", "{s:#}");
    assert!(
        sandbox["error"]["message"]
            .as_str()
            .unwrap()
            .contains("$6.0000 used of $5.0000"),
        "{s:#}"
    );
    assert_eq!(turns_served(&fx), vec![0, 1, 2]);
    let session = sandbox["session_id"].as_str().unwrap().to_owned();
    // Status shows the spend against the budget.
    let line = s["budget"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["budget"] == "cost" && l["scope"] == "sandbox")
        .cloned()
        .unwrap_or_else(|| panic!("no cost line: {s:#}"));
    assert_eq!(line["limit"], 5.0);
    assert_eq!(line["spent"], 6.0);

    // Every metered request carries its cost and the session.
    let events = events(&fx, "money").await;
    let agent: Vec<&Value> = of_type(&events, "model_request")
        .into_iter()
        .filter(|e| e["source"] == "agent" && e["input_tokens"] == 1000)
        .collect();
    assert_eq!(agent.len(), 3, "{events:#?}");
    assert!(agent.iter().all(|e| e["cost_usd"] == 2.0), "{agent:#?}");
    assert!(
        agent.iter().all(|e| e["session_id"] == session.as_str()),
        "{agent:#?}"
    );
    // 80% of $5 is $4: the second answer warned.
    let warnings = of_type(&events, "budget_warning");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(
        (warnings[0]["budget"].clone(), warnings[0]["spent"].clone()),
        (json!("cost"), json!(4.0))
    );

    // Without a raised budget the next prompt is refused before anything starts...
    let out = fx.warren(&["exec", "money", "--json", "go on"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let error = &json_lines(&out)[0]["error"];
    assert_eq!(error["reason_code"], "budget_exceeded", "{error}");
    assert!(
        error["hint"].as_str().unwrap().contains("--budget cost="),
        "{error}"
    );
    assert_eq!(turns_served(&fx), vec![0, 1, 2]);
    // ...with one, the same session goes on where it stopped.
    let out = fx
        .warren(&["exec", "money", "--budget", "cost=50", "go on"])
        .await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let finished = of_type(&events_after_exec(&fx).await, "finished")
        .last()
        .map(|e| (*e).clone())
        .unwrap();
    assert_eq!(finished["success"], true, "{finished}");
    let s = status(&fx, "money").await;
    assert_eq!(s["sandbox"]["session_id"], session.as_str());
    assert_eq!(turns_served(&fx), vec![0, 1, 2, 3, 4]);
    let requests = fx.model.as_ref().unwrap().requests();
    let resumed = requests
        .iter()
        .find(|r| matches!(r.outcome, Outcome::Turn { turn: 3, .. }))
        .unwrap();
    // OpenCode sent the earlier conversation along: the same session, not a new one.
    assert!(
        resumed.body.to_string().contains("write the files"),
        "the continued request lacks the first prompt"
    );
    let export = fx.warren(&["export", "money"]).await;
    assert!(export.status.success(), "{}", stderr(&export));
    let files = branch_files(&fx, "warren/money");
    for f in ["a.txt", "b.txt", "c.txt", "d.txt"] {
        assert!(files.contains(&f.to_owned()), "{f} missing: {files:?}");
    }
}

/// Why the gateway answers a spent budget with 400: the pinned OpenCode gives up on it at once
/// (one request, no retry), where it retries a 429. Played by the scripted model with the
/// gateway's own body, with warren's retries off so only OpenCode's would show.
#[tokio::test(flavor = "multi_thread")]
async fn opencode_does_not_retry_the_gateways_budget_answer_but_retries_a_429() {
    let line = warren_domain::BudgetLine {
        scope: warren_domain::BudgetScope::Sandbox,
        budget: warren_domain::BudgetKind::Time,
        spent: 3300.0,
        limit: 2500.0,
    };
    let body = json!({ "error": {
        "message": warren_gateway::budget_refusal_message(&line),
        "type": "budget_exceeded",
    }})
    .to_string();
    let fx = Fixture::new(
        &json!({
            "models": ["scripted"],
            "turns": [
                { "fault": { "kind": "status", "code": 400, "body": body }, "repeat": 3 },
                { "text": "done" },
            ],
        })
        .to_string(),
    )
    .await;
    fx.append_config("\n[retry]\nmax_attempts = 1\n");
    let out = fx.run("refused", &["--json"], "do it").await;
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(turns_served(&fx), vec![0], "OpenCode retried the 400");

    let fx = Fixture::new(
        &json!({
            "models": ["scripted"],
            "turns": [
                { "fault": { "kind": "status", "code": 429, "retry_after_secs": 1 }, "repeat": 1 },
                { "text": "done" },
            ],
        })
        .to_string(),
    )
    .await;
    fx.append_config("\n[retry]\nmax_attempts = 1\n");
    let out = fx.run("limited", &["--json"], "do it").await;
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        turns_served(&fx),
        vec![0, 1],
        "OpenCode did not retry the 429"
    );
}

/// `warren serve`: an owner's daily budget counts every sandbox of that owner; once spent, the
/// owner's next run stops at its first model call, and another owner's runs are not touched.
#[tokio::test(flavor = "multi_thread")]
async fn an_owners_daily_budget_spans_their_sandboxes_and_no_one_elses() {
    use super::http::{Server, token};
    let fx = Fixture::new(
        &json!({
            "models": ["scripted"],
            "turns": [
                write_turn("a.txt"),
                { "text": "done", "usage": { "prompt_tokens": 1000, "completion_tokens": 100 } },
                write_turn("b.txt"),
                { "text": "done", "usage": { "prompt_tokens": 1000, "completion_tokens": 100 } },
            ],
            "fallback": { "text": "Scripted title", "usage": { "prompt_tokens": 0, "completion_tokens": 0 } },
        })
        .to_string(),
    )
    .await;
    fx.append_config("\n[budget.owner]\ntokens = 1500\n");
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let bob = token(&fx, "bob").await;
    let run = |who: String, name: &'static str| {
        let (http, url, repo) = (server.http.clone(), server.url("/v1/runs"), fx.repo.clone());
        async move {
            let text = http
                .post(url)
                .bearer_auth(who)
                .json(&json!({ "repository": repo, "name": name, "prompt": "write" }))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            serde_json::from_str::<Value>(text.lines().last().unwrap()).unwrap()["summary"].clone()
        }
    };
    // Alice's first run spends 2200 of her 1500 with its last answer: it had finished by then.
    let first = run(alice.clone(), "alice-one").await;
    assert_eq!(first["success"], true, "{first}");
    // Her next run is refused at its first call.
    let second = run(alice, "alice-two").await;
    assert_eq!(
        second["error"]["reason_code"], "budget_exceeded",
        "{second}"
    );
    assert!(
        second["error"]["message"]
            .as_str()
            .unwrap()
            .contains("owner budget for tokens"),
        "{second}"
    );
    assert_eq!(turns_served(&fx), vec![0, 1]);
    // Bob's day is his own.
    let third = run(bob, "bob-one").await;
    assert_eq!(third["success"], true, "{third}");
    assert_eq!(turns_served(&fx), vec![0, 1, 2, 3]);
    server.stop().await;
}

/// A time budget stops the agent when it runs out, even in the middle of a tool call that would
/// make no model request for a long while.
#[tokio::test(flavor = "multi_thread")]
async fn a_time_budget_stops_the_agent_between_model_calls() {
    let fx = Fixture::new(
        &json!({
            "models": ["scripted"],
            "turns": [
                super::harness::bash_turn("echo started > started.txt && sleep 300"),
                { "text": "slept" },
            ],
        })
        .to_string(),
    )
    .await;
    // The clock runs from the start of the run, OpenCode's boot included: 20 s leave room for a
    // slow boot and stop the agent long before its sleep ends.
    let repo = fx.repo.to_str().unwrap();
    let child = fx
        .command(&[
            "run",
            "--repo",
            repo,
            "--name",
            "clock",
            "--json",
            "--budget",
            "time=20",
            "wait a minute",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    super::harness::wait_for_agent_call(fx.model.as_ref().unwrap()).await;
    // While the agent runs, status shows the time spent against the budget.
    let mut seen = None;
    for _ in 0..100 {
        let s = status(&fx, "clock").await;
        let line = s["budget"]["lines"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["budget"] == "time").cloned());
        if s["sandbox"]["state"] == "running"
            && let Some(line) = line
            && line["spent"].as_f64().unwrap() > 0.0
        {
            seen = Some(line);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let line = seen.expect("status never showed the running agent's time against its budget");
    assert_eq!(line["scope"], "sandbox");
    assert_eq!(line["limit"], 20.0);
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .expect("the run outlived its time budget by far")
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let summary = json_lines(&out).last().unwrap()["summary"].clone();
    assert_eq!(
        summary["error"]["reason_code"], "budget_exceeded",
        "{summary}"
    );
    assert!(
        summary["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sandbox budget for time"),
        "{summary}"
    );
    // The sleep never finished: the model was not asked again.
    assert_eq!(turns_served(&fx), vec![0]);
    // What the agent did before is kept.
    assert!(branch_files(&fx, "warren/clock").contains(&"started.txt".to_owned()));
}
