//! What users read, pinned: human and `--json` output of the commands, with temp paths, ids,
//! times and token counts filtered so the snapshots hold only what must not change by accident.

use super::harness::{Fixture, json_lines, scenario, stderr, stdout};

fn settings(fx: &Fixture) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    let tmp = fx.dir.path().display().to_string();
    s.add_filter(&regex_escape(&tmp), "[TMP]");
    s.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?", "[TIME]");
    s.add_filter(r"\b[0-9a-f]{32}\b", "[ID]");
    s.add_filter(r"\b[0-9a-f]{40}\b", "[OID]");
    s.add_filter(r"ses_[0-9A-Za-z]+", "[SESSION]");
    s.add_filter(r"pid:\d+@[\w.-]+", "[HOLDER]");
    s.add_filter(
        r#""(input|output|cache_read|cache_write|reasoning)":\s*\d+"#,
        "\"$1\": [N]",
    );
    s.add_filter(r"\d+ in, \d+ out", "[N] in, [N] out");
    s.add_filter(r#""(\w+_ms)":\s*[\d.]+"#, "\"$1\": [MS]");
    s.add_filter(r"\d+\.\d s \(agent \d+\.\d s\)", "[DURATION]");
    s.set_prepend_module_to_snapshot(false);
    s
}

fn write_a() -> serde_json::Value {
    serde_json::json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/a.txt", "content": "a\n" } }] })
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_in_both_forms() {
    let fx = Fixture::new("{}").await;
    let plain = fx.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let human = fx
        .warren(&["run", "--repo", plain.to_str().unwrap(), "x"])
        .await;
    let json = fx
        .warren(&["run", "--repo", plain.to_str().unwrap(), "--json", "x"])
        .await;
    let missing = fx.warren(&["status", "nope", "--json"]).await;
    settings(&fx).bind(|| {
        insta::assert_snapshot!("not_a_repo_human", stderr(&human));
        insta::assert_snapshot!("not_a_repo_json", stdout(&json));
        insta::assert_snapshot!("unknown_sandbox_json", stdout(&missing));
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn run_summary_list_and_status() {
    let fx = Fixture::new(&scenario(vec![
        write_a(),
        serde_json::json!({ "text": "done" }),
        write_a(),
        serde_json::json!({ "text": "done" }),
    ]))
    .await;
    let run = fx.run("snap", &[], "write a").await;
    assert!(run.status.success(), "{}", stderr(&run));
    let list = fx.warren(&["list", "--all"]).await;
    let status = fx.warren(&["status", "snap"]).await;
    let json = fx.run("snap-json", &["--json"], "write a again").await;
    let lines = json_lines(&json);
    let summary = serde_json::to_string_pretty(lines.last().unwrap()).unwrap();
    settings(&fx).bind(|| {
        insta::assert_snapshot!("run_summary_human", stdout(&run));
        insta::assert_snapshot!("list_human", stdout(&list));
        insta::assert_snapshot!("status_human", stdout(&status));
        insta::assert_snapshot!("run_summary_json", summary);
    });
}
