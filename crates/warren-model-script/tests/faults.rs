//! Scripted faults as a client experiences them: HTTP errors with Retry-After, a request that
//! never gets an answer, a stream that stalls after its first chunk, and a dropped connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{agent_request, post, serve, sse_chunks};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::timeout;

#[tokio::test]
async fn status_fault_with_retry_after_then_the_next_turn() {
    let server = serve(
        &json!({"turns": [
            {"fault": {"kind": "status", "code": 429, "retry_after_secs": 7}},
            {"fault": {"kind": "status", "code": 503, "body": "{\"error\":{\"message\":\"overloaded\"}}"}},
            {"text": "recovered"}
        ]})
        .to_string(),
    )
    .await;
    let response = post(&server, &agent_request("go")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "scripted fault: HTTP 429", "type": "server_error"}})
    );

    let response = post(&server, &agent_request("go")).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "overloaded");

    let chunks = sse_chunks(
        &post(&server, &agent_request("go"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(common::delta_text(&chunks, "content"), "recovered");

    let faults: Vec<Option<String>> = server
        .requests()
        .iter()
        .map(|r| r.fault().map(str::to_owned))
        .collect();
    assert_eq!(
        faults,
        [
            Some("status 429".to_owned()),
            Some("status 503".to_owned()),
            None
        ]
    );
}

#[tokio::test]
async fn hang_never_answers_but_other_requests_still_do() {
    let server =
        serve(r#"{"turns": [{"fault": {"kind": "hang"}}, {"text": "still alive"}]}"#).await;
    let hung = timeout(
        Duration::from_millis(500),
        post(&server, &agent_request("first")),
    )
    .await;
    assert!(hung.is_err(), "a hung request must not get a response");

    let chunks = sse_chunks(
        &post(&server, &agent_request("second"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(common::delta_text(&chunks, "content"), "still alive");
    assert_eq!(server.requests()[0].fault(), Some("hang"));
    assert_eq!(server.requests()[1].turn(), Some(1));
    // Shutting down closes the hung connection instead of waiting for it.
    timeout(Duration::from_secs(5), server.shutdown())
        .await
        .unwrap();
}

#[tokio::test]
async fn hang_after_first_token_sends_one_chunk_then_nothing() {
    let server = serve(
        r#"{"turns": [{"text": "This reply stalls right after its first words and never finishes.",
                       "fault": {"kind": "hang_after_first_token"}}]}"#,
    )
    .await;
    let response = post(&server, &agent_request("go")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let first = timeout(Duration::from_secs(5), body.next())
        .await
        .expect("the first chunk should arrive")
        .unwrap()
        .unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    let payload = first.strip_prefix("data: ").unwrap().trim_end();
    let chunk: Value = serde_json::from_str(payload).unwrap();
    let delta = &chunk["choices"][0]["delta"];
    assert_eq!(delta["role"], "assistant");
    let piece = delta["content"].as_str().unwrap();
    assert!(
        !piece.is_empty() && "This reply stalls right after its first words".starts_with(piece)
    );
    assert!(chunk["choices"][0]["finish_reason"].is_null());

    let rest = timeout(Duration::from_millis(500), body.next()).await;
    assert!(
        rest.is_err(),
        "nothing may follow the first chunk, got {rest:?}"
    );
}

#[tokio::test]
async fn drop_closes_the_connection_without_a_response() {
    let server =
        serve(r#"{"turns": [{"fault": {"kind": "drop"}}, {"text": "after the drop"}]}"#).await;
    let result = timeout(
        Duration::from_secs(5),
        common::client()
            .post(format!("{}/chat/completions", server.base_url()))
            .json(&agent_request("go"))
            .send(),
    )
    .await
    .expect("a dropped connection must fail fast, not hang");
    let error = result.expect_err("a dropped connection must not yield an HTTP response");
    assert!(error.status().is_none(), "{error:?}");
    assert!(!error.is_timeout(), "{error:?}");
    assert!(error.is_request(), "{error:?}");
    assert_eq!(server.requests()[0].fault(), Some("drop"));

    // The server itself keeps going.
    let chunks = sse_chunks(
        &post(&server, &agent_request("again"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(common::delta_text(&chunks, "content"), "after the drop");
}

#[tokio::test]
async fn drop_sends_not_a_single_byte() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = serve(r#"{"turns": [{"fault": {"kind": "drop"}}]}"#).await;
    let body = agent_request("go").to_string();
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let read = timeout(Duration::from_secs(5), stream.read_to_end(&mut received))
        .await
        .expect("the server must close the connection, not leave it open");
    // Either a clean close or a reset: in both cases no response bytes.
    if let Err(error) = read {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    }
    assert!(
        received.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(server.requests()[0].fault(), Some("drop"));
}

#[tokio::test]
async fn delay_holds_the_response_back() {
    let server = serve(r#"{"turns": [{"text": "slow", "delay_ms": 300}]}"#).await;
    let started = std::time::Instant::now();
    let text = post(&server, &agent_request("go"))
        .await
        .text()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(common::delta_text(&sse_chunks(&text), "content"), "slow");
}
