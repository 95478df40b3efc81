//! The sandbox boundary, tested through the agent's own bash tool: writes outside the workspace,
//! reads from the host's HOME and TCP connections to the host all fail, and the host is unchanged.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::every_backend;

use super::harness::{Backend, Fixture, bash_turn, json_lines, scenario, stderr, text_turn};

/// Runs `attempt` in the sandbox and prints ESCAPED if it worked, BLOCKED if it failed.
fn probe(label: &str, attempt: &str) -> Value {
    bash_turn(&format!(
        "if {attempt}; then echo \"{label}: ESCAPED\"; else echo \"{label}: BLOCKED\"; fi"
    ))
}

every_backend!(writes_outside_reads_of_host_home_and_host_connections_all_fail);

async fn writes_outside_reads_of_host_home_and_host_connections_all_fail(backend: Backend) {
    // A host service on loopback that counts every connection it receives.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = stop.clone();
    let acceptor = std::thread::spawn(move || {
        while !stop_flag.load(Ordering::Relaxed) {
            if listener.accept().is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });

    let tmp = tempfile::tempdir().unwrap();
    let host_home = tmp.path().join("hosthome");
    std::fs::create_dir_all(&host_home).unwrap();
    std::fs::write(host_home.join("secret.txt"), "TOP-SECRET-VALUE\n").unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();

    let mut fx = Fixture::with_backend("{}", backend).await;
    let model_port = fx.model.as_ref().unwrap().addr().port();
    let repo = fx.repo.display().to_string();
    let secret = host_home.join("secret.txt").display().to_string();
    let outside_dir = outside.display().to_string();
    let turns = vec![
        probe(
            "write-user-checkout",
            &format!("echo x > '{repo}/escaped.txt'"),
        ),
        probe(
            "write-outside-dir",
            &format!("echo x > '{outside_dir}/escaped.txt'"),
        ),
        probe("write-usr", "echo x > /usr/escaped.txt"),
        probe("write-etc", "echo x > /etc/escaped.txt"),
        probe("read-host-home", &format!("cat '{secret}'")),
        probe(
            "read-root-home",
            "ls /root/ >/dev/null 2>&1 && test -n \"$(ls -A /root 2>/dev/null)\"",
        ),
        probe("read-shadow", "grep -q root /etc/shadow"),
        probe(
            "tcp-host-service",
            &format!("timeout 5 bash -c 'echo hi > /dev/tcp/127.0.0.1/{host_port}'"),
        ),
        probe(
            "tcp-model-direct",
            &format!("timeout 5 bash -c 'echo hi > /dev/tcp/127.0.0.1/{model_port}'"),
        ),
        text_turn("Tried everything."),
    ];
    // Restart the model with the probing scenario on a fresh port.
    fx.model.take().unwrap().shutdown().await;
    let script = warren_model_script::Scenario::from_json_str(&scenario(turns)).unwrap();
    fx.model = Some(
        warren_model_script::start(script, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap(),
    );
    fx.write_config(&fx.model_url());

    let out = fx.run("escape", &["--json"], "try to escape").await;
    stop.store(true, Ordering::Relaxed);
    acceptor.join().unwrap();
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        super::harness::stdout(&out),
        stderr(&out)
    );

    let outputs: Vec<String> = json_lines(&out)
        .iter()
        .filter(|e| e["type"] == "tool_use")
        .map(|e| e["output"].as_str().unwrap_or_default().to_owned())
        .collect();
    let all = outputs.join("\n");
    for label in [
        "write-user-checkout",
        "write-outside-dir",
        "write-usr",
        "write-etc",
        "read-host-home",
        "read-root-home",
        "read-shadow",
        "tcp-host-service",
        "tcp-model-direct",
    ] {
        assert!(
            all.contains(&format!("{label}: BLOCKED")),
            "{label} was not blocked:\n{all}"
        );
    }
    assert!(!all.contains("ESCAPED"), "{all}");
    assert!(
        !all.contains("TOP-SECRET-VALUE"),
        "host secret leaked:\n{all}"
    );
    // The host is unchanged.
    assert!(!fx.repo.join("escaped.txt").exists());
    assert!(!outside.join("escaped.txt").exists());
    assert!(!std::path::Path::new("/usr/escaped.txt").exists());
    assert!(!std::path::Path::new("/etc/escaped.txt").exists());
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the sandbox reached a host port"
    );
    // Only model API calls reached the model, and only through the gateway.
    let requests = fx.model.as_ref().unwrap().requests();
    assert!(!requests.is_empty());
}
