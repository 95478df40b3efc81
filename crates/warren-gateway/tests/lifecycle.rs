//! The socket's life: creation with permissions the sandbox can use, replacing stale files,
//! refusing to hijack a live one, and a shutdown that leaves nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use warren_domain::{ReasonCode, UserFacing};
use warren_gateway::{GatewayConfig, GatewayError};

#[tokio::test]
async fn socket_is_world_accessible_and_removed_on_shutdown() {
    let (addr, _log) = recording_upstream().await;
    let fx = start_gateway(format!("http://{addr}/v1"), None).await;
    let path = fx.socket();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666);

    fx.gateway.shutdown().await;
    assert!(!path.exists());
    assert!(tokio::net::UnixStream::connect(&path).await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_also_removes_the_socket() {
    let (addr, _log) = recording_upstream().await;
    let fx = start_gateway(format!("http://{addr}/v1"), None).await;
    let path = fx.socket();
    drop(fx.gateway);
    assert!(!path.exists());
}

#[tokio::test]
async fn stale_socket_file_is_replaced() {
    let (addr, log) = recording_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.sock");
    // A socket file whose listener is gone, as a crashed warren leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let gateway = warren_gateway::start(GatewayConfig::new(&path, format!("http://{addr}/v1")))
        .await
        .unwrap();
    let resp = send(&path, request("GET", "/v1/models", "")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(log.lock().unwrap().len(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn refuses_a_live_socket_or_a_non_socket_file() {
    let dir = tempfile::tempdir().unwrap();

    let live = dir.path().join("live.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
    let err = warren_gateway::start(GatewayConfig::new(&live, "http://127.0.0.1:1/v1"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.reason_code(), ReasonCode::SandboxFailed);
    assert!(
        err.to_string().contains(&live.display().to_string()),
        "{err}"
    );
    assert!(live.exists());

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let err = warren_gateway::start(GatewayConfig::new(&file, "http://127.0.0.1:1/v1"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.reason_code(), ReasonCode::SandboxFailed);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[tokio::test]
async fn bind_failure_names_the_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("gateway.sock");
    let err = warren_gateway::start(GatewayConfig::new(&path, "http://127.0.0.1:1/v1"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, GatewayError::Bind { .. }));
    assert_eq!(err.to_error_info().reason_code, ReasonCode::SandboxFailed);
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn bad_upstream_urls_are_invalid_config_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "not a url",
        "ftp://example.com/v1",
        "http://h/v1?key=x",
        "unix:/tmp/s",
    ] {
        let cfg = GatewayConfig::new(dir.path().join("g.sock"), url);
        let err = warren_gateway::start(cfg).await.err().unwrap();
        assert_eq!(err.reason_code(), ReasonCode::InvalidConfig, "{url}");
        assert!(err.to_string().contains(url), "{err}");
        assert!(!dir.path().join("g.sock").exists());
    }
}

#[tokio::test]
async fn api_key_is_validated_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GatewayConfig::new(dir.path().join("g.sock"), "http://127.0.0.1:1/v1");
    cfg.api_key = Some("sk-secret\nInjected: 1".into());
    assert!(!format!("{cfg:?}").contains("sk-secret"));
    let err = warren_gateway::start(cfg).await.err().unwrap();
    assert_eq!(err.reason_code(), ReasonCode::InvalidConfig);
    assert!(!err.to_string().contains("sk-secret"));
}

#[tokio::test]
async fn shutdown_ends_an_in_flight_stream() {
    let handler = || async {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
        tokio::spawn(async move {
            let _ = tx.send(Ok(Bytes::from_static(b"data: first\n\n"))).await;
            // Then never finish, like a model that stalls mid-answer.
            tx.closed().await;
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap()
    };
    let addr = spawn_upstream(Router::new().route("/v1/chat/completions", post(handler))).await;
    let fx = start_gateway(format!("http://{addr}/v1"), None).await;
    let path = fx.socket();

    let resp = send(&path, request("POST", "/v1/chat/completions", "{}")).await;
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"data: first\n\n");

    tokio::time::timeout(Duration::from_secs(10), fx.gateway.shutdown())
        .await
        .expect("shutdown hung on an open stream");
    let rest = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("stream still open after shutdown");
    assert!(
        rest.is_none_or(|f| f.is_err()),
        "stream kept producing data"
    );
    assert!(!path.exists());
}
