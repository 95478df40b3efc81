//! The `POST /v1/chat/completions` handler: checks key and model, picks the scripted turn,
//! records the request, then plays the turn (reply or fault) on the wire.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;

use crate::record::{Outcome, RecordedRequest};
use crate::scenario::{Fault, Scenario, Turn};
use crate::select::{RequestFacts, Script, Selection};
use crate::server::ConnAbort;
use crate::wire::{self, ReplyContext};

/// Largest request body accepted (OpenCode sends whole conversations).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// State shared by all connections of one server.
pub(crate) struct Shared {
    pub(crate) scenario: Scenario,
    state: Mutex<ScriptState>,
}

struct ScriptState {
    script: Script,
    records: Vec<RecordedRequest>,
}

impl Shared {
    pub(crate) fn new(scenario: Scenario) -> Shared {
        let script = Script::new(&scenario);
        Shared {
            scenario,
            state: Mutex::new(ScriptState {
                script,
                records: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ScriptState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn records(&self) -> Vec<RecordedRequest> {
        self.lock().records.clone()
    }

    pub(crate) fn remaining_turn_uses(&self) -> u64 {
        self.lock().script.remaining_uses()
    }

    /// Whether the request's `Authorization` carries the required key (always, when none is
    /// required).
    pub(crate) fn key_ok(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.scenario.require_api_key else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        given == Some(format!("Bearer {key}").as_str())
    }
}

/// The 401 OpenAI answers for a wrong or missing key.
pub(crate) fn unauthorized() -> Response {
    error_response(
        StatusCode::UNAUTHORIZED,
        "Incorrect API key provided",
        "invalid_request_error",
        Some("invalid_api_key"),
    )
}

/// What to do with a request, decided under the lock.
enum Decision {
    Reject(Response),
    Serve(Turn),
}

pub(crate) async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let abort = parts.extensions.get::<ConnAbort>().cloned();
    let bytes = axum::body::to_bytes(body, MAX_BODY).await;
    let (raw_len, json) = match &bytes {
        Ok(bytes) => (
            String::from_utf8_lossy(bytes).chars().count(),
            serde_json::from_slice::<Value>(bytes).ok(),
        ),
        Err(_) => (0, None),
    };
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = json.clone().unwrap_or(Value::Null);
    let facts = RequestFacts::from_body(&body);
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);

    let (index, decision) = {
        let mut state = shared.lock();
        let index = state.records.len();
        let (outcome, decision) = decide(
            &shared,
            &mut state.script,
            &parts.headers,
            &json,
            &facts,
            index,
        );
        let usage = match &decision {
            Decision::Serve(turn) if turn.fault.is_none() && (!stream || include_usage) => {
                Some(wire::usage(turn, raw_len))
            }
            _ => None,
        };
        state.records.push(RecordedRequest {
            index,
            model: facts.model.clone(),
            authorization,
            has_tools: facts.has_tools,
            stream,
            body,
            outcome: outcome.clone(),
            usage,
        });
        tracing::info!(
            "request {index}: model={:?} tools={} stream={stream} -> {outcome}",
            facts.model,
            facts.has_tools
        );
        (index, decision)
    };

    let turn = match decision {
        Decision::Reject(response) => return response,
        Decision::Serve(turn) => turn,
    };
    if turn.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(turn.delay_ms)).await;
    }
    let ctx = ReplyContext {
        completion_id: format!("chatcmpl-script-{index}"),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: facts.model,
        request_index: index,
        prompt_chars: raw_len,
    };
    play(&turn, &ctx, stream, include_usage, abort).await
}

