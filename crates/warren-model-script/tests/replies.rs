//! Scripted replies on the wire: streamed text with usage, streamed tool calls, reasoning, and
//! non-streamed completions, checked the way an OpenAI-compatible client reads them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent_request, delta_text, post, serve, sse_chunks};
use serde_json::{Value, json};

#[tokio::test]
async fn streams_text_in_several_chunks_with_usage() {
    let text = "I have finished the task: the file hello.txt now says hello, world.";
    let server = serve(&json!({"turns": [{"text": text}]}).to_string()).await;
    let response = post(&server, &agent_request("write hello")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let chunks = sse_chunks(&response.text().await.unwrap());

    let content_chunks = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["content"].is_string())
        .count();
    assert!(
        content_chunks >= 3,
        "text should arrive in pieces: {chunks:#?}"
    );
    assert_eq!(delta_text(&chunks, "content"), text);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "scripted");
        assert_eq!(chunk["id"], chunks[0]["id"]);
    }
    assert!(chunks[0]["id"].as_str().unwrap().starts_with("chatcmpl-"));

    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let usage = &usage_chunk["usage"];
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 1 && completion > 1, "{usage}");
    assert_eq!(completion, (text.len() / 4) as u64);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);

    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].turn(), Some(0));
    let recorded = server.requests()[0].usage.unwrap();
    assert_eq!(
        (recorded.prompt_tokens, recorded.completion_tokens),
        (prompt, completion)
    );
    assert_eq!(server.remaining_turn_uses(), 0);
}

#[tokio::test]
async fn no_usage_chunk_unless_asked_and_scripted_usage_is_reported() {
    let server = serve(
        &json!({"turns": [
            {"text": "one"},
            {"text": "two", "usage": {"prompt_tokens": 1234, "completion_tokens": 56}}
        ]})
        .to_string(),
    )
    .await;
    let mut request = agent_request("go");
    request.as_object_mut().unwrap().remove("stream_options");
    let chunks = sse_chunks(&post(&server, &request).await.text().await.unwrap());
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "{chunks:#?}"
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    let chunks = sse_chunks(
        &post(&server, &agent_request("go"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        chunks.last().unwrap()["usage"],
        json!({"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290})
    );

    // The record says what usage each answer reported: none without `include_usage`.
    let reported: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.usage.map(|u| (u.prompt_tokens, u.completion_tokens)))
        .collect();
    assert_eq!(reported, [None, Some((1234, 56))]);
}

#[tokio::test]
async fn streams_tool_calls_whose_fragments_rebuild_the_arguments() {
    let write_args = json!({
        "filePath": "/workspace/hello.txt",
        "content": "hello, world\nsecond line with \"quotes\" and unicode: héllo ✓\n"
    });
    let bash_args = json!({"command": "cat /workspace/hello.txt", "description": "Show the file"});
    let server = serve(
        &json!({"turns": [{
            "reasoning": "The user wants a file; I will write it and then show it.",
            "tool_calls": [
                {"name": "write", "arguments": write_args},
                {"name": "bash", "arguments": bash_args, "id": "call_custom"}
            ]
        }]})
        .to_string(),
    )
    .await;
    let response = post(&server, &agent_request("write hello.txt")).await;
    assert_eq!(response.status(), 200);
    let chunks = sse_chunks(&response.text().await.unwrap());

    assert_eq!(
        delta_text(&chunks, "reasoning_content"),
        "The user wants a file; I will write it and then show it."
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");

    // Rebuild the calls the way the AI SDK does: by index, id/name from the first delta,
    // arguments appended from every delta.
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut fragments_per_call = [0usize; 2];
    for chunk in &chunks {
        let Some(deltas) = chunk["choices"][0]["delta"]["tool_calls"].as_array() else {
            continue;
        };
        for delta in deltas {
            let index = delta["index"].as_u64().unwrap() as usize;
            if index == calls.len() {
                assert_eq!(delta["type"], "function");
                assert_eq!(delta["function"]["arguments"], "");
                calls.push((
                    delta["id"].as_str().unwrap().to_owned(),
                    delta["function"]["name"].as_str().unwrap().to_owned(),
                    String::new(),
                ));
            } else {
                calls[index].2 += delta["function"]["arguments"].as_str().unwrap();
                fragments_per_call[index] += 1;
            }
        }
    }
    assert_eq!(calls.len(), 2);
    assert!(
        fragments_per_call[0] > 1,
        "arguments should be streamed in fragments"
    );
    assert_eq!(calls[0].1, "write");
    assert_eq!(calls[1].1, "bash");
    assert_eq!(calls[1].0, "call_custom");
    assert!(calls[0].0.starts_with("call_") && calls[0].0 != calls[1].0);
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2).unwrap(),
        write_args
    );
    assert_eq!(
        serde_json::from_str::<Value>(&calls[1].2).unwrap(),
        bash_args
    );

    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn non_streaming_request_gets_a_chat_completion_object() {
    let args = json!({"filePath": "/workspace/a.txt", "oldString": "a", "newString": "b"});
    let server = serve(
        &json!({"models": ["scripted", "other"], "turns": [
            {"text": "Editing now.", "tool_calls": [{"name": "edit", "arguments": args}]},
            {"text": "All done.", "finish_reason": "length"}
        ]})
        .to_string(),
    )
    .await;
    let mut request = agent_request("edit it");
    request["stream"] = json!(false);
    request["model"] = json!("other");
    let response = post(&server, &request).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "other");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Editing now.");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "edit");
    let sent: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(sent, args);
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() >= 2);

    request.as_object_mut().unwrap().remove("stream");
    let body: Value = post(&server, &request).await.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "All done.");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert!(body["choices"][0]["message"].get("tool_calls").is_none());
}

#[tokio::test]
async fn models_health_and_request_log_endpoints() {
    let server =
        serve(r#"{"models": ["scripted", "scripted-small"], "turns": [{"text": "hi"}]}"#).await;
    let client = common::client();
    let base = server.base_url();
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"),
        "{base}"
    );

    let models: Value = client
        .get(format!("{base}/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["scripted", "scripted-small"]);
    assert_eq!(models["data"][0]["owned_by"], "warren-model-script");

    let root = format!("http://{}", server.addr());
    let health = client.get(format!("{root}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    // Also reachable without the /v1 prefix.
    let unprefixed = client
        .post(format!("{root}/chat/completions"))
        .header("authorization", "Bearer whatever")
        .json(&agent_request("hello from the test"))
        .send()
        .await
        .unwrap();
    assert_eq!(unprefixed.status(), 200);
    unprefixed.text().await.unwrap();

    let records: Value = client
        .get(format!("{root}/_script/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["index"], 0);
    assert_eq!(records[0]["authorization"], "Bearer whatever");
    assert_eq!(records[0]["has_tools"], true);
    assert_eq!(
        records[0]["outcome"],
        json!({"kind": "turn", "turn": 0, "fault": null})
    );
    assert_eq!(
        records[0]["body"]["messages"][1]["content"][0]["text"],
        "hello from the test"
    );
    assert_eq!(server.requests()[0].last_user_text(), "hello from the test");
}
