//! The egress proxy beside the gateway, spoken to over its Unix socket as the sandbox's relay
//! does: plain HTTP forwarding, CONNECT tunnels, refusals, redirects that are passed back (never
//! followed), and one notice per decision with its bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use warren_gateway::egress::{EgressAt, EgressListen, EgressPolicy, EgressRecord, RuleSpec};
use warren_gateway::{GatewayConfig, GatewayHandle, GatewayNotice};

use common::spawn_upstream;

struct Proxy {
    _dir: tempfile::TempDir,
    gateway: GatewayHandle,
}

impl Proxy {
    async fn start(rules: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<RuleSpec> = rules.iter().map(|r| RuleSpec::new(*r)).collect();
        let mut cfg = GatewayConfig::new(dir.path().join("gw.sock"), "http://127.0.0.1:9/v1");
        cfg.egress = Some(EgressListen {
            at: EgressAt::Unix(dir.path().join("egress.sock")),
            policy: EgressPolicy::parse(&specs).unwrap(),
        });
        let gateway = warren_gateway::start(cfg).await.unwrap();
        Self { _dir: dir, gateway }
    }

    fn socket(&self) -> &Path {
        self.gateway.egress_socket().unwrap()
    }

    async fn next(&mut self) -> EgressRecord {
        loop {
            let notice =
                tokio::time::timeout(Duration::from_secs(10), self.gateway.notices().recv())
                    .await
                    .expect("no notice within 10 s")
                    .expect("notice channel closed");
            if let GatewayNotice::Egress(record) = notice {
                return record;
            }
        }
    }
}

