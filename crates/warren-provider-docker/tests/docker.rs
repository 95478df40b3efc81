//! The Docker provider against a real engine: naming and labels, output and exit codes, the
//! isolation flags seen from inside, the gateway relay through the run dir's socket, kill, and
//! volumes. Without an engine the tests skip (and fail under CI, where one must exist).

mod fixture;

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use fixture::{Dirs, fixture, run, run_env};
use warren_provider::{ExecSpec, Provider, ProviderError, Sandbox};
use warren_provider_docker::{DockerProvider, DockerSettings, labels, volume_name};

#[tokio::test]
async fn create_exec_destroy() -> anyhow::Result<()> {
    let Some(fx) = fixture().await? else {
        return Ok(());
    };
    let provider = fx.provider(DockerSettings::default())?;
    provider.preflight().await?;
    let dirs = Dirs::new("create-exec")?;
    let t = Instant::now();
    let (sandbox, timings) = provider.create(&dirs.spec(fx)).await?;
    let created = t.elapsed();
    let out = run(
        &sandbox,
        &["/bin/sh", "-c", "id -u; echo out; echo err >&2; exit 3"],
    )
    .await?;
    eprintln!(
        "timing: create {:?} (provider says {:?}), first exec done {:?}",
        created,
        timings.total,
        t.elapsed()
    );
    assert_eq!(out.stdout.trim_end(), "1000\nout");
    assert_eq!(out.stderr.trim_end(), "err");
    assert_eq!(out.code, Some(3));

    let owner = &provider.settings().owner;
    let prefix = format!("warren-{owner}-{}-", dirs.name.as_str());
    let suffix = sandbox
        .name()
        .strip_prefix(&prefix)
        .context("name prefix")?;
    ensure!(
        suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "container name {} does not follow warren-<owner>-<name>-<rand6>",
        sandbox.name()
    );
    let docker = provider.docker().await?;
    let inspect = docker.inspect_container(sandbox.id(), None).await?;
    let container_labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(
        container_labels.get(labels::SANDBOX),
        Some(&dirs.id.as_str().to_owned())
    );
    assert_eq!(container_labels.get(labels::OWNER), Some(owner));
    assert_eq!(
        container_labels.get(labels::NAME),
        Some(&dirs.name.as_str().to_owned())
    );

    let listed = provider.list_containers().await?;
    let mine = listed
        .iter()
        .find(|c| c.id == sandbox.id())
        .context("list_containers misses the sandbox")?;
    assert_eq!(mine.sandbox_id, dirs.id.as_str());
    assert_eq!(mine.name, sandbox.name());
    assert_eq!(mine.state, "running");
    assert!(mine.created > 0);

    let id = sandbox.id().to_owned();
    sandbox.destroy().await?;
    match docker.inspect_container(&id, None).await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        other => bail!("the container survived destroy: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn env_is_exactly_the_spec() -> anyhow::Result<()> {
    let Some(fx) = fixture().await? else {
        return Ok(());
    };
    let provider = fx.provider(DockerSettings::default())?;
    let dirs = Dirs::new("env")?;
    let (sandbox, _) = provider.create(&dirs.spec(fx)).await?;
    let env = vec![("ONLY".to_owned(), "this one".to_owned())];
    let out = run_env(&sandbox, &["/usr/bin/env"], env, "/tmp").await;
    let pwd = run(&sandbox, &["/bin/pwd"]).await;
    sandbox.destroy().await?;
    let (out, pwd) = (out?, pwd?);
    assert_eq!(
        out.stdout, "ONLY=this one\n",
        "image/engine variables leaked"
    );
    assert_eq!(pwd.stdout, "/workspace\n");
    Ok(())
}

#[tokio::test]
async fn isolation_from_inside() -> anyhow::Result<()> {
    let Some(fx) = fixture().await? else {
        return Ok(());
    };
    let provider = fx.provider(DockerSettings::default())?;
    let dirs = Dirs::new("isolation")?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let (sandbox, _) = provider.create(&dirs.spec(fx)).await?;
    let result = async {
        let caps = run(
            &sandbox,
            &["/bin/sh", "-c", "grep CapEff /proc/self/status"],
        )
        .await?;
        assert_eq!(
            caps.stdout.split_whitespace().nth(1),
            Some("0000000000000000")
        );

        for path in ["/x", "/etc/x", "/usr/x", "/opt/warren/bin/x"] {
            let w = run(&sandbox, &["/bin/sh", "-c", &format!("echo x > {path}")]).await?;
            assert_ne!(w.code, Some(0), "writing {path} succeeded");
        }
        let ok = "echo hi > /workspace/x && echo t > /tmp/t && echo h > /home/agent/h";
        let w = run(&sandbox, &["/bin/sh", "-c", ok]).await?;
        assert_eq!(w.code, Some(0), "writable places: {}", w.stderr);
        assert_eq!(std::fs::read_to_string(dirs.workspace().join("x"))?, "hi\n");
        assert_eq!(std::fs::read_to_string(dirs.home().join("h"))?, "h\n");

        let ifaces = run(
            &sandbox,
            &["/bin/sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"],
        )
        .await?;
        assert_eq!(ifaces.stdout.split_whitespace().collect::<Vec<_>>(), ["lo"]);
        let connect = format!("echo hi > /dev/tcp/127.0.0.1/{port}");
        let tcp = run(&sandbox, &["/bin/bash", "-c", &connect]).await?;
        assert_ne!(
            tcp.code,
            Some(0),
            "reached the host's loopback from the container"
        );
        anyhow::Ok(())
    }
    .await;
    sandbox.destroy().await?;
    result?;
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        other => bail!("the host listener accepted a connection: {other:?}"),
    }
}

