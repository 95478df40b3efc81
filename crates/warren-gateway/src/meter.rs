//! Metering at the gateway: every forwarded request becomes one [`MeteredRequest`], measured from
//! the upstream's answer rather than from what the agent says about itself. The answer is read as
//! it passes through, never held back: the status, the time to the end of the body, and the
//! token counts of its `usage` (the JSON body's for a plain answer; for a stream, the SSE chunk
//! that carries it, which OpenAI-compatible servers send last when the request set
//! `stream_options.include_usage`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use warren_domain::{AgentEvent, RequestSource};

use crate::GatewayNotice;
use crate::proxy::Shared;

/// A plain (non-streamed) answer is copied aside up to this size to read its `usage` at the end;
/// a larger one is passed through unmetered for tokens.
const MAX_JSON_COPY: usize = 4 * 1024 * 1024;
/// An SSE line longer than this cannot be a usage chunk worth reading; it is skipped.
const MAX_SSE_LINE: usize = 1024 * 1024;

/// One request the gateway forwarded, as measured there.
#[derive(Debug, Clone, PartialEq)]
pub struct MeteredRequest {
    /// Whose gateway forwarded it ([`crate::GatewayConfig::source`]).
    pub source: RequestSource,
    /// The API path under the base URL: `chat/completions`, `models`, `models/<id>`.
    pub endpoint: String,
    /// The `model` field of the request body.
    pub model: Option<String>,
    /// The status the requester got: the upstream's, or 502 when it could not be reached.
    pub status: u16,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// From receiving the request to the end of the response body.
    pub latency_ms: u64,
    /// Why the exchange did not complete: no connection, a broken body, or a body cut short
    /// (the requester went away, or the gateway stopped).
    pub error: Option<String>,
    /// US dollars, from the gateway's price for the model (absent without a price or tokens).
    pub cost_usd: Option<f64>,
}

impl MeteredRequest {
    /// The sandbox event recording this request.
    pub fn to_event(&self) -> AgentEvent {
        AgentEvent::ModelRequest {
            source: self.source,
            endpoint: self.endpoint.clone(),
            model: self.model.clone(),
            status: self.status,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            latency_ms: self.latency_ms,
            error: self.error.clone(),
            cost_usd: self.cost_usd,
            // The gateway does not know the session; the engine adds it when it does.
            session_id: None,
        }
    }
}

/// The `model` of a request body, if it is a JSON object that names one.
pub(crate) fn request_model(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        model: Option<String>,
    }
    serde_json::from_slice::<Head>(body).ok()?.model
}

pub(crate) fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Measures one response as its body passes through; sends its record once, at the end of the
/// body, when the body breaks, or (dropped early) when the exchange was cut short.
pub(crate) struct Meter {
    shared: Arc<Shared>,
    started: Instant,
    pending: Option<MeteredRequest>,
    scanner: UsageScanner,
}

