//! The outcome contract: a role can require the agent to end with a JSON object saying whether
//! the task is complete, needs information, or failed, plus role-specific fields. This module
//! writes the instructions, parses and validates the answer, and (in [`structurer`]) asks a fast
//! model to extract the object from a narrative that lacks one.

use serde::{Deserialize, Serialize};

mod parse;
mod structurer;

pub use parse::parse_outcome;
pub use structurer::{STRUCTURER_MARKER, StructurerRequest, call_structurer};

pub use warren_domain::outcome::{Outcome, OutcomeKind};

/// What a role demands of the outcome object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContractSpec {
    pub role: String,
    /// Role-specific fields the object must carry: any JSON value except null.
    pub required_fields: Vec<String>,
}

/// Which strategy found the outcome object in the agent's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParsedVia {
    /// The last ```` ```json ```` (or plain ```` ``` ````) block holding a valid object.
    FencedBlock,
    /// The whole reply was the object.
    WholeText,
    /// A balanced `{...}` found by scanning back from the end of the text.
    LastBalancedObject,
}

impl ParsedVia {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FencedBlock => "fenced_block",
            Self::WholeText => "whole_text",
            Self::LastBalancedObject => "last_balanced_object",
        }
    }
}

impl std::fmt::Display for ParsedVia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("the reply contains no JSON outcome object")]
    Missing,
    #[error("the outcome object is invalid: {problem}")]
    Invalid { problem: String },
    #[error("the structurer could not extract an outcome: {message}")]
    Structurer { message: String },
}

/// The shape of the object, as shown to the agent and to the structurer. Deliberately not valid
/// JSON (`|`, `<...>`): an agent that parrots the template has not produced an outcome.
pub fn schema(spec: &ContractSpec) -> String {
    let mut lines = vec![
        r#"  "outcome": "COMPLETE" | "NEEDS_INFO" | "ERROR""#.to_owned(),
        r#"  "summary": "<one or two sentences>""#.to_owned(),
    ];
    for field in &spec.required_fields {
        lines.push(format!("  {}: <value, never null>", quoted(field)));
    }
    format!("{{\n{}\n}}", lines.join(",\n"))
}

fn quoted(field: &str) -> String {
    serde_json::to_string(field).unwrap_or_else(|_| format!("{field:?}"))
}

fn meanings(spec: &ContractSpec) -> String {
    let mut text = String::from(
        "- COMPLETE: the task is done; the summary says what was done.\n\
         - NEEDS_INFO: you cannot proceed without an answer from the user; put the question in \"summary\".\n\
         - ERROR: you cannot do the task; the summary says why.",
    );
    if !spec.required_fields.is_empty() {
        let names: Vec<String> = spec.required_fields.iter().map(|f| quoted(f)).collect();
        text.push_str(&format!(
            "\nThe {} role requires these fields, each with a real (non-null) value: {}.",
            quoted(&spec.role),
            names.join(", ")
        ));
    }
    text
}

/// Appended to the prompt. `strict` is the re-prompt after a reply without a valid object: it
/// asks for the object alone (see [`reprompt`] to say what was wrong as well).
pub fn instruction_block(spec: &ContractSpec, strict: bool) -> String {
    let schema = schema(spec);
    let meanings = meanings(spec);
    if strict {
        format!(
            "Your previous reply did not contain a valid outcome object. Reply with ONLY the JSON \
             object, no other text:\n\n{schema}\n\n{meanings}"
        )
    } else {
        format!(
            "When you are finished, end your final message with the outcome of the task as a JSON \
             object in a ```json fenced block, in this shape:\n\n```json\n{schema}\n```\n\n\
             {meanings}\nWrite nothing after the block."
        )
    }
}

/// The strict instructions followed by what was wrong with the previous reply.
pub fn reprompt(spec: &ContractSpec, problem: &str) -> String {
    format!(
        "{}\n\nWhat was wrong: {problem}",
        instruction_block(spec, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn spec() -> ContractSpec {
        ContractSpec {
            role: "reviewer".into(),
            required_fields: vec!["verdict".into(), "files_changed".into()],
        }
    }

    #[test]
    fn instruction_block_names_every_field_and_outcome() {
        for strict in [false, true] {
            let block = instruction_block(&spec(), strict);
            for needle in [
                "\"verdict\"",
                "\"files_changed\"",
                "\"outcome\"",
                "\"summary\"",
                "COMPLETE",
                "NEEDS_INFO",
                "ERROR",
            ] {
                assert!(
                    block.contains(needle),
                    "strict={strict}: {needle} missing from\n{block}"
                );
            }
        }
        let normal = instruction_block(&spec(), false);
        assert!(normal.contains("```json"));
        assert!(normal.contains("question"));
        let strict = instruction_block(&spec(), true);
        assert!(strict.contains("did not contain a valid outcome object"));
        assert!(strict.contains("ONLY the JSON object"));
        let again = reprompt(&spec(), "missing required field \"verdict\"");
        assert!(again.ends_with("What was wrong: missing required field \"verdict\""));
    }

    #[test]
    fn the_template_itself_is_never_an_outcome() {
        let echoed = instruction_block(&spec(), false);
        assert!(parse_outcome(&echoed, &spec()).is_err());
    }

    #[test]
    fn kinds_parse_leniently_and_serialize_canonically() {
        assert_eq!(OutcomeKind::parse("complete"), Some(OutcomeKind::Complete));
        assert_eq!(
            OutcomeKind::parse(" needs-info "),
            Some(OutcomeKind::NeedsInfo)
        );
        assert_eq!(OutcomeKind::parse("Error"), Some(OutcomeKind::Error));
        assert_eq!(OutcomeKind::parse("DONE"), None);
        let json = serde_json::to_value(OutcomeKind::NeedsInfo).ok();
        assert_eq!(json, Some(Value::String("NEEDS_INFO".into())));
    }

    #[test]
    fn outcomes_serialize_flat() {
        let mut fields = serde_json::Map::new();
        fields.insert("verdict".into(), Value::Bool(true));
        let o = Outcome {
            outcome: OutcomeKind::Complete,
            summary: "done".into(),
            fields,
        };
        let v = serde_json::to_value(&o).ok();
        assert_eq!(
            v,
            Some(serde_json::json!({"outcome": "COMPLETE", "summary": "done", "verdict": true}))
        );
    }
}