#[tokio::test]
async fn gateway_relay_through_the_run_dir_socket() -> anyhow::Result<()> {
    let Some(fx) = fixture().await? else {
        return Ok(());
    };
    let provider = fx.provider(DockerSettings::default())?;
    let dirs = Dirs::new("relay")?;
    // Bound before create, like the engine's gateway: create must make it usable by uid 1000.
    let listener = tokio::net::UnixListener::bind(dirs.run().join("gateway.sock"))?;
    let server = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let body = "hello from the gateway";
            let reply = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    let (sandbox, _) = provider.create(&dirs.spec(fx)).await?;
    let script = r#"exec 3<>/dev/tcp/127.0.0.1/4000; printf 'GET / HTTP/1.0\r\n\r\n' >&3; cat <&3"#;
    let out = run(
        &sandbox,
        &[
            "/run/warren-tools/warren-sandbox-init",
            "--relay",
            "4000=/run/warren/gateway.sock",
            "--",
            "/bin/bash",
            "-c",
            script,
        ],
    )
    .await;
    sandbox.destroy().await?;
    server.abort();
    let out = out?;
    assert!(
        out.stdout.contains("hello from the gateway"),
        "stdout {:?} stderr {:?}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.code, Some(0));
    Ok(())
}

#[tokio::test]
async fn kill_ends_the_exec() -> anyhow::Result<()> {
    let Some(fx) = fixture().await? else {
        return Ok(());
    };
    let provider = fx.provider(DockerSettings::default())?;
    let dirs = Dirs::new("kill")?;
    let (sandbox, _) = provider.create(&dirs.spec(fx)).await?;
    let spec = ExecSpec {
        argv: vec!["sleep".into(), "30".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/workspace".into(),
    };
    let mut child = sandbox.exec(&spec)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    child.kill().await?;
    let code = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
    eprintln!("timing: kill to wait {:?}, code {code:?}", t.elapsed());
    sandbox.destroy().await?;
    assert!(code.is_none_or(|c| c != 0), "killed exec exited 0");
    assert!(t.elapsed() < Duration::from_secs(5));
    Ok(())
}

/// A monitor that dies holds no destroy call: the container must end on its own, with the agent.
#[tokio::test]
async fn a_container_ends_when_its_holder_lets_go() -> anyhow::Result<()> {
    let Some(fx) = fixture().await? else {
        return Ok(());
    };
    let provider = fx.provider(DockerSettings::default())?;
    let dirs = Dirs::new("tether")?;
    let (sandbox, _) = provider.create(&dirs.spec(fx)).await?;
    let spec = ExecSpec {
        argv: vec!["sleep".into(), "300".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/workspace".into(),
    };
    let agent = sandbox.exec(&spec)?;
    let id = sandbox.id().to_owned();
    drop(agent);
    drop(sandbox);
    let docker = provider.docker().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = loop {
        let state = docker
            .inspect_container(&id, None)
            .await?
            .state
            .and_then(|s| s.running)
            .unwrap_or(false);
        if !state || Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    provider.remove_container(&id).await?;
    assert!(!running, "the container outlived the process that held it");
    Ok(())
}

#[tokio::test]
async fn volumes_persist_and_belong_to_the_agent() -> anyhow::Result<()> {
    let Some(fx) = fixture().await? else {
        return Ok(());
    };
    let repo = tempfile::tempdir()?;
    let name = volume_name(repo.path(), "node_modules");
    assert_eq!(name, volume_name(repo.path(), "node_modules"));
    let settings = DockerSettings {
        volumes: vec!["node_modules".into()],
        volumes_repo_key: Some(warren_provider_docker::repo_key(repo.path())),
        ..Default::default()
    };
    let provider = fx.provider(settings)?;
    let mut seen = Vec::new();
    for round in 0..2 {
        let dirs = Dirs::new(&format!("vol{round}"))?;
        let (sandbox, _) = provider.create(&dirs.spec(fx)).await?;
        let script = "ls /workspace/node_modules; touch /workspace/node_modules/f$ROUND && stat -c %u /workspace/node_modules";
        let out = run_env(
            &sandbox,
            &["/bin/sh", "-c", script],
            vec![("ROUND".into(), round.to_string())],
            "/workspace",
        )
        .await;
        sandbox.destroy().await?;
        let out = out?;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        seen.push(out.stdout);
        // The host workspace only holds the empty mount point.
        let mount_point = dirs.workspace().join("node_modules");
        assert_eq!(std::fs::read_dir(&mount_point)?.count(), 0);
    }
    assert_eq!(seen[0], "1000\n");
    assert_eq!(seen[1], "f0\n1000\n");
    let removed = provider.remove_volumes().await?;
    assert!(removed.contains(&name), "{removed:?} misses {name}");
    Ok(())
}

#[tokio::test]
async fn preflight_names_a_missing_image() -> anyhow::Result<()> {
    let Some(fx) = fixture().await? else {
        return Ok(());
    };
    let provider = fx.provider(DockerSettings {
        image: "warren-no-such-image:nope".into(),
        ..Default::default()
    })?;
    match provider.preflight().await {
        Err(ProviderError::MissingImage { image, hint }) => {
            assert_eq!(image, "warren-no-such-image:nope");
            assert!(hint.contains("warren image build"));
        }
        other => bail!("expected a missing image, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn unreachable_engine_is_a_missing_dependency() -> anyhow::Result<()> {
    // Runs without an engine too: only the socket path is made up.
    let dir = tempfile::tempdir()?;
    let host = format!("unix://{}", dir.path().join("none.sock").display());
    // Either stage may notice (bollard checks a unix socket's path on connect); both must say
    // the same thing.
    let checked = match DockerProvider::connect_with_host(&host, DockerSettings::default()) {
        Ok(provider) => provider.preflight().await,
        Err(e) => Err(e),
    };
    match checked {
        Err(ProviderError::Missing { program, hint }) => {
            assert_eq!(program, "a Docker engine");
            assert!(hint.contains("DOCKER_HOST"), "{hint}");
        }
        other => bail!("expected a missing engine, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn opencode_starts_in_the_sandbox() -> anyhow::Result<()> {
    let Some(fx) = fixture().await? else {
        return Ok(());
    };
    let provider = fx.provider(DockerSettings::default())?;
    let dirs = Dirs::new("opencode")?;
    let (sandbox, _) = provider.create(&dirs.spec(fx)).await?;
    let env = || {
        vec![
            ("HOME".to_owned(), "/home/agent".to_owned()),
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
        ]
    };
    // The engine's bound copy and the image's own copy.
    let bound = run_env(
        &sandbox,
        &["/run/warren-tools/opencode", "--version"],
        env(),
        "/workspace",
    )
    .await;
    let baked = run_env(
        &sandbox,
        &["/opt/warren/bin/opencode", "--version"],
        env(),
        "/workspace",
    )
    .await;
    sandbox.destroy().await?;
    let (bound, baked) = (bound?, baked?);
    assert_eq!(bound.code, Some(0), "{}", bound.stderr);
    assert_eq!(baked.code, Some(0), "{}", baked.stderr);
    assert!(!bound.stdout.trim().is_empty());
    assert_eq!(bound.stdout, baked.stdout);
    Ok(())
}

#[tokio::test]
async fn large_output_arrives_whole_on_both_streams() -> anyhow::Result<()> {
    let Some(fx) = fixture().await? else {
        return Ok(());
    };
    let provider = fx.provider(DockerSettings::default())?;
    let dirs = Dirs::new("large")?;
    let (sandbox, _) = provider.create(&dirs.spec(fx)).await?;
    let script =
        "head -c 3000000 /dev/zero | tr '\\0' o & head -c 2000000 /dev/zero | tr '\\0' e >&2; wait";
    let out = run(&sandbox, &["/bin/bash", "-c", script]).await;
    sandbox.destroy().await?;
    let out = out?;
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout.len(), 3_000_000);
    assert!(out.stdout.bytes().all(|b| b == b'o'));
    assert_eq!(out.stderr.len(), 2_000_000);
    assert!(out.stderr.bytes().all(|b| b == b'e'));
    Ok(())
}
