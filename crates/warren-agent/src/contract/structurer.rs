//! The structurer: when the agent told its result in prose but gave no valid outcome object, one
//! tool-less chat-completions call to a fast model extracts the object from that narrative. It
//! goes through a model gateway like the agent's own traffic (the gateway holds the credential,
//! polices and meters the call; this side never sees a key), bounded by a short timeout, and the
//! model is told to leave unknown fields null rather than invent them.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{ContractError, ContractSpec, Outcome, parse_outcome, schema};

/// Appears in the structurer's system prompt, so a scripted model can recognise the call.
pub const STRUCTURER_MARKER: &str = "warren-structurer";

/// Only the end of a long narrative is sent: the conclusion is there, and a fast model's context
/// (and the timeout) are small.
const NARRATIVE_LIMIT: usize = 16 * 1024;

/// How much of an error body a message quotes.
const BODY_SNIPPET: usize = 300;

/// The gateway serves the OpenAI-compatible API under `/v1` on its socket; the host name is
/// never resolved (the socket decides where requests go).
const GATEWAY_URL: &str = "http://model-gateway/v1/chat/completions";

/// One structurer call.
#[derive(Debug, Clone, Copy)]
pub struct StructurerRequest<'a> {
    /// The Unix socket of the model gateway to call through (on the host).
    pub gateway_socket: &'a Path,
    pub model: &'a str,
    /// The agent's final text.
    pub narrative: &'a str,
    pub spec: &'a ContractSpec,
    /// For the whole call: connecting, sending, and reading the answer.
    pub timeout: Duration,
}

fn failure(message: impl Into<String>) -> ContractError {
    ContractError::Structurer {
        message: message.into(),
    }
}

/// Asks the structurer model for the outcome object and validates what it returns.
pub async fn call_structurer(req: StructurerRequest<'_>) -> Result<Outcome, ContractError> {
    // reqwest's own timeout covers the request; this one also bounds everything around it, so
    // the caller's budget holds whatever the client does.
    match tokio::time::timeout(req.timeout, request(&req)).await {
        Ok(result) => result,
        Err(_) => Err(failure(format!(
            "no answer within {} ms",
            req.timeout.as_millis()
        ))),
    }
}

async fn request(req: &StructurerRequest<'_>) -> Result<Outcome, ContractError> {
    // No environment proxy and no redirects: the gateway is the only way out.
    let client = reqwest::Client::builder()
        .unix_socket(req.gateway_socket)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(req.timeout)
        .build()
        .map_err(|e| failure(format!("cannot build the HTTP client: {e}")))?;
    let response = client
        .post(GATEWAY_URL)
        .json(&body(req))
        .send()
        .await
        .map_err(|e| {
            failure(format!(
                "request through the model gateway failed: {}",
                error_chain(&e)
            ))
        })?;
    let status = response.status();
    let text = response.text().await.map_err(|e| {
        failure(format!(
            "reading the answer through the model gateway failed: {}",
            error_chain(&e)
        ))
    })?;
    if !status.is_success() {
        return Err(failure(format!(
            "the model endpoint answered {status}: {}",
            snippet(&text)
        )));
    }
    let reply: Value = serde_json::from_str(&text)
        .map_err(|e| failure(format!("the answer is not JSON ({e}): {}", snippet(&text))))?;
    let content = reply_content(&reply)
        .ok_or_else(|| failure("the answer has no choices[0].message.content"))?;
    parse_outcome(&content, req.spec)
        .map(|(outcome, _)| outcome)
        .map_err(|e| failure(format!("its reply gave no valid outcome: {e}")))
}

fn body(req: &StructurerRequest<'_>) -> Value {
    let system = format!(
        "You are {STRUCTURER_MARKER}. You extract a JSON outcome object from the final narrative \
         of a coding agent. Use only what the narrative states. If it does not say the task is \
         complete, use NEEDS_INFO (it asks the user a question; put the question in \"summary\") \
         or ERROR (it could not do the task) accordingly. Never invent fields: if a required \
         field is not stated in the narrative, set it to null. Reply with only the JSON object, \
         no other text."
    );
    let user = format!(
        "The object must have this shape:\n\n{}\n\nThe agent's final narrative (role {:?}):\n\
         <narrative>\n{}\n</narrative>",
        schema(req.spec),
        req.spec.role,
        tail(req.narrative, NARRATIVE_LIMIT)
    );
    // No `tools`: a tool call is not an answer. Not streamed: one small object is wanted whole.
    json!({
        "model": req.model,
        "stream": false,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ],
    })
}