/// Sends `request` as is and reads until the proxy closes the connection.
async fn exchange(socket: &Path, request: &str) -> String {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn upstream() -> SocketAddr {
    let router = Router::new()
        .route("/hello", get(|| async { "hello from upstream" }))
        .route(
            "/elsewhere",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
        );
    spawn_upstream(router).await
}

#[tokio::test]
async fn plain_http_to_an_allowed_address_is_forwarded_and_recorded() {
    let up = upstream().await;
    let mut proxy = Proxy::start(&[&format!("127.0.0.1:{}", up.port())]).await;
    let answer = exchange(
        proxy.socket(),
        &format!(
            "GET http://{up}/hello HTTP/1.1\r\nHost: {up}\r\nProxy-Connection: keep-alive\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello from upstream"), "{answer}");
    let record = proxy.next().await;
    assert!(record.allowed, "{record:?}");
    assert_eq!(record.method, "GET");
    assert_eq!(record.host, "127.0.0.1");
    assert_eq!(record.port, up.port());
    assert_eq!(record.status, 200);
    assert_eq!(
        record.rule.as_deref(),
        Some(format!("127.0.0.1:{}", up.port()).as_str())
    );
    assert!(
        record.bytes_down > "hello from upstream".len() as u64,
        "{record:?}"
    );
    assert!(record.bytes_up > 0, "{record:?}");
}

#[tokio::test]
async fn a_connect_tunnel_carries_bytes_both_ways() {
    let up = upstream().await;
    let mut proxy = Proxy::start(&[&format!("127.0.0.1:{}", up.port())]).await;
    let mut stream = UnixStream::connect(proxy.socket()).await.unwrap();
    stream
        .write_all(format!("CONNECT {up} HTTP/1.1\r\nHost: {up}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
        .write_all(
            format!("GET /hello HTTP/1.1\r\nHost: {up}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    assert!(String::from_utf8_lossy(&out).ends_with("hello from upstream"));
    drop(stream);
    let record = proxy.next().await;
    assert!(record.allowed);
    assert_eq!(record.method, "CONNECT");
    assert_eq!(record.status, 200);
    assert_eq!(record.bytes_down, out.len() as u64);
    assert!(record.bytes_up > 0);
}

#[tokio::test]
async fn refusals_name_their_reason_and_reach_nothing() {
    let up = upstream().await;
    // Names the host but not its loopback address.
    let mut proxy = Proxy::start(&[&format!("localhost:{}", up.port())]).await;

    let cases = [
        (
            format!("GET http://{up}/hello HTTP/1.1\r\nHost: {up}\r\nConnection: close\r\n\r\n"),
            "raw IP",
        ),
        (
            format!(
                "GET http://localhost:{}/hello HTTP/1.1\r\nConnection: close\r\n\r\n",
                up.port()
            ),
            "loopback",
        ),
        (
            "CONNECT 169.254.169.254:80 HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
            "raw IP",
        ),
        (
            "CONNECT example.org:443 HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
            "no rule allows example.org",
        ),
        (
            "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned(),
            "not a proxy request",
        ),
    ];
    for (request, why) in cases {
        let answer = exchange(proxy.socket(), &request).await;
        assert!(answer.contains("x-warren-egress: denied"), "{answer}");
        let record = proxy.next().await;
        assert!(!record.allowed, "{record:?}");
        let reason = record.reason.clone().unwrap_or_default();
        assert!(reason.contains(why), "{why}: {record:?}");
        assert_eq!(record.bytes_down, 0);
        assert!(record.address.is_none());
    }
}

#[tokio::test]
async fn a_redirect_is_passed_back_and_following_it_is_a_new_refused_request() {
    let up = upstream().await;
    let mut proxy = Proxy::start(&[&format!("127.0.0.1:{}", up.port())]).await;
    let answer = exchange(
        proxy.socket(),
        &format!("GET http://{up}/elsewhere HTTP/1.1\r\nHost: {up}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 307"), "{answer}");
    assert!(
        answer.contains("location: http://169.254.169.254/"),
        "{answer}"
    );
    assert_eq!(proxy.next().await.status, 307);
    let answer = exchange(
        proxy.socket(),
        "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!proxy.next().await.allowed);
}

#[tokio::test]
async fn shutdown_ends_open_tunnels_and_records_them() {
    let up = upstream().await;
    let mut proxy = Proxy::start(&[&format!("127.0.0.1:{}", up.port())]).await;
    let mut stream = UnixStream::connect(proxy.socket()).await.unwrap();
    stream
        .write_all(format!("CONNECT {up} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let _ = stream.read(&mut head).await.unwrap();
    let socket = proxy.socket().to_owned();
    let mut notices = proxy.gateway.take_notices();
    tokio::time::timeout(Duration::from_secs(10), proxy.gateway.shutdown())
        .await
        .expect("shutdown waited on an open tunnel");
    assert!(!socket.exists(), "the egress socket was left behind");
    let mut found = None;
    while let Ok(notice) = notices.try_recv() {
        if let GatewayNotice::Egress(record) = notice {
            found = Some(record);
        }
    }
    let record = found.expect("the tunnel's record was not sent by shutdown");
    assert!(record.reason.unwrap_or_default().contains("cut off"));
}

/// A proxy for a sandbox that cannot see a host socket: on a loopback port, with the same
/// decisions. The provider's relay is the only thing that hands it a sandbox's connections.
#[tokio::test]
async fn on_loopback_tcp_the_proxy_decides_the_same_and_says_where_it_listens() {
    let up = upstream().await;
    let specs = [RuleSpec::new(format!("127.0.0.1:{}", up.port()))];
    let mut cfg = GatewayConfig::tcp(
        "127.0.0.1:0".parse().unwrap(),
        "tok-0123456789abcdef",
        "http://127.0.0.1:9/v1",
    );
    cfg.egress = Some(EgressListen {
        at: EgressAt::Tcp("127.0.0.1:0".parse().unwrap()),
        policy: EgressPolicy::parse(&specs).unwrap(),
    });
    let mut gateway = warren_gateway::start(cfg).await.unwrap();
    assert!(gateway.egress_socket().is_none());
    let at = gateway.egress_addr().unwrap();
    assert!(at.ip().is_loopback() && at.port() != 0, "{at}");
    assert_ne!(Some(at), gateway.local_addr());

    let ask = |request: String| async move {
        let mut stream = tokio::net::TcpStream::connect(at).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    let answer = ask(format!(
        "GET http://{up}/hello HTTP/1.1\r\nHost: {up}\r\nConnection: close\r\n\r\n"
    ))
    .await;
    assert!(answer.ends_with("hello from upstream"), "{answer}");
    let refused = ask(
        "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n"
            .to_owned(),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let mut records = Vec::new();
    while records.len() < 2 {
        let notice = tokio::time::timeout(Duration::from_secs(10), gateway.notices().recv())
            .await
            .expect("no notice within 10 s")
            .expect("notice channel closed");
        if let GatewayNotice::Egress(record) = notice {
            records.push(record);
        }
    }
    assert!(
        records[0].allowed && records[0].status == 200,
        "{records:?}"
    );
    assert!(!records[1].allowed && records[1].host == "169.254.169.254");
    gateway.shutdown().await;
    assert!(tokio::net::TcpStream::connect(at).await.is_err());
}

#[tokio::test]
async fn a_proxy_without_a_credential_is_never_bound_beyond_loopback() {
    let mut cfg = GatewayConfig::tcp(
        "127.0.0.1:0".parse().unwrap(),
        "tok-0123456789abcdef",
        "http://127.0.0.1:9/v1",
    );
    cfg.egress = Some(EgressListen {
        at: EgressAt::Tcp("0.0.0.0:0".parse().unwrap()),
        policy: EgressPolicy::parse(&[RuleSpec::new("example.org")]).unwrap(),
    });
    let Err(error) = warren_gateway::start(cfg).await else {
        panic!("a proxy on 0.0.0.0 started");
    };
    assert!(error.to_string().contains("loopback"), "{error}");
}
