//! Turn selection: which scripted turn answers an incoming request, and the bookkeeping of how
//! many times each turn may still serve. Kept free of HTTP so the rules can be tested directly.

use serde_json::Value;

use crate::scenario::{Scenario, Turn, When};

/// The facts about a request that turn selection looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    pub model: String,
    pub has_tools: bool,
    /// Text of the last `user` message (parts joined with newlines), empty when none.
    pub last_user_text: String,
}

impl RequestFacts {
    /// Extracts the facts from a chat-completion request body.
    pub fn from_body(body: &Value) -> RequestFacts {
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let has_tools = body
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|tools| !tools.is_empty());
        let last_user_text = body
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|messages| {
                messages
                    .iter()
                    .rev()
                    .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            })
            .map(|m| content_text(m.get("content")))
            .unwrap_or_default();
        RequestFacts {
            model,
            has_tools,
            last_user_text,
        }
    }
}

/// Text of a message `content`: a string, or an array of `{type:"text",text}` parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Whether a turn's `when` accepts a request.
pub fn turn_matches(when: Option<&When>, facts: &RequestFacts) -> bool {
    let Some(when) = when else {
        return facts.has_tools;
    };
    if when.has_tools.is_some_and(|want| want != facts.has_tools) {
        return false;
    }
    if let Some(needle) = &when.last_user_contains
        && !facts.last_user_text.contains(needle.as_str())
    {
        return false;
    }
    if let Some(model) = &when.model
        && model != &facts.model
    {
        return false;
    }
    true
}

/// What selection decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Scripted turn with this index (into `Scenario::turns`).
    Turn(usize, Turn),
    /// The fallback (scripted or default) for a request without tools.
    Fallback(Turn),
    /// A request with tools that no remaining turn matches.
    Exhausted,
}

/// Remaining uses of each turn.
#[derive(Debug, Clone)]
pub struct Script {
    turns: Vec<Turn>,
    remaining: Vec<u32>,
    fallback: Turn,
}

impl Script {
    pub fn new(scenario: &Scenario) -> Script {
        Script {
            turns: scenario.turns.clone(),
            remaining: scenario.turns.iter().map(|t| t.repeat).collect(),
            fallback: scenario.fallback.clone().unwrap_or_else(default_fallback),
        }
    }

    /// Picks the first not-yet-consumed matching turn and uses it once; otherwise the fallback
    /// for requests without tools; otherwise `Exhausted`.
    pub fn select(&mut self, facts: &RequestFacts) -> Selection {
        for (i, turn) in self.turns.iter().enumerate() {
            let Some(left) = self.remaining.get_mut(i) else {
                continue;
            };
            if *left > 0 && turn_matches(turn.when.as_ref(), facts) {
                *left -= 1;
                return Selection::Turn(i, turn.clone());
            }
        }
        if facts.has_tools {
            Selection::Exhausted
        } else {
            Selection::Fallback(self.fallback.clone())
        }
    }

    /// Number of turn uses not yet served.
    pub fn remaining_uses(&self) -> u64 {
        self.remaining.iter().map(|&n| u64::from(n)).sum()
    }
}

/// The reply for side requests when the scenario sets no fallback.
pub fn default_fallback() -> Turn {
    Turn {
        repeat: 1,
        text: Some("Scripted title".to_owned()),
        ..Turn::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn facts(has_tools: bool, user: &str) -> RequestFacts {
        RequestFacts {
            model: "scripted".into(),
            has_tools,
            last_user_text: user.into(),
        }
    }

    #[test]
    fn facts_read_parts_and_last_user_message() {
        let body = json!({
            "model": "m",
            "tools": [{"type": "function"}],
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "x"},
                {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url"}, {"type": "text", "text": "world"}]},
                {"role": "tool", "content": "result"}
            ]
        });
        let f = RequestFacts::from_body(&body);
        assert_eq!(f.model, "m");
        assert!(f.has_tools);
        assert_eq!(f.last_user_text, "hello\nworld");
        let f = RequestFacts::from_body(&json!({"model": "m", "tools": [], "messages": []}));
        assert!(!f.has_tools);
        assert_eq!(f.last_user_text, "");
    }

    #[test]
    fn selection_order_repeat_and_fallback() {
        let scenario = Scenario::from_json_str(
            r#"{"turns":[
                {"text":"a","repeat":2},
                {"when":{"last_user_contains":"magic"},"text":"b"},
                {"text":"c"}
            ]}"#,
        )
        .unwrap();
        let mut script = Script::new(&scenario);
        assert_eq!(script.remaining_uses(), 4);
        assert!(matches!(
            script.select(&facts(true, "")),
            Selection::Turn(0, _)
        ));
        // No tools: turn 0 (no `when`) does not match, turn 1's matcher does.
        assert!(matches!(
            script.select(&facts(false, "say magic")),
            Selection::Turn(1, _)
        ));
        assert!(matches!(
            script.select(&facts(true, "magic")),
            Selection::Turn(0, _)
        ));
        assert!(matches!(
            script.select(&facts(true, "magic")),
            Selection::Turn(2, _)
        ));
        match script.select(&facts(false, "magic")) {
            Selection::Fallback(t) => assert_eq!(t.text.as_deref(), Some("Scripted title")),
            other => panic!("expected fallback, got {other:?}"),
        }
        assert_eq!(script.select(&facts(true, "magic")), Selection::Exhausted);
        assert_eq!(script.remaining_uses(), 0);
    }
}
