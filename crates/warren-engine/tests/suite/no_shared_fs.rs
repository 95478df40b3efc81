//! A provider whose sandboxes share no file system with the engine (a pod on another node): the
//! workspace goes in by upload after sync-in and comes back by download before the sandbox goes,
//! the gateway is reached over TCP with a token, the tools come from the image. What comes back
//! is untrusted: a hostile archive is refused loudly and writes nothing outside the workspace.

use warren_domain::{ReasonCode, SandboxState};
use warren_provider::{SANDBOX_HOME, SANDBOX_WORKSPACE};
use warren_store::StateStore;

use super::fake::{Call, Script};
use super::harness::{Fixture, PATIENCE, git};

/// The calls' kinds and directories, without the sandbox name.
fn shape(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| match c {
            Call::Create { .. } => "create".to_owned(),
            Call::Upload { dir, .. } => format!("upload {dir}"),
            Call::Download { dir, .. } => format!("download {dir}"),
            Call::Expose { port, .. } => format!("expose {port}"),
            Call::Exec { .. } => "exec".to_owned(),
            Call::Kill { .. } => "kill".to_owned(),
            Call::Destroy { .. } => "destroy".to_owned(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_moves_the_workspace_in_and_out_and_exports_exactly_the_agents_files() {
    let fx = Fixture::without_shared_fs();
    std::fs::write(fx.repo.join("notes.md"), "keep me\n").unwrap();
    git(&fx.repo, &["add", "-A"]);
    git(&fx.repo, &["commit", "-qm", "notes"]);
    // The agent sees the synced files (it copies one), changes one, deletes one, adds one.
    fx.provider.script(
        "remote",
        Script::new()
            .step_start()
            .shell("cp README.md copied.md && printf 'changed\\n' >> notes.md && rm README.md")
            .write("src/new.txt", "new\n")
            .text("done")
            .finish(),
    );
    let mut req = fx.request("remote", "work");
    req.config
        .model_providers
        .get_mut("scripted")
        .unwrap()
        .api_key = Some("sk-test-secret".into());
    let handle = fx.engine.start_run(req).await.unwrap();
    let id = handle.id.clone();
    let summary = tokio::time::timeout(PATIENCE, handle.finish())
        .await
        .expect("the run did not end")
        .unwrap();
    assert!(summary.success, "{:?}", summary.error);

    // Without rename detection, which would show README.md's deletion as a rename.
    let diff = git(
        &fx.repo,
        &[
            "diff",
            "--no-renames",
            "--name-only",
            "main",
            "warren/remote",
        ],
    );
    let mut changed: Vec<&str> = diff.lines().collect();
    changed.sort();
    assert_eq!(
        changed,
        ["README.md", "copied.md", "notes.md", "src/new.txt"]
    );
    assert_eq!(fx.show("warren/remote", "copied.md"), "# sample\n");
    assert_eq!(fx.show("warren/remote", "notes.md"), "keep me\nchanged\n");
    let tree = git(&fx.repo, &["ls-tree", "-r", "--name-only", "warren/remote"]);
    assert!(!tree.lines().any(|l| l == "README.md"), "{tree}");

    let calls = fx.provider.calls_for("remote");
    assert_eq!(
        shape(&calls),
        [
            "create",
            &format!("upload {SANDBOX_WORKSPACE}"),
            &format!("upload {SANDBOX_HOME}"),
            "exec",
            &format!("download {SANDBOX_WORKSPACE}"),
            &format!("download {SANDBOX_HOME}"),
            "destroy",
        ]
    );
    // The sandbox worked in a directory of its own, and reached the gateway over TCP.
    let Some(Call::Create {
        workspace, gateway, ..
    }) = calls.first()
    else {
        panic!("{calls:?}")
    };
    assert!(
        workspace.starts_with(fx.provider.own_root()),
        "{workspace:?}"
    );
    assert!(!workspace.starts_with(&fx.data), "{workspace:?}");
    let address = gateway
        .strip_prefix("tcp:127.0.0.1:")
        .unwrap_or_else(|| panic!("not a loopback TCP gateway: {gateway}"));
    assert_ne!(address, "0");
    let Some(Call::Exec { argv, env, .. }) = calls.iter().find(|c| matches!(c, Call::Exec { .. }))
    else {
        panic!("{calls:?}")
    };
    // The tools come from the image, and nothing relays: OpenCode dials the gateway directly.
    assert_eq!(argv[0], "/opt/warren/bin/warren-sandbox-init");
    assert_eq!(argv[1], "--");
    assert_eq!(argv[2], "/opt/warren/bin/opencode");
    assert!(!argv.iter().any(|a| a == "--relay"), "{argv:?}");
    let config = env
        .iter()
        .find(|(k, _)| k == "OPENCODE_CONFIG_CONTENT")
        .map(|(_, v)| serde_json::from_str::<serde_json::Value>(v).unwrap())
        .unwrap();
    let options = &config["provider"]["scripted"]["options"];
    assert_eq!(options["baseURL"], format!("http://127.0.0.1:{address}/v1"));
    let token = options["apiKey"].as_str().unwrap();
    assert!(token.len() >= 32 && token != "sk-test-secret", "{token}");
    assert!(
        !argv
            .iter()
            .chain(env.iter().map(|(_, v)| v))
            .any(|a| a.contains("sk-test-secret")),
        "the credential reached the sandbox"
    );

    let record = fx.store().get(&id).unwrap();
    assert_eq!(record.state, SandboxState::Destroyed);
    assert!(!fx.workspace_of(&id).exists());
}

/// A tar header written by hand, saying what no honest packer would.
fn entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &[u8],
    kind: tar::EntryType,
    data: &[u8],
    link: &[u8],
) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..path.len()].copy_from_slice(path);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    b.append(&header, data).unwrap();
}

