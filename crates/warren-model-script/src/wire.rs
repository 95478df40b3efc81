//! The OpenAI chat-completions wire shapes: streamed `chat.completion.chunk` events and the
//! non-streamed `chat.completion` object built from a scripted turn. Pure functions, so the
//! exact bytes a client sees can be tested without a socket.

use serde_json::{Value, json};

use crate::scenario::{ToolCall, Turn, Usage};

/// Target size of a streamed text piece, in characters.
const TEXT_PIECE: usize = 20;
/// Size of a streamed tool-argument fragment, in characters.
const ARGUMENT_PIECE: usize = 16;

/// Everything besides the turn that goes into a reply.
#[derive(Debug, Clone)]
pub struct ReplyContext {
    /// `chatcmpl-...` id shared by all chunks of one reply.
    pub completion_id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model the request named (echoed back).
    pub model: String,
    /// Index of the request, used to make generated tool-call ids unique.
    pub request_index: usize,
    /// Length of the request body in characters, for the usage estimate.
    pub prompt_chars: usize,
}

/// The id of the `n`th tool call of a reply: scripted, or `call_<request>_<n>`.
pub fn tool_call_id(call: &ToolCall, request_index: usize, n: usize) -> String {
    call.id
        .clone()
        .unwrap_or_else(|| format!("call_{request_index}_{n}"))
}

/// The arguments as they go on the wire: an object serialized, a string verbatim.
pub fn arguments_string(call: &ToolCall) -> String {
    match &call.arguments {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `tool_calls` when the turn has tool calls, `stop` otherwise, unless overridden.
pub fn finish_reason(turn: &Turn) -> String {
    match &turn.finish_reason {
        Some(reason) => reason.clone(),
        None if turn.tool_calls.is_empty() => "stop".to_owned(),
        None => "tool_calls".to_owned(),
    }
}

/// Scripted usage, or an estimate: characters / 4, at least 1 each.
pub fn usage(turn: &Turn, prompt_chars: usize) -> Usage {
    if let Some(usage) = turn.usage {
        return usage;
    }
    let output_chars = turn.text.as_deref().map_or(0, |t| t.chars().count())
        + turn.reasoning.as_deref().map_or(0, |t| t.chars().count())
        + turn
            .tool_calls
            .iter()
            .map(|c| c.name.chars().count() + arguments_string(c).chars().count())
            .sum::<usize>();
    Usage {
        prompt_tokens: estimate(prompt_chars),
        completion_tokens: estimate(output_chars),
    }
}

fn estimate(chars: usize) -> u64 {
    u64::try_from(chars / 4).unwrap_or(u64::MAX).max(1)
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens.saturating_add(usage.completion_tokens),
    })
}

