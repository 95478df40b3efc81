//! A launched sandbox keeps its OpenCode server warm between prompts: a follow-up `exec` runs on
//! the same server (no new boot) in the same session; the server idles out after
//! `opencode.warm_idle_secs` and the next prompt boots a new one; a prompt that times out stops
//! it and keeps the work; teardown stops it and leaves nothing running. On Kubernetes the warm
//! server lives in the sandbox's pod, reached through the relay, with each prompt's work brought
//! back to the host before its outcome and the host's changes sent in before the next prompt.

use std::time::Duration;

use serde_json::{Value, json};

use crate::every_backend;

use super::harness::{
    Backend, Fixture, assert_no_container, bash_turn, git, json_lines, scenario, status, stderr,
    stdout, text_turn, when_turn,
};

/// Whether `pid` names a process that has not exited (a zombie counts as exited).
fn pid_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X'))
        })
        .unwrap_or(false)
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn launch_and_finish(fx: &Fixture, name: &str, prompt: &str) {
    let repo = fx.repo.to_str().unwrap();
    let out = fx
        .warren(&["launch", name, "--repo", repo, "--prompt", prompt])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let follow = fx.warren(&["logs", name, "-f", "--json"]).await;
    assert!(follow.status.success(), "{}", stderr(&follow));
}

