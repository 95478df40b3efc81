//! Forwarding one sandbox request to the upstream and its response back, streaming the response
//! body as it arrives (OpenCode reads SSE token by token), metering it on the way, and turning
//! upstream failures into notices the engine can act on.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc::UnboundedSender;

use crate::meter::{Meter, MeteredRequest, millis, request_model};
use crate::{Counters, GatewayNotice, RequestSource, headers, policy};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Chat requests carry the whole conversation, so they can be large, but not unboundedly so.
const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;
/// How much of an upstream error body goes into a notice.
const NOTICE_BODY_LIMIT: usize = 2 * 1024;

pub(crate) struct Shared {
    pub(crate) client: reqwest::Client,
    /// Without a trailing slash.
    pub(crate) base_url: String,
    /// `base_url` without userinfo, for messages.
    pub(crate) display_base: String,
    pub(crate) authorization: Option<HeaderValue>,
    pub(crate) notices: UnboundedSender<GatewayNotice>,
    pub(crate) source: RequestSource,
    pub(crate) counters: Counters,
    /// A TCP gateway's per-sandbox token: requests without it are refused before anything else.
    pub(crate) token: Option<String>,
    pub(crate) budget: crate::budget::Guard,
}

impl Shared {
    fn notify(&self, notice: GatewayNotice) {
        // The engine may have stopped listening (run already decided); that is not an error here.
        let _ = self.notices.send(notice);
    }
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    Counters::add(&shared.counters.requests, 1);
    let response = if shared
        .token
        .as_deref()
        .is_some_and(|token| !headers::carries_token(req.headers(), token))
    {
        unauthorized()
    } else {
        forward(&shared, req, started).await
    };
    tracing::debug!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        ms = millis(started),
        "model gateway request"
    );
    Ok(response)
}

async fn forward(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    started: Instant,
) -> Response<ProxyBody> {
    let Some(rest) = policy::allowed_rest(req.method(), req.uri()) else {
        return blocked(shared, req.method(), &policy::display_target(req.uri()));
    };
    if rest == "chat/completions"
        && let Some(line) = shared.budget.refusal()
    {
        return budget_refused(shared, line);
    }
    let url = policy::upstream_url(&shared.base_url, rest, req.uri().query());
    let display_url = format!("{}/{rest}", shared.display_base);
    let endpoint = rest.to_owned();

    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > MAX_REQUEST_BODY as u64) {
        return too_large();
    }

    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "gateway_bad_request",
                format!("warren gateway: cannot read the request body: {e}"),
            );
        }
    };
    Counters::add(&shared.counters.bytes_up, body.len() as u64);
    // From here on the request is forwarded, so it is metered, whatever happens.
    let mut record = MeteredRequest {
        source: shared.source,
        endpoint,
        model: request_model(&body),
        status: 0,
        input_tokens: None,
        output_tokens: None,
        latency_ms: 0,
        error: None,
        cost_usd: None,
    };

    let headers = headers::upstream_request_headers(&parts.headers, shared.authorization.as_ref());
    let mut upstream = shared
        .client
        .request(parts.method.clone(), &url)
        .headers(headers);
    if !body.is_empty() || parts.method == Method::POST {
        upstream = upstream.body(body);
    }
    let response = match upstream.send().await {
        Ok(response) => response,
        Err(e) => return transport_failure(shared, &display_url, &e, record, started),
    };

    let status = response.status();
    let response_headers = headers::downstream_response_headers(response.headers());
    let mut stream = response.bytes_stream();
    let mut prefix = Vec::new();
    if status.as_u16() >= 400 {
        Counters::add(&shared.counters.upstream_errors, 1);
        // Read just enough of the (normally small) error body to describe it; what was read is
        // replayed in front of the rest so the sandbox still gets the whole body.
        let mut seen = 0;
        while seen < NOTICE_BODY_LIMIT {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    seen += chunk.len();
                    prefix.push(Ok(chunk));
                }
                Some(Err(e)) => {
                    prefix.push(Err(e));
                    break;
                }
                None => break,
            }
        }
        let text = notice_text(prefix.iter().filter_map(|c| c.as_ref().ok()));
        let code = status.as_u16();
        shared.notify(match code {
            401 | 403 => GatewayNotice::UpstreamAuthRejected {
                status: code,
                body: text,
            },
            _ => GatewayNotice::UpstreamStatus {
                status: code,
                body: text,
            },
        });
    }

    record.status = status.as_u16();
    let content_type = response_headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let meter = Meter::new(Arc::clone(shared), started, record, content_type);
    let body = metered(futures_util::stream::iter(prefix).chain(stream), meter);
    let mut out = Response::new(StreamBody::new(body).boxed_unsync());
    *out.status_mut() = status;
    *out.headers_mut() = response_headers;
    out
}

/// The upstream body, frame by frame as it arrives, with each chunk shown to the meter on its way
/// through and the record sent when the body ends (or breaks, or is dropped unfinished).
fn metered(
    upstream: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    mut meter: Meter,
) -> impl Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static {
    let mut upstream = Box::pin(upstream);
    futures_util::stream::poll_fn(move |cx| {
        Poll::Ready(match std::task::ready!(upstream.as_mut().poll_next(cx)) {
            Some(Ok(bytes)) => {
                Counters::add(&meter.shared().counters.bytes_down, bytes.len() as u64);
                meter.observe(&bytes);
                Some(Ok(Frame::data(bytes)))
            }
            Some(Err(e)) => {
                meter.finish(Some(format!(
                    "the upstream's answer broke off: {}",
                    error_chain(&e)
                )));
                Some(Err(BoxError::from(e)))
            }
            None => {
                meter.finish(None);
                None
            }
        })
    })
}

