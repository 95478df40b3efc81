//! The lifecycle races users cause, on both backends: a `teardown --force` that kills the `exec`
//! another terminal is following; a `warren run` killed mid-agent; a queued sandbox whose monitor
//! is killed while another holds the pool's only slot; two terminals exporting, or exporting and
//! tearing down, at once. Whatever the order, the record ends in a state the user can act on, the
//! commands say what happened, nothing keeps running and no work is lost.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::{both_backends, every_backend};

use super::harness::{
    Backend, Fixture, assert_no_container, bash_turn, git, json_lines, scenario, status, stderr,
    stdout, text_turn, when_turn,
};

/// Whether `pid` names a process that has not exited (a zombie counts as exited).
fn pid_alive(pid: u64) -> bool {
    proc_stat(pid).is_some_and(|(_, state, _)| !matches!(state, 'Z' | 'X'))
}

/// `(comm, state, ppid)` of a process, from `/proc/PID/stat`.
fn proc_stat(pid: u64) -> Option<(String, char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

/// Every live process below `root`, with its command name.
fn descendants(root: u64) -> Vec<(u64, String)> {
    let all: Vec<(u64, String, u64)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .filter_map(|pid| {
            let (comm, state, ppid) = proc_stat(pid)?;
            (!matches!(state, 'Z' | 'X')).then_some((pid, comm, ppid))
        })
        .collect();
    let mut found = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for (pid, comm, _) in all.iter().filter(|(_, _, ppid)| *ppid == parent) {
            found.push((*pid, comm.clone()));
            parents.push(*pid);
        }
    }
    found
}

fn kill(signal: &str, pid: u64) {
    let ok = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid}");
}

