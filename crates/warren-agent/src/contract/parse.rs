//! Finding and validating the outcome object in free text. Agents wrap it in prose, fence it, or
//! reply with it bare, so several strategies are tried in order of how deliberate they are.

use serde_json::{Map, Value};

use super::{ContractError, ContractSpec, Outcome, OutcomeKind, ParsedVia};

/// How many `{` (counted from the end) the balanced scan starts from. The outcome object sits at
/// the end; the cap keeps a narrative full of code from making the scan quadratic.
const MAX_BRACE_STARTS: usize = 512;

/// Finds the outcome object in `text` and validates it against `spec`.
///
/// Strategies, in order: the fenced blocks (last first), the whole text, then every balanced
/// `{...}` (last closing brace first). The first object that validates wins, whichever strategy
/// found it. When objects parse but none validates, the problem reported is that of the first
/// one: the object the agent most plausibly meant as its outcome. An object with neither
/// `outcome` nor `summary` (a `package.json` shown in a block, a `{}` in quoted code) is not an
/// attempt at one and is ignored, so a reply made only of those is [`ContractError::Missing`].
pub fn parse_outcome(
    text: &str,
    spec: &ContractSpec,
) -> Result<(Outcome, ParsedVia), ContractError> {
    let mut first_problem: Option<String> = None;
    let mut check = |object: Map<String, Value>| {
        if !object.contains_key("outcome") && !object.contains_key("summary") {
            return None;
        }
        match validate(object, spec) {
            Ok(outcome) => Some(outcome),
            Err(problem) => {
                first_problem.get_or_insert(problem);
                None
            }
        }
    };

    for body in fenced_blocks(text).into_iter().rev() {
        if let Some(outcome) = as_object(body).and_then(&mut check) {
            return Ok((outcome, ParsedVia::FencedBlock));
        }
    }
    if let Some(outcome) = as_object(text).and_then(&mut check) {
        return Ok((outcome, ParsedVia::WholeText));
    }
    for (start, end) in balanced_spans(text) {
        let candidate = text.get(start..=end).and_then(as_object);
        if let Some(outcome) = candidate.and_then(&mut check) {
            return Ok((outcome, ParsedVia::LastBalancedObject));
        }
    }
    Err(match first_problem {
        Some(problem) => ContractError::Invalid { problem },
        None => ContractError::Missing,
    })
}

fn as_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(text.trim()) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Contents of the fenced blocks, in order, with a `json` info string removed. Fences are paired
/// in order of appearance rather than by lines, because models also write a block on one line
/// (```` ```json {...}``` ````). A block in another language simply fails to parse as an object.
fn fenced_blocks(text: &str) -> Vec<&str> {
    let fences: Vec<usize> = text.match_indices("```").map(|(i, _)| i).collect();
    fences
        .chunks_exact(2)
        .filter_map(|pair| match pair {
            [open, close] => text.get(open + 3..*close),
            _ => None,
        })
        .map(|content| strip_json_tag(content.trim_start()))
        .collect()
}

fn strip_json_tag(content: &str) -> &str {
    match (content.get(..4), content.get(4..)) {
        (Some(tag), Some(rest))
            if tag.eq_ignore_ascii_case("json")
                && rest
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_whitespace() || c == '{') =>
        {
            rest
        }
        _ => content,
    }
}

/// Byte spans `(start, end)` (both inclusive, on `{` and `}`) of balanced objects, the latest
/// closing brace first; for one closing brace, the widest span first.
fn balanced_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let starts: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'{')
        .map(|(i, _)| i)
        .collect();
    let skip = starts.len().saturating_sub(MAX_BRACE_STARTS);
    // Matching from each `{` separately, rather than one pass with a stack, keeps a stray brace
    // or quote in the prose before the object from shifting how the object itself is read.
    let mut spans: Vec<(usize, usize)> = starts[skip..]
        .iter()
        .filter_map(|&start| matching_brace(bytes, start).map(|end| (start, end)))
        .collect();
    spans.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    spans
}