fn blocked(shared: &Shared, method: &Method, target: &str) -> Response<ProxyBody> {
    Counters::add(&shared.counters.blocked, 1);
    tracing::debug!(method = %method, target = %target, "model gateway blocked a request");
    shared.notify(GatewayNotice::Blocked {
        method: method.to_string(),
        path: target.to_owned(),
    });
    json_error(
        StatusCode::FORBIDDEN,
        "gateway_policy",
        format!("blocked by warren's model gateway: {method} {target} is not a model API call"),
    )
}

/// A spent budget: the call is answered 400 with [`budget_refusal_message`], which OpenCode does
/// not retry, so the agent ends at once instead of spinning on a door that stays shut.
fn budget_refused(shared: &Shared, line: warren_domain::BudgetLine) -> Response<ProxyBody> {
    tracing::debug!(
        budget = line.budget.key(),
        "model gateway refused a call over budget"
    );
    shared.notify(GatewayNotice::BudgetExceeded(line));
    let mut response = json_error(
        StatusCode::BAD_REQUEST,
        "budget_exceeded",
        budget_refusal_message(&line),
    );
    response.headers_mut().insert(
        "x-warren-reason",
        HeaderValue::from_static("budget_exceeded"),
    );
    response
}

/// What the agent is told when its budget is spent. OpenCode retries a 4xx whose message or body
/// matches its transient-error patterns, and those include bare status numbers (`429`, `500`,
/// ... anywhere in the text: `2500 tokens` matches) and words such as `timeout` or
/// `exhausted`. So the text carries no figure at all (warren's own error and events do) and
/// none of those words.
pub fn budget_refusal_message(line: &warren_domain::BudgetLine) -> String {
    format!(
        "warren gateway: the {} budget for {} is spent, so this call was not sent to the model; warren is stopping the agent (raise the budget with warren exec --budget to go on)",
        line.scope.as_str(),
        line.budget.key()
    )
}

/// Nothing is forwarded, metered or noticed: a request without the token did not come from the
/// sandbox, and telling the engine about it would let anyone who can connect stop the run.
fn unauthorized() -> Response<ProxyBody> {
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "gateway_unauthorized",
        "warren gateway: this gateway requires its sandbox's token".to_owned(),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn too_large() -> Response<ProxyBody> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "gateway_request_too_large",
        format!("warren gateway: request bodies are limited to {MAX_REQUEST_BODY} bytes"),
    )
}

fn transport_failure(
    shared: &Shared,
    url: &str,
    error: &reqwest::Error,
    mut record: MeteredRequest,
    started: Instant,
) -> Response<ProxyBody> {
    Counters::add(&shared.counters.upstream_errors, 1);
    let cause = error_chain(error);
    record.status = StatusCode::BAD_GATEWAY.as_u16();
    record.latency_ms = millis(started);
    record.error = Some(cause.clone());
    if error.is_connect() || error.is_timeout() {
        tracing::debug!(url = %url, error = %cause, "model endpoint unreachable");
        // The notice that stops the run first, then the record (as for an error status).
        shared.notify(GatewayNotice::UpstreamUnreachable {
            url: url.to_owned(),
            error: cause.clone(),
        });
        shared.meter(record);
        return json_error(
            StatusCode::BAD_GATEWAY,
            "gateway_upstream_unreachable",
            format!("warren gateway: cannot reach the model endpoint {url}: {cause}"),
        );
    }
    // The connection was made but broke before a response (reset, closed early). That can be
    // transient, so no notice: the agent's own retry decides whether the run is doomed.
    tracing::debug!(url = %url, error = %cause, "model endpoint request failed");
    shared.meter(record);
    json_error(
        StatusCode::BAD_GATEWAY,
        "gateway_upstream_error",
        format!("warren gateway: request to the model endpoint {url} failed: {cause}"),
    )
}

/// reqwest's top-level message repeats the full URL (query included); the causes underneath say
/// what actually went wrong ("tcp connect error: Connection refused").
fn error_chain(error: &reqwest::Error) -> String {
    let parts = warren_domain::cause_chain(error);
    if parts.is_empty() {
        // Not `error.to_string()`: the URL in it may carry userinfo from the configured base.
        if error.is_timeout() {
            "timed out".into()
        } else {
            "request failed".into()
        }
    } else {
        parts.join(": ")
    }
}

fn notice_text<'a>(chunks: impl Iterator<Item = &'a Bytes>) -> String {
    let mut raw = Vec::with_capacity(NOTICE_BODY_LIMIT);
    for chunk in chunks {
        let room = NOTICE_BODY_LIMIT - raw.len();
        raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if raw.len() >= NOTICE_BODY_LIMIT {
            break;
        }
    }
    // Truncation may split a UTF-8 sequence; the lossy conversion turns it into U+FFFD.
    String::from_utf8_lossy(&raw).into_owned()
}

fn json_error(status: StatusCode, kind: &str, message: String) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": { "message": message, "type": kind } }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(BoxError::from)
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
