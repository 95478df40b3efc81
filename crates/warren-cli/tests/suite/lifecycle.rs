//! Long-lived sandboxes: launch returns while the agent works under a detached monitor; logs can
//! attach, detach and re-attach and see every event once, in order; exec continues the same
//! OpenCode session; export and teardown respect the lease and never lose unexported work; a
//! killed monitor leaves a consistent, exportable sandbox.

use std::time::Duration;

use serde_json::{Value, json};

use crate::every_backend;

use super::harness::{
    Backend, Fixture, bash_turn, git, json_lines, scenario, status, stderr, stdout, text_turn,
    when_turn,
};

every_backend!(launch_follow_exec_export_teardown);

async fn launch_follow_exec_export_teardown(backend: Backend) {
    let fx = Fixture::with_backend(&scenario(vec![
        when_turn("first task", json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/first.txt", "content": "first\n" } }] })),
        when_turn("first task", text_turn("first done")),
        when_turn("second part", bash_turn("echo second > second.txt")),
        when_turn("second part", text_turn("second done")),
    ]), backend).await;
    let repo = fx.repo.to_str().unwrap();
    let out = fx
        .warren(&[
            "launch",
            "work",
            "--repo",
            repo,
            "--prompt",
            "first task",
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let launched: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let state = launched["sandbox"]["state"].as_str().unwrap();
    assert!(
        state == "running" || state == "completed",
        "launch returns once the agent started: {state}"
    );

    // Attach, read a prefix, detach; re-attach from there and follow to the end.
    let first = fx.warren(&["logs", "work", "--json"]).await;
    let first = json_lines(&first);
    let since = first.last().map_or(0, |e| e["seq"].as_u64().unwrap());
    let rest = fx
        .warren(&[
            "logs",
            "work",
            "-f",
            "--json",
            "--since",
            &since.to_string(),
        ])
        .await;
    assert!(rest.status.success(), "{}", stderr(&rest));
    let all: Vec<Value> = first.into_iter().chain(json_lines(&rest)).collect();
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        all.iter()
            .any(|e| e["type"] == "tool_use" && e["tool"] == "write")
    );
    let full = json_lines(&fx.warren(&["logs", "work", "--json"]).await);
    assert_eq!(full.len(), all.len(), "a later reader sees the same events");

    let s = status(&fx, "work").await;
    assert_eq!(s["sandbox"]["state"], "completed");
    assert!(s["lease"].is_null(), "the monitor released its lease: {s}");
    let session = s["sandbox"]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(
        s["changed_files"],
        json!([{ "kind": "added", "path": "first.txt" }])
    );

    // Tearing down unexported work is refused.
    let refused = fx.warren(&["teardown", "work", "--json"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        json_lines(&refused)[0]["error"]["reason_code"],
        "unexported_changes"
    );

    // exec continues the same OpenCode session: the model sees the first exchange in its history.
    let exec = fx
        .warren(&["exec", "work", "now the second part", "--json"])
        .await;
    assert!(exec.status.success(), "{}", stderr(&exec));
    let exec_events = json_lines(&exec);
    assert!(
        exec_events
            .iter()
            .any(|e| e["type"] == "tool_use" && e["tool"] == "bash"),
        "{exec_events:?}"
    );
    let s = status(&fx, "work").await;
    assert_eq!(s["sandbox"]["session_id"], session.as_str());
    let last = fx
        .model
        .as_ref()
        .unwrap()
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.has_tools)
        .unwrap();
    assert!(
        last.body.to_string().contains("first task"),
        "the follow-up carried the session history"
    );

    let export = fx.warren(&["export", "work", "--json"]).await;
    assert!(export.status.success(), "{}", stderr(&export));
    let exported: Value = serde_json::from_str(&stdout(&export)).unwrap();
    assert_eq!(exported["export"]["branch"], "warren/work");
    assert_eq!(git(&fx.repo, &["show", "warren/work:first.txt"]), "first\n");
    assert_eq!(
        git(&fx.repo, &["show", "warren/work:second.txt"]),
        "second\n"
    );

    let down = fx.warren(&["teardown", "work", "--json"]).await;
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(status(&fx, "work").await["sandbox"]["state"], "destroyed");
}

every_backend!(a_killed_monitor_leaves_a_consistent_exportable_sandbox);

async fn a_killed_monitor_leaves_a_consistent_exportable_sandbox(backend: Backend) {
    let fx = Fixture::with_backend(
        &scenario(vec![
            bash_turn("echo before-the-crash > saved.txt && sleep 60"),
            text_turn("never reached"),
        ]),
        backend,
    )
    .await;
    let repo = fx.repo.to_str().unwrap();
    let out = fx
        .warren(&["launch", "crash", "--repo", repo, "--prompt", "work"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // Wait until the agent wrote its file, then kill the monitor (by the pid its lease records).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let pid = loop {
        let s = status(&fx, "crash").await;
        if let (true, Some(pid)) = (fx.agent_called(), s["lease"]["pid"].as_u64()) {
            // The bash tool writes its file at once, then sleeps: give it a moment.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            break pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never started: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );

    // A read shows the loss without recording it: reads never write.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let s = status(&fx, "crash").await;
        if s["supervisor_lost"] == true {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never showed the dead supervisor: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(seen["sandbox"]["state"], "running", "{seen}");
    assert!(seen["lease"].is_null(), "{seen}");
    let again = status(&fx, "crash").await;
    assert_eq!(
        again["sandbox"]["state_changed_at"], seen["sandbox"]["state_changed_at"],
        "status changed the record"
    );

    // The reconciler (gc) records it: not running, with a reason, no live lease.
    let gc = fx.warren(&["gc", "--json"]).await;
    assert!(gc.status.success(), "{}", stderr(&gc));
    let gc: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(
        gc["gc"]["marked_error"],
        serde_json::json!(["crash"]),
        "{gc}"
    );
    if backend == Backend::Kubernetes {
        // The pod outlived its monitor; its files came back before it went.
        assert_eq!(
            gc["pods_recovered"].as_array().map(Vec::len),
            Some(1),
            "{gc}"
        );
    }
    let s = status(&fx, "crash").await;
    assert_eq!(s["sandbox"]["state"], "error", "{s}");
    assert!(s["lease"].is_null());
    assert_eq!(
        s["sandbox"]["error"]["reason_code"], "supervisor_lost",
        "{s}"
    );
    assert!(
        s["sandbox"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("supervisor died"),
        "{s}"
    );
    assert!(
        s["sandbox"]["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("warren export crash"),
        "{s}"
    );
    // Running the reconciler again changes nothing.
    let gc = fx.warren(&["gc", "--json"]).await;
    let gc: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(gc["gc"]["marked_error"], serde_json::json!([]), "{gc}");

    // The agent's work is still exportable.
    let export = fx.warren(&["export", "crash", "--json"]).await;
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(
        git(&fx.repo, &["show", "warren/crash:saved.txt"]),
        "before-the-crash\n"
    );
    let down = fx.warren(&["teardown", "crash"]).await;
    assert!(down.status.success(), "{}", stderr(&down));
    let id = s["sandbox"]["id"].as_str().unwrap().to_owned();
    if backend == Backend::Docker {
        super::harness::assert_no_container(&id);
    }
    if backend == Backend::Kubernetes {
        super::kube::assert_no_pod(&id).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_on_a_busy_sandbox_are_refused_naming_the_holder() {
    let fx = Fixture::new(&scenario(vec![
        bash_turn("sleep 60"),
        text_turn("never reached"),
    ]))
    .await;
    let repo = fx.repo.to_str().unwrap();
    let out = fx
        .warren(&["launch", "busy", "--repo", repo, "--prompt", "work"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));

    let export = fx.warren(&["export", "busy", "--json"]).await;
    assert_eq!(
        export.status.code(),
        Some(3),
        "busy is retryable: {}",
        stdout(&export)
    );
    let error = &json_lines(&export)[0]["error"];
    assert_eq!(error["reason_code"], "sandbox_busy");
    assert_eq!(error["retryable"], true);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("launch held by pid:"),
        "{error}"
    );

    let exec = fx.warren(&["exec", "busy", "more", "--json"]).await;
    assert_eq!(json_lines(&exec)[0]["error"]["reason_code"], "wrong_state");

    let teardown = fx.warren(&["teardown", "busy", "--json"]).await;
    assert_eq!(
        json_lines(&teardown)[0]["error"]["reason_code"],
        "sandbox_busy"
    );

    // --force stops the monitor (and with it the agent) and removes the sandbox.
    let forced = fx.warren(&["teardown", "busy", "--force", "--json"]).await;
    assert!(forced.status.success(), "{}", stdout(&forced));
    let s = status(&fx, "busy").await;
    assert_eq!(s["sandbox"]["state"], "destroyed");
    assert!(s["lease"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_applies_retention_only_to_exported_work_and_removes_orphans() {
    let fx = Fixture::new(&scenario(vec![
        json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/a.txt", "content": "a\n" } }], "repeat": 2 }),
        json!({ "text": "done", "repeat": 2 }),
    ]))
    .await;
    let mut config = std::fs::read_to_string(&fx.config).unwrap();
    config.push_str("\n[sandbox]\ncompleted_retention_mins = 0\n");
    std::fs::write(&fx.config, config).unwrap();
    let repo = fx.repo.to_str().unwrap();
    for name in ["kept", "exported"] {
        let out = fx
            .warren(&["launch", name, "--repo", repo, "--prompt", "work"])
            .await;
        assert!(out.status.success(), "{}", stderr(&out));
        let follow = fx.warren(&["logs", name, "-f"]).await;
        assert!(follow.status.success(), "{}", stderr(&follow));
    }
    let export = fx.warren(&["export", "exported"]).await;
    assert!(export.status.success(), "{}", stderr(&export));
    let orphan = fx.data.join("sandboxes").join("deadbeef0000");
    std::fs::create_dir_all(orphan.join("workspace")).unwrap();

    let gc = fx.warren(&["gc", "--json"]).await;
    assert!(gc.status.success(), "{}", stderr(&gc));
    let report: Value = serde_json::from_str(&stdout(&gc)).unwrap();
    assert_eq!(report["gc"]["torn_down"], json!(["exported"]));
    assert_eq!(report["gc"]["kept_unexported"], json!(["kept"]));
    assert!(!orphan.exists(), "orphan directory kept");
    assert_eq!(
        status(&fx, "exported").await["sandbox"]["state"],
        "destroyed"
    );
    assert_eq!(status(&fx, "kept").await["sandbox"]["state"], "completed");
    let down = fx.warren(&["teardown", "kept", "--force"]).await;
    assert!(down.status.success(), "{}", stderr(&down));
}

#[tokio::test(flavor = "multi_thread")]
async fn export_as_a_patch_and_pull_into_a_directory() {
    let fx = Fixture::new(&scenario(vec![
        bash_turn(
            "printf 'new\\n' > added.txt && rm README.md && mkdir -p d && printf 'x\\n' > d/x.txt",
        ),
        text_turn("done"),
    ]))
    .await;
    let repo = fx.repo.to_str().unwrap();
    assert!(
        fx.warren(&["launch", "files", "--repo", repo, "--prompt", "work"])
            .await
            .status
            .success()
    );
    assert!(fx.warren(&["logs", "files", "-f"]).await.status.success());

    let patch = fx.dir.path().join("series.patch");
    let out = fx
        .warren(&[
            "export",
            "files",
            "--patch",
            patch.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        git(&fx.repo, &["branch", "--list", "warren/*"]).is_empty(),
        "a patch export creates no branch"
    );
    // The series applies with `git am` on a clone at the base commit.
    let clone = fx.dir.path().join("clone");
    git(
        fx.dir.path(),
        &["clone", "-q", repo, clone.to_str().unwrap()],
    );
    git(&clone, &["am", "-q", patch.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(clone.join("added.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("d/x.txt")).unwrap(),
        "x\n"
    );
    assert!(!clone.join("README.md").exists());

    let target = fx.dir.path().join("pulled");
    let out = fx
        .warren(&["pull", "files", "--to", target.to_str().unwrap(), "--json"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(target.join("added.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("d/x.txt")).unwrap(),
        "x\n"
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(target.join(".warren-pull.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["deleted"], json!(["README.md"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_sends_host_changes_and_exec_sees_them() {
    let fx = Fixture::new(&scenario(vec![
        when_turn("first", json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/agent.txt", "content": "agent\n" } }] })),
        when_turn("first", text_turn("done")),
        when_turn("second", bash_turn("cat README.md notes.txt")),
        when_turn("second", text_turn("read them")),
    ]))
    .await;
    let repo = fx.repo.to_str().unwrap();
    assert!(
        fx.warren(&["launch", "syncer", "--repo", repo, "--prompt", "first"])
            .await
            .status
            .success()
    );
    assert!(fx.warren(&["logs", "syncer", "-f"]).await.status.success());

    // The user keeps working on the host.
    std::fs::write(
        fx.repo.join("README.md"),
        "# sample\n\nedited on the host\n",
    )
    .unwrap();
    std::fs::write(fx.repo.join("notes.txt"), "new on the host\n").unwrap();
    let out = fx.warren(&["sync", "syncer", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["sync"]["updated"], 2, "{report}");
    assert_eq!(report["sync"]["conflicts"], json!([]));

    let exec = fx.warren(&["exec", "syncer", "second", "--json"]).await;
    assert!(exec.status.success(), "{}", stderr(&exec));
    let outputs: String = json_lines(&exec)
        .iter()
        .filter(|e| e["type"] == "tool_use")
        .map(|e| e["output"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        outputs.contains("edited on the host") && outputs.contains("new on the host"),
        "{outputs}"
    );

    // The host's changes are not the agent's: they ride in the user-changes commit.
    assert!(fx.warren(&["export", "syncer"]).await.status.success());
    let agent = git(
        &fx.repo,
        &[
            "diff-tree",
            "--no-commit-id",
            "-r",
            "--name-only",
            "warren/syncer",
        ],
    );
    assert_eq!(agent.trim(), "agent.txt", "{agent}");
    let user = git(
        &fx.repo,
        &[
            "diff-tree",
            "--no-commit-id",
            "-r",
            "--name-only",
            "warren/syncer~1",
        ],
    );
    assert!(
        user.contains("README.md") && user.contains("notes.txt"),
        "{user}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_after_the_user_moved_on_stays_on_the_synced_commit_and_says_so() {
    let fx = Fixture::new(&scenario(vec![
        json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/agent.txt", "content": "agent\n" } }] }),
        text_turn("done"),
    ]))
    .await;
    let repo = fx.repo.to_str().unwrap();
    let synced = git(&fx.repo, &["rev-parse", "HEAD"]).trim().to_owned();
    assert!(
        fx.warren(&["launch", "moved", "--repo", repo, "--prompt", "work"])
            .await
            .status
            .success()
    );
    assert!(fx.warren(&["logs", "moved", "-f"]).await.status.success());
    std::fs::write(fx.repo.join("later.txt"), "later\n").unwrap();
    git(&fx.repo, &["add", "later.txt"]);
    git(&fx.repo, &["commit", "-qm", "the user moves on"]);
    let now = git(&fx.repo, &["rev-parse", "HEAD"]).trim().to_owned();

    let out = fx.warren(&["export", "moved", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let exported: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(exported["export"]["based_on"], synced.as_str());
    assert_eq!(exported["export"]["head_moved_to"], now.as_str());
    assert!(stderr(&out).contains("has moved on"), "{}", stderr(&out));
    assert_eq!(
        git(&fx.repo, &["rev-parse", "warren/moved~1"]).trim(),
        synced
    );
    assert!(fx.warren(&["teardown", "moved"]).await.status.success());
}
