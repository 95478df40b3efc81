//! What `--json` prints matches the committed JSON Schemas (`docs/schemas/`, generated from
//! `warren-api`'s types and held to them by its own test): every line of a run, a launched
//! sandbox's life, the reads, and an error, each validated against its view's schema.

use std::path::Path;

use serde_json::{Value, json};

use super::harness::{Fixture, json_lines, scenario, stderr, stdout, text_turn, when_turn};

fn committed(view: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schemas")
        .join(format!("{view}.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(view: &str, line: &Value) {
    let errors: Vec<String> = committed(view)
        .iter_errors(line)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "a `{view}` line does not match docs/schemas/{view}.json: {errors:#?}\n{line:#}"
    );
}

/// The one line a `--json` command printed, checked against `view`; it must have succeeded.
async fn one(fx: &Fixture, view: &str, args: &[&str]) -> Value {
    let out = fx.warren(args).await;
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{args:?}: {}", stdout(&out));
    check(view, &lines[0]);
    lines[0].clone()
}

fn write(path: &str) -> Value {
    json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": path, "content": "x\n" } }] })
}

#[tokio::test(flavor = "multi_thread")]
async fn json_output_matches_the_committed_schemas() {
    let fx = Fixture::new(&scenario(vec![
        when_turn("one-shot", write("/workspace/run.txt")),
        when_turn("one-shot", text_turn("done")),
        when_turn("long-lived", write("/workspace/launched.txt")),
        when_turn("long-lived", text_turn("done")),
        when_turn("follow-up", write("/workspace/more.txt")),
        when_turn("follow-up", text_turn("done")),
    ]))
    .await;

    // A run: events, then the summary.
    let run = fx.run("oneshot", &["--json"], "one-shot task").await;
    assert!(run.status.success(), "{}", stderr(&run));
    let lines = json_lines(&run);
    let (summary, events) = lines.split_last().unwrap();
    assert!(events.len() > 3, "{}", stdout(&run));
    for event in events {
        check("event", event);
    }
    check("summary", summary);

    // A long-lived sandbox through its commands.
    let repo = fx.repo.to_str().unwrap();
    let launched = one(
        &fx,
        "sandbox",
        &[
            "launch",
            "kept",
            "--repo",
            repo,
            "--prompt",
            "long-lived task",
            "--json",
        ],
    )
    .await;
    assert_eq!(launched["sandbox"]["name"], "kept");
    let follow = fx.warren(&["logs", "kept", "-f", "--json"]).await;
    assert!(follow.status.success(), "{}", stderr(&follow));
    for event in json_lines(&follow) {
        check("event", &event);
    }
    let status = one(&fx, "status", &["status", "kept", "--json"]).await;
    assert_eq!(status["changed_files"][0]["path"], "launched.txt");
    let exec = fx
        .warren(&["exec", "kept", "the follow-up", "--json"])
        .await;
    assert!(exec.status.success(), "{}", stderr(&exec));
    for event in json_lines(&exec) {
        check("event", &event);
    }
    one(&fx, "sync", &["sync", "kept", "--json"]).await;
    one(&fx, "open", &["open", "kept", "--json"]).await;
    let pulled = fx.dir.path().join("pulled");
    let pulled = pulled.to_str().unwrap();
    one(&fx, "pull", &["pull", "kept", "--to", pulled, "--json"]).await;
    one(&fx, "export", &["export", "kept", "--json"]).await;
    one(&fx, "sandbox", &["teardown", "kept", "--json"]).await;

    let list = one(&fx, "list", &["list", "--all", "--json"]).await;
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 2);
    one(&fx, "gc", &["gc", "--json"]).await;
    one(&fx, "config", &["config", "show", "--repo", repo, "--json"]).await;

    // A failure, and a failure that stops a run before it starts.
    let missing = fx.warren(&["status", "nope", "--json"]).await;
    assert_eq!(missing.status.code(), Some(2));
    check("error", &json_lines(&missing)[0]);
    let refused = fx.warren(&["teardown", "Bad Name", "--json"]).await;
    assert_eq!(refused.status.code(), Some(2));
    check("error", &json_lines(&refused)[0]);
}

/// `warren schema VIEW` prints what `docs/schemas/VIEW.json` holds.
#[tokio::test(flavor = "multi_thread")]
async fn the_schema_command_prints_the_committed_schemas() {
    let fx = Fixture::new("{}").await;
    let listed = fx.warren(&["schema"]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let names: Vec<String> = stdout(&listed)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(names.contains(&"summary".to_owned()), "{names:?}");
    for name in &names {
        let out = fx.warren(&["schema", name]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/schemas")
            .join(format!("{name}.json"));
        let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(printed, file, "{name}");
    }
    let unknown = fx.warren(&["schema", "nope", "--json"]).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(
        json_lines(&unknown)[0]["error"]["reason_code"],
        "invalid_argument"
    );
}
