//! The scenario file format: what the scripted stand-in says, in which order, and which faults
//! it plays. Kept apart from the server so the format can be read, validated and documented on
//! its own.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A whole script: the models served, optional API-key check, the ordered turns and the reply
/// for side requests that match no turn.
///
/// Every struct in the format rejects unknown fields, so a typo in a scenario file is an error
/// that names the field instead of a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Model ids served by `GET /v1/models`; a chat request naming any other model gets 404.
    #[serde(default = "default_models")]
    pub models: Vec<String>,
    /// When set, requests must carry `Authorization: Bearer <key>` or get 401.
    #[serde(default)]
    pub require_api_key: Option<String>,
    /// The scripted turns, consumed in order (see [`Turn::when`] and [`Turn::repeat`]).
    #[serde(default)]
    pub turns: Vec<Turn>,
    /// Reply for requests without tools that match no turn (title generation and other side
    /// requests). Never consumed. When unset, a plain text reply `Scripted title`.
    #[serde(default)]
    pub fallback: Option<Turn>,
}

fn default_models() -> Vec<String> {
    vec!["scripted".to_owned()]
}

fn default_repeat() -> u32 {
    1
}

/// One scripted reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Which requests this turn may serve. Absent: any request with a non-empty `tools` array
    /// (an agent turn). Present: every matcher that is set must hold; unset matchers are not
    /// checked, so `"when": {}` matches every request.
    #[serde(default)]
    pub when: Option<When>,
    /// How many requests this turn serves before it is consumed. At least 1.
    #[serde(default = "default_repeat")]
    pub repeat: u32,
    /// Assistant text.
    #[serde(default)]
    pub text: Option<String>,
    /// Reasoning text, streamed as `delta.reasoning_content`.
    #[serde(default)]
    pub reasoning: Option<String>,
    /// Tool calls; when non-empty the finish reason is `tool_calls`.
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// Overrides the finish reason (`stop` or `tool_calls` otherwise).
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Overrides the reported token usage (otherwise estimated as characters / 4).
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Milliseconds to wait before the response (or fault) starts.
    #[serde(default)]
    pub delay_ms: u64,
    /// A failure to play instead of (or in the middle of) the reply.
    #[serde(default)]
    pub fault: Option<Fault>,
}

/// Matchers deciding whether a turn may serve a request. All set matchers must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// `true`: the request carries a non-empty `tools` array; `false`: it does not.
    #[serde(default)]
    pub has_tools: Option<bool>,
    /// Substring of the text of the last `user` message.
    #[serde(default)]
    pub last_user_contains: Option<String>,
    /// Exact model id of the request.
    #[serde(default)]
    pub model: Option<String>,
}

/// A scripted tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// Tool name, e.g. `write`, `edit`, `bash`, `read` for OpenCode.
    pub name: String,
    /// Arguments: a JSON object, sent as its serialized JSON string. A JSON string is sent
    /// verbatim, which lets a scenario play malformed arguments.
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
    /// Tool call id; generated (`call_<request>_<n>`) when absent.
    #[serde(default)]
    pub id: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Reported token usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A scripted failure, written with a `kind` field:
///
/// ```json
/// {"kind": "status", "code": 429, "retry_after_secs": 2}
/// {"kind": "status", "code": 500, "body": "{\"error\":{\"message\":\"boom\"}}"}
/// {"kind": "hang"}
/// {"kind": "hang_after_first_token"}
/// {"kind": "drop"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Reply with this HTTP status and a JSON error body (or `body` verbatim), plus a
    /// `Retry-After` header when `retry_after_secs` is set.
    Status {
        code: u16,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Accept the request and never answer; the connection stays open until the client goes
    /// away or the server stops.
    Hang {},
    /// Send the response headers and the first chunk, then nothing more.
    HangAfterFirstToken {},
    /// Close the TCP connection without sending any HTTP response bytes.
    Drop {},
}

impl Fault {
    /// Short name used in logs and request records, e.g. `status 429`, `hang`.
    pub fn describe(&self) -> String {
        match self {
            Fault::Status { code, .. } => format!("status {code}"),
            Fault::Hang {} => "hang".to_owned(),
            Fault::HangAfterFirstToken {} => "hang_after_first_token".to_owned(),
            Fault::Drop {} => "drop".to_owned(),
        }
    }
}

