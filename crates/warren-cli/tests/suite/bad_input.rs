//! Bad input gets a clear error naming the problem and the fix, with a stable reason code, and
//! fails fast: not a git repo, OpenCode or bubblewrap missing, the model endpoint unreachable
//! (before the run, and when it dies mid-run), and bad names.

use std::time::Duration;

use serde_json::Value;

use super::harness::{
    Fixture, bash_turn, json_lines, scenario, stderr, stdout, text_turn, wait_for_agent_call,
};

fn only_error(out: &std::process::Output) -> Value {
    let lines = json_lines(out);
    assert_eq!(
        lines.len(),
        1,
        "with --json stdout carries the error and nothing else: {lines:?}"
    );
    lines[0]["error"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn not_a_git_repo_is_a_user_error_naming_the_path() {
    let fx = Fixture::new("{}").await;
    let plain = fx.dir.path().join("plain-dir");
    std::fs::create_dir_all(&plain).unwrap();
    let out = fx
        .warren(&["run", "--repo", plain.to_str().unwrap(), "--json", "x"])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let error = only_error(&out);
    assert_eq!(error["reason_code"], "not_a_git_repo");
    assert_eq!(error["retryable"], false);
    assert!(
        error["message"].as_str().unwrap().contains("plain-dir"),
        "{error}"
    );
    assert!(
        error["hint"].as_str().unwrap().contains("git init"),
        "{error}"
    );

    let human = fx
        .warren(&["run", "--repo", plain.to_str().unwrap(), "x"])
        .await;
    assert_eq!(human.status.code(), Some(2));
    assert!(stdout(&human).is_empty(), "errors go to stderr");
    assert!(
        stderr(&human).contains("not_a_git_repo"),
        "{}",
        stderr(&human)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_opencode_says_how_to_install_it() {
    let fx = Fixture::new("{}").await;
    let out = fx
        .warren_with(
            &["run", "--repo", fx.repo.to_str().unwrap(), "--json", "x"],
            |cmd| {
                cmd.env("WARREN_OPENCODE", "/nonexistent/opencode");
            },
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    let error = only_error(&out);
    assert_eq!(error["reason_code"], "missing_dependency");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/opencode"),
        "{error}"
    );
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("npm install -g opencode-ai@"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_bubblewrap_says_how_to_install_it() {
    let fx = Fixture::new("{}").await;
    let out = fx
        .warren_with(
            &["run", "--repo", fx.repo.to_str().unwrap(), "--json", "x"],
            |cmd| {
                cmd.env("WARREN_BWRAP", "/nonexistent/bwrap");
            },
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    let error = only_error(&out);
    assert_eq!(error["reason_code"], "missing_dependency");
    assert!(
        error["message"].as_str().unwrap().contains("bubblewrap"),
        "{error}"
    );
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("apt-get install bubblewrap"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_endpoint_fails_fast_with_a_network_error() {
    let fx = Fixture::new("{}").await;
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    fx.write_config(&format!("http://127.0.0.1:{closed}/v1"));
    let out = fx
        .warren(&["run", "--repo", fx.repo.to_str().unwrap(), "--json", "x"])
        .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "retryable class: {}",
        stderr(&out)
    );
    let error = only_error(&out);
    assert_eq!(error["reason_code"], "model_unreachable");
    assert_eq!(error["retryable"], true);
    assert!(
        error["hint"].as_str().unwrap().contains("is it running?"),
        "{error}"
    );
    assert!(
        !fx.data.join("sandboxes").exists(),
        "nothing is created for a run that cannot work"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_that_dies_mid_run_fails_the_run_without_waiting_for_opencode_retries() {
    let mut fx = Fixture::new(&scenario(vec![
        bash_turn("echo work > progress.txt && sleep 2"),
        text_turn("never reached"),
    ]))
    .await;
    let child = fx.spawn_run("dies", "work");
    // Stop the model once the agent's first request was served; the next one finds a closed port.
    let model = fx.model.take().unwrap();
    wait_for_agent_call(&model).await;
    model.shutdown().await;
    // OpenCode alone would retry for over a minute; the gateway must cut that short. The 45 s
    // guard only catches a hang, it is not a performance target.
    let out = tokio::time::timeout(Duration::from_secs(45), child.wait_with_output())
        .await
        .expect("warren did not fail fast when the model endpoint died")
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let lines = json_lines(&out);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(
        summary["error"]["reason_code"], "model_unreachable",
        "{summary}"
    );
    // The work done before the failure is not lost: it is on the branch.
    assert_eq!(summary["branch"], "warren/dies", "{summary}");
    let content = super::harness::git(&fx.repo, &["show", "warren/dies:progress.txt"]);
    assert_eq!(content, "work\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_name_and_an_empty_prompt_are_rejected_before_anything_runs() {
    let fx = Fixture::new("{}").await;
    let out = fx
        .warren(&[
            "run",
            "--repo",
            fx.repo.to_str().unwrap(),
            "--name",
            "../evil",
            "--json",
            "x",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let error = only_error(&out);
    assert_eq!(error["reason_code"], "invalid_argument");
    assert!(
        error["message"].as_str().unwrap().contains("../evil"),
        "{error}"
    );

    let out = fx
        .warren(&["run", "--repo", fx.repo.to_str().unwrap(), "--json", "  "])
        .await;
    assert_eq!(only_error(&out)["reason_code"], "invalid_argument");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_the_agent_and_keeps_its_work() {
    let fx = Fixture::new(&scenario(vec![
        bash_turn("echo partial > partial.txt && sleep 60"),
        text_turn("never reached"),
    ]))
    .await;
    let child = fx.spawn_run("interrupted", "work");
    let pid = child.id().unwrap();
    let model = fx.model.as_ref().unwrap();
    wait_for_agent_call(model).await;
    // Give the bash tool a moment to write its file, then interrupt warren (by its pid).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("warren did not stop after Ctrl-C")
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let lines = json_lines(&out);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["error"]["reason_code"], "interrupted", "{summary}");
    assert_eq!(
        super::harness::git(&fx.repo, &["show", "warren/interrupted:partial.txt"]),
        "partial\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_naming_a_missing_image_names_the_key() {
    if !super::harness::docker_ready().await {
        return;
    }
    let fx = Fixture::new("{}").await;
    let mut config = std::fs::read_to_string(&fx.config).unwrap();
    config.push_str("heavy = \"warren-sandbox-heavy:does-not-exist\"\n");
    std::fs::write(&fx.config, config).unwrap();
    let out = fx
        .warren(&[
            "launch",
            "heavy",
            "--repo",
            fx.repo.to_str().unwrap(),
            "--provider",
            "docker",
            "--profile",
            "heavy",
            "--json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let error = only_error(&out);
    assert_eq!(error["reason_code"], "missing_dependency");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("sandbox.image_profiles.heavy") && message.contains("does-not-exist"),
        "{message}"
    );
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("warren image build"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_refuses_to_overwrite_a_patch_file_without_force_and_changes_nothing() {
    let fx = Fixture::new(&scenario(vec![
        serde_json::json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/added.txt", "content": "added\n" } }] }),
        text_turn("done"),
    ]))
    .await;
    let repo = fx.repo.to_str().unwrap();
    let out = fx
        .warren(&[
            "launch",
            "work",
            "--repo",
            repo,
            "--prompt",
            "add a file",
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let followed = fx.warren(&["logs", "work", "-f", "--json"]).await;
    assert!(followed.status.success(), "{}", stderr(&followed));
    let before = super::harness::status(&fx, "work").await;
    assert_eq!(before["sandbox"]["state"], "completed", "{before}");
    let events_before = json_lines(&fx.warren(&["logs", "work", "--json"]).await).len();

    let patch = fx.dir.path().join("mine.patch");
    std::fs::write(&patch, "the user's own file\n").unwrap();
    let refused = fx
        .warren(&[
            "export",
            "work",
            "--patch",
            patch.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let error = only_error(&refused);
    assert_eq!(error["reason_code"], "invalid_argument");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{error}"
    );
    assert!(
        error["hint"].as_str().unwrap().contains("--force"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(&patch).unwrap(),
        "the user's own file\n",
        "a refused export leaves the file alone"
    );
    let after = super::harness::status(&fx, "work").await;
    assert_eq!(
        after["sandbox"], before["sandbox"],
        "a refused export changes nothing in the record (no `saving`)"
    );
    assert!(after["lease"].is_null(), "{after}");
    assert_eq!(
        json_lines(&fx.warren(&["logs", "work", "--json"]).await).len(),
        events_before,
        "a refused export records no event"
    );

    let forced = fx
        .warren(&[
            "export",
            "work",
            "--patch",
            patch.to_str().unwrap(),
            "--force",
            "--json",
        ])
        .await;
    assert!(forced.status.success(), "{}", stderr(&forced));
    let written = std::fs::read_to_string(&patch).unwrap();
    assert!(
        written.starts_with("From ") && written.contains("added.txt"),
        "{written}"
    );
}
