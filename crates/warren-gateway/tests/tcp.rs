//! The TCP attachment, for sandboxes that share no file system with warren: the gateway listens
//! on an address and answers only requests that carry the sandbox's token, which it never
//! forwards; the real credential is injected as on a socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use warren_gateway::{GatewayConfig, GatewayError, GatewayHandle};

const TOKEN: &str = "sandbox-token-0123456789abcdef";

async fn start_tcp(upstream: SocketAddr, api_key: Option<&str>) -> GatewayHandle {
    let mut cfg = GatewayConfig::tcp(
        "127.0.0.1:0".parse().unwrap(),
        TOKEN,
        format!("http://{upstream}/v1"),
    );
    cfg.api_key = api_key.map(str::to_owned);
    warren_gateway::start(cfg).await.unwrap()
}

async fn send_tcp(
    addr: SocketAddr,
    req: hyper::Request<Full<Bytes>>,
) -> hyper::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.unwrap()
}

fn chat(authorization: Option<&str>) -> hyper::Request<Full<Bytes>> {
    let mut builder = hyper::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("host", "gateway.warren:4000")
        .header("content-type", "application/json");
    if let Some(auth) = authorization {
        builder = builder.header("authorization", auth);
    }
    builder
        .body(Full::new(Bytes::from_static(
            br#"{"model":"m","messages":[]}"#,
        )))
        .unwrap()
}

#[tokio::test]
async fn the_token_opens_the_gateway_and_the_real_key_goes_upstream() {
    let (upstream, log) = recording_upstream().await;
    let mut gateway = start_tcp(upstream, Some("real-key")).await;
    let addr = gateway.local_addr().expect("a TCP gateway has an address");
    assert_ne!(
        addr.port(),
        0,
        "the bound port is reported, not the asked-for 0"
    );
    assert!(gateway.socket_path().as_os_str().is_empty());

    let resp = send_tcp(addr, chat(Some(&format!("Bearer {TOKEN}")))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(&body_bytes(resp).await[..], br#"{"ok":true}"#);

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let auth: Vec<_> = seen[0].headers.get_all("authorization").iter().collect();
    assert_eq!(auth, ["Bearer real-key"]);
    for (name, value) in &seen[0].headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains(TOKEN), "the token was forwarded in {name}");
    }
    // Forwarded requests are metered as on a socket.
    let notice = gateway.notices().recv().await.unwrap();
    assert!(
        matches!(notice, warren_gateway::GatewayNotice::ModelRequest(ref r) if r.status == 200),
        "{notice:?}"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn without_a_key_upstream_the_token_is_still_never_forwarded() {
    let (upstream, log) = recording_upstream().await;
    let gateway = start_tcp(upstream, None).await;
    let addr = gateway.local_addr().unwrap();
    let resp = send_tcp(addr, chat(Some(&format!("Bearer {TOKEN}")))).await;
    assert_eq!(resp.status(), 200);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("authorization").is_none());
    gateway.shutdown().await;
}

#[tokio::test]
async fn requests_without_the_right_token_get_401_and_go_nowhere() {
    let (upstream, log) = recording_upstream().await;
    let mut gateway = start_tcp(upstream, Some("real-key")).await;
    let addr = gateway.local_addr().unwrap();
    let wrong = format!("Bearer {}x", &TOKEN[..TOKEN.len() - 1]);
    let cases = [
        None,
        Some("Bearer warren-gateway-placeholder"),
        Some(wrong.as_str()),
        Some(TOKEN),
        Some("Basic c2FuZGJveDp0b2tlbg=="),
        Some("Bearer real-key"),
    ];
    for auth in cases {
        let resp = send_tcp(addr, chat(auth)).await;
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let body = body_json(resp).await;
        assert_eq!(body["error"]["type"], "gateway_unauthorized", "{auth:?}");
    }
    // Two Authorization headers, one of them right, are refused too.
    let mut twice = chat(Some(&format!("Bearer {TOKEN}")));
    twice
        .headers_mut()
        .append("authorization", "Bearer other".parse().unwrap());
    assert_eq!(send_tcp(addr, twice).await.status(), 401);

    assert!(
        log.lock().unwrap().is_empty(),
        "a refused request reached the upstream"
    );
    let stats = gateway.stats();
    assert_eq!((stats.requests, stats.bytes_up), (7, 0));
    // Nothing to meter and nothing that could stop the run.
    assert!(gateway.notices().try_recv().is_err());
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_guessable_token_is_refused_at_start() {
    for token in ["short", "has a space in it ....", ""] {
        let cfg = GatewayConfig::tcp(
            "127.0.0.1:0".parse().unwrap(),
            token,
            "http://127.0.0.1:1/v1",
        );
        let err = warren_gateway::start(cfg).await.err();
        assert!(
            matches!(err, Some(GatewayError::InvalidToken)),
            "{token:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn the_token_stays_out_of_debug_output() {
    let cfg = GatewayConfig::tcp(
        "127.0.0.1:0".parse().unwrap(),
        TOKEN,
        "http://127.0.0.1:1/v1",
    );
    let shown = format!("{cfg:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("127.0.0.1:0"), "{shown}");
}
