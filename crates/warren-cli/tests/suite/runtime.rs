//! The agent runtime against scripted faults, with the real OpenCode: credentials, rate limits,
//! server errors, a hang, an unknown model, the outcome contract (parsed, recovered by the
//! structurer, recovered by a re-prompt, NEEDS_INFO) and a pool of one.

use serde_json::{Value, json};

use super::harness::{Fixture, bash_turn, json_lines, status, stderr, stdout, text_turn};

fn write_turn(path: &str, content: &str) -> Value {
    json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": path, "content": content } }] })
}

fn fault(kind: Value, repeat: u32) -> Value {
    json!({ "fault": kind, "repeat": repeat })
}

async fn fixture(scenario: Value, extra_config: &str) -> Fixture {
    let fx = Fixture::new(&scenario.to_string()).await;
    fx.append_config(extra_config);
    fx
}

fn summary(out: &std::process::Output) -> Value {
    json_lines(out).last().unwrap()["summary"].clone()
}

async fn recorded_events(fx: &Fixture, name: &str) -> Vec<Value> {
    json_lines(&fx.warren(&["logs", name, "--json"]).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_injects_the_real_key_and_a_wrong_key_fails_fast() {
    let fx = fixture(
        json!({ "require_api_key": "real-key", "turns": [write_turn("/workspace/a.txt", "a\n"), { "text": "done" }] }),
        "",
    )
    .await;
    let config = std::fs::read_to_string(&fx.config).unwrap();
    let config = config.replace(
        "models = [\"scripted\"]",
        "models = [\"scripted\"]\napi_key_env = \"SCRIPTED_KEY\"",
    );
    std::fs::write(&fx.config, config).unwrap();

    let out = fx
        .warren_with(
            &[
                "run",
                "--repo",
                fx.repo.to_str().unwrap(),
                "--name",
                "keyed",
                "--json",
                "x",
            ],
            |c| {
                c.env("SCRIPTED_KEY", "real-key");
            },
        )
        .await;
    assert!(out.status.success(), "{}", stdout(&out));
    let requests = fx.model.as_ref().unwrap().requests();
    assert!(
        requests
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer real-key")),
        "{requests:?}"
    );

    let out = fx
        .warren_with(
            &[
                "run",
                "--repo",
                fx.repo.to_str().unwrap(),
                "--name",
                "wrong",
                "--json",
                "x",
            ],
            |c| {
                c.env("SCRIPTED_KEY", "wrong-key");
            },
        )
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert_eq!(summary(&out)["error"]["reason_code"], "model_auth");

    let out = fx
        .warren(&["run", "--repo", fx.repo.to_str().unwrap(), "--json", "x"])
        .await;
    let error = &json_lines(&out)[0]["error"];
    assert_eq!(
        error["reason_code"], "invalid_config",
        "an unset key variable is caught before the run"
    );
    assert!(
        error["message"].as_str().unwrap().contains("SCRIPTED_KEY"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_twice_then_success_are_retried_and_visible() {
    let fx = fixture(
        json!({ "turns": [
            fault(json!({ "kind": "status", "code": 429, "retry_after_secs": 1 }), 2),
            write_turn("/workspace/a.txt", "a\n"),
            text_turn("done"),
        ]}),
        "",
    )
    .await;
    let out = fx.run("limited", &["--json"], "x").await;
    assert!(out.status.success(), "{}", stdout(&out));
    let events = recorded_events(&fx, "limited").await;
    let limited = events
        .iter()
        .filter(|e| e["type"] == "gateway" && e["message"].as_str().unwrap_or("").contains("429"))
        .count();
    assert_eq!(limited, 2, "each rate limit is visible: {events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_three_times_then_success() {
    let fx = fixture(
        json!({ "turns": [
            fault(json!({ "kind": "status", "code": 500 }), 3),
            write_turn("/workspace/a.txt", "a\n"),
            text_turn("done"),
        ]}),
        "",
    )
    .await;
    let out = fx.run("flaky", &["--json"], "x").await;
    assert!(out.status.success(), "{}", stdout(&out));
    let events = recorded_events(&fx, "flaky").await;
    let errors = events
        .iter()
        .filter(|e| e["type"] == "gateway" && e["message"].as_str().unwrap_or("").contains("500"))
        .count();
    assert_eq!(errors, 3, "{events:?}");
    assert_eq!(summary(&out)["branch"], "warren/flaky");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hang_after_the_first_token_trips_the_inactivity_limit_and_keeps_the_work() {
    let fx = fixture(
        json!({ "turns": [
            bash_turn("echo kept > kept.txt"),
            fault(json!({ "kind": "hang_after_first_token" }), 1),
        ]}),
        "\n[roles.quick]\ninactivity_secs = 4\n",
    )
    .await;
    let out = fx.run("hung", &["--json", "--role", "quick"], "x").await;
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let s = summary(&out);
    assert_eq!(s["error"]["reason_code"], "inactive", "{s}");
    assert_eq!(s["branch"], "warren/hung", "the work so far is exported");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_model_is_retried_a_bounded_number_of_times() {
    let fx = fixture(
        json!({ "models": ["another-model"], "turns": [] }),
        "\n[retry]\nmax_attempts = 2\nbackoff_secs = 1\n",
    )
    .await;
    let out = fx.run("nomodel", &["--json"], "x").await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let s = summary(&out);
    assert_eq!(s["error"]["reason_code"], "unknown_model", "{s}");
    assert_eq!(s["outcome"]["attempts"], 2);
    let events = recorded_events(&fx, "nomodel").await;
    let retries: Vec<&Value> = events.iter().filter(|e| e["type"] == "retrying").collect();
    assert_eq!(retries.len(), 1, "{events:?}");
    assert_eq!(retries[0]["reason_code"], "unknown_model");
}

const CONTRACT: &str = "\n[roles.reviewer]\ncontract = true\nfields = [\"verdict\"]\nmax_retries_on_malformed_output = 1\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_outcome_is_parsed_from_the_answer() {
    let fx = fixture(
        json!({ "turns": [text_turn("Reviewed.\n```json\n{\"outcome\": \"COMPLETE\", \"summary\": \"looks right\", \"verdict\": \"approve\"}\n```")] }),
        CONTRACT,
    )
    .await;
    let out = fx
        .run("parsed", &["--json", "--role", "reviewer"], "review it")
        .await;
    assert!(out.status.success(), "{}", stdout(&out));
    let s = summary(&out);
    assert_eq!(s["outcome"]["outcome"]["outcome"], "COMPLETE", "{s}");
    assert_eq!(s["outcome"]["outcome"]["verdict"], "approve");
    assert_eq!(s["outcome"]["via"], "fenced_block");
    // The prompt carried the contract's instruction block.
    let first = fx
        .model
        .as_ref()
        .unwrap()
        .requests()
        .into_iter()
        .find(|r| r.has_tools)
        .unwrap();
    assert!(
        first.body.to_string().contains("NEEDS_INFO"),
        "instruction block missing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn narration_without_json_is_recovered_by_the_structurer() {
    let fx = fixture(
        json!({ "turns": [
            text_turn("I reviewed the change carefully and I approve it; the tests cover the fix."),
            { "when": { "has_tools": false, "last_user_contains": "I approve it" },
              "text": "{\"outcome\": \"COMPLETE\", \"summary\": \"approved, tests cover the fix\", \"verdict\": \"approve\"}" },
        ]}),
        CONTRACT,
    )
    .await;
    let out = fx
        .run("narrated", &["--json", "--role", "reviewer"], "review it")
        .await;
    assert!(out.status.success(), "{}", stdout(&out));
    let s = summary(&out);
    assert_eq!(s["outcome"]["via"], "structurer", "{s}");
    assert_eq!(s["outcome"]["outcome"]["verdict"], "approve");
    assert_eq!(s["outcome"]["attempts"], 1, "no re-prompt was needed");
    let structurer = fx
        .model
        .as_ref()
        .unwrap()
        .requests()
        .into_iter()
        .find(|r| !r.has_tools && r.body.to_string().contains("warren-structurer"));
    let structurer = structurer.expect("the structurer call reached the model");
    assert_ne!(
        structurer.body["stream"],
        json!(true),
        "the structurer call is not streamed"
    );
}

/// Every model request of a sandbox goes through a gateway and is metered there: the agent's and
/// the structurer's, each tagged, with the tokens the model reported; `status` adds them up.
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_meters_the_agent_and_the_structurer_and_status_adds_them_up() {
    let fx = fixture(
        json!({ "turns": [
            { "text": "I reviewed the change carefully and I approve it; the tests cover the fix.",
              "usage": { "prompt_tokens": 1000, "completion_tokens": 50 } },
            { "when": { "has_tools": false, "last_user_contains": "I approve it" },
              "text": "{\"outcome\": \"COMPLETE\", \"summary\": \"approved\", \"verdict\": \"approve\"}",
              "usage": { "prompt_tokens": 300, "completion_tokens": 40 } },
        ]}),
        CONTRACT,
    )
    .await;
    let out = fx
        .run("metered", &["--json", "--role", "reviewer"], "review it")
        .await;
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(summary(&out)["outcome"]["via"], "structurer");

    let events = recorded_events(&fx, "metered").await;
    let metered: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "model_request" && e["endpoint"] == "chat/completions")
        .collect();
    let by = |source: &str| -> Vec<&Value> {
        metered
            .iter()
            .copied()
            .filter(|e| e["source"] == source)
            .collect()
    };
    let structurer = by("structurer");
    assert_eq!(structurer.len(), 1, "{metered:#?}");
    assert_eq!(structurer[0]["model"], "scripted");
    assert_eq!(structurer[0]["status"], 200);
    assert_eq!(structurer[0]["input_tokens"], 300);
    assert_eq!(structurer[0]["output_tokens"], 40);
    assert!(structurer[0]["latency_ms"].is_u64());
    let agent = by("agent");
    assert!(
        agent
            .iter()
            .any(|e| e["input_tokens"] == 1000 && e["output_tokens"] == 50 && e["status"] == 200),
        "the agent's answer was not metered with its usage: {agent:#?}"
    );
    assert_eq!(agent.len() + structurer.len(), metered.len());

    // One record per request the model served, and the totals are what the model reported
    // (OpenCode asks streams for their usage, and the scripted model gives it, as real servers do).
    let requests = fx.model.as_ref().unwrap().requests();
    assert_eq!(metered.len(), requests.len(), "{requests:#?}");
    let (input, output) = requests
        .iter()
        .map(|r| r.usage.expect("every answer reported its usage"))
        .fold((0, 0), |(i, o), u| {
            (i + u.prompt_tokens, o + u.completion_tokens)
        });
    let status = status(&fx, "metered").await;
    assert_eq!(
        status["gateway_usage"],
        json!({ "requests": requests.len(), "input": input, "output": output, "errors": 0 }),
        "{status}"
    );
    // OpenCode's own report is kept beside it, unchanged.
    assert!(
        status["sandbox"]["usage"]["input"].as_u64().unwrap() > 0,
        "{status}"
    );

    let human = stderr(&fx.warren(&["logs", "metered"]).await);
    assert!(
        human.lines().any(
            |l| l.starts_with("· model scripted (structurer): HTTP 200 in ")
                && l.ends_with(" ms, 300 tokens in, 40 out")
        ),
        "{human}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_recovered_by_a_stricter_reprompt() {
    let fx = fixture(
        json!({
            "turns": [
                text_turn("```json\n{\"outcome\": \"COMPLETE\", \"summary\": \"done\" \"verdict\": }\n```"),
                { "when": { "has_tools": false, "last_user_contains": "\"summary\": \"done\"" }, "text": "I cannot tell." },
                text_turn("{\"outcome\": \"COMPLETE\", \"summary\": \"done\", \"verdict\": \"approve\"}"),
            ]
        }),
        CONTRACT,
    )
    .await;
    let out = fx
        .run("malformed", &["--json", "--role", "reviewer"], "review it")
        .await;
    assert!(out.status.success(), "{}", stdout(&out));
    let s = summary(&out);
    assert_eq!(s["outcome"]["attempts"], 2, "{s}");
    assert_eq!(s["outcome"]["via"], "whole_text", "{s}");
    assert_eq!(s["outcome"]["outcome"]["verdict"], "approve");
}

#[tokio::test(flavor = "multi_thread")]
async fn needs_info_is_an_outcome_not_a_failure() {
    let fx = fixture(
        json!({ "turns": [text_turn("```json\n{\"outcome\": \"NEEDS_INFO\", \"summary\": \"Which database should the migration target?\"}\n```")] }),
        "\n[roles.asker]\ncontract = true\n",
    )
    .await;
    let out = fx
        .run("asks", &["--json", "--role", "asker"], "migrate it")
        .await;
    assert!(out.status.success(), "{}", stdout(&out));
    let s = summary(&out);
    assert_eq!(s["outcome"]["outcome"]["outcome"], "NEEDS_INFO", "{s}");
    assert!(
        s["outcome"]["outcome"]["summary"]
            .as_str()
            .unwrap()
            .contains("Which database")
    );
    let events = recorded_events(&fx, "asks").await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "outcome" && e["outcome"] == "NEEDS_INFO")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_runs_on_a_pool_of_one_serialise_and_none_fails() {
    let turns: Vec<Value> = (0..3)
        .flat_map(|_| {
            vec![
                bash_turn("sleep 1 && echo ok > done.txt"),
                text_turn("done"),
            ]
        })
        .collect();
    let fx = fixture(
        json!({ "turns": turns }),
        "\n[pools.single]\nmax_concurrent = 1\n",
    )
    .await;
    let config = std::fs::read_to_string(&fx.config).unwrap();
    std::fs::write(
        &fx.config,
        config.replace(
            "models = [\"scripted\"]",
            "models = [\"scripted\"]\npool = \"single\"",
        ),
    )
    .unwrap();
    let mut children = Vec::new();
    for name in ["pool-a", "pool-b", "pool-c"] {
        children.push(fx.spawn_run(name, "work"));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    }
    // Running intervals never overlap, and someone visibly waited.
    let mut intervals = Vec::new();
    let mut queued = 0;
    for name in ["pool-a", "pool-b", "pool-c"] {
        let events = recorded_events(&fx, name).await;
        queued += events.iter().filter(|e| e["type"] == "queued").count();
        let at = |state: &str| {
            events
                .iter()
                .find(|e| e["type"] == "state_changed" && e["state"] == state)
                .map(|e| e["at"].as_str().unwrap().to_owned())
        };
        intervals.push((at("running").unwrap(), at("completed").unwrap(), name));
    }
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlapped: {pair:?}");
    }
    assert!(queued >= 1, "no run waited in the queue");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hard_limit_stops_a_busy_agent_and_keeps_its_work() {
    let fx = fixture(
        json!({ "turns": [bash_turn("echo started > started.txt; sleep 120"), text_turn("never")] }),
        "",
    )
    .await;
    // The limit counts from the run's start, OpenCode's boot included, which takes over 6 s on a
    // loaded 2-core machine: 20 s leaves the agent time to write before the limit stops it.
    let out = fx.run("slow", &["--json", "--timeout", "20"], "x").await;
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let s = summary(&out);
    assert_eq!(s["error"]["reason_code"], "timeout", "{s}");
    assert_eq!(s["branch"], "warren/slow", "{s}");
    assert_eq!(
        super::harness::git(&fx.repo, &["show", "warren/slow:started.txt"]),
        "started\n"
    );
}