/// Splits text into pieces of about [`TEXT_PIECE`] characters at whitespace; the pieces
/// concatenate back to the original.
pub fn split_text(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for word in text.split_inclusive(char::is_whitespace) {
        current.push_str(word);
        if current.chars().count() >= TEXT_PIECE {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// Splits a string into fragments of [`ARGUMENT_PIECE`] characters.
pub fn split_fixed(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(ARGUMENT_PIECE)
        .map(|c| c.iter().collect())
        .collect()
}

/// The `delta` objects of a streamed reply, in order, without the final finish chunk. The
/// first delta always carries `"role":"assistant"` together with the first piece of output.
pub fn stream_deltas(turn: &Turn, request_index: usize) -> Vec<Value> {
    let mut deltas: Vec<Value> = Vec::new();
    if let Some(reasoning) = &turn.reasoning {
        for piece in split_text(reasoning) {
            deltas.push(json!({ "reasoning_content": piece }));
        }
    }
    if let Some(text) = &turn.text {
        for piece in split_text(text) {
            deltas.push(json!({ "content": piece }));
        }
    }
    for (n, call) in turn.tool_calls.iter().enumerate() {
        deltas.push(json!({ "tool_calls": [{
            "index": n,
            "id": tool_call_id(call, request_index, n),
            "type": "function",
            "function": { "name": call.name, "arguments": "" },
        }]}));
        for fragment in split_fixed(&arguments_string(call)) {
            deltas.push(json!({ "tool_calls": [{
                "index": n,
                "function": { "arguments": fragment },
            }]}));
        }
    }
    match deltas.first_mut().and_then(Value::as_object_mut) {
        Some(first) => {
            first.insert("role".to_owned(), json!("assistant"));
        }
        None => deltas.push(json!({ "role": "assistant", "content": "" })),
    }
    deltas
}

/// One `chat.completion.chunk` object.
pub fn chunk(ctx: &ReplyContext, delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": ctx.completion_id,
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    })
}

/// Formats one server-sent event carrying a JSON payload.
pub fn sse(payload: &Value) -> String {
    format!("data: {payload}\n\n")
}

/// The SSE terminator.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// All SSE events of a streamed reply: deltas, the finish chunk, the usage chunk when asked
/// for, and `[DONE]`.
pub fn sse_events(turn: &Turn, ctx: &ReplyContext, include_usage: bool) -> Vec<String> {
    let mut events: Vec<String> = stream_deltas(turn, ctx.request_index)
        .into_iter()
        .map(|delta| sse(&chunk(ctx, delta, None)))
        .collect();
    let reason = finish_reason(turn);
    events.push(sse(&chunk(ctx, json!({}), Some(&reason))));
    if include_usage {
        events.push(sse(&json!({
            "id": ctx.completion_id,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "choices": [],
            "usage": usage_json(usage(turn, ctx.prompt_chars)),
        })));
    }
    events.push(SSE_DONE.to_owned());
    events
}

/// The non-streamed `chat.completion` object.
pub fn completion(turn: &Turn, ctx: &ReplyContext) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": turn.text,
    });
    if let Some(reasoning) = &turn.reasoning {
        message["reasoning_content"] = json!(reasoning);
    }
    if !turn.tool_calls.is_empty() {
        let calls: Vec<Value> = turn
            .tool_calls
            .iter()
            .enumerate()
            .map(|(n, call)| {
                json!({
                    "id": tool_call_id(call, ctx.request_index, n),
                    "type": "function",
                    "function": { "name": call.name, "arguments": arguments_string(call) },
                })
            })
            .collect();
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": ctx.completion_id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(turn),
        }],
        "usage": usage_json(usage(turn, ctx.prompt_chars)),
    })
}

/// An OpenAI-style error body.
pub fn error_body(message: &str, kind: &str, code: Option<&str>) -> Value {
    let mut error = json!({ "message": message, "type": kind });
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    json!({ "error": error })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn text_pieces_rejoin() {
        let text = "The quick brown fox jumps over the lazy dog, again and again.\nDone.";
        let pieces = split_text(text);
        assert!(pieces.len() > 2, "{pieces:?}");
        assert_eq!(pieces.concat(), text);
        assert_eq!(
            split_fixed("héllo wörld, this is long").concat(),
            "héllo wörld, this is long"
        );
    }

    #[test]
    fn first_delta_carries_role() {
        let turn = Turn {
            text: Some("hello there".into()),
            ..Turn::default()
        };
        let deltas = stream_deltas(&turn, 0);
        assert_eq!(deltas[0]["role"], "assistant");
        assert_eq!(deltas[0]["content"], "hello there");
        let empty = stream_deltas(&Turn::default(), 0);
        assert_eq!(empty, vec![json!({"role": "assistant", "content": ""})]);
    }

    #[test]
    fn usage_estimate_is_at_least_one() {
        let u = usage(&Turn::default(), 0);
        assert_eq!((u.prompt_tokens, u.completion_tokens), (1, 1));
        let turn = Turn {
            text: Some("x".repeat(40)),
            ..Turn::default()
        };
        let u = usage(&turn, 400);
        assert_eq!((u.prompt_tokens, u.completion_tokens), (100, 10));
    }
}
