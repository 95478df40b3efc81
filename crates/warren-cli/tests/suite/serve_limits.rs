//! Streams per token: with `--max-streams-per-token 2`, two open event streams of one token are
//! served, a third stream (events or a one-shot run) is refused with 429 `too_many_streams`
//! (retryable, with a hint) and creates nothing, another token is not affected, and dropping
//! one stream frees its slot for the next.

use std::time::Duration;

use serde_json::json;

use super::harness::{Fixture, scenario, text_turn};
use super::http::{Server, json_of, token};

async fn open_stream(server: &Server, t: &str) -> reqwest::Response {
    server
        .http
        .get(server.url("/v1/sandboxes/held/events?follow=true"))
        .bearer_auth(t)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_holds_at_most_its_streams_and_a_dropped_one_frees_its_slot() {
    let fx = Fixture::new(&scenario(vec![text_turn("done")])).await;
    let server = Server::start_args(
        &fx,
        &["--max-streams-per-token", "2"],
        reqwest::Client::new(),
    )
    .await;
    let alice = token(&fx, "alice").await;
    let alice2 = token(&fx, "alice").await;
    let (status, body) = json_of(
        server
            .http
            .post(server.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .json(&json!({ "repository": fx.repo, "name": "held", "prompt": "say done" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let first = open_stream(&server, &alice).await;
    let second = open_stream(&server, &alice).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );

    let (status, refused) = json_of(open_stream(&server, &alice).await).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["error"]["reason_code"], "too_many_streams");
    assert_eq!(refused["error"]["retryable"], true);
    assert!(refused["error"]["hint"].is_string(), "{refused}");
    let (status, refused) = json_of(
        server
            .http
            .post(server.url("/v1/runs"))
            .bearer_auth(&alice)
            .json(&json!({ "repository": fx.repo, "name": "extra", "prompt": "more" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 429, "a one-shot run is a stream too: {refused}");
    let (_, listed) = json_of(
        server
            .http
            .get(server.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["sandboxes"].as_array().unwrap().len(), 1, "{listed}");

    // Another token of the same owner has its own slots.
    let other = open_stream(&server, &alice2).await;
    assert_eq!(other.status(), 200);

    // The client goes away from one stream: its slot comes back once the server sees it gone
    // (at the latest on the stream's next keep-alive).
    drop(first);
    let mut freed = None;
    for _ in 0..120 {
        let resp = open_stream(&server, &alice).await;
        if resp.status() == 200 {
            freed = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 429);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let third = freed.expect("the dropped stream's slot was never freed");
    drop((second, third, other));
    server.stop().await;
}
