//! Handling one proxy request from the sandbox: a CONNECT becomes a byte tunnel to the checked
//! address, an absolute-form `http://` request is forwarded on a fresh connection to it, and
//! anything else is refused. Redirects are answered back to the client like any response: if it
//! follows one, that is a new request, decided afresh.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use super::decide::{Decision, decide};
use super::io::Counted;
use super::record::{EgressRecord, Pending};
use super::rules::EgressPolicy;
use crate::GatewayNotice;
use crate::proxy::{BoxError, ProxyBody};

pub(crate) struct Shared {
    pub(crate) policy: EgressPolicy,
    pub(crate) notices: UnboundedSender<GatewayNotice>,
    pub(crate) connect_timeout: Duration,
    /// Flips to `true` at shutdown: open tunnels end.
    pub(crate) stop: watch::Receiver<bool>,
    /// The open tunnels, which outlive the request that opened them; shutdown waits for them so
    /// their records are sent before it returns.
    pub(crate) tunnels: std::sync::Mutex<tokio::task::JoinSet<()>>,
}

/// Per direction of a tunnel: tokio's default (8 KiB) makes a bulk download syscall-bound.
const TUNNEL_BUFFER: usize = 128 * 1024;

/// The header a refusal carries, so a script can tell the proxy's answer from the server's.
const REFUSAL_HEADER: &str = "x-warren-egress";

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let Some((host, port)) = target(req.method(), req.uri()) else {
        let shown = crate::policy::display_target(req.uri());
        let mut pending = Pending::new(
            record(&method, &shown, 0, false),
            started,
            shared.notices.clone(),
        );
        let reason = if req.uri().scheme_str() == Some("https") {
            "an https:// URL must go through CONNECT (set HTTPS_PROXY)".to_owned()
        } else {
            "not a proxy request: send CONNECT host:port or an absolute http:// URL".to_owned()
        };
        pending.set_status(StatusCode::BAD_REQUEST.as_u16());
        pending.set_reason(reason.clone());
        return Ok(refusal(StatusCode::BAD_REQUEST, &reason));
    };
    let decision = decide(&shared.policy, &host, port, &method).await;
    let (address, rule) = match decision {
        Decision::Denied { reason } => {
            let mut pending = Pending::new(
                record(&method, &host, port, false),
                started,
                shared.notices.clone(),
            );
            pending.set_status(StatusCode::FORBIDDEN.as_u16());
            pending.set_reason(reason.clone());
            return Ok(refusal(
                StatusCode::FORBIDDEN,
                &format!("warren egress policy refused {method} {host}:{port}: {reason}"),
            ));
        }
        Decision::Allowed { address, rule } => (address, rule),
    };
    let mut rec = record(&method, &host, port, true);
    rec.address = Some(address.to_string());
    rec.rule = Some(rule);
    let mut pending = Pending::new(rec, started, shared.notices.clone());
    let stream =
        match tokio::time::timeout(shared.connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Ok(unreachable(pending, &address.to_string(), &e.to_string())),
            Err(_) => return Ok(unreachable(pending, &address.to_string(), "timed out")),
        };
    let _ = stream.set_nodelay(true);
    let upstream = Counted::new(stream, pending.bytes());
    if req.method() == Method::CONNECT {
        pending.set_status(StatusCode::OK.as_u16());
        let task = tunnel(req, upstream, pending, shared.stop.clone());
        let mut tunnels = shared
            .tunnels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Reaps finished tunnels so the set does not grow for the sandbox's lifetime.
        while tunnels.try_join_next().is_some() {}
        tunnels.spawn(task);
        return Ok(Response::new(empty()));
    }
    Ok(forward(req, upstream, pending, &host, port).await)
}

fn record(method: &str, host: &str, port: u16, allowed: bool) -> EgressRecord {
    EgressRecord {
        allowed,
        method: method.to_owned(),
        host: host.to_owned(),
        port,
        address: None,
        rule: None,
        reason: None,
        status: 0,
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 0,
    }
}

/// The host and port a proxy request is for: `CONNECT host:port`, or `METHOD http://host[:port]/…`.
fn target(method: &Method, uri: &Uri) -> Option<(String, u16)> {
    let authority = uri.authority()?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return None;
    }
    if *method == Method::CONNECT {
        return Some((host, authority.port_u16()?));
    }
    match uri.scheme_str() {
        Some("http") => Some((host, authority.port_u16().unwrap_or(80))),
        _ => None,
    }
}

/// Copies both ways until either side ends or the proxy shuts down; the record goes out when
/// this returns.
async fn tunnel(
    req: Request<Incoming>,
    mut upstream: Counted,
    mut pending: Pending,
    mut stop: watch::Receiver<bool>,
) {
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(u) => u,
        Err(e) => {
            pending.set_reason(format!("the client never used the tunnel: {e}"));
            return;
        }
    };
    let mut client = TokioIo::new(upgraded);
    tokio::select! {
        result = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, TUNNEL_BUFFER, TUNNEL_BUFFER) => {
            if let Err(e) = result {
                pending.set_reason(format!("the tunnel broke: {e}"));
            }
        }
        _ = stop.wait_for(|stopped| *stopped) => {
            pending.set_reason("cut off: the sandbox's run ended".into());
        }
    }
}

/// Sends the request on its own connection to the checked address and streams the answer back.
async fn forward(
    req: Request<Incoming>,
    upstream: Counted,
    mut pending: Pending,
    host: &str,
    port: u16,
) -> Response<ProxyBody> {
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(e) => return bad_gateway(pending, &e.to_string()),
        };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => return bad_gateway(pending, "the request path is not valid"),
    };
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST) {
        let value = if port == 80 {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        if let Ok(v) = HeaderValue::try_from(value) {
            parts.headers.insert(header::HOST, v);
        }
    }
    let response = match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => return bad_gateway(pending, &e.to_string()),
    };
    pending.set_status(response.status().as_u16());
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The record travels with the body: it is sent when the body has been passed on (or dropped).
    let body = body
        .map_frame(move |frame| {
            let _ = &pending;
            frame
        })
        .map_err(BoxError::from)
        .boxed_unsync();
    Response::from_parts(parts, body)
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), and the proxy credential.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(BoxError::from)
        .boxed_unsync()
}

fn refusal(status: StatusCode, message: &str) -> Response<ProxyBody> {
    tagged(status, message, "denied")
}

fn tagged(status: StatusCode, message: &str, tag: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("{message}\n")))
            .map_err(BoxError::from)
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(REFUSAL_HEADER, HeaderValue::from_static(tag));
    response
}

fn unreachable(mut pending: Pending, address: &str, error: &str) -> Response<ProxyBody> {
    let reason = format!("cannot connect to {address}: {error}");
    pending.set_status(StatusCode::BAD_GATEWAY.as_u16());
    pending.set_reason(reason.clone());
    tagged(
        StatusCode::BAD_GATEWAY,
        &format!("warren egress: {reason}"),
        "unreachable",
    )
}

fn bad_gateway(mut pending: Pending, error: &str) -> Response<ProxyBody> {
    let reason = format!("the upstream exchange failed: {error}");
    pending.set_status(StatusCode::BAD_GATEWAY.as_u16());
    pending.set_reason(reason.clone());
    tagged(
        StatusCode::BAD_GATEWAY,
        &format!("warren egress: {reason}"),
        "upstream-failed",
    )
}
