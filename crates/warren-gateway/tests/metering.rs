//! Metering: one record per forwarded request, with the upstream's token counts, its status and the
//! time to the end of the body; the answer itself passes through unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use common::*;
use futures_util::StreamExt as _;
use http_body_util::BodyExt;
use warren_gateway::{GatewayNotice, MeteredRequest, RequestSource};

/// What an OpenAI-compatible server streams when asked for `stream_options.include_usage`: the
/// deltas, the finish chunk, a chunk with no choices and the usage, `[DONE]`. Split at odd places
/// so no chunk boundary matches an event boundary.
const SSE: &str = concat!(
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo ü\"}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":321,\"completion_tokens\":45,\"total_tokens\":366}}\n\n",
    "data: [DONE]\n\n",
);
const PIECE_DELAY: Duration = Duration::from_millis(60);

fn sse_upstream() -> Router {
    Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let pieces: Vec<Bytes> = SSE
                .as_bytes()
                .chunks(37)
                .map(Bytes::copy_from_slice)
                .collect();
            let stream = futures_util::stream::unfold(pieces.into_iter(), |mut rest| async move {
                let piece = rest.next()?;
                tokio::time::sleep(PIECE_DELAY).await;
                Some((Ok::<_, Infallible>(piece), rest))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }),
    )
}

#[tokio::test]
async fn a_stream_passes_through_byte_identical_and_is_metered_from_its_usage_chunk() {
    let addr = spawn_upstream(sse_upstream()).await;
    let mut fx = start_gateway(format!("http://{addr}/v1"), Some("k")).await;

    let body = r#"{"model":"qwen-7b","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let resp = send(&fx.socket(), request("POST", "/v1/chat/completions", body)).await;
    assert_eq!(resp.status(), 200);
    let mut incoming = resp.into_body();
    let first = incoming
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    // The record waits for the end of the body.
    assert!(fx.no_pending_notice(), "metered before the body ended");
    let mut received = first.to_vec();
    received.extend_from_slice(&incoming.collect().await.unwrap().to_bytes());
    assert_eq!(received, SSE.as_bytes(), "the stream was altered");

    let record = fx.next_record().await;
    let pieces = SSE.len().div_ceil(37) as u64;
    let least = u64::try_from(PIECE_DELAY.as_millis()).unwrap() * pieces;
    assert!(
        record.latency_ms >= least && record.latency_ms < 10_000,
        "latency {} ms, the body took at least {least} ms",
        record.latency_ms
    );
    assert_eq!(
        record,
        MeteredRequest {
            source: RequestSource::Agent,
            endpoint: "chat/completions".into(),
            model: Some("qwen-7b".into()),
            status: 200,
            input_tokens: Some(321),
            output_tokens: Some(45),
            latency_ms: record.latency_ms,
            error: None,
            cost_usd: None,
        }
    );
    assert_eq!(fx.gateway.stats().bytes_down, SSE.len() as u64);
    assert!(fx.no_pending_notice(), "one record per request");
}

#[tokio::test]
async fn a_plain_answer_is_metered_from_its_body_and_tagged_with_the_gateways_source() {
    let answer = serde_json::json!({
        "id": "c", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 17, "completion_tokens": 5, "total_tokens": 22},
    });
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post({
                let answer = answer.clone();
                move || async move { axum::Json(answer) }
            }),
        )
        .route(
            "/v1/models",
            get(|| async { axum::Json(serde_json::json!({"data": []})) }),
        );
    let addr = spawn_upstream(router).await;
    let mut fx = start_gateway_as(
        format!("http://{addr}/v1"),
        None,
        Duration::from_secs(5),
        RequestSource::Structurer,
    )
    .await;

    let resp = send(
        &fx.socket(),
        request(
            "POST",
            "/v1/chat/completions",
            r#"{"model":"fast","stream":false}"#,
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        &body_bytes(resp).await[..],
        answer.to_string().as_bytes(),
        "the answer was altered"
    );
    let record = fx.next_record().await;
    assert_eq!(record.source, RequestSource::Structurer);
    assert_eq!(record.model.as_deref(), Some("fast"));
    assert_eq!(record.status, 200);
    assert_eq!(
        (record.input_tokens, record.output_tokens),
        (Some(17), Some(5))
    );
    assert_eq!(record.error, None);

    // A models listing is metered too: no model, no tokens.
    let resp = send(&fx.socket(), request("GET", "/v1/models", "")).await;
    assert_eq!(resp.status(), 200);
    body_bytes(resp).await;
    let record = fx.next_record().await;
    assert_eq!(record.endpoint, "models");
    assert_eq!(
        (record.model, record.input_tokens, record.output_tokens),
        (None, None, None)
    );
}

