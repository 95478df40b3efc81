//! Which turn answers which request (`when`, `repeat`, the fallback, exhaustion) and the
//! checks made before any turn is chosen (API key, model name).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent_request, delta_text, post, serve, side_request, sse_chunks};
use serde_json::{Value, json};
use warren_model_script::Outcome;

async fn reply_text(server: &warren_model_script::ServerHandle, body: &Value) -> String {
    let response = post(server, body).await;
    assert_eq!(response.status(), 200);
    delta_text(&sse_chunks(&response.text().await.unwrap()), "content")
}

#[tokio::test]
async fn turns_fallback_when_and_repeat() {
    let server = serve(
        &json!({
            "models": ["scripted", "small"],
            "turns": [
                {"text": "agent one", "repeat": 2},
                {"when": {"last_user_contains": "summarize"}, "text": "a summary"},
                {"when": {"has_tools": true, "model": "small"}, "text": "small model turn"},
                {"text": "agent two"}
            ],
            "fallback": {"text": "Fixing the greeting"}
        })
        .to_string(),
    )
    .await;

    // A side request without tools gets the fallback and consumes nothing.
    assert_eq!(
        reply_text(&server, &side_request("Generate a title")).await,
        "Fixing the greeting"
    );
    assert_eq!(
        reply_text(&server, &agent_request("do it")).await,
        "agent one"
    );
    assert_eq!(
        reply_text(&server, &side_request("title again")).await,
        "Fixing the greeting"
    );
    // `repeat: 2` serves a second time.
    assert_eq!(
        reply_text(&server, &agent_request("continue")).await,
        "agent one"
    );
    // `when.last_user_contains` matches a request without tools before the fallback.
    assert_eq!(
        reply_text(&server, &side_request("please summarize the session")).await,
        "a summary"
    );
    // The `model` matcher skips turn 2 for the default model; turn 3 serves instead.
    assert_eq!(
        reply_text(&server, &agent_request("more")).await,
        "agent two"
    );
    let mut small = agent_request("more");
    small["model"] = json!("small");
    assert_eq!(reply_text(&server, &small).await, "small model turn");
    assert_eq!(server.remaining_turn_uses(), 0);

    let outcomes: Vec<Outcome> = server.requests().into_iter().map(|r| r.outcome).collect();
    let turn = |t| Outcome::Turn {
        turn: t,
        fault: None,
    };
    let fallback = Outcome::Fallback { fault: None };
    assert_eq!(
        outcomes,
        [
            fallback.clone(),
            turn(0),
            fallback,
            turn(0),
            turn(1),
            turn(3),
            turn(2)
        ]
    );
}

#[tokio::test]
async fn default_fallback_is_a_scripted_title() {
    let server = serve(r#"{"turns": [{"text": "work"}]}"#).await;
    assert_eq!(
        reply_text(&server, &side_request("title please")).await,
        "Scripted title"
    );
    assert_eq!(server.remaining_turn_uses(), 1);
}

#[tokio::test]
async fn exhausted_scenario_answers_500_for_agent_requests_only() {
    let server = serve(r#"{"turns": [{"text": "only turn"}]}"#).await;
    assert_eq!(
        reply_text(&server, &agent_request("one")).await,
        "only turn"
    );
    let response = post(&server, &agent_request("two")).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {
            "message": "warren-model-script: scenario exhausted (request 1 matched no turn)",
            "type": "server_error"
        }})
    );
    // Side requests still get the fallback after the script ran out.
    assert_eq!(
        reply_text(&server, &side_request("title")).await,
        "Scripted title"
    );
    assert_eq!(
        server.requests()[1].outcome,
        Outcome::Rejected {
            status: 500,
            reason: "scenario exhausted".into()
        }
    );
}

#[tokio::test]
async fn unknown_model_gets_openai_style_404() {
    let server = serve(r#"{"turns": [{"text": "hi"}]}"#).await;
    let mut request = agent_request("hi");
    request["model"] = json!("gpt-4o");
    let response = post(&server, &request).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {
            "message": "The model `gpt-4o` does not exist",
            "type": "invalid_request_error",
            "code": "model_not_found"
        }})
    );
    // The rejected request consumed no turn.
    assert_eq!(server.remaining_turn_uses(), 1);
    assert_eq!(reply_text(&server, &agent_request("hi")).await, "hi");
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let server =
        serve(r#"{"require_api_key": "sk-test-123", "turns": [{"text": "authorized"}]}"#).await;
    let url = format!("{}/chat/completions", server.base_url());
    let unauthorized_body = json!({"error": {
        "message": "Incorrect API key provided",
        "type": "invalid_request_error",
        "code": "invalid_api_key"
    }});

    for auth in [None, Some("Bearer wrong"), Some("sk-test-123")] {
        let mut request = common::client().post(&url).json(&agent_request("hi"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "auth {auth:?}");
        assert_eq!(response.json::<Value>().await.unwrap(), unauthorized_body);
    }
    let models = common::client()
        .get(format!("{}/models", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);

    let response = common::client()
        .post(&url)
        .bearer_auth("sk-test-123")
        .json(&agent_request("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        delta_text(&sse_chunks(&response.text().await.unwrap()), "content"),
        "authorized"
    );

    let records = server.requests();
    assert_eq!(records.len(), 4);
    assert_eq!(records[1].authorization.as_deref(), Some("Bearer wrong"));
    assert_eq!(
        records[3].authorization.as_deref(),
        Some("Bearer sk-test-123")
    );
    assert_eq!(records[3].turn(), Some(0));
}

#[tokio::test]
async fn malformed_body_is_a_400_and_consumes_nothing() {
    let server = serve(r#"{"turns": [{"text": "hi"}]}"#).await;
    let response = common::client()
        .post(format!("{}/chat/completions", server.base_url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(server.remaining_turn_uses(), 1);
}