impl Meter {
    pub(crate) fn new(
        shared: Arc<Shared>,
        started: Instant,
        request: MeteredRequest,
        content_type: Option<&str>,
    ) -> Self {
        // An error answer costs no tokens, whatever its body says.
        let scanner = if request.status < 400 {
            UsageScanner::for_content_type(content_type)
        } else {
            UsageScanner::Off
        };
        Self {
            shared,
            started,
            pending: Some(request),
            scanner,
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn observe(&mut self, chunk: &Bytes) {
        self.scanner.feed(chunk);
    }

    /// Sends the record (once): the body ended, or broke with `error`.
    pub(crate) fn finish(&mut self, error: Option<String>) {
        let Some(mut record) = self.pending.take() else {
            return;
        };
        if let Some((input, output)) = self.scanner.finish() {
            record.input_tokens = input;
            record.output_tokens = output;
        }
        record.latency_ms = millis(self.started);
        record.error = error;
        self.shared.meter(record);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish(Some(
            "cut short: the requester went away or the gateway stopped".into(),
        ));
    }
}

impl Shared {
    pub(crate) fn meter(&self, mut record: MeteredRequest) {
        record.cost_usd = self.budget.cost(&record);
        let warnings = self.budget.charge(&record);
        tracing::debug!(
            source = record.source.as_str(),
            endpoint = %record.endpoint,
            status = record.status,
            input = ?record.input_tokens,
            output = ?record.output_tokens,
            ms = record.latency_ms,
            "model gateway metered a request"
        );
        let _ = self.notices.send(GatewayNotice::ModelRequest(record));
        for line in warnings {
            let _ = self.notices.send(GatewayNotice::BudgetWarning(line));
        }
    }
}

/// Finds the `usage` of an answer in the bytes passing through, keeping only what it needs: the
/// current SSE line, or a bounded copy of a JSON body.
pub(crate) enum UsageScanner {
    Sse {
        line: Vec<u8>,
        /// The current line grew past [`MAX_SSE_LINE`]: ignore it up to its end.
        skipping: bool,
        found: Option<(Option<u64>, Option<u64>)>,
    },
    Json {
        copy: Vec<u8>,
        overflowed: bool,
    },
    Off,
}

impl UsageScanner {
    pub(crate) fn for_content_type(content_type: Option<&str>) -> Self {
        let sse = content_type.is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        });
        if sse {
            Self::Sse {
                line: Vec::new(),
                skipping: false,
                found: None,
            }
        } else {
            Self::Json {
                copy: Vec::new(),
                overflowed: false,
            }
        }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        match self {
            Self::Sse {
                line,
                skipping,
                found,
            } => {
                let mut rest = chunk;
                while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
                    let (head, tail) = rest.split_at(pos);
                    if !*skipping {
                        line.extend_from_slice(head);
                        sse_line(line, found);
                    }
                    line.clear();
                    *skipping = false;
                    rest = tail.get(1..).unwrap_or_default();
                }
                if !*skipping {
                    line.extend_from_slice(rest);
                    if line.len() > MAX_SSE_LINE {
                        line.clear();
                        *skipping = true;
                    }
                }
            }
            Self::Off => {}
            Self::Json { copy, overflowed } => {
                if *overflowed {
                    return;
                }
                if copy.len() + chunk.len() > MAX_JSON_COPY {
                    *overflowed = true;
                    *copy = Vec::new();
                } else {
                    copy.extend_from_slice(chunk);
                }
            }
        }
    }

    /// The token counts found, once the body has ended: (input, output).
    pub(crate) fn finish(&mut self) -> Option<(Option<u64>, Option<u64>)> {
        match self {
            Self::Sse {
                line,
                skipping,
                found,
            } => {
                // A last event without its closing newline still counts.
                if !*skipping && !line.is_empty() {
                    sse_line(line, found);
                    line.clear();
                }
                *found
            }
            Self::Off => None,
            Self::Json { copy, overflowed } => {
                if *overflowed {
                    return None;
                }
                let value: Value = serde_json::from_slice(copy).ok()?;
                usage_of(&value)
            }
        }
    }
}

/// One complete SSE line: a `data:` payload that carries a `usage` object replaces what was found.
fn sse_line(line: &[u8], found: &mut Option<(Option<u64>, Option<u64>)>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(payload) = line.strip_prefix(b"data:") else {
        return;
    };
    // Most chunks carry no usage; only those that mention it are parsed.
    if !payload.windows(7).any(|w| w == b"\"usage\"") {
        return;
    }
    if let Ok(value) = serde_json::from_slice::<Value>(payload)
        && let Some(usage) = usage_of(&value)
    {
        *found = Some(usage);
    }
}

/// `usage` as OpenAI-compatible servers write it (`prompt_tokens`, `completion_tokens`), or with
/// the `input_tokens`/`output_tokens` names some use; `None` when absent or null.
fn usage_of(value: &Value) -> Option<(Option<u64>, Option<u64>)> {
    let usage = value.get("usage")?.as_object()?;
    let count = |names: [&str; 2]| names.iter().find_map(|n| usage.get(*n)?.as_u64());
    let input = count(["prompt_tokens", "input_tokens"]);
    let output = count(["completion_tokens", "output_tokens"]);
    (input.is_some() || output.is_some()).then_some((input, output))
}

#[cfg(test)]
#[path = "meter_tests.rs"]
mod tests;