#[tokio::test]
async fn an_upstream_error_is_metered_with_its_status_and_no_tokens() {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("content-type", "application/json")],
                r#"{"error":{"message":"slow down"},"usage":{"prompt_tokens":1}}"#,
            )
                .into_response()
        }),
    );
    let addr = spawn_upstream(router).await;
    let mut fx = start_gateway(format!("http://{addr}/v1"), Some("k")).await;

    let resp = send(
        &fx.socket(),
        request("POST", "/v1/chat/completions", r#"{"model":"m"}"#),
    )
    .await;
    assert_eq!(resp.status(), 429);
    body_bytes(resp).await;
    // The status notice comes first (the engine acts on it), then the record.
    assert!(matches!(
        fx.next_notice().await,
        GatewayNotice::UpstreamStatus { status: 429, .. }
    ));
    let record = fx.next_record().await;
    assert_eq!(record.status, 429);
    assert_eq!(record.model.as_deref(), Some("m"));
    assert_eq!((record.input_tokens, record.output_tokens), (None, None));
    assert_eq!(record.error, None);
}

#[tokio::test]
async fn an_unreachable_upstream_is_metered_as_the_502_the_sandbox_got() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut fx = start_gateway(format!("http://{addr}/v1"), None).await;
    let resp = send(
        &fx.socket(),
        request("POST", "/v1/chat/completions", r#"{"model":"m"}"#),
    )
    .await;
    assert_eq!(resp.status(), 502);
    // The notice that stops the run comes first.
    assert!(matches!(
        fx.next_notice().await,
        GatewayNotice::UpstreamUnreachable { .. }
    ));
    let record = fx.next_record().await;
    assert_eq!(record.status, 502);
    assert_eq!((record.input_tokens, record.output_tokens), (None, None));
    let error = record.error.unwrap();
    assert!(error.to_lowercase().contains("refused"), "{error}");
}

#[tokio::test]
async fn a_stream_the_requester_abandons_is_still_recorded_once() {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let first = futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from_static(
                b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n",
            ))]);
            let body = Body::from_stream(first.chain(futures_util::stream::pending()));
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }),
    );
    let addr = spawn_upstream(router).await;
    let mut fx = start_gateway(format!("http://{addr}/v1"), None).await;

    let resp = send(
        &fx.socket(),
        request(
            "POST",
            "/v1/chat/completions",
            r#"{"model":"m","stream":true}"#,
        ),
    )
    .await;
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    let record = fx.next_record().await;
    assert_eq!(record.status, 200);
    assert_eq!((record.input_tokens, record.output_tokens), (None, None));
    assert!(
        record
            .error
            .as_deref()
            .is_some_and(|e| e.contains("cut short")),
        "{record:?}"
    );
}

/// The engine drains the records after `shutdown`: by then an unfinished stream's is there.
#[tokio::test]
async fn after_shutdown_every_forwarded_request_has_its_record() {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(futures_util::stream::pending::<
                    Result<Bytes, Infallible>,
                >()))
                .unwrap()
        }),
    );
    let addr = spawn_upstream(router).await;
    let mut fx = start_gateway(format!("http://{addr}/v1"), None).await;
    let mut notices = fx.gateway.take_notices();
    let resp = send(
        &fx.socket(),
        request(
            "POST",
            "/v1/chat/completions",
            r#"{"model":"m","stream":true}"#,
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(notices.try_recv().is_err(), "metered before the body ended");
    fx.gateway.shutdown().await;
    let records: Vec<_> = std::iter::from_fn(|| notices.try_recv().ok())
        .filter_map(|n| match n {
            GatewayNotice::ModelRequest(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].error.is_some());
    drop(resp);
}