/// Why a scenario could not be loaded. Every variant names where the scenario came from.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "scenario file {} has an unsupported extension (use .json or .toml)",
        path.display()
    )]
    UnsupportedExtension { path: PathBuf },
    #[error("invalid scenario in {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid scenario in {origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Scenario {
    /// Loads a scenario from a `.json` or `.toml` file (chosen by extension) and validates it.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let parse: fn(&str, String) -> Result<Scenario, ScenarioError> = match ext.as_deref() {
            Some("json") => parse_json,
            Some("toml") => parse_toml,
            _ => {
                return Err(ScenarioError::UnsupportedExtension {
                    path: path.to_owned(),
                });
            }
        };
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        parse(&text, path.display().to_string())
    }

    /// Parses and validates a scenario written as JSON.
    pub fn from_json_str(text: &str) -> Result<Scenario, ScenarioError> {
        parse_json(text, "<inline JSON>".to_owned())
    }

    /// Parses and validates a scenario written as TOML.
    pub fn from_toml_str(text: &str) -> Result<Scenario, ScenarioError> {
        parse_toml(text, "<inline TOML>".to_owned())
    }

    /// Checks what serde cannot: non-empty model list, `repeat >= 1`, valid status codes,
    /// object or string tool arguments, and no `when` on the fallback.
    pub fn validate(&self) -> Result<(), String> {
        if self.models.is_empty() {
            return Err("`models` must list at least one model".to_owned());
        }
        for (i, turn) in self.turns.iter().enumerate() {
            if turn.repeat == 0 {
                return Err(format!("turns[{i}]: `repeat` must be at least 1"));
            }
            validate_turn(turn).map_err(|m| format!("turns[{i}]: {m}"))?;
        }
        if let Some(fallback) = &self.fallback {
            if fallback.when.is_some() {
                return Err(
                    "fallback: `when` is not allowed (the fallback serves requests \
                            without tools that match no turn)"
                        .to_owned(),
                );
            }
            validate_turn(fallback).map_err(|m| format!("fallback: {m}"))?;
        }
        Ok(())
    }
}

fn validate_turn(turn: &Turn) -> Result<(), String> {
    for (j, call) in turn.tool_calls.iter().enumerate() {
        if call.name.is_empty() {
            return Err(format!("tool_calls[{j}]: `name` must not be empty"));
        }
        if !(call.arguments.is_object() || call.arguments.is_string()) {
            return Err(format!(
                "tool_calls[{j}] ({}): `arguments` must be a JSON object (or a string sent verbatim)",
                call.name
            ));
        }
    }
    if let Some(Fault::Status { code, .. }) = &turn.fault
        && axum::http::StatusCode::from_u16(*code).is_err()
    {
        return Err(format!("fault: {code} is not a valid HTTP status code"));
    }
    Ok(())
}

fn parse_json(text: &str, origin: String) -> Result<Scenario, ScenarioError> {
    let scenario: Scenario = serde_json::from_str(text).map_err(|e| ScenarioError::Parse {
        origin: origin.clone(),
        message: e.to_string(),
    })?;
    checked(scenario, origin)
}

fn parse_toml(text: &str, origin: String) -> Result<Scenario, ScenarioError> {
    let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
        origin: origin.clone(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    checked(scenario, origin)
}

fn checked(scenario: Scenario, origin: String) -> Result<Scenario, ScenarioError> {
    scenario
        .validate()
        .map_err(|message| ScenarioError::Invalid { origin, message })?;
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn defaults_apply() {
        let s = Scenario::from_json_str(r#"{"turns":[{"text":"hi"}]}"#).unwrap();
        assert_eq!(s.models, vec!["scripted".to_owned()]);
        assert_eq!(s.turns[0].repeat, 1);
        assert!(s.fallback.is_none());
    }

    #[test]
    fn faults_parse_from_json_and_toml() {
        let s = Scenario::from_json_str(
            r#"{"turns":[{"fault":{"kind":"status","code":429,"retry_after_secs":3}},
                         {"fault":{"kind":"drop"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            s.turns[0].fault,
            Some(Fault::Status {
                code: 429,
                body: None,
                retry_after_secs: Some(3)
            })
        );
        assert_eq!(s.turns[1].fault, Some(Fault::Drop {}));
        let t = Scenario::from_toml_str(
            "[[turns]]\nfault = { kind = \"hang_after_first_token\" }\ntext = \"x\"\n",
        )
        .unwrap();
        assert_eq!(t.turns[0].fault, Some(Fault::HangAfterFirstToken {}));
    }

    #[test]
    fn validation_rejects_bad_values() {
        let e = Scenario::from_json_str(r#"{"turns":[{"repeat":0}]}"#).unwrap_err();
        assert!(e.to_string().contains("turns[0]: `repeat`"), "{e}");
        let e =
            Scenario::from_json_str(r#"{"turns":[{"tool_calls":[{"name":"x","arguments":3}]}]}"#)
                .unwrap_err();
        assert!(e.to_string().contains("arguments"), "{e}");
        let e = Scenario::from_json_str(r#"{"models":[]}"#).unwrap_err();
        assert!(e.to_string().contains("models"), "{e}");
        let e = Scenario::from_json_str(r#"{"turns":[{"fault":{"kind":"status","code":42}}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("42"), "{e}");
        let e = Scenario::from_json_str(r#"{"fallback":{"when":{}}}"#).unwrap_err();
        assert!(e.to_string().contains("fallback"), "{e}");
    }

    #[test]
    fn unknown_fault_field_is_rejected() {
        let e = Scenario::from_json_str(r#"{"turns":[{"fault":{"kind":"hang","code":1}}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("code"), "{e}");
    }
}