/// Every path under `dir` (not following symlinks), relative to it.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_download_is_refused_loudly_and_writes_nothing_outside_the_workspace() {
    let fx = Fixture::without_shared_fs();
    let outside = fx.data.parent().unwrap().join("escaped");
    let absolute = outside.join("absolute.txt");
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        (
            "dotdot",
            build(|b| {
                entry(
                    b,
                    b"../../../escaped/dotdot.txt",
                    tar::EntryType::Regular,
                    b"x",
                    b"",
                )
            }),
            u64::MAX,
        ),
        (
            "absolute",
            build(|b| {
                entry(
                    b,
                    absolute.to_str().unwrap().as_bytes(),
                    tar::EntryType::Regular,
                    b"x",
                    b"",
                )
            }),
            u64::MAX,
        ),
        (
            "symlink",
            build(|b| {
                entry(b, b"ok.txt", tar::EntryType::Regular, b"fine", b"");
                entry(
                    b,
                    b"link",
                    tar::EntryType::Symlink,
                    b"",
                    b"../../../escaped",
                );
                entry(b, b"link/through.txt", tar::EntryType::Regular, b"x", b"");
            }),
            u64::MAX,
        ),
        (
            "oversized",
            build(|b| entry(b, b"big.bin", tar::EntryType::Regular, &[7u8; 4096], b"")),
            1024,
        ),
    ];
    std::fs::create_dir_all(&outside).unwrap();
    for (name, archive, max_file) in cases {
        fx.provider.hostile_download(name, archive);
        let mut req = fx.request(name, "work");
        if max_file != u64::MAX {
            req.config.sync.max_file_bytes = max_file;
        }
        let handle = fx.engine.start_run(req).await.unwrap();
        let id = handle.id.clone();
        let summary = tokio::time::timeout(PATIENCE, handle.finish())
            .await
            .expect("the run did not end")
            .unwrap();
        assert!(!summary.success, "{name}: a hostile download was accepted");
        let error = summary.error.expect("an error");
        assert_eq!(
            error.reason_code,
            ReasonCode::UnsafeSandboxOutput,
            "{name}: {error:?}"
        );
        assert!(
            error.message.contains("refusing sandbox output"),
            "{name}: {error:?}"
        );
        // Nothing exported, nothing outside, the sandbox gone and its record saying why.
        assert!(summary.branch.is_none(), "{name}");
        let branches = git(&fx.repo, &["branch", "--list", &format!("warren/{name}")]);
        assert!(branches.trim().is_empty(), "{name}: {branches}");
        assert!(tree(&outside).is_empty(), "{name}: {:?}", tree(&outside));
        let record = fx.store().get(&id).unwrap();
        assert_eq!(
            record.error.map(|e| e.reason_code),
            Some(ReasonCode::UnsafeSandboxOutput),
            "{name}"
        );
        let calls = fx.provider.calls_for(name);
        assert!(
            matches!(calls.last(), Some(Call::Destroy { .. })),
            "{name}: {calls:?}"
        );
    }
    // Nor anywhere in the data directory but where warren put things.
    let stray: Vec<_> = tree(&fx.data)
        .into_iter()
        .filter(|p| {
            p.contains("escaped") || p.ends_with("through.txt") || p.ends_with("absolute.txt")
        })
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