fn decide(
    shared: &Shared,
    script: &mut Script,
    headers: &HeaderMap,
    json: &Option<Value>,
    facts: &RequestFacts,
    index: usize,
) -> (Outcome, Decision) {
    let reject = |status: StatusCode, reason: &str, response: Response| {
        (
            Outcome::Rejected {
                status: status.as_u16(),
                reason: reason.to_owned(),
            },
            Decision::Reject(response),
        )
    };
    if !shared.key_ok(headers) {
        return reject(StatusCode::UNAUTHORIZED, "invalid api key", unauthorized());
    }
    if !json.as_ref().is_some_and(Value::is_object) {
        let message = "request body is not a JSON object";
        let response = error_response(
            StatusCode::BAD_REQUEST,
            message,
            "invalid_request_error",
            None,
        );
        return reject(StatusCode::BAD_REQUEST, message, response);
    }
    if facts.model.is_empty() {
        let message = "you must provide a model parameter";
        let response = error_response(
            StatusCode::BAD_REQUEST,
            message,
            "invalid_request_error",
            None,
        );
        return reject(StatusCode::BAD_REQUEST, message, response);
    }
    if !shared.scenario.models.contains(&facts.model) {
        let message = format!("The model `{}` does not exist", facts.model);
        let response = error_response(
            StatusCode::NOT_FOUND,
            &message,
            "invalid_request_error",
            Some("model_not_found"),
        );
        return reject(StatusCode::NOT_FOUND, "model not found", response);
    }
    match script.select(facts) {
        Selection::Turn(turn_index, turn) => (
            Outcome::Turn {
                turn: turn_index,
                fault: turn.fault.as_ref().map(Fault::describe),
            },
            Decision::Serve(turn),
        ),
        Selection::Fallback(turn) => (
            Outcome::Fallback {
                fault: turn.fault.as_ref().map(Fault::describe),
            },
            Decision::Serve(turn),
        ),
        Selection::Exhausted => {
            let message = format!(
                "warren-model-script: scenario exhausted (request {index} matched no turn)"
            );
            let response = error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &message,
                "server_error",
                None,
            );
            reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                "scenario exhausted",
                response,
            )
        }
    }
}

/// Plays a turn: its fault, or the scripted reply.
async fn play(
    turn: &Turn,
    ctx: &ReplyContext,
    stream: bool,
    include_usage: bool,
    abort: Option<ConnAbort>,
) -> Response {
    match &turn.fault {
        None => {
            if stream {
                let events = wire::sse_events(turn, ctx, include_usage);
                let body = futures_util::stream::iter(
                    events
                        .into_iter()
                        .map(|e| Ok::<_, Infallible>(Bytes::from(e))),
                );
                sse_response(Body::from_stream(body))
            } else {
                axum::Json(wire::completion(turn, ctx)).into_response()
            }
        }
        Some(Fault::Status {
            code,
            body,
            retry_after_secs,
        }) => status_fault(*code, body.as_deref(), *retry_after_secs),
        Some(Fault::Hang {}) => std::future::pending().await,
        Some(Fault::Drop {}) => {
            if let Some(abort) = abort {
                abort.trigger();
            }
            // The connection task drops the socket; this future is dropped with it.
            std::future::pending().await
        }
        Some(Fault::HangAfterFirstToken {}) => {
            if stream {
                let first = wire::stream_deltas(turn, ctx.request_index)
                    .into_iter()
                    .next()
                    .map(|delta| wire::sse(&wire::chunk(ctx, delta, None)))
                    .unwrap_or_default();
                let body = futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from(first))])
                    .chain(futures_util::stream::pending());
                sse_response(Body::from_stream(body))
            } else {
                // A non-streamed reply has no "first token": send the headers, never the body.
                let body = futures_util::stream::pending::<Result<Bytes, Infallible>>();
                let mut response = Response::new(Body::from_stream(body));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
        }
    }
}

fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn status_fault(code: u16, body: Option<&str>, retry_after_secs: Option<u64>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (content_type, text) = match body {
        Some(text) if serde_json::from_str::<Value>(text).is_ok() => {
            ("application/json", text.to_owned())
        }
        Some(text) => ("text/plain; charset=utf-8", text.to_owned()),
        None => (
            "application/json",
            wire::error_body(
                &format!("scripted fault: HTTP {code}"),
                "server_error",
                None,
            )
            .to_string(),
        ),
    };
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(secs) = retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A JSON error response in OpenAI's shape.
pub(crate) fn error_response(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> Response {
    (status, axum::Json(wire::error_body(message, kind, code))).into_response()
}
