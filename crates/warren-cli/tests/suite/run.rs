//! `warren run` end to end: the agent writes, edits and deletes files; the branch holds exactly
//! those changes on top of the user's uncommitted edit; the checkout is untouched; the sandbox is
//! gone afterwards and the record stays.

use serde_json::{Value, json};

use crate::every_backend;

use super::harness::{
    Backend, Fixture, bash_turn, git, json_lines, scenario, snapshot, stderr, stdout, text_turn,
};

fn write_turn(path: &str, content: &str) -> Value {
    json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": path, "content": content } }] })
}

fn edit_turn(path: &str, old: &str, new: &str) -> Value {
    json!({ "tool_calls": [{ "name": "edit", "arguments": { "filePath": path, "oldString": old, "newString": new } }] })
}

async fn fixture_with_user_state(backend: Backend) -> Fixture {
    let fx = Fixture::with_backend(
        &scenario(vec![
            write_turn("/workspace/src/new file.txt", "created by the agent\n"),
            edit_turn("/workspace/src/app.py", "return 1", "return 2"),
            bash_turn("rm obsolete.txt && chmod +x tool.sh"),
            text_turn("Done: added, edited, deleted."),
        ]),
        backend,
    )
    .await;
    let repo = &fx.repo;
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("src/app.py"), "def f():\n    return 1\n").unwrap();
    std::fs::write(repo.join("obsolete.txt"), "old\n").unwrap();
    std::fs::write(repo.join("tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
    std::fs::write(repo.join("blob.bin"), (0u8..=255).collect::<Vec<u8>>()).unwrap();
    std::fs::write(repo.join(".gitignore"), "*.log\n").unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", "project"]);
    // The user's uncommitted work: an edit, an untracked file, an ignored file.
    std::fs::write(repo.join("README.md"), "# sample\n\nuncommitted edit\n").unwrap();
    std::fs::write(repo.join("notes.txt"), "untracked but not ignored\n").unwrap();
    std::fs::write(repo.join("debug.log"), "ignored, must not be sent\n").unwrap();
    fx
}

fn name_status(repo: &std::path::Path, rev: &str) -> Vec<String> {
    git(
        repo,
        &["diff-tree", "--no-commit-id", "-r", "--name-status", rev],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

every_backend!(the_branch_holds_exactly_the_agents_changes_and_the_checkout_is_untouched);

async fn the_branch_holds_exactly_the_agents_changes_and_the_checkout_is_untouched(
    backend: Backend,
) {
    let fx = fixture_with_user_state(backend).await;
    let repo = fx.repo.clone();
    let head_before = git(&repo, &["rev-parse", "HEAD"]);
    let before = snapshot(&repo, &[".git/objects", ".git/refs", ".git/logs"]);
    let index_before = std::fs::read(repo.join(".git/index")).unwrap();

    let out = fx.run("fix-login", &[], "make the change").await;
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let human = stderr(&out);
    assert!(human.contains("write"), "tool calls are streamed: {human}");
    assert!(
        stdout(&out).contains("branch:   warren/fix-login (4 files changed)"),
        "{}",
        stdout(&out)
    );

    // History: HEAD → the user's uncommitted changes → exactly the agent's changes.
    let commits = git(&repo, &["rev-list", "--reverse", "main..warren/fix-login"]);
    let commits: Vec<&str> = commits.lines().collect();
    assert_eq!(
        commits.len(),
        2,
        "expected a user-changes commit and an agent commit"
    );
    assert_eq!(
        git(&repo, &["rev-parse", "warren/fix-login~2"]),
        head_before
    );
    let mut user = name_status(&repo, commits[0]);
    user.sort();
    assert_eq!(user, vec!["A\tnotes.txt", "M\tREADME.md"]);
    let mut agent = name_status(&repo, commits[1]);
    agent.sort();
    assert_eq!(
        agent,
        vec![
            "A\tsrc/new file.txt",
            "D\tobsolete.txt",
            "M\tsrc/app.py",
            "M\ttool.sh"
        ]
    );
    assert_eq!(
        git(&repo, &["show", "warren/fix-login:src/app.py"]),
        "def f():\n    return 2\n"
    );
    assert_eq!(
        git(&repo, &["show", "warren/fix-login:src/new file.txt"]),
        "created by the agent\n"
    );
    let tree = git(&repo, &["ls-tree", "-r", "warren/fix-login"]);
    assert!(
        tree.lines()
            .any(|l| l.starts_with("100755") && l.ends_with("\ttool.sh")),
        "{tree}"
    );
    assert!(
        !tree.contains("debug.log"),
        "an ignored file was exported: {tree}"
    );
    let blob = std::process::Command::new("git")
        .args([
            "-C",
            repo.to_str().unwrap(),
            "cat-file",
            "blob",
            "warren/fix-login:blob.bin",
        ])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        blob,
        (0u8..=255).collect::<Vec<u8>>(),
        "binary file changed on the way"
    );
    git(&repo, &["fsck", "--strict", "--no-progress"]);

    // The user's checkout: files, index, HEAD, branch: byte for byte the same.
    assert_eq!(
        snapshot(&repo, &[".git/objects", ".git/refs", ".git/logs"]),
        before
    );
    assert_eq!(
        std::fs::read(repo.join(".git/index")).unwrap(),
        index_before
    );
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head_before);
    assert_eq!(
        git(&repo, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    assert_eq!(git(&repo, &["stash", "list"]), "");

    // The record stays: destroyed, with its branch and token counts.
    let status = fx.warren(&["status", "fix-login", "--json"]).await;
    assert!(status.status.success(), "{}", stderr(&status));
    let record: Value = serde_json::from_str(&stdout(&status)).unwrap();
    let sandbox = &record["sandbox"];
    assert_eq!(sandbox["state"], "destroyed");
    assert_eq!(sandbox["branch"], "warren/fix-login");
    assert!(sandbox["usage"]["input"].as_u64().unwrap() > 0, "{sandbox}");
    assert!(
        sandbox["session_id"].as_str().unwrap().starts_with("ses_"),
        "{sandbox}"
    );

    // Running again with the same name must not overwrite the branch.
    let again = fx.run("fix-login", &["--json"], "again").await;
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    let lines = json_lines(&again);
    assert_eq!(lines.len(), 1, "only the error on stdout: {lines:?}");
    assert_eq!(lines[0]["error"]["reason_code"], "branch_exists");
    assert_eq!(
        git(&repo, &["rev-parse", "warren/fix-login"]).trim(),
        commits[1]
    );
}

every_backend!(json_mode_streams_ndjson_events_with_sequence_numbers_then_a_summary);

async fn json_mode_streams_ndjson_events_with_sequence_numbers_then_a_summary(backend: Backend) {
    let fx = Fixture::with_backend(
        &scenario(vec![
            write_turn("/workspace/hello.txt", "hello\n"),
            text_turn("Wrote hello.txt."),
        ]),
        backend,
    )
    .await;
    let out = fx.run("json-run", &["--json"], "say hello").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let (summary, events) = lines.split_last().unwrap();
    assert_eq!(summary["summary"]["branch"], "warren/json-run");
    assert_eq!(summary["summary"]["success"], true);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gapless, ordered seq"
    );
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for kind in [
        "synced_in",
        "step_start",
        "tool_use",
        "text",
        "step_finish",
        "exported",
        "finished",
    ] {
        assert!(kinds.contains(&kind), "missing {kind} in {kinds:?}");
    }
    let tool = events.iter().find(|e| e["type"] == "tool_use").unwrap();
    assert_eq!(tool["tool"], "write");
    assert_eq!(tool["status"], "completed");
    // The model saw the gateway's injected credential, never a real one from the sandbox.
    let requests = fx.model.as_ref().unwrap().requests();
    assert!(
        requests.iter().all(|r| r.authorization.is_none()),
        "no key configured, none sent"
    );

    // `logs` replays the same events from the store.
    let logs = fx.warren(&["logs", "json-run", "--json"]).await;
    assert_eq!(json_lines(&logs).len(), events.len());
}

every_backend!(the_sandbox_is_gone_after_the_run);

async fn the_sandbox_is_gone_after_the_run(backend: Backend) {
    // Distinct per backend: the variants run at the same time and must not see each other's.
    let sleeper = match backend {
        Backend::Local => 301,
        Backend::Docker => 302,
        Backend::Kubernetes => 303,
    };
    let fx = Fixture::with_backend(
        &scenario(vec![
            // A background process the agent leaves behind must not survive the teardown.
            bash_turn(&format!(
                "(sleep {sleeper} > /dev/null 2>&1 &) ; echo started"
            )),
            text_turn("Left a sleeper behind."),
        ]),
        backend,
    )
    .await;
    let out = fx.run("gone", &[], "leave something running").await;
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "{}",
        stderr(&out)
    );
    let data = fx.data.to_string_lossy().into_owned();

    // No process: nothing on the machine has the sandbox's directories in its command line or cwd.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !cmdline.contains(&data),
            "process {pid} survived: {cmdline}"
        );
        assert!(
            !cmdline.contains(&format!("sleep {sleeper}")),
            "the agent's background process survived: {pid}"
        );
    }
    // No mount.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&data), "a mount survived:\n{mounts}");
    // No directory beyond the record.
    let leftovers: Vec<_> = std::fs::read_dir(fx.data.join("sandboxes"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "leftover sandbox directories: {leftovers:?}"
    );
    assert!(fx.data.join("warren.db").is_file());
    let list = fx.warren(&["list", "--all", "--json"]).await;
    let listed: Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(listed["sandboxes"][0]["state"], "destroyed");
    let id = listed["sandboxes"][0]["id"].as_str().unwrap().to_owned();
    if backend == Backend::Docker {
        super::harness::assert_no_container(&id);
    }
    if backend == Backend::Kubernetes {
        super::kube::assert_no_pod(&id).await;
    }
    // The baseline ref warren kept during the run is released.
    assert_eq!(git(&fx.repo, &["for-each-ref", "refs/warren/"]), "");
}
