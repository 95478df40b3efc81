//! A provider whose sandboxes share no file system with the engine (a pod on another node): the
//! workspace goes in by upload after sync-in and comes back by download before the sandbox goes,
//! the gateway is reached over TCP with a token, the tools come from the image. What comes back
//! is untrusted: a hostile archive is refused loudly and writes nothing outside the workspace.
//! An egress allow-list gets its proxy on warren's loopback, named to the provider, which relays
//! it (a provider that does not isolate its sandboxes' network is refused one).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_domain::{AgentEvent, EgressDecision, ReasonCode, SandboxState, UserFacing};
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

/// An HTTP server on loopback that answers every request with `body` and counts them.
async fn answering(
    body: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
            });
        }
    });
    (addr, count)
}

/// What a relay would send the proxy for the sandbox: one request, read to the end.
async fn through_proxy(proxy: &str, url: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    tcp.write_all(
        format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_gets_a_loopback_proxy_the_provider_relays_and_every_decision_is_recorded() {
    let fx = Fixture::without_shared_fs();
    fx.provider.claim_isolated_network();
    let (upstream, requests) = answering("allowed-body-5d1e").await;
    fx.provider.script(
        "fenced",
        Script::new()
            .step_start()
            .signal("fenced-running")
            .gate("fenced-go")
            .text("done")
            .finish(),
    );
    let mut req = fx.request("fenced", "fetch");
    req.config.policy.egress = warren_config::EgressMode::AllowList;
    let rule = format!("127.0.0.1:{}", upstream.port());
    req.config.policy.allow = vec![warren_config::AllowEntry::Short(rule.clone())];
    let handle = fx.engine.start_run(req).await.unwrap();
    let id = handle.id.clone();
    fx.provider.wait_signal("fenced-running", PATIENCE).await;

    let calls = fx.provider.calls_for("fenced");
    let Some(Call::Create {
        gateway, egress, ..
    }) = calls.first()
    else {
        panic!("{calls:?}")
    };
    let proxy = egress
        .clone()
        .unwrap_or_else(|| panic!("no egress proxy named: {calls:?}"));
    assert!(proxy.starts_with("127.0.0.1:"), "{proxy}");
    assert_ne!(format!("tcp:{proxy}"), *gateway);
    // The agent's tools are pointed at the sandbox's egress port; there is no socket to relay.
    let Some(Call::Exec { argv, env, .. }) = calls.iter().find(|c| matches!(c, Call::Exec { .. }))
    else {
        panic!("{calls:?}")
    };
    assert!(!argv.iter().any(|a| a == "--relay"), "{argv:?}");
    let env: std::collections::BTreeMap<_, _> = env.iter().cloned().collect();
    assert_eq!(env["HTTPS_PROXY"], "http://127.0.0.1:4001");
    assert_eq!(env["HTTP_PROXY"], "http://127.0.0.1:4001");

    // While the agent runs, the proxy decides with the sandbox's allow-list.
    let allowed = through_proxy(&proxy, &format!("http://{upstream}/x")).await;
    assert!(allowed.ends_with("allowed-body-5d1e"), "{allowed}");
    let denied = through_proxy(&proxy, "http://169.254.169.254/latest/meta-data/").await;
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);

    fx.provider.open_gate("fenced-go");
    let summary = tokio::time::timeout(PATIENCE, handle.finish())
        .await
        .expect("the run did not end")
        .unwrap();
    assert!(summary.success, "{:?}", summary.error);
    // Gone with the run.
    assert!(tokio::net::TcpStream::connect(&proxy).await.is_err());

    let decisions: Vec<(EgressDecision, String, Option<String>)> = fx
        .stored_events(&id)
        .await
        .into_iter()
        .filter_map(|e| match e.event {
            AgentEvent::Egress {
                decision,
                host,
                rule,
                ..
            } => Some((decision, host, rule)),
            _ => None,
        })
        .collect();
    assert_eq!(
        decisions,
        [
            (EgressDecision::Allowed, "127.0.0.1".to_owned(), Some(rule)),
            (EgressDecision::Denied, "169.254.169.254".to_owned(), None),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_on_a_provider_that_does_not_isolate_its_sandboxes_creates_nothing() {
    let fx = Fixture::without_shared_fs();
    let mut req = fx.request("open", "fetch");
    req.config.policy.allow = vec![warren_config::AllowEntry::Short("example.org".into())];
    req.config.policy.egress = warren_config::EgressMode::AllowList;
    let Err(error) = fx.engine.start_run(req).await else {
        panic!("an allow-list ran on a provider that cannot enforce it");
    };
    assert_eq!(
        error.reason_code(),
        ReasonCode::EgressUnenforceable,
        "{error:?}"
    );
    assert!(fx.provider.calls().is_empty(), "{:?}", fx.provider.calls());
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
