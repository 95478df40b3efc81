//! Shared fixtures for the gateway tests: a recording upstream on 127.0.0.1 and an HTTP/1.1
//! client that speaks over the gateway's Unix socket, as the sandbox's relay does.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use warren_gateway::{GatewayConfig, GatewayHandle, GatewayNotice, MeteredRequest, RequestSource};

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query as the upstream received them.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

/// Serves `router` on an ephemeral localhost port for the rest of the test.
pub async fn spawn_upstream(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// An upstream that records every request and answers `{"ok":true}`.
pub async fn recording_upstream() -> (SocketAddr, Log) {
    let log = Log::default();
    let router = Router::new().fallback(record).with_state(Arc::clone(&log));
    (spawn_upstream(router).await, log)
}

async fn record(State(log): State<Log>, req: Request) -> axum::Json<serde_json::Value> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    log.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: parts.headers,
        body,
    });
    axum::Json(serde_json::json!({ "ok": true }))
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub gateway: GatewayHandle,
}

impl Fixture {
    pub fn socket(&self) -> PathBuf {
        self.gateway.socket_path().to_owned()
    }

    pub async fn next_notice(&mut self) -> GatewayNotice {
        tokio::time::timeout(Duration::from_secs(10), self.gateway.notices().recv())
            .await
            .expect("no notice within 10 s")
            .expect("notice channel closed")
    }

    /// The next metering record, skipping other notices.
    pub async fn next_record(&mut self) -> MeteredRequest {
        loop {
            if let GatewayNotice::ModelRequest(record) = self.next_notice().await {
                return record;
            }
        }
    }

    pub fn no_pending_notice(&mut self) -> bool {
        self.gateway.notices().try_recv().is_err()
    }
}

pub async fn start_gateway(base_url: String, api_key: Option<&str>) -> Fixture {
    start_gateway_with(base_url, api_key, Duration::from_secs(5)).await
}

pub async fn start_gateway_with(
    base_url: String,
    api_key: Option<&str>,
    connect_timeout: Duration,
) -> Fixture {
    start_gateway_as(base_url, api_key, connect_timeout, RequestSource::Agent).await
}

pub async fn start_gateway_as(
    base_url: String,
    api_key: Option<&str>,
    connect_timeout: Duration,
    source: RequestSource,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GatewayConfig::new(dir.path().join("gateway.sock"), base_url);
    cfg.api_key = api_key.map(str::to_owned);
    cfg.connect_timeout = connect_timeout;
    cfg.source = source;
    let gateway = warren_gateway::start(cfg).await.unwrap();
    Fixture { dir, gateway }
}

/// Sends one request over a fresh connection to the gateway socket.
pub async fn send(socket: &Path, req: hyper::Request<Full<Bytes>>) -> hyper::Response<Incoming> {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.unwrap()
}

pub fn request(method: &str, target: &str, body: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .method(method)
        .uri(target)
        .header("host", "127.0.0.1:4096")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

pub async fn body_bytes(resp: hyper::Response<Incoming>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

pub async fn body_json(resp: hyper::Response<Incoming>) -> serde_json::Value {
    serde_json::from_slice(&body_bytes(resp).await).unwrap()
}