/// The index of the `}` closing the `{` at `start`, skipping braces inside JSON strings (with
/// their escapes). Scanning bytes is sound for UTF-8: `{`, `}`, `"` and `\` never occur inside a
/// multi-byte sequence, so every index returned is a character boundary.
fn matching_brace(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Checks one parsed object; the error names the missing or bad field.
fn validate(mut object: Map<String, Value>, spec: &ContractSpec) -> Result<Outcome, String> {
    const KINDS: &str = "COMPLETE, NEEDS_INFO or ERROR";
    let outcome = match object.remove("outcome") {
        None | Some(Value::Null) => return Err(format!("\"outcome\" is missing (one of {KINDS})")),
        Some(Value::String(raw)) => OutcomeKind::parse(&raw)
            .ok_or_else(|| format!("\"outcome\" is {raw:?}; it must be one of {KINDS}"))?,
        Some(other) => {
            return Err(format!(
                "\"outcome\" must be a string, one of {KINDS} (got {other})"
            ));
        }
    };
    let summary = match object.remove("summary") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::String(_)) => return Err("\"summary\" is empty".to_owned()),
        None | Some(Value::Null) => return Err("\"summary\" is missing".to_owned()),
        Some(other) => return Err(format!("\"summary\" must be a string (got {other})")),
    };
    for field in &spec.required_fields {
        // Checked above; a role listing them again needs nothing more.
        if field == "outcome" || field == "summary" {
            continue;
        }
        match object.get(field) {
            None => return Err(format!("missing required field \"{field}\"")),
            Some(Value::Null) => return Err(format!("required field \"{field}\" is null")),
            Some(_) => {}
        }
    }
    Ok(Outcome {
        outcome,
        summary,
        fields: object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(fields: &[&str]) -> ContractSpec {
        ContractSpec {
            role: "coder".into(),
            required_fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    fn parse(text: &str, fields: &[&str]) -> Result<(Outcome, ParsedVia), ContractError> {
        parse_outcome(text, &spec(fields))
    }

    fn ok(text: &str, fields: &[&str]) -> (Outcome, ParsedVia) {
        match parse(text, fields) {
            Ok(v) => v,
            Err(e) => panic!("expected an outcome, got {e} from:\n{text}"),
        }
    }

    fn problem(text: &str, fields: &[&str]) -> String {
        match parse(text, fields) {
            Err(ContractError::Invalid { problem }) => problem,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn fenced_json_block() {
        let text = "I fixed the bug and added a test.\n\n```json\n{\"outcome\": \"COMPLETE\", \"summary\": \"fixed\", \"files\": [\"a.rs\"]}\n```\n";
        let (o, via) = ok(text, &["files"]);
        assert_eq!(via, ParsedVia::FencedBlock);
        assert_eq!(o.outcome, OutcomeKind::Complete);
        assert_eq!(o.summary, "fixed");
        assert_eq!(o.fields.get("files"), Some(&json!(["a.rs"])));
        assert!(!o.fields.contains_key("outcome") && !o.fields.contains_key("summary"));
    }

    #[test]
    fn plain_and_inline_fences() {
        let plain = "Done.\n```\n{\"outcome\": \"COMPLETE\", \"summary\": \"ok\"}\n```";
        assert_eq!(ok(plain, &[]).1, ParsedVia::FencedBlock);
        let inline = "Done. ```json {\"outcome\": \"ERROR\", \"summary\": \"no\"}```";
        let (o, via) = ok(inline, &[]);
        assert_eq!(
            (o.outcome, via),
            (OutcomeKind::Error, ParsedVia::FencedBlock)
        );
    }

    #[test]
    fn several_fenced_blocks_last_valid_wins() {
        let text = "Here is the config I wrote:\n```json\n{\"name\": \"x\"}\n```\n\
                    First try:\n```json\n{\"outcome\": \"NEEDS_INFO\", \"summary\": \"draft\"}\n```\n\
                    The code:\n```rust\nfn main() { println!(\"{}\", 1); }\n```\n\
                    Final:\n```json\n{\"outcome\": \"COMPLETE\", \"summary\": \"final\"}\n```\n\
                    ```\nnot json at all\n```";
        let (o, via) = ok(text, &[]);
        assert_eq!(via, ParsedVia::FencedBlock);
        assert_eq!(o.summary, "final");
    }

    #[test]
    fn whole_text_json() {
        let text = "  {\"outcome\": \"complete\", \"summary\": \"all good\", \"n\": 3}\n";
        let (o, via) = ok(text, &["n"]);
        assert_eq!(via, ParsedVia::WholeText);
        // Case-insensitive on input, canonical on output.
        assert_eq!(o.outcome, OutcomeKind::Complete);
        assert_eq!(
            serde_json::to_value(&o)
                .ok()
                .and_then(|v| v.get("outcome").cloned()),
            Some(json!("COMPLETE"))
        );
    }

    #[test]
    fn last_balanced_object_in_prose() {
        let text = "I considered {a, b} sets. Result: {\"outcome\": \"COMPLETE\", \"summary\": \"ok\", \
                    \"details\": {\"tests\": 4}} and that is all.";
        let (o, via) = ok(text, &["details"]);
        assert_eq!(via, ParsedVia::LastBalancedObject);
        assert_eq!(o.fields.get("details"), Some(&json!({"tests": 4})));
    }

    #[test]
    fn braces_and_escapes_inside_strings_do_not_confuse_the_scan() {
        let text = r#"Summary follows {"outcome": "COMPLETE", "summary": "replaced `}` with `{` and a \"quoted } brace\" \\", "pattern": "{{x}"} trailing"#;
        let (o, via) = ok(text, &["pattern"]);
        assert_eq!(via, ParsedVia::LastBalancedObject);
        assert_eq!(
            o.summary,
            r#"replaced `}` with `{` and a "quoted } brace" \"#
        );
        assert_eq!(o.fields.get("pattern"), Some(&json!("{{x}")));
    }

    #[test]
    fn a_stray_quote_or_brace_in_prose_before_the_object_is_harmless() {
        let text = "The user's \"quote and { an unclosed brace.\n{\"outcome\": \"ERROR\", \"summary\": \"cannot\"}";
        let (o, via) = ok(text, &[]);
        assert_eq!(
            (o.outcome, via),
            (OutcomeKind::Error, ParsedVia::LastBalancedObject)
        );
    }

    #[test]
    fn needs_info_carries_the_question() {
        let text = "```json\n{\"outcome\": \"NEEDS_INFO\", \"summary\": \"Which database should I target?\", \"files\": []}\n```";
        let (o, _) = ok(text, &["files"]);
        assert_eq!(o.outcome, OutcomeKind::NeedsInfo);
        assert_eq!(o.summary, "Which database should I target?");
    }

    #[test]
    fn invalid_outcome_value_is_reported() {
        let p = problem(
            "```json\n{\"outcome\": \"DONE\", \"summary\": \"x\"}\n```",
            &[],
        );
        assert!(p.contains("\"outcome\"") && p.contains("DONE"), "{p}");
        let p = problem("{\"outcome\": 1, \"summary\": \"x\"}", &[]);
        assert!(p.contains("must be a string"), "{p}");
    }

    #[test]
    fn missing_required_field_is_named() {
        let p = problem(
            "```json\n{\"outcome\": \"COMPLETE\", \"summary\": \"x\", \"files\": []}\n```",
            &["files", "tests_passed"],
        );
        assert_eq!(p, "missing required field \"tests_passed\"");
        let p = problem(
            "{\"outcome\": \"COMPLETE\", \"summary\": \"x\", \"tests_passed\": null}",
            &["tests_passed"],
        );
        assert_eq!(p, "required field \"tests_passed\" is null");
        let p = problem("{\"outcome\": \"COMPLETE\", \"summary\": \"  \"}", &[]);
        assert_eq!(p, "\"summary\" is empty");
    }

    #[test]
    fn an_invalid_fenced_object_falls_through_to_a_valid_one() {
        // The fenced block is a sample; the real outcome sits in the prose after it.
        let text = "Example:\n```json\n{\"outcome\": \"COMPLETE\"}\n```\n\
                    Actual: {\"outcome\": \"COMPLETE\", \"summary\": \"real\"}";
        let (o, via) = ok(text, &[]);
        assert_eq!(
            (o.summary.as_str(), via),
            ("real", ParsedVia::LastBalancedObject)
        );
    }

    #[test]
    fn the_problem_reported_is_the_first_parsed_candidates() {
        let text = "{\"outcome\": \"COMPLETE\", \"summary\": \"a\"}\n```json\n{\"outcome\": \"COMPLETE\", \"summary\": \"b\"}\n```";
        // Fenced first: its missing field is the one reported, not the prose object's.
        assert_eq!(
            problem(text, &["files"]),
            "missing required field \"files\""
        );
        let text =
            "```json\n{\"outcome\": \"MAYBE\", \"summary\": \"a\"}\n``` then {\"summary\": \"b\"}";
        assert!(problem(text, &[]).contains("MAYBE"));
    }

    #[test]
    fn narration_without_json_is_missing() {
        for text in [
            "",
            "I fixed the bug. All tests pass.",
            "Used a {placeholder} and a } stray brace.",
            "```rust\nfn main() {}\n```",
            "```json\n[1, 2, 3]\n```",
            "```json\n{\"name\": \"warren\", \"version\": \"0.1.0\"}\n```",
        ] {
            assert_eq!(
                parse(text, &[]).err(),
                Some(ContractError::Missing),
                "{text:?}"
            );
        }
    }

    #[test]
    fn unicode_around_the_object_is_fine() {
        let text = "Fertig ✓ — {\"outcome\": \"COMPLETE\", \"summary\": \"überall ✓\"} 🎉";
        assert_eq!(ok(text, &[]).0.summary, "überall ✓");
    }
}