fn build(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().unwrap()
}

/// Approval rules put a one-shot prompt on an OpenCode server of its own; without a shared file
/// system the server runs on the sandbox's loopback only and the provider exposes its port on
/// the host, at the socket path a host-path sandbox's init would use. When the prompt cannot run
/// there (nothing answers: the scripted agent is no server), the server is stopped before the
/// sandbox's files are read, the work and HOME come back, and the sandbox goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_prompt_exposes_its_port_and_stops_the_server_before_reading_the_files() {
    let fx = Fixture::without_shared_fs();
    fx.provider.script(
        "served",
        Script::new()
            .write("started.txt", "the server wrote this\n")
            .shell("echo 'opencode server listening on http://127.0.0.1:4096'")
            .hang(),
    );
    let mut req = fx.request("served", "work");
    req.config.policy.approvals.bash = vec!["rm -rf *".into()];
    let handle = fx.engine.start_run(req).await.unwrap();
    let id = handle.id.clone();
    let summary = tokio::time::timeout(PATIENCE, handle.finish())
        .await
        .expect("the run did not end")
        .unwrap();
    assert!(!summary.success, "nothing answered, yet the prompt ran");
    let error = summary.error.expect("an error");
    assert_ne!(
        error.reason_code,
        ReasonCode::InvalidConfig,
        "approvals are refused: {error:?}"
    );

    let calls = fx.provider.calls_for("served");
    assert_eq!(
        shape(&calls),
        [
            "create",
            &format!("upload {SANDBOX_WORKSPACE}"),
            &format!("upload {SANDBOX_HOME}"),
            "exec",
            "expose 4096",
            "kill",
            &format!("download {SANDBOX_WORKSPACE}"),
            &format!("download {SANDBOX_HOME}"),
            "destroy",
        ]
    );
    let Some(Call::Exec { argv, .. }) = calls.iter().find(|c| matches!(c, Call::Exec { .. }))
    else {
        panic!("{calls:?}")
    };
    assert!(argv.iter().any(|a| a == "serve"), "{argv:?}");
    assert!(!argv.iter().any(|a| a == "--expose"), "{argv:?}");
    let Some(Call::Expose { socket, .. }) = calls.iter().find(|c| matches!(c, Call::Expose { .. }))
    else {
        panic!("{calls:?}")
    };
    let name = socket.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("opencode-") && name.ends_with(".sock"),
        "{socket:?}"
    );
    assert_eq!(
        socket.parent().unwrap().file_name().unwrap(),
        "run",
        "{socket:?}"
    );
    assert!(!socket.exists(), "the socket outlived the sandbox");
    assert!(
        matches!(
            calls.last(),
            Some(Call::Destroy {
                was_running: false,
                ..
            })
        ),
        "{calls:?}"
    );
    // What the sandbox wrote came back before it went.
    // What the sandbox wrote came back before it went, and was exported.
    assert_eq!(summary.branch.as_deref(), Some("warren/served"));
    assert_eq!(
        fx.show("warren/served", "started.txt"),
        "the server wrote this\n"
    );
    assert_eq!(fx.store().get(&id).unwrap().state, SandboxState::Destroyed);
}