async fn wait_until(what: &str, secs: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `status NAME --json` until `done` holds; returns that status.
async fn status_when(fx: &Fixture, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let out = fx.warren(&["status", name, "--json"]).await;
        let s: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {name}: {what}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Whether the agent's file is in the sandbox's workspace (read on the host: `changed_files` is
/// only computed while the sandbox is idle).
fn in_workspace(s: &Value, path: &str) -> bool {
    s["sandbox"]["workspace"]
        .as_str()
        .is_some_and(|w| std::path::Path::new(w).join(path).is_file())
}

fn has_changed(s: &Value, path: &str) -> bool {
    s["changed_files"]
        .as_array()
        .is_some_and(|files| files.iter().any(|f| f["path"] == path))
}

/// Whether the scripted model has served an agent request of the prompt containing `prompt`.
fn agent_called(fx: &Fixture, prompt: &str) -> bool {
    fx.model
        .as_ref()
        .unwrap()
        .requests()
        .iter()
        .any(|r| r.has_tools && r.body.to_string().contains(prompt))
}

async fn launch(fx: &Fixture, name: &str, prompt: Option<&str>) {
    let repo = fx.repo.to_str().unwrap();
    let mut args = vec!["launch", name, "--repo", repo];
    if let Some(prompt) = prompt {
        args.extend(["--prompt", prompt]);
    }
    let out = fx.warren(&args).await;
    assert!(out.status.success(), "launch {name}: {}", stderr(&out));
}

async fn launch_and_finish(fx: &Fixture, name: &str, prompt: &str) {
    launch(fx, name, Some(prompt)).await;
    let follow = fx.warren(&["logs", name, "-f", "--json"]).await;
    assert!(
        follow.status.success(),
        "logs -f {name}: {}",
        stderr(&follow)
    );
}

fn spawn(fx: &Fixture, args: &[&str]) -> tokio::process::Child {
    fx.command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

async fn finish(child: tokio::process::Child, what: &str) -> Output {
    tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
        .unwrap()
}

/// The `reason_code` a failed command reported: its `{"error"}` line, or the error of the
/// prompt's `finished` event.
fn reason_code(out: &Output) -> Option<String> {
    let lines = json_lines(out);
    let from_error = lines
        .iter()
        .rev()
        .find_map(|l| l["error"]["reason_code"].as_str());
    let from_finished = lines
        .iter()
        .rev()
        .filter(|l| l["type"] == "finished")
        .find_map(|l| l["error"]["reason_code"].as_str());
    from_error.or(from_finished).map(str::to_owned)
}

/// When, in the exec's life, the teardown strikes.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Right after the exec is typed: it may not even have been accepted yet.
    Immediately,
    /// As soon as the exec's supervisor holds the lease (the prompt is accepted, the agent boots).
    Accepted,
    /// Once the agent has asked the model for its first step.
    AgentCalled,
    /// Once the agent's file is in the workspace, while it sleeps.
    MidAgent,
}

both_backends!(teardown_force_wins_over_the_exec_it_kills);

/// `teardown --force` while another terminal follows an `exec`: the teardown wins cleanly at
/// every moment (the record ends `destroyed`, never `error` or `invalid_transition`), the exec
/// says it was stopped, and nothing of the sandbox keeps running.
async fn teardown_force_wins_over_the_exec_it_kills(backend: Backend) {
    let moments = [
        Moment::Immediately,
        Moment::Accepted,
        Moment::AgentCalled,
        Moment::MidAgent,
    ];
    let mut turns = Vec::new();
    for i in 0..moments.len() {
        turns.push(when_turn(&format!("warm up {i}"), text_turn("ready")));
        turns.push(when_turn(
            &format!("slow part {i}"),
            bash_turn(&format!("echo {i} > work{i}.txt && sleep 60")),
        ));
        turns.push(when_turn(&format!("slow part {i}"), text_turn("never")));
    }
    let fx = Fixture::with_backend(&scenario(turns), backend).await;

    for (i, moment) in moments.into_iter().enumerate() {
        let name = format!("race{i}");
        let prompt = format!("slow part {i}");
        // The last round's exec boots its own monitor; the others run on the warm server.
        if i + 1 == moments.len() {
            launch(&fx, &name, None).await;
            // Ready means idle: an exec typed right away must not find the launch still holding it.
            let ready = status(&fx, &name).await;
            assert_eq!(ready["sandbox"]["state"], "completed", "{ready}");
            assert!(
                ready["lease"].is_null(),
                "launch returned while held: {ready}"
            );
        } else {
            launch_and_finish(&fx, &name, &format!("warm up {i}")).await;
        }
        let mut exec = spawn(&fx, &["exec", &name, &prompt, "--json"]);

        let (monitor, id) = if let Moment::Immediately = moment {
            // The warm server's monitor is the one the exec is handed to.
            let s = status(&fx, &name).await;
            let pid = s["warm_server"]["monitor"]["pid"].as_u64();
            let pid = pid.unwrap_or_else(|| panic!("no warm server: {s}"));
            (pid, s["sandbox"]["id"].as_str().unwrap().to_owned())
        } else {
            let held = loop {
                let s = status(&fx, &name).await;
                if s["lease"]["operation"] == "exec" {
                    break s;
                }
                if exec.try_wait().unwrap().is_some() {
                    let out = finish(exec, "exec").await;
                    panic!(
                        "{moment:?}: the exec ended before it held the lease: {s}\n{}\n{}",
                        stdout(&out),
                        stderr(&out)
                    );
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            };
            let pid = held["lease"]["pid"].as_u64().unwrap();
            (pid, held["sandbox"]["id"].as_str().unwrap().to_owned())
        };
        match moment {
            Moment::Immediately | Moment::Accepted => {}
            Moment::AgentCalled => {
                wait_until("the agent calls the model", 60, async || {
                    agent_called(&fx, &prompt)
                })
                .await;
            }
            Moment::MidAgent => {
                let file = format!("work{i}.txt");
                status_when(&fx, &name, "the agent wrote its file", |s| {
                    in_workspace(s, &file)
                })
                .await;
            }
        }
        let processes = descendants(monitor);
        if backend == Backend::Local && !matches!(moment, Moment::Immediately | Moment::Accepted) {
            assert!(
                processes.iter().any(|(_, comm)| comm == "bwrap"),
                "{moment:?}: the agent runs in a bwrap child of the monitor {monitor}: {processes:?}"
            );
        }

        let down = fx.warren(&["teardown", &name, "--force", "--json"]).await;
        assert!(
            down.status.success(),
            "{moment:?}: teardown --force failed: {}\n{}",
            stdout(&down),
            stderr(&down)
        );
        let s = status(&fx, &name).await;
        assert_eq!(s["sandbox"]["state"], "destroyed", "{moment:?}: {s}");
        assert!(s["lease"].is_null(), "{moment:?}: {s}");

        let exec = finish(exec, "exec").await;
        assert_ne!(
            exec.status.code(),
            Some(0),
            "{moment:?}: an exec whose prompt was killed exited 0: {}",
            stdout(&exec)
        );
        // Typed at the very moment of the teardown, the exec may also find the sandbox held by
        // the teardown, or gone.
        let code = reason_code(&exec);
        assert!(
            code.as_deref() == Some("stopped")
                || matches!(moment, Moment::Immediately)
                    && matches!(code.as_deref(), Some("wrong_state" | "sandbox_busy")),
            "{moment:?}: the exec does not say it was stopped:\n{}\n{}",
            stdout(&exec),
            stderr(&exec)
        );

        wait_until("the monitor exits", 30, async || !pid_alive(monitor)).await;
        let left: Vec<_> = processes
            .iter()
            .filter(|(pid, _)| pid_alive(*pid))
            .collect();
        assert!(
            left.is_empty(),
            "{moment:?}: processes of the sandbox survived the teardown: {left:?}"
        );
        if backend == Backend::Docker {
            assert_no_container(&id);
        }
    }
}

every_backend!(a_killed_run_is_recorded_by_gc_and_its_work_exported);

/// `warren run` SIGKILLed mid-agent: a read shows the loss without recording it, `gc` records
/// it (and removes a docker run's container at once), the agent's file exports, teardown works.
async fn a_killed_run_is_recorded_by_gc_and_its_work_exported(backend: Backend) {
    let fx = Fixture::with_backend(
        &scenario(vec![
            bash_turn("echo kept > agent.txt && sleep 60"),
            text_turn("never reached"),
        ]),
        backend,
    )
    .await;
    let run = fx.spawn_run("killed", "write a file");
    let run_pid = u64::from(run.id().unwrap());
    // A pod's files are not on the host until they come back: there the sign is the model's
    // tool call, and the bash tool writes at once.
    let s = status_when(&fx, "killed", "the agent wrote its file", |s| {
        s["sandbox"]["state"] == "running"
            && match backend {
                Backend::Kubernetes => fx.agent_called(),
                _ => in_workspace(s, "agent.txt"),
            }
    })
    .await;
    if backend == Backend::Kubernetes {
        tokio::time::sleep(Duration::from_millis(2000)).await;
    }
    let id = s["sandbox"]["id"].as_str().unwrap().to_owned();
    let processes = descendants(run_pid);
    if backend == Backend::Local {
        assert!(
            processes.iter().any(|(_, comm)| comm == "bwrap"),
            "{processes:?}"
        );
    }
    kill("-KILL", run_pid);
    let _ = finish(run, "the killed run").await;

    // Reads never write: status shows the loss, twice, and changes nothing.
    let seen = status_when(&fx, "killed", "status shows the lost supervisor", |s| {
        s["supervisor_lost"] == true
    })
    .await;
    assert_eq!(seen["sandbox"]["state"], "running", "{seen}");
    assert!(seen["lease"].is_null(), "{seen}");
    let again = status(&fx, "killed").await;
    assert_eq!(
        again["sandbox"], seen["sandbox"],
        "status changed the record"
    );

    // Nothing of the run keeps going unwatched.
    wait_until("the run's processes end", 15, async || {
        processes.iter().all(|(pid, _)| !pid_alive(*pid))
    })
    .await;

    let gc = fx.warren(&["gc", "--json"]).await;
    assert!(gc.status.success(), "{}", stderr(&gc));
    let report: Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(report["gc"]["marked_error"], json!(["killed"]), "{report}");
    if backend == Backend::Docker {
        // At once, not after the orphan grace: the sandbox is recorded and settled.
        assert_no_container(&id);
    }
    if backend == Backend::Kubernetes {
        // The pod outlived the run; its files came back before it went.
        assert_eq!(
            report["pods_recovered"].as_array().map(Vec::len),
            Some(1),
            "{report}"
        );
        super::kube::assert_no_pod(&id).await;
    }
    let s = status(&fx, "killed").await;
    assert_eq!(s["sandbox"]["state"], "error", "{s}");
    assert_eq!(s["sandbox"]["error"]["reason_code"], "supervisor_lost");

    let export = fx.warren(&["export", "killed", "--json"]).await;
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(
        git(&fx.repo, &["show", "warren/killed:agent.txt"]),
        "kept\n"
    );
    let down = fx.warren(&["teardown", "killed", "--json"]).await;
    assert!(down.status.success(), "{}", stdout(&down));
    assert_eq!(status(&fx, "killed").await["sandbox"]["state"], "destroyed");
}

every_backend!(a_queued_sandbox_whose_monitor_dies_is_recorded_and_the_queue_moves_on);

/// A pool of one: A holds the slot, B waits `queued`; B's monitor is killed. `gc` records B lost,
/// A finishes unaffected, B tears down without `--force` (it never ran), and C gets the slot.
async fn a_queued_sandbox_whose_monitor_dies_is_recorded_and_the_queue_moves_on(backend: Backend) {
    let fx = Fixture::with_backend(
        &scenario(vec![
            when_turn("hold the slot", bash_turn("echo a > a.txt && sleep 20")),
            when_turn("hold the slot", text_turn("a done")),
            when_turn("after the queue", bash_turn("echo c > c.txt")),
            when_turn("after the queue", text_turn("c done")),
        ]),
        backend,
    )
    .await;
    fx.append_config("\n[pools.single]\nmax_concurrent = 1\n");
    let config = std::fs::read_to_string(&fx.config).unwrap();
    std::fs::write(
        &fx.config,
        config.replace(
            "models = [\"scripted\"]",
            "models = [\"scripted\"]\npool = \"single\"",
        ),
    )
    .unwrap();

    launch(&fx, "pool-a", Some("hold the slot")).await;
    status_when(&fx, "pool-a", "A runs", |s| {
        s["sandbox"]["state"] == "running"
    })
    .await;
    launch(&fx, "pool-b", Some("queued behind a")).await;
    let b = status_when(&fx, "pool-b", "B waits for the slot", |s| {
        s["sandbox"]["state"] == "queued" && s["lease"]["pid"].is_u64()
    })
    .await;
    kill("-KILL", b["lease"]["pid"].as_u64().unwrap());
    status_when(&fx, "pool-b", "B shows its lost supervisor", |s| {
        s["supervisor_lost"] == true
    })
    .await;

    let gc = fx.warren(&["gc", "--json"]).await;
    assert!(gc.status.success(), "{}", stderr(&gc));
    let report: Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(report["gc"]["marked_error"], json!(["pool-b"]), "{report}");
    let b = status(&fx, "pool-b").await;
    assert_eq!(b["sandbox"]["state"], "error", "{b}");
    assert_eq!(
        b["sandbox"]["error"]["reason_code"], "supervisor_lost",
        "{b}"
    );
    let a = status(&fx, "pool-a").await;
    assert_eq!(a["sandbox"]["state"], "running", "A is unaffected: {a}");

    // B never ran: nothing unexported, so no --force is needed.
    let down = fx.warren(&["teardown", "pool-b", "--json"]).await;
    assert!(down.status.success(), "{}", stdout(&down));
    assert_eq!(status(&fx, "pool-b").await["sandbox"]["state"], "destroyed");
    if backend == Backend::Docker {
        assert_no_container(b["sandbox"]["id"].as_str().unwrap());
    }

    let follow = fx.warren(&["logs", "pool-a", "-f", "--json"]).await;
    assert!(follow.status.success(), "A finishes: {}", stdout(&follow));
    let a = status(&fx, "pool-a").await;
    assert_eq!(a["sandbox"]["state"], "completed", "{a}");
    assert!(a["sandbox"]["error"].is_null(), "{a}");
    assert!(has_changed(&a, "a.txt"), "{a}");

    // The queue moved on: C gets the slot and completes.
    launch(&fx, "pool-c", Some("after the queue")).await;
    let follow = fx.warren(&["logs", "pool-c", "-f", "--json"]).await;
    assert!(follow.status.success(), "C finishes: {}", stdout(&follow));
    let c = status(&fx, "pool-c").await;
    assert_eq!(c["sandbox"]["state"], "completed", "{c}");
    assert!(has_changed(&c, "c.txt"), "{c}");
}

every_backend!(two_terminals_never_lose_the_work);

/// Two `export`s at once: exactly one makes the branch, the other is refused (busy, or the
/// branch exists). An `export` racing a `teardown`: the teardown never removes unexported work.
async fn two_terminals_never_lose_the_work(backend: Backend) {
    let mut turns = Vec::new();
    for name in ["twin", "duo0", "duo1"] {
        turns.push(when_turn(
            &format!("work of {name}"),
            bash_turn(&format!("echo {name} > {name}.txt")),
        ));
        turns.push(when_turn(&format!("work of {name}"), text_turn("done")));
    }
    let fx = Fixture::with_backend(&scenario(turns), backend).await;

    launch_and_finish(&fx, "twin", "work of twin").await;
    let first = spawn(&fx, &["export", "twin", "--json"]);
    let second = spawn(&fx, &["export", "twin", "--json"]);
    let outs = [
        finish(first, "export").await,
        finish(second, "export").await,
    ];
    let won: Vec<&Output> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one export succeeds: {:?}",
        outs.iter().map(stdout).collect::<Vec<_>>()
    );
    let lost = outs.iter().find(|o| !o.status.success()).unwrap();
    let code = reason_code(lost);
    assert!(
        matches!(
            (lost.status.code(), code.as_deref()),
            (Some(3), Some("sandbox_busy")) | (Some(2), Some("branch_exists"))
        ),
        "the other export: {:?} {}",
        lost.status.code(),
        stdout(lost)
    );
    assert_eq!(git(&fx.repo, &["show", "warren/twin:twin.txt"]), "twin\n");
    let commits = git(&fx.repo, &["rev-list", "--count", "main..warren/twin"]);
    assert_eq!(commits.trim(), "1", "the work is on the branch once");
    assert_eq!(status(&fx, "twin").await["sandbox"]["state"], "completed");

    // export and teardown at once, each one first.
    for (i, teardown_first) in [(0, false), (1, true)] {
        let name = format!("duo{i}");
        launch_and_finish(&fx, &name, &format!("work of {name}")).await;
        let (export, teardown) = if teardown_first {
            let t = spawn(&fx, &["teardown", &name, "--json"]);
            (spawn(&fx, &["export", &name, "--json"]), t)
        } else {
            let e = spawn(&fx, &["export", &name, "--json"]);
            (e, spawn(&fx, &["teardown", &name, "--json"]))
        };
        let export = finish(export, "export").await;
        let teardown = finish(teardown, "teardown").await;
        let branch = format!("warren/{name}");
        let exported = !git(&fx.repo, &["branch", "--list", &branch]).is_empty();
        assert_eq!(
            export.status.success(),
            exported,
            "{name}: {}",
            stdout(&export)
        );
        if exported {
            assert_eq!(
                git(&fx.repo, &["show", &format!("{branch}:{name}.txt")]),
                format!("{name}\n")
            );
        }
        let s = status(&fx, &name).await;
        if teardown.status.success() {
            assert!(exported, "{name}: teardown removed unexported work: {s}");
            assert_eq!(s["sandbox"]["state"], "destroyed", "{s}");
        } else {
            let code = reason_code(&teardown);
            assert!(
                matches!(
                    (teardown.status.code(), code.as_deref()),
                    (Some(3), Some("sandbox_busy")) | (Some(2), Some("unexported_changes"))
                ),
                "{name}: teardown: {:?} {}",
                teardown.status.code(),
                stdout(&teardown)
            );
            assert_eq!(s["sandbox"]["state"], "completed", "{name}: {s}");
            assert!(has_changed(&s, &format!("{name}.txt")), "{s}");
        }
        assert!(
            exported || teardown.status.success(),
            "{name}: neither succeeded: {}\n{}",
            stdout(&export),
            stdout(&teardown)
        );
    }
}