/// The last `limit` bytes of `text`, cut at a character boundary.
fn tail(text: &str, limit: usize) -> &str {
    let mut start = text.len().saturating_sub(limit);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.get(start..).unwrap_or(text)
}

/// The assistant's text: a string, or (some servers) an array of text parts.
fn reply_content(reply: &Value) -> Option<String> {
    let content = reply.pointer("/choices/0/message/content")?;
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>(),
        ),
        _ => None,
    }
}

fn snippet(text: &str) -> String {
    let trimmed = text.trim();
    let mut out: String = trimmed.chars().take(BODY_SNIPPET).collect();
    if out.len() < trimmed.len() {
        out.push('…');
    }
    out
}

/// reqwest's own message repeats the full URL; the causes say what went wrong.
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts = warren_domain::cause_chain(error);
    if error.is_timeout() {
        parts.insert(0, "timed out".into());
    }
    if parts.is_empty() {
        "request failed".into()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use serde_json::json;

    use super::*;
    use crate::contract::OutcomeKind;

    type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

    /// Serves `POST /v1/chat/completions` with `reply` (after `delay`), recording each request.
    async fn server(reply: Value, delay: Duration) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let record = Arc::clone(&seen);
        let app = Router::new().route(
            "/v1/chat/completions",
            post(
                move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                    let record = Arc::clone(&record);
                    let reply = reply.clone();
                    async move {
                        if let Ok(mut seen) = record.lock() {
                            seen.push((headers, body));
                        }
                        tokio::time::sleep(delay).await;
                        axum::Json(reply)
                    }
                },
            ),
        );
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("local_addr: {e}"),
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/v1"), seen)
    }

    fn completion(content: &str) -> Value {
        json!({
            "id": "x",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
        })
    }

    fn spec() -> ContractSpec {
        ContractSpec {
            role: "coder".into(),
            required_fields: vec!["files_changed".into()],
        }
    }

    /// A model gateway in front of the upstream at `base`, holding `key`, as the engine starts
    /// one for the structurer.
    struct Gateway {
        _dir: tempfile::TempDir,
        handle: warren_gateway::GatewayHandle,
    }

    async fn gateway(base: &str, key: Option<&str>) -> Gateway {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let mut cfg = warren_gateway::GatewayConfig::new(dir.path().join("gw.sock"), base);
        cfg.api_key = key.map(str::to_owned);
        cfg.source = warren_domain::RequestSource::Structurer;
        match warren_gateway::start(cfg).await {
            Ok(handle) => Gateway { _dir: dir, handle },
            Err(e) => panic!("gateway: {e}"),
        }
    }

    fn request<'a>(
        gateway: &'a Gateway,
        spec: &'a ContractSpec,
        narrative: &'a str,
    ) -> StructurerRequest<'a> {
        StructurerRequest {
            gateway_socket: gateway.handle.socket_path(),
            model: "fast-model",
            narrative,
            spec,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_json_reply_becomes_an_outcome_and_the_request_is_plain() {
        let answer = r#"{"outcome": "COMPLETE", "summary": "Fixed the parser.", "files_changed": ["src/parse.rs"]}"#;
        let (base, seen) = server(completion(answer), Duration::ZERO).await;
        let spec = spec();
        let narrative = "I fixed the parser in src/parse.rs and the tests pass.";
        let mut gw = gateway(&base, Some("sk-real")).await;
        let outcome = call_structurer(request(&gw, &spec, narrative)).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => panic!("structurer failed: {e}"),
        };
        assert_eq!(outcome.outcome, OutcomeKind::Complete);
        assert_eq!(
            outcome.fields.get("files_changed"),
            Some(&json!(["src/parse.rs"]))
        );

        let seen = match seen.lock() {
            Ok(s) => s.clone(),
            Err(e) => panic!("lock: {e}"),
        };
        assert_eq!(seen.len(), 1);
        // The gateway metered the call as the structurer's.
        let metered = loop {
            match gw.handle.notices().try_recv() {
                Ok(warren_gateway::GatewayNotice::ModelRequest(r)) => break r,
                Ok(_) => {}
                Err(e) => panic!("no metering record: {e}"),
            }
        };
        assert_eq!(metered.source, warren_domain::RequestSource::Structurer);
        assert_eq!(metered.model.as_deref(), Some("fast-model"));
        assert_eq!(
            (metered.status, metered.input_tokens, metered.output_tokens),
            (200, Some(40), Some(12))
        );
        let (headers, body) = &seen[0];
        assert_eq!(
            headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer sk-real")
        );
        assert!(body.get("tools").is_none(), "{body}");
        assert!(body.get("tool_choice").is_none(), "{body}");
        assert_eq!(body.get("stream"), Some(&json!(false)));
        assert_eq!(body.get("temperature"), Some(&json!(0)));
        assert_eq!(body.get("model"), Some(&json!("fast-model")));
        let system = body
            .pointer("/messages/0/content")
            .and_then(Value::as_str)
            .unwrap_or("");
        assert_eq!(body.pointer("/messages/0/role"), Some(&json!("system")));
        assert!(system.contains(STRUCTURER_MARKER), "{system}");
        assert!(system.contains("null"), "{system}");
        let user = body
            .pointer("/messages/1/content")
            .and_then(Value::as_str)
            .unwrap_or("");
        assert!(
            user.contains(narrative) && user.contains("\"files_changed\""),
            "{user}"
        );
    }

    #[tokio::test]
    async fn no_key_means_no_authorization_header() {
        let answer = r#"```json
{"outcome": "NEEDS_INFO", "summary": "Which branch?", "files_changed": []}
```"#;
        let (base, seen) = server(completion(answer), Duration::ZERO).await;
        let spec = spec();
        let gw = gateway(&(base + "/"), None).await;
        let outcome = call_structurer(request(&gw, &spec, "Which branch?")).await;
        assert_eq!(
            outcome.map(|o| o.outcome).ok(),
            Some(OutcomeKind::NeedsInfo)
        );
        let headers = seen
            .lock()
            .ok()
            .and_then(|s| s.first().map(|(h, _)| h.clone()));
        assert!(headers.is_some_and(|h| h.get("authorization").is_none()));
    }

    #[tokio::test]
    async fn prose_or_null_fields_are_structurer_errors() {
        let (base, _) = server(
            completion("The agent seems to have finished."),
            Duration::ZERO,
        )
        .await;
        let spec = spec();
        let gw = gateway(&base, None).await;
        let err = call_structurer(request(&gw, &spec, "done")).await.err();
        assert!(
            matches!(err, Some(ContractError::Structurer { .. })),
            "{err:?}"
        );

        // A field the narrative did not state comes back null, and that must not pass.
        let null = r#"{"outcome": "COMPLETE", "summary": "done", "files_changed": null}"#;
        let (base, _) = server(completion(null), Duration::ZERO).await;
        let gw = gateway(&base, None).await;
        let err = call_structurer(request(&gw, &spec, "done")).await.err();
        match err {
            Some(ContractError::Structurer { message }) => {
                assert!(message.contains("files_changed"), "{message}")
            }
            other => panic!("expected a structurer error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn http_errors_and_hangs_are_structurer_errors() {
        let (base, _) = server(json!({"error": "nope"}), Duration::ZERO).await;
        let spec = spec();
        let gw = gateway(&(base.clone() + "/missing"), None).await;
        let err = call_structurer(request(&gw, &spec, "x")).await.err();
        match err {
            Some(ContractError::Structurer { message }) => {
                assert!(message.contains("404"), "{message}")
            }
            other => panic!("expected a structurer error, got {other:?}"),
        }

        let (base, _) = server(completion("{}"), Duration::from_secs(30)).await;
        let gw = gateway(&base, None).await;
        let mut req = request(&gw, &spec, "x");
        req.timeout = Duration::from_millis(300);
        let err = call_structurer(req).await.err();
        assert!(
            matches!(err, Some(ContractError::Structurer { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn long_narratives_keep_their_end() {
        let text = format!("{}é{}", "a".repeat(20_000), "the end");
        let cut = tail(&text, NARRATIVE_LIMIT);
        assert!(cut.len() <= NARRATIVE_LIMIT && cut.ends_with("the end"));
        // A cut inside a multi-byte character moves forward to the next boundary.
        assert_eq!(tail("é", 1), "");
        assert_eq!(tail("short", NARRATIVE_LIMIT), "short");
    }
}