/// What a user's `curl --unix-socket SOCKET http://opencode/PATH` would print.
fn http_get_over_unix_socket(socket: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: opencode\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn warm_pid(status: &Value) -> Option<u64> {
    status["warm_server"]["monitor"]["pid"].as_u64()
}

every_backend!(a_follow_up_runs_on_the_warm_server_and_teardown_stops_it);

async fn a_follow_up_runs_on_the_warm_server_and_teardown_stops_it(backend: Backend) {
    let fx = Fixture::with_backend(&scenario(vec![
        when_turn("first task", json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/first.txt", "content": "first\n" } }] })),
        when_turn("first task", text_turn("first done")),
        // What the user committed meanwhile is in the workspace the follow-up runs on.
        when_turn("second part", bash_turn("cp user.txt second.txt")),
        when_turn("second part", text_turn("second done")),
        when_turn("third part", text_turn("third done")),
    ]), backend).await;
    launch_and_finish(&fx, "warm", "first task").await;

    let first = status(&fx, "warm").await;
    assert_eq!(first["sandbox"]["state"], "completed", "{first}");
    let pid = warm_pid(&first).unwrap_or_else(|| panic!("no warm server after launch: {first}"));
    assert!(pid_alive(pid), "the warm monitor {pid} runs");
    let boot = first["warm_server"]["boot_ms"].clone();
    let session = first["sandbox"]["session_id"].clone();
    let id = first["sandbox"]["id"].as_str().unwrap().to_owned();
    // The first prompt's work is on the host before its outcome is read.
    assert_eq!(
        first["changed_files"],
        json!([{ "kind": "added", "path": "first.txt" }]),
        "{first}"
    );
    let pods = if backend == Backend::Kubernetes {
        let pods = super::kube::pods_of(&id).await;
        assert_eq!(pods.len(), 1, "one warm pod: {pods:?}");
        pods
    } else {
        Vec::new()
    };
    std::fs::write(fx.repo.join("user.txt"), "from the user\n").unwrap();
    git(&fx.repo, &["add", "user.txt"]);
    git(&fx.repo, &["commit", "-qm", "user"]);

    for (prompt, tool) in [
        ("now the second part", Some("bash")),
        ("the third part", None),
    ] {
        let exec = fx.warren(&["exec", "warm", prompt, "--json"]).await;
        assert!(exec.status.success(), "{}", stderr(&exec));
        let events = json_lines(&exec);
        if let Some(tool) = tool {
            assert!(
                events
                    .iter()
                    .any(|e| e["type"] == "tool_use" && e["tool"] == tool),
                "{events:?}"
            );
        }
        let s = status(&fx, "warm").await;
        assert_eq!(s["sandbox"]["state"], "completed", "{s}");
        assert_eq!(
            s["sandbox"]["session_id"], session,
            "the same OpenCode session"
        );
        assert_eq!(warm_pid(&s), Some(pid), "the same warm server: {s}");
        assert_eq!(s["warm_server"]["boot_ms"], boot, "no second boot: {s}");
        let changed = s["changed_files"].to_string();
        assert!(changed.contains("second.txt"), "{s}");
        if backend == Backend::Kubernetes {
            assert_eq!(super::kube::pods_of(&id).await, pods, "the same warm pod");
        }
    }
    // `open` names the warm server's socket; OpenCode's API answers there with this session.
    let open = fx.warren(&["open", "warm", "--json"]).await;
    let open: Value = serde_json::from_str(&stdout(&open)).unwrap();
    let socket = open["open"]["server_socket"].as_str().unwrap();
    let sessions = http_get_over_unix_socket(socket, "/session");
    assert!(sessions.contains(session.as_str().unwrap()), "{sessions}");

    let model = fx.model.as_ref().unwrap();
    let last = model
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.has_tools)
        .unwrap();
    let history = last.body.to_string();
    assert!(history.contains("first task") && history.contains("second part"));

    let export = fx.warren(&["export", "warm"]).await;
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(git(&fx.repo, &["show", "warren/warm:first.txt"]), "first\n");
    assert_eq!(
        git(&fx.repo, &["show", "warren/warm:second.txt"]),
        "from the user\n"
    );
    let down = fx.warren(&["teardown", "warm"]).await;
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(!pid_alive(pid), "teardown stopped the warm monitor {pid}");
    match backend {
        Backend::Docker => assert_no_container(&id),
        Backend::Kubernetes => super::kube::assert_no_pod(&id).await,
        Backend::Local => {}
    }
}

every_backend!(the_warm_server_idles_out_and_the_next_exec_boots_one_in_the_same_session);

async fn the_warm_server_idles_out_and_the_next_exec_boots_one_in_the_same_session(
    backend: Backend,
) {
    let fx = Fixture::with_backend(
        &scenario(vec![
            when_turn("first task", bash_turn("echo one > one.txt")),
            when_turn("first task", text_turn("first done")),
            when_turn("after the pause", bash_turn("echo two > two.txt")),
            when_turn("after the pause", text_turn("second done")),
        ]),
        backend,
    )
    .await;
    fx.append_config("\n[opencode]\nwarm_idle_secs = 2\n");
    launch_and_finish(&fx, "idle", "first task").await;
    let first = status(&fx, "idle").await;
    let pid = warm_pid(&first).unwrap_or_else(|| panic!("no warm server: {first}"));

    wait_until("the warm server idles out", async || {
        status(&fx, "idle").await["warm_server"].is_null() && !pid_alive(pid)
    })
    .await;

    let exec = fx
        .warren(&["exec", "idle", "carry on after the pause", "--json"])
        .await;
    assert!(exec.status.success(), "{}", stderr(&exec));
    let s = status(&fx, "idle").await;
    assert_eq!(s["sandbox"]["session_id"], first["sandbox"]["session_id"]);
    let again = warm_pid(&s).unwrap_or_else(|| panic!("no warm server after exec: {s}"));
    assert_ne!(again, pid, "a new server was booted");
    let files: Vec<&str> = s["changed_files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(files, ["one.txt", "two.txt"]);
}

every_backend!(a_timeout_on_the_warm_server_stops_it_and_keeps_the_work);

async fn a_timeout_on_the_warm_server_stops_it_and_keeps_the_work(backend: Backend) {
    let fx = Fixture::with_backend(
        &scenario(vec![
            when_turn("first task", text_turn("ready")),
            when_turn("risky part", bash_turn("echo kept > kept.txt")),
            when_turn(
                "risky part",
                json!({ "fault": { "kind": "hang_after_first_token" } }),
            ),
            when_turn("recover", text_turn("recovered")),
        ]),
        backend,
    )
    .await;
    fx.append_config("\n[roles.quick]\ninactivity_secs = 4\n");
    launch_and_finish(&fx, "hang", "first task").await;
    let pid = warm_pid(&status(&fx, "hang").await).unwrap();

    let exec = fx
        .warren(&[
            "exec",
            "hang",
            "the risky part",
            "--role",
            "quick",
            "--json",
        ])
        .await;
    let s = status(&fx, "hang").await;
    assert_eq!(
        s["sandbox"]["error"]["reason_code"],
        "inactive",
        "{s}\n{}",
        stdout(&exec)
    );
    assert!(s["warm_server"].is_null(), "the server was stopped: {s}");
    assert!(!pid_alive(pid), "its monitor is gone");
    assert_eq!(
        s["changed_files"],
        json!([{ "kind": "added", "path": "kept.txt" }]),
        "the work so far is kept"
    );

    let exec = fx.warren(&["exec", "hang", "recover now", "--json"]).await;
    assert!(exec.status.success(), "{}", stderr(&exec));
    assert!(warm_pid(&status(&fx, "hang").await).is_some());
}

/// A pod outlives its monitor. Killed while its warm server idles, the monitor leaves a pod whose
/// workspace is older than the host's (the last prompt's work came back; a `warren sync` moved
/// the host's on since): recovery reads back only its HOME (OpenCode's sessions), so the sync is
/// kept, and the next prompt continues the same session on a new pod.
#[tokio::test(flavor = "multi_thread")]
async fn a_warm_pod_whose_monitor_was_killed_keeps_the_hosts_newer_workspace() {
    if !super::kube::kube_ready().await {
        return;
    }
    let fx = Fixture::with_backend(
        &scenario(vec![
            when_turn("first task", json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/first.txt", "content": "first\n" } }] })),
            when_turn("first task", text_turn("first done")),
            when_turn("after the crash", bash_turn("cat user.txt > seen.txt")),
            when_turn("after the crash", text_turn("carried on")),
        ]),
        Backend::Kubernetes,
    )
    .await;
    launch_and_finish(&fx, "crash", "first task").await;
    let first = status(&fx, "crash").await;
    let pid = warm_pid(&first).unwrap_or_else(|| panic!("no warm server: {first}"));
    let id = first["sandbox"]["id"].as_str().unwrap().to_owned();
    let session = first["sandbox"]["session_id"].clone();

    std::fs::write(fx.repo.join("user.txt"), "from the user\n").unwrap();
    git(&fx.repo, &["add", "user.txt"]);
    git(&fx.repo, &["commit", "-qm", "user"]);
    let synced = fx.warren(&["sync", "crash"]).await;
    assert!(synced.status.success(), "{}", stderr(&synced));
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_until("the monitor is gone", async || !pid_alive(pid)).await;
    assert_eq!(
        super::kube::pods_of(&id).await.len(),
        1,
        "the pod outlived it"
    );

    let gc = fx.warren(&["gc", "--json"]).await;
    assert!(gc.status.success(), "{}", stderr(&gc));
    let gc: Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(
        gc["pods_recovered"].as_array().map(Vec::len),
        Some(1),
        "{gc}"
    );
    super::kube::assert_no_pod(&id).await;

    let exec = fx
        .warren(&["exec", "crash", "carry on after the crash"])
        .await;
    assert!(exec.status.success(), "{}", stderr(&exec));
    let s = status(&fx, "crash").await;
    assert_eq!(s["sandbox"]["session_id"], session, "the same session: {s}");
    let model = fx.model.as_ref().unwrap();
    let last = model
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.has_tools)
        .unwrap();
    assert!(
        last.body.to_string().contains("first task"),
        "the recovered HOME carried the session"
    );

    let export = fx.warren(&["export", "crash"]).await;
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(
        git(&fx.repo, &["show", "warren/crash:first.txt"]),
        "first\n"
    );
    assert_eq!(
        git(&fx.repo, &["show", "warren/crash:user.txt"]),
        "from the user\n"
    );
    assert_eq!(
        git(&fx.repo, &["show", "warren/crash:seen.txt"]),
        "from the user\n"
    );
    let down = fx.warren(&["teardown", "crash"]).await;
    assert!(down.status.success(), "{}", stderr(&down));
    super::kube::assert_no_pod(&id).await;
}
