//! OpenCode's `run --format json` stream, typed. Measured on opencode-ai 1.18.33: step_start,
//! text, reasoning, tool_use, step_finish (tokens, cost) and error. Anything else is kept verbatim
//! as `Unknown`; a line that is not JSON is handed back so the caller can keep it for diagnosis.

use serde_json::Value;
use warren_domain::{AgentEvent, ToolStatus, Usage};

/// Tool output is kept in the record, but bounded: a `cat` of a large file must not bloat the store.
const MAX_TOOL_OUTPUT: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Event {
        event: AgentEvent,
        session_id: Option<String>,
    },
    NotJson(String),
}

pub fn parse_line(line: &str) -> Parsed {
    let trimmed = line.trim();
    let value: Value = match serde_json::from_str(trimmed) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Parsed::NotJson(line.to_owned()),
    };
    let session_id = value
        .get("sessionID")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let event = typed(&value).unwrap_or(AgentEvent::Unknown { raw: value });
    Parsed::Event { event, session_id }
}

fn text_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn typed(value: &Value) -> Option<AgentEvent> {
    let part = value.get("part");
    match value.get("type")?.as_str()? {
        "step_start" => Some(AgentEvent::StepStart {
            session_id: text_of(value, "sessionID").unwrap_or_default(),
        }),
        "text" => Some(AgentEvent::Text {
            text: text_of(part?, "text")?,
        }),
        "reasoning" => Some(AgentEvent::Reasoning {
            text: text_of(part?, "text")?,
        }),
        "tool_use" => {
            let part = part?;
            let state = part.get("state")?;
            let status = state
                .get("status")
                .cloned()
                .and_then(|s| serde_json::from_value::<ToolStatus>(s).ok())
                .unwrap_or(ToolStatus::Unknown);
            Some(AgentEvent::ToolUse {
                tool: text_of(part, "tool")?,
                call_id: text_of(part, "callID").unwrap_or_default(),
                status,
                title: text_of(state, "title"),
                input: state.get("input").cloned().unwrap_or(Value::Null),
                output: text_of(state, "output").map(|o| truncate(o, MAX_TOOL_OUTPUT)),
                error: text_of(state, "error"),
            })
        }
        "step_finish" => {
            let part = part?;
            let tokens = part.get("tokens");
            let num = |path: &[&str]| -> u64 {
                let mut cur = tokens;
                for key in path {
                    cur = cur.and_then(|v| v.get(*key));
                }
                cur.and_then(Value::as_u64).unwrap_or(0)
            };
            Some(AgentEvent::StepFinish {
                reason: text_of(part, "reason").unwrap_or_default(),
                usage: Usage {
                    input: num(&["input"]),
                    output: num(&["output"]),
                    reasoning: num(&["reasoning"]),
                    cache_read: num(&["cache", "read"]),
                    cache_write: num(&["cache", "write"]),
                    cost: part.get("cost").and_then(Value::as_f64).unwrap_or(0.0),
                },
            })
        }
        "error" => {
            let error = value.get("error")?;
            let data = error.get("data");
            Some(AgentEvent::AgentError {
                name: text_of(error, "name").unwrap_or_else(|| "UnknownError".into()),
                message: data
                    .and_then(|d| text_of(d, "message"))
                    .or_else(|| text_of(error, "message"))
                    .unwrap_or_else(|| error.to_string()),
                status_code: data
                    .and_then(|d| d.get("statusCode"))
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok()),
                retryable: data
                    .and_then(|d| d.get("isRetryable"))
                    .and_then(Value::as_bool),
            })
        }
        _ => None,
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!("\n[warren: {dropped} more bytes not kept]"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines captured from opencode-ai 1.18.33 against the scripted model.
    const TOOL: &str = r#"{"type":"tool_use","timestamp":1,"sessionID":"ses_1","part":{"type":"tool","tool":"write","callID":"call_1_0","state":{"status":"completed","input":{"filePath":"hello.txt","content":"hi\n"},"output":"Wrote file successfully.","title":"hello.txt","time":{"start":1,"end":2}},"id":"prt_1","sessionID":"ses_1","messageID":"msg_1"}}"#;
    const FINISH: &str = r#"{"type":"step_finish","timestamp":1,"sessionID":"ses_1","part":{"id":"prt_2","reason":"stop","messageID":"m","sessionID":"ses_1","type":"step-finish","tokens":{"total":110,"input":100,"output":10,"reasoning":0,"cache":{"write":3,"read":4}},"cost":0.5}}"#;
    const ERROR: &str = r#"{"type":"error","timestamp":1,"sessionID":"ses_1","error":{"name":"APIError","data":{"message":"Incorrect API key provided","statusCode":401,"isRetryable":false}}}"#;

    #[test]
    fn tool_use_is_typed_with_its_input_and_status() {
        let Parsed::Event { event, session_id } = parse_line(TOOL) else {
            panic!("not parsed")
        };
        assert_eq!(session_id.as_deref(), Some("ses_1"));
        let AgentEvent::ToolUse {
            tool,
            status,
            input,
            output,
            ..
        } = event
        else {
            panic!("wrong kind: {event:?}")
        };
        assert_eq!(tool, "write");
        assert_eq!(status, ToolStatus::Completed);
        assert_eq!(input["filePath"], "hello.txt");
        assert_eq!(output.as_deref(), Some("Wrote file successfully."));
    }

    #[test]
    fn step_finish_carries_usage_and_cost() {
        let Parsed::Event {
            event: AgentEvent::StepFinish { reason, usage },
            ..
        } = parse_line(FINISH)
        else {
            panic!("not a step finish")
        };
        assert_eq!(reason, "stop");
        assert_eq!(
            (
                usage.input,
                usage.output,
                usage.cache_read,
                usage.cache_write
            ),
            (100, 10, 4, 3)
        );
        assert!((usage.cost - 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn error_events_keep_status_and_retryability() {
        let Parsed::Event {
            event:
                AgentEvent::AgentError {
                    name,
                    message,
                    status_code,
                    retryable,
                },
            ..
        } = parse_line(ERROR)
        else {
            panic!("not an error")
        };
        assert_eq!(name, "APIError");
        assert_eq!(message, "Incorrect API key provided");
        assert_eq!(status_code, Some(401));
        assert_eq!(retryable, Some(false));
    }

    #[test]
    fn unknown_events_are_kept_verbatim_and_non_json_is_handed_back() {
        let Parsed::Event {
            event: AgentEvent::Unknown { raw },
            ..
        } = parse_line(r#"{"type":"session_moved","x":1}"#)
        else {
            panic!("unknown event dropped")
        };
        assert_eq!(raw["x"], 1);
        assert_eq!(
            parse_line("INFO booting"),
            Parsed::NotJson("INFO booting".into())
        );
        assert_eq!(parse_line("[1,2]"), Parsed::NotJson("[1,2]".into()));
    }

    #[test]
    fn long_tool_output_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_TOOL_OUTPUT);
        let out = truncate(long, MAX_TOOL_OUTPUT);
        assert!(out.contains("more bytes not kept"));
    }
}
