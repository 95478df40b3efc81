//! The egress policy end to end: refused requests get a 403 the agent can read, the engine gets a
//! notice, and the upstream never hears about them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use warren_gateway::GatewayNotice;

#[tokio::test]
async fn non_model_requests_are_refused_without_contacting_the_upstream() {
    let (addr, log) = recording_upstream().await;
    let mut fx = start_gateway(format!("http://{addr}/v1"), Some("real-key")).await;

    let cases = [
        ("GET", "/etc/passwd", "/etc/passwd"),
        ("POST", "/v1/embeddings", "/v1/embeddings"),
        ("CONNECT", "other-host:443", "other-host:443"),
        ("GET", "http://other-host/", "http://other-host/"),
        (
            "GET",
            "/v1/models/../../admin?x=1",
            "/v1/models/../../admin",
        ),
        ("DELETE", "/v1/models/m", "/v1/models/m"),
        ("GET", "/v1/chat/completions", "/v1/chat/completions"),
    ];
    for (method, target, shown) in cases {
        let req = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header("host", "127.0.0.1:4096")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send(&fx.socket(), req).await;
        assert_eq!(resp.status(), 403, "{method} {target}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let json = body_json(resp).await;
        assert_eq!(json["error"]["type"], "gateway_policy");
        assert_eq!(
            json["error"]["message"],
            format!("blocked by warren's model gateway: {method} {shown} is not a model API call")
        );
        assert_eq!(
            fx.next_notice().await,
            GatewayNotice::Blocked {
                method: method.into(),
                path: shown.into()
            }
        );
    }

    assert!(log.lock().unwrap().is_empty(), "the upstream was contacted");
    let stats = fx.gateway.stats();
    assert_eq!(stats.requests, cases.len() as u64);
    assert_eq!(stats.blocked, cases.len() as u64);
    assert_eq!(stats.bytes_up, 0);
    assert!(fx.no_pending_notice());
}
