//! Nothing a reader does changes a run. With a one-shot `warren run` working in one terminal,
//! every command a user might type in another (`list`, `status`, `logs`, `logs -f`, `gc`, and
//! the refused `sync`, `export`, `teardown`) leaves the run's outcome, its branch and its gapless
//! event stream exactly as they would have been. This once lost an agent's work.

use std::time::Duration;

use serde_json::Value;

use crate::every_backend;

use super::harness::{
    Backend, Fixture, bash_turn, git, json_lines, scenario, status, stderr, stdout, text_turn,
};

every_backend!(readers_during_a_run_change_nothing);

async fn readers_during_a_run_change_nothing(backend: Backend) {
    // The agent writes its file at once, then works a while: the readers act in that window.
    let fx = Fixture::with_backend(
        &scenario(vec![
            bash_turn("echo kept > agent.txt; sleep 8"),
            text_turn("Done."),
        ]),
        backend,
    )
    .await;
    let run = fx.spawn_run("norm", "write a file");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        // Until the run has recorded its sandbox, there is nothing to read.
        let out = fx.warren(&["status", "norm", "--json"]).await;
        let s: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
        if s["sandbox"]["state"] == "running" && fx.agent_called() {
            assert_eq!(s["busy"], true, "a held sandbox reads as busy: {s}");
            assert_eq!(s["supervisor_lost"], false, "{s}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never started: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A follower attached for the whole run, from the start.
    let follower = fx
        .command(&["logs", "norm", "-f", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Every reader, while the agent works.
    for args in [
        &["list", "--json"][..],
        &["list", "--all", "--json"],
        &["status", "norm", "--json"],
        &["status", "norm"],
        &["logs", "norm", "--json"],
        &["gc", "--json"],
    ] {
        let out = fx.warren(args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let s = status(&fx, "norm").await;
        assert_eq!(s["sandbox"]["state"], "running", "after {args:?}: {s}");
    }
    let listed = fx.warren(&["list", "--json"]).await;
    let listed: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(listed["sandboxes"][0]["state"], "running", "{listed}");

    // Every command that would change it is refused: the run holds the sandbox.
    for args in [
        &["sync", "norm", "--json"][..],
        &["export", "norm", "--json"],
        &["teardown", "norm", "--json"],
    ] {
        let out = fx.warren(args).await;
        let lines = json_lines(&out);
        let error = &lines.last().unwrap()["error"];
        assert_eq!(error["reason_code"], "sandbox_busy", "{args:?}: {error}");
        assert!(error["hint"].is_string(), "{args:?}: {error}");
        assert_eq!(out.status.code(), Some(3), "{args:?}");
    }

    // The run ends as if nobody had looked.
    let out = run.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let lines = json_lines(&out);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["success"], true, "{summary}");
    assert_eq!(summary["branch"], "warren/norm", "{summary}");
    assert_eq!(git(&fx.repo, &["show", "warren/norm:agent.txt"]), "kept\n");

    // Its stream is gapless from 1 and is exactly what was recorded.
    let streamed: Vec<u64> = lines.iter().filter_map(|l| l["seq"].as_u64()).collect();
    let expected: Vec<u64> = (1..=streamed.len() as u64).collect();
    assert_eq!(streamed, expected, "the run's stream has a gap");
    let recorded = fx.warren(&["logs", "norm", "--json"]).await;
    let recorded: Vec<u64> = json_lines(&recorded)
        .iter()
        .filter_map(|l| l["seq"].as_u64())
        .collect();
    assert_eq!(recorded, streamed, "the stream and the record differ");
    let s = status(&fx, "norm").await;
    assert_eq!(s["sandbox"]["state"], "destroyed", "{s}");
    assert!(s["sandbox"]["error"].is_null(), "{s}");

    // The follower saw the same events, once each, and ended with the run.
    let followed = tokio::time::timeout(Duration::from_secs(30), follower.wait_with_output())
        .await
        .expect("logs -f did not end with the run")
        .unwrap();
    assert!(followed.status.success(), "{}", stderr(&followed));
    let followed: Vec<u64> = json_lines(&followed)
        .iter()
        .filter_map(|l| l["seq"].as_u64())
        .collect();
    assert_eq!(followed, streamed, "logs -f differs from the run's stream");
}
