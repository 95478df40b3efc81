//! Upstream failures: the sandbox still gets a faithful answer, and the engine gets a notice it can
//! use to fail the run fast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::*;
use warren_gateway::GatewayNotice;

#[tokio::test]
async fn closed_port_gives_502_and_an_unreachable_notice() {
    // Bind, note the port, close: nothing listens there any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let timeout = Duration::from_secs(3);
    let mut fx = start_gateway_with(format!("http://{addr}/v1"), Some("k"), timeout).await;

    let started = Instant::now();
    let resp = send(&fx.socket(), request("POST", "/v1/chat/completions", "{}")).await;
    assert!(started.elapsed() < timeout, "took {:?}", started.elapsed());
    assert_eq!(resp.status(), 502);
    let json = body_json(resp).await;
    assert_eq!(json["error"]["type"], "gateway_upstream_unreachable");
    let url = format!("http://{addr}/v1/chat/completions");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "warren gateway: cannot reach the model endpoint {url}: "
        )),
        "{message}"
    );

    match fx.next_notice().await {
        GatewayNotice::UpstreamUnreachable { url: got, error } => {
            assert_eq!(got, url);
            assert!(error.to_lowercase().contains("refused"), "{error}");
            assert!(message.ends_with(&error), "{message}");
        }
        other => panic!("unexpected notice {other:?}"),
    }
    assert_eq!(fx.gateway.stats().upstream_errors, 1);
}

#[tokio::test]
async fn rejected_credential_is_passed_through_with_an_auth_notice() {
    let body = r#"{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}"#;
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            (
                StatusCode::UNAUTHORIZED,
                [("content-type", "application/json")],
                body,
            )
        }),
    );
    let addr = spawn_upstream(router).await;
    let mut fx = start_gateway(format!("http://{addr}/v1"), Some("wrong")).await;

    let resp = send(&fx.socket(), request("POST", "/v1/chat/completions", "{}")).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(&body_bytes(resp).await[..], body.as_bytes());
    assert_eq!(
        fx.next_notice().await,
        GatewayNotice::UpstreamAuthRejected {
            status: 401,
            body: body.into()
        }
    );
}

#[tokio::test]
async fn rate_limit_keeps_retry_after_and_sends_a_status_notice() {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "7")],
                "slow down",
            )
        }),
    );
    let addr = spawn_upstream(router).await;
    let mut fx = start_gateway(format!("http://{addr}/v1"), Some("k")).await;

    let resp = send(&fx.socket(), request("POST", "/v1/chat/completions", "{}")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(&body_bytes(resp).await[..], b"slow down");
    assert_eq!(
        fx.next_notice().await,
        GatewayNotice::UpstreamStatus {
            status: 429,
            body: "slow down".into()
        }
    );
}

#[tokio::test]
async fn long_error_body_reaches_the_client_whole_and_the_notice_truncated() {
    let long = "x".repeat(10_000) + "END";
    let router = Router::new().route(
        "/v1/models/{id}",
        get({
            let long = long.clone();
            move || async move { (StatusCode::NOT_FOUND, long).into_response() }
        }),
    );
    let addr = spawn_upstream(router).await;
    let mut fx = start_gateway(format!("http://{addr}/v1"), None).await;

    let resp = send(&fx.socket(), request("GET", "/v1/models/nope", "")).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(&body_bytes(resp).await[..], long.as_bytes());
    match fx.next_notice().await {
        GatewayNotice::UpstreamStatus { status: 404, body } => assert_eq!(body.len(), 2048),
        other => panic!("unexpected notice {other:?}"),
    }
    let stats = fx.gateway.stats();
    assert_eq!(stats.upstream_errors, 1);
    assert_eq!(stats.bytes_down, long.len() as u64);
}
