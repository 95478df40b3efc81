//! Loading scenario files: TOML and JSON by extension, and errors that name the file and the
//! offending field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::json;
use warren_model_script::{Fault, Scenario, ScenarioError, start};

const TOML_SCENARIO: &str = r#"
models = ["scripted"]
require_api_key = "sk-local"

[[turns]]
reasoning = "Write the file first."
tool_calls = [
  { name = "write", arguments = { filePath = "/workspace/hello.txt", content = "hello\n" } },
]

[[turns]]
fault = { kind = "status", code = 503, retry_after_secs = 1 }

[[turns]]
text = "Done."
delay_ms = 5

[fallback]
text = "A title"
"#;

#[tokio::test]
async fn loads_a_toml_file_and_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, TOML_SCENARIO).unwrap();
    let scenario = Scenario::load(&path).unwrap();
    assert_eq!(scenario.turns.len(), 3);
    assert_eq!(scenario.require_api_key.as_deref(), Some("sk-local"));
    assert_eq!(
        scenario.turns[0].tool_calls[0].arguments,
        json!({"filePath": "/workspace/hello.txt", "content": "hello\n"})
    );
    assert_eq!(
        scenario.turns[1].fault,
        Some(Fault::Status {
            code: 503,
            body: None,
            retry_after_secs: Some(1)
        })
    );

    let server = start(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let response = common::client()
        .post(format!("{}/chat/completions", server.base_url()))
        .bearer_auth("sk-local")
        .json(&common::side_request("title"))
        .send()
        .await
        .unwrap();
    let chunks = common::sse_chunks(&response.text().await.unwrap());
    assert_eq!(common::delta_text(&chunks, "content"), "A title");
}

#[test]
fn loads_a_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.JSON");
    std::fs::write(&path, r#"{"turns": [{"text": "hi", "repeat": 3}]}"#).unwrap();
    let scenario = Scenario::load(&path).unwrap();
    assert_eq!(scenario.models, ["scripted"]);
    assert_eq!(scenario.turns[0].repeat, 3);
}

#[test]
fn unknown_field_in_a_json_file_names_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.json");
    std::fs::write(&path, r#"{"turns": [{"text": "hi", "tool_call": []}]}"#).unwrap();
    let error = Scenario::load(&path).unwrap_err();
    assert!(matches!(error, ScenarioError::Parse { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("typo.json"), "{message}");
    assert!(message.contains("unknown field `tool_call`"), "{message}");
}

#[test]
fn unknown_field_in_a_toml_file_names_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(
        &path,
        "[[turns]]\ntext = \"hi\"\n\n[turns.when]\nhas_tool = true\n",
    )
    .unwrap();
    let message = Scenario::load(&path).unwrap_err().to_string();
    assert!(message.contains("typo.toml"), "{message}");
    assert!(message.contains("unknown field `has_tool`"), "{message}");
}

#[test]
fn unknown_fault_kind_and_bad_extension_and_missing_file() {
    let error =
        Scenario::from_json_str(r#"{"turns": [{"fault": {"kind": "explode"}}]}"#).unwrap_err();
    assert!(error.to_string().contains("explode"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.yaml");
    std::fs::write(&path, "turns: []").unwrap();
    let error = Scenario::load(&path).unwrap_err();
    assert!(matches!(error, ScenarioError::UnsupportedExtension { .. }));
    assert!(error.to_string().contains("scenario.yaml"), "{error}");

    let missing = dir.path().join("missing.json");
    let error = Scenario::load(&missing).unwrap_err();
    assert!(matches!(error, ScenarioError::Read { .. }));
    assert!(error.to_string().contains("missing.json"), "{error}");
}
