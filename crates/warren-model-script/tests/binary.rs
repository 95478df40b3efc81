//! The `warren-model-script` command as a script would use it: it says it is a stand-in, writes
//! its port file, serves, and exits cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_warren-model-script");

#[test]
fn help_says_it_is_a_stand_in() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("stand-in for a language model"), "{help}");
    assert!(help.contains("not a real model"), "{help}");
    assert!(
        help.contains("--scenario") && help.contains("--port-file"),
        "{help}"
    );
}

#[test]
fn bad_scenario_fails_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, r#"{"turnz": []}"#).unwrap();
    let output = Command::new(BIN)
        .arg("--scenario")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("bad.json") && stderr.contains("turnz"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serves_writes_port_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.json");
    std::fs::write(
        &scenario,
        r#"{"turns": [{"text": "from the binary"}, {"text": "second"}]}"#,
    )
    .unwrap();
    let port_file = dir.path().join("port");
    let mut child = Command::new(BIN)
        .arg("--scenario")
        .arg(&scenario)
        .arg("--port-file")
        .arg(&port_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(
        line.starts_with(
            "warren-model-script: scripted stand-in for a language model (not a real model), \
             serving 2 turns on http://127.0.0.1:"
        ),
        "{line}"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let port: u16 = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            break text.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "port file never appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(line.trim_end().ends_with(&format!(":{port}/v1")), "{line}");

    let response = common::client()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .json(&common::agent_request("hi"))
        .send()
        .await
        .unwrap();
    let chunks = common::sse_chunks(&response.text().await.unwrap());
    assert_eq!(common::delta_text(&chunks, "content"), "from the binary");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("request 0"),
        "each request is logged to stderr: {stderr}"
    );
    assert!(stderr.contains("served turn 0"), "{stderr}");
}
