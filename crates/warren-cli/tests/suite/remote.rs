//! The CLI in remote mode against a real `warren serve` (real OpenCode, bubblewrap, the scripted
//! model): a repository with an uncommitted change and an untracked file goes up as a bundle,
//! the agent works, a follow-up runs, the work comes back as `warren/<name>` with the server's
//! commits while the user's checkout stays as it was; and the same commands print the same thing
//! locally and remotely.

use std::path::Path;

use serde_json::{Value, json};

use super::harness::{Fixture, bash_turn, git, scenario, stderr, stdout, text_turn, when_turn};
use super::http::{Server, token};

/// Runs warren with WARREN_SERVER and WARREN_TOKEN set, in the user's repository (where the
/// work comes back to).
async fn remote(fx: &Fixture, server: &Server, token: &str, args: &[&str]) -> std::process::Output {
    let (base, token, repo) = (server.base.clone(), token.to_owned(), fx.repo.clone());
    fx.warren_with(args, move |cmd| {
        cmd.env("WARREN_SERVER", base)
            .env("WARREN_TOKEN", token)
            .current_dir(repo);
    })
    .await
}

fn checkout_state(repo: &Path) -> (String, String) {
    (
        git(repo, &["rev-parse", "HEAD"]),
        git(repo, &["status", "--porcelain", "--untracked-files=all"]),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_mode_launch_follow_exec_export_teardown_prints_as_locally() {
    let fx = Fixture::new(&scenario(vec![
        when_turn("first task", json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/first.txt", "content": "first\n" } }] })),
        when_turn("first task", text_turn("first done")),
        when_turn("second part", bash_turn("cat notes.txt later.txt > seen.txt && echo second > second.txt")),
        when_turn("second part", text_turn("second done")),
    ]))
    .await;
    // The user's uncommitted state: a tracked change and an untracked file.
    std::fs::write(fx.repo.join("README.md"), "# sample, edited\n").unwrap();
    std::fs::write(fx.repo.join("notes.txt"), "untracked notes\n").unwrap();
    let mut before = checkout_state(&fx.repo);
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let repo = fx.repo.to_str().unwrap();

    let out = remote(
        &fx,
        &server,
        &alice,
        &["launch", "work", "--repo", repo, "--prompt", "first task"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line == "sandbox work is running\n" || line == "sandbox work is completed\n",
        "{line}"
    );
    assert!(stderr(&out).contains("follow it with: warren logs work -f"));
    assert_eq!(
        checkout_state(&fx.repo),
        before,
        "launch leaves the checkout alone"
    );

    let out = remote(&fx, &server, &alice, &["logs", "work", "-f"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("✓ write"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("uncommitted changes included"),
        "{}",
        stderr(&out)
    );

    // A change made meanwhile goes in with sync, as locally.
    std::fs::write(fx.repo.join("later.txt"), "written later\n").unwrap();
    before = checkout_state(&fx.repo);
    let out = remote(&fx, &server, &alice, &["sync", "work"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "sent 1 updated and 0 deleted paths into work\n"
    );
    assert_eq!(checkout_state(&fx.repo), before);

    let out = remote(
        &fx,
        &server,
        &alice,
        &["exec", "work", "now the second part"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("✓ bash"), "{}", stderr(&out));

    // The same commands print the same thing locally (the server's data dir is the fixture's).
    for args in [
        &["status", "work"][..],
        &["status", "work", "--json"][..],
        &["list", "--json"][..],
        &["list"][..],
    ] {
        let here = fx.warren(args).await;
        let there = remote(&fx, &server, &alice, args).await;
        assert!(here.status.success(), "{args:?}: {}", stderr(&here));
        assert_eq!(stdout(&here), stdout(&there), "{args:?}");
        assert_eq!(here.status.code(), there.status.code(), "{args:?}");
    }
    let status = stdout(&remote(&fx, &server, &alice, &["status", "work"]).await);
    assert!(status.contains("added first.txt"), "{status}");
    assert!(status.contains("added second.txt"), "{status}");
    for args in [
        &["status", "nosuch"][..],
        &["status", "nosuch", "--json"][..],
    ] {
        let here = fx.warren(args).await;
        let there = remote(&fx, &server, &alice, args).await;
        assert_eq!(here.status.code(), Some(2), "{args:?}");
        assert_eq!(there.status.code(), Some(2), "{args:?}");
    }
    let there: Value = serde_json::from_str(&stdout(
        &remote(&fx, &server, &alice, &["status", "nosuch", "--json"]).await,
    ))
    .unwrap();
    assert_eq!(there["error"]["reason_code"], "sandbox_not_found");

    // The work comes back as warren/work, with the server's commits; the checkout is untouched.
    let out = remote(&fx, &server, &alice, &["export", "work"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "exported 3 changed files to branch warren/work\n"
    );
    let status: Value = serde_json::from_str(&stdout(
        &remote(&fx, &server, &alice, &["status", "work", "--json"]).await,
    ))
    .unwrap();
    let server_repo = Path::new(status["sandbox"]["repo"].as_str().unwrap());
    assert!(
        server_repo.starts_with(&fx.data),
        "the server works on its own copy"
    );
    assert_eq!(
        git(&fx.repo, &["rev-list", "warren/work"]),
        git(server_repo, &["rev-list", "warren/work"]),
        "the same commits"
    );
    assert_eq!(git(&fx.repo, &["show", "warren/work:first.txt"]), "first\n");
    assert_eq!(
        git(&fx.repo, &["show", "warren/work:second.txt"]),
        "second\n"
    );
    assert_eq!(
        git(&fx.repo, &["show", "warren/work:seen.txt"]),
        "untracked notes\nwritten later\n",
        "the agent saw the untracked file and the synced one"
    );
    assert_eq!(
        git(&fx.repo, &["show", "warren/work:later.txt"]),
        "written later\n"
    );
    assert_eq!(
        git(&fx.repo, &["show", "warren/work:README.md"]),
        "# sample, edited\n"
    );
    assert_eq!(
        checkout_state(&fx.repo),
        before,
        "export leaves HEAD, index and work tree alone"
    );

    // Exporting again would overwrite the branch: refused as locally.
    let out = remote(&fx, &server, &alice, &["export", "work"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("[branch_exists]"), "{}", stderr(&out));

    let out = remote(&fx, &server, &alice, &["teardown", "work"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "sandbox work is destroyed\n");
    assert_eq!(checkout_state(&fx.repo), before);

    // Commands that need the server's disk refuse, saying why.
    let out = remote(&fx, &server, &alice, &["open", "work"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("does not work in remote mode"),
        "{}",
        stderr(&out)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_mode_run_brings_the_branch_back() {
    let fx = Fixture::new(&scenario(vec![
        bash_turn("echo from-the-agent > agent.txt"),
        text_turn("done"),
    ]))
    .await;
    std::fs::write(fx.repo.join("wip.txt"), "not committed\n").unwrap();
    let before = checkout_state(&fx.repo);
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let repo = fx.repo.to_str().unwrap();
    let out = remote(
        &fx,
        &server,
        &alice,
        &["run", "--repo", repo, "--name", "shot", "write the file"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("run shot succeeded\n"), "{text}");
    assert!(
        text.contains("branch:   warren/shot (1 file changed)"),
        "{text}"
    );
    assert_eq!(
        git(&fx.repo, &["show", "warren/shot:agent.txt"]),
        "from-the-agent\n"
    );
    assert_eq!(
        git(&fx.repo, &["show", "warren/shot:wip.txt"]),
        "not committed\n"
    );
    assert_eq!(checkout_state(&fx.repo), before);

    // The branch exists now: a second run with the name is refused before anything is sent.
    let out = remote(
        &fx,
        &server,
        &alice,
        &["run", "--repo", repo, "--name", "shot", "again"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("[branch_exists]"), "{}", stderr(&out));
    server.stop().await;
}

/// Ctrl-C on a remote `run` behaves as on a local one (`bad_input::ctrl_c_stops_the_agent_and_keeps_its_work`):
/// the server stops the agent, keeps and exports its work, the summary says `interrupted`, the
/// exit code is 130, and the branch comes back. No `--name`: the CLI picks the name itself.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_on_a_remote_run_stops_it_and_brings_its_work_back() {
    let fx = Fixture::new(&scenario(vec![
        bash_turn("echo partial > partial.txt && sleep 60"),
        text_turn("never reached"),
    ]))
    .await;
    let before = checkout_state(&fx.repo);
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let child = fx
        .command(&[
            "run",
            "--repo",
            fx.repo.to_str().unwrap(),
            "--json",
            "slow work",
        ])
        .env("WARREN_SERVER", &server.base)
        .env("WARREN_TOKEN", &alice)
        .current_dir(&fx.repo)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    super::harness::wait_for_agent_call(fx.model.as_ref().unwrap()).await;
    // Give the bash tool a moment to write its file, then interrupt warren (by its pid).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("warren did not stop after Ctrl-C")
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let lines = super::harness::json_lines(&out);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(
        summary["error"]["reason_code"],
        "interrupted",
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let branch = summary["branch"].as_str().unwrap();
    assert_eq!(
        git(&fx.repo, &["show", &format!("{branch}:partial.txt")]),
        "partial\n"
    );
    assert_eq!(checkout_state(&fx.repo), before);
    server.stop().await;
}
