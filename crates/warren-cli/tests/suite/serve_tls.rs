//! `warren serve --tls-cert --tls-key`: HTTPS with a self-signed certificate made here (rcgen),
//! a client that trusts only it, plain HTTP refused on the TLS port, a non-loopback address
//! allowed only with TLS, bad certificate or key files refused with exit 2 before listening,
//! and SIGTERM still draining the server.

use std::time::Duration;

use super::harness::{Fixture, scenario, stderr, text_turn};
use super::http::{Server, json_of, token};

struct Pair {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    pem: String,
}

fn self_signed(dir: &std::path::Path) -> Pair {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let pem = certified.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    Pair { cert, key, pem }
}

fn trusting(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_over_tls_with_a_self_signed_certificate() {
    let fx = Fixture::new(&scenario(vec![text_turn("done")])).await;
    let pair = self_signed(fx.dir.path());
    let args = [
        "--tls-cert",
        pair.cert.to_str().unwrap(),
        "--tls-key",
        pair.key.to_str().unwrap(),
    ];
    let server = Server::start_args(&fx, &args, trusting(&pair.pem)).await;
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let alice = token(&fx, "alice").await;

    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (status, listed) = json_of(
        server
            .http
            .get(server.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["sandboxes"], serde_json::json!([]));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = server.base.replacen("https://", "http://", 1);
    let refused = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    assert!(refused.is_err(), "plain HTTP was answered: {refused:?}");
    // A client that does not trust the certificate is refused by its own TLS check.
    let stranger = reqwest::Client::new()
        .get(server.url("/healthz"))
        .send()
        .await;
    assert!(stranger.is_err(), "an untrusted certificate was accepted");
    // The server still serves after both.
    assert_eq!(
        server
            .http
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A sandbox over TLS, and an event stream held open (`follow`) while the server is told to
    // stop: the stream ends cleanly and the server drains and exits 0.
    let (status, launched) = json_of(
        server
            .http
            .post(server.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .json(&serde_json::json!({ "repository": fx.repo, "name": "secure", "prompt": "say done" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{launched}");
    let held = server
        .http
        .get(server.url("/v1/sandboxes/secure/events?follow=true"))
        .bearer_auth(&alice)
        .header("Accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let reading = tokio::spawn(held.text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop().await;
    let text = tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("the held stream did not end at shutdown")
        .unwrap()
        .expect("the held stream ended with an error instead of cleanly");
    assert!(text.lines().count() >= 1, "events came over TLS: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_files_and_addresses_are_checked_before_listening() {
    let fx = Fixture::new(&scenario(vec![text_turn("unused")])).await;
    let pair = self_signed(fx.dir.path());
    let garbage = fx.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_key = fx.dir.path().join("other-key.pem");
    std::fs::write(&other_key, other.signing_key.serialize_pem()).unwrap();
    let missing = fx.dir.path().join("missing.pem");
    let (cert, key) = (pair.cert.to_str().unwrap(), pair.key.to_str().unwrap());
    let port = super::http::free_port().to_string();
    let loopback = format!("127.0.0.1:{port}");
    for (args, words) in [
        (
            vec!["--tls-cert", garbage.to_str().unwrap(), "--tls-key", key],
            "no certificate",
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", garbage.to_str().unwrap()],
            "no usable private key",
        ),
        (
            vec!["--tls-cert", missing.to_str().unwrap(), "--tls-key", key],
            "cannot read",
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", other_key.to_str().unwrap()],
            "does not fit",
        ),
    ] {
        let mut all = vec!["--json", "serve", "--listen", &loopback];
        all.extend(args.iter().copied());
        let out = fx.warren(&all).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(error["error"]["reason_code"], "invalid_argument", "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{args:?}: {message}");
        assert!(error["error"]["hint"].is_string());
    }
    // --tls-cert alone is a usage error.
    let out = fx
        .warren(&["serve", "--listen", &loopback, "--tls-cert", cert])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A non-loopback address: refused without TLS, allowed with it (the test does not connect
    // to it; the server is stopped as soon as it listens).
    let any = format!("0.0.0.0:{port}");
    let out = fx.warren(&["--json", "serve", "--listen", &any]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let mut child = fx
        .command(&[
            "serve",
            "--listen",
            &any,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        use tokio::io::AsyncBufReadExt;
        while !line.contains("listening on") {
            line.clear();
            assert!(err.read_line(&mut line).await.unwrap() > 0, "serve ended");
        }
    })
    .await
    .expect("serve with TLS on 0.0.0.0 did not listen");
    assert!(line.contains("https://0.0.0.0:"), "{line}");
    let pid = child.id().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
