//! Helpers shared by the integration tests: start a server from inline JSON, build
//! OpenCode-like request bodies, and parse server-sent events.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::{Value, json};
use warren_model_script::{Scenario, ServerHandle, start};

pub async fn serve(scenario_json: &str) -> ServerHandle {
    let scenario = Scenario::from_json_str(scenario_json).unwrap();
    start(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A fresh client per test: no pooled connection is shared across tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// The tool list OpenCode would send (only the shape matters to the server).
pub fn tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "write",
            "description": "Write a file",
            "parameters": {"type": "object", "properties": {"filePath": {"type": "string"}, "content": {"type": "string"}}}
        }
    }])
}

/// An agent request (with tools), streamed with usage like OpenCode's.
pub fn agent_request(user: &str) -> Value {
    json!({
        "model": "scripted",
        "stream": true,
        "stream_options": {"include_usage": true},
        "tools": tools(),
        "messages": [
            {"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": [{"type": "text", "text": user}]}
        ]
    })
}

/// A side request without tools (like OpenCode's title generation).
pub fn side_request(user: &str) -> Value {
    json!({
        "model": "scripted",
        "stream": true,
        "messages": [{"role": "user", "content": user}]
    })
}

pub async fn post(server: &ServerHandle, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Splits an SSE body into its `data:` payloads, in order.
pub fn sse_payloads(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without data prefix: {event:?}"))
                .to_owned()
        })
        .collect()
}

/// The JSON chunks of an SSE body, asserting it ends with `[DONE]`.
pub fn sse_chunks(text: &str) -> Vec<Value> {
    let payloads = sse_payloads(text);
    assert_eq!(
        payloads.last().map(String::as_str),
        Some("[DONE]"),
        "{text}"
    );
    payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect()
}

/// Concatenation of a string field of every chunk's delta.
pub fn delta_text(chunks: &[Value], field: &str) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"][field].as_str())
        .collect()
}
