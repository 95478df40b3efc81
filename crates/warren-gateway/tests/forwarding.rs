//! Requests the policy allows: credential swap, header hygiene, path mapping and streaming.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use tokio::sync::{Mutex, mpsc};

#[tokio::test]
async fn swaps_the_placeholder_credential_for_the_real_one() {
    let (addr, log) = recording_upstream().await;
    let fx = start_gateway(format!("http://{addr}/v1"), Some("real-key")).await;

    let body = r#"{"model":"m","messages":[]}"#;
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("host", "127.0.0.1:4096")
        .header("authorization", "Bearer placeholder")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("cookie", "session=abc")
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .header("user-agent", "opencode/1.0")
        .header("x-title", "warren-test")
        .body(http_body_util::Full::new(Bytes::from(body)))
        .unwrap();
    let resp = send(&fx.socket(), req).await;
    assert_eq!(resp.status(), 200);
    let answer = body_bytes(resp).await;
    assert_eq!(&answer[..], br#"{"ok":true}"#);

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(s.target, "/v1/chat/completions");
    let auth: Vec<_> = s.headers.get_all("authorization").iter().collect();
    assert_eq!(auth, ["Bearer real-key"]);
    assert!(s.headers.get("proxy-authorization").is_none());
    assert!(s.headers.get("cookie").is_none());
    assert_eq!(s.headers["content-type"], "application/json");
    assert_eq!(s.headers["accept"], "text/event-stream");
    assert_eq!(s.headers["user-agent"], "opencode/1.0");
    assert_eq!(s.headers["x-title"], "warren-test");
    // The upstream must see its own authority, not the sandbox's 127.0.0.1:4096.
    assert_eq!(s.headers["host"], addr.to_string());
    assert_eq!(&s.body[..], body.as_bytes());

    let stats = fx.gateway.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.blocked, 0);
    assert_eq!(stats.upstream_errors, 0);
    assert_eq!(stats.bytes_up, body.len() as u64);
    assert_eq!(stats.bytes_down, answer.len() as u64);
}

#[tokio::test]
async fn without_an_api_key_no_authorization_is_sent() {
    let (addr, log) = recording_upstream().await;
    let fx = start_gateway(format!("http://{addr}/v1"), None).await;

    let req = hyper::Request::builder()
        .method("GET")
        .uri("/v1/models")
        .header("authorization", "Bearer placeholder")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&fx.socket(), req).await.status(), 200);

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn maps_paths_onto_a_base_url_with_its_own_path_and_keeps_the_query() {
    let (addr, log) = recording_upstream().await;
    let fx = start_gateway(format!("http://{addr}/custom/v1/"), None).await;

    for target in [
        "/v1/models?limit=5&order=desc",
        "/v1/models/meta-llama/Llama-3.1-8B",
        "/v1/chat/completions?api-version=2024-10-01",
    ] {
        let method = if target.contains("chat") {
            "POST"
        } else {
            "GET"
        };
        let resp = send(&fx.socket(), request(method, target, "{}")).await;
        assert_eq!(resp.status(), 200, "{target}");
    }

    let targets: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.target.clone())
        .collect();
    assert_eq!(
        targets,
        [
            "/custom/v1/models?limit=5&order=desc",
            "/custom/v1/models/meta-llama/Llama-3.1-8B",
            "/custom/v1/chat/completions?api-version=2024-10-01",
        ]
    );
}

/// The upstream sends each SSE chunk only after the client has acknowledged the previous one. A
/// gateway that buffered the response would hold chunk 1 back, the upstream would give up
/// waiting and send everything, and the sent-count check below would fail.
#[tokio::test]
async fn streams_sse_chunk_by_chunk() {
    const CHUNKS: [&str; 3] = [
        "data: {\"n\":1}\n\n",
        "data: {\"n\":2}\n\n",
        "data: [DONE]\n\n",
    ];
    let sent = Arc::new(AtomicUsize::new(0));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<usize>();
    let ack_rx = Arc::new(Mutex::new(ack_rx));

    let handler = {
        let sent = Arc::clone(&sent);
        move || {
            let sent = Arc::clone(&sent);
            let ack_rx = Arc::clone(&ack_rx);
            async move {
                let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
                tokio::spawn(async move {
                    let mut acks = ack_rx.lock().await;
                    for (i, chunk) in CHUNKS.iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        sent.store(i + 1, Ordering::SeqCst);
                        tx.send(Ok(Bytes::from_static(chunk.as_bytes())))
                            .await
                            .unwrap();
                        let _ = tokio::time::timeout(Duration::from_secs(10), acks.recv()).await;
                    }
                });
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(stream))
                    .unwrap()
            }
        }
    };
    let addr = spawn_upstream(Router::new().route("/v1/chat/completions", post(handler))).await;
    let fx = start_gateway(format!("http://{addr}/v1"), Some("k")).await;

    let resp = send(
        &fx.socket(),
        request("POST", "/v1/chat/completions", "{\"stream\":true}"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");

    let mut body = resp.into_body();
    let mut received = Vec::new();
    let mut pending = Vec::new();
    while received.len() < CHUNKS.len() {
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .expect("stream stalled")
            .expect("stream ended early")
            .unwrap();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let expected = CHUNKS[received.len()].as_bytes();
        if pending.len() >= expected.len() {
            assert_eq!(&pending[..expected.len()], expected);
            pending.drain(..expected.len());
            received.push(sent.load(Ordering::SeqCst));
            ack_tx.send(received.len()).unwrap();
        }
    }
    // Chunk i reached the client while the upstream had sent exactly i chunks.
    assert_eq!(received, [1, 2, 3]);
    assert!(body.frame().await.is_none_or(|f| f.is_ok()));
}

#[tokio::test]
async fn oversized_request_body_is_refused_with_413() {
    let (addr, log) = recording_upstream().await;
    let fx = start_gateway(format!("http://{addr}/v1"), None).await;

    let big = "x".repeat(32 * 1024 * 1024 + 1);
    let resp = send(&fx.socket(), request("POST", "/v1/chat/completions", &big)).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(
        body_json(resp).await["error"]["type"],
        "gateway_request_too_large"
    );
    assert!(log.lock().unwrap().is_empty());
}
